"""The training log: one JSON object per line, and a plot of its curves.

Records are ``{"type": "train", "step": ..., "loss": ..., "seq": ..., "vis": ...,
"score": ..., "lr": ..., "grad_norm": ..., "ate_vis": ..., "ate_occ": ...,
"steps_per_s": ..., "elapsed": ...}`` (means over the steps since the previous record;
``step`` counts completed optimizer steps; errors in input pixels) and
``{"type": "eval", "step": ..., <TAP-Vid and PIPs++ paper metrics>}``. NaN is written
as ``null``. A PIPs++ run's train records have no ``vis`` or ``score`` (its model has
neither loss; its ``loss`` is its ``seq``): the keys are left out rather than written
as 0, so that no curve shows a loss that does not exist.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any

from pips_jax.files import atomic_write_bytes, create_temporary, replaced_on_success


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    return value


def read_records(path: str | os.PathLike) -> list[dict[str, Any]]:
    """All records of a JSONL log (a torn last line, from a crash, is skipped)."""
    path = Path(path)
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


class MetricsLog:
    """Appends records to a JSONL file.

    Args:
        path: the file.
        keep_until: records with a larger ``step`` are dropped when opening (a resumed
            run recomputes them identically); None keeps nothing (a new run).
    """

    def __init__(self, path: str | os.PathLike, keep_until: int | None = None):
        self.path = Path(path)
        kept = [
            r
            for r in read_records(self.path)
            if keep_until is not None and r.get("step", 0) <= keep_until
        ]
        atomic_write_bytes(self.path, "".join(json.dumps(r) + "\n" for r in kept).encode())

    def write(self, record: dict[str, Any]) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(_clean(record)) + "\n")

    def records(self) -> list[dict[str, Any]]:
        return read_records(self.path)


_PANELS = (
    ("losses", "train", ("loss", "seq", "vis", "score"), True),
    ("learning rate", "train", ("lr",), True),
    ("gradient norm (before clipping)", "train", ("grad_norm",), True),
    ("train error (px, last iteration)", "train", ("ate_vis", "ate_occ"), False),
    (
        "held-out TAP-Vid metrics",
        "eval",
        ("average_jaccard", "average_pts_within_thresh", "occlusion_accuracy"),
        False,
    ),
    ("held-out error (px at 256x256)", "eval", ("ate_visible", "ate_occluded"), False),
)


def plot_curves(records: list[dict[str, Any]], out_path: str | os.PathLike) -> Path | None:
    """Plots the log's curves into a PNG (matplotlib's Agg renderer, no pyplot).

    Returns the path, or None when matplotlib is missing (``pip install
    "pips-jax[train]"``) or there is nothing to plot yet.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        print(
            "pips-jax train: matplotlib is not installed, no plot (pip install 'pips-jax[train]')",
            file=sys.stderr,
        )
        return None
    if not any(r.get("type") == "train" for r in records):
        return None
    # A Figure with its own Agg canvas: no pyplot, so no global backend is touched.
    fig = Figure(figsize=(15, 8))
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 3)
    for ax, (title, kind, keys, log_y) in zip(axes.ravel(), _PANELS, strict=True):
        rows = [r for r in records if r.get("type") == kind]
        for key in keys:
            pts = [(r["step"], r[key]) for r in rows if isinstance(r.get(key), (int, float))]
            if pts:
                ax.plot(*zip(*pts, strict=True), label=key, marker="." if len(pts) < 50 else None)
        if log_y and ax.lines and all(y > 0 for line in ax.lines for y in line.get_ydata()):
            ax.set_yscale("log")
        ax.set_title(title)
        ax.set_xlabel("step")
        if ax.lines:
            ax.legend(fontsize="small")
        else:
            ax.text(0.5, 0.5, "no data yet", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    out_path = Path(out_path)
    tmp = create_temporary(out_path)
    with replaced_on_success(tmp, out_path):
        fig.savefig(tmp, dpi=80)
    return out_path
