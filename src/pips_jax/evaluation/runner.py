"""Running a tracker over a TAP-Vid-format dataset and reporting the metrics.

Every number is reported beside a zero-motion baseline (each point stays at its
query position, always visible), so it has context. The report states the resolution
the model ran at and the resolution the metrics were computed at (TAP-Vid: 256x256).

Beside the TAP-Vid metrics every method gets the PIPs++ paper's own (``d_avg``,
``survival_16``, ``median_l2``; :func:`~pips_jax.evaluation.metrics.pips2_metrics`),
computed as its ``test_on_tap.py`` does: on the points whose query is on frame 0 (its
dataset keeps the points visible on frame 0 and tracks them from there), at the
evaluation resolution. For a model without visibility (PIPs++) the report says that
occlusion metrics count a point visible wherever its predicted position is on the frame.
"""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

from pips_jax import interrupts
from pips_jax.errors import InputError, PipsWarning
from pips_jax.evaluation.datasets import EvalExample, VideoSample, iter_dataset, prepare_evaluation
from pips_jax.evaluation.metrics import (
    aggregate_metrics,
    compute_tapvid_metrics,
    pips2_metrics,
    trajectory_errors,
    zero_motion_prediction,
)

#: predict(example) -> (tracks (n, T, 2) as (x, y) pixels at the evaluation resolution,
#: occluded (n, T) bool)
Predictor = Callable[[EvalExample], tuple[np.ndarray, np.ndarray]]

#: The metrics a report's table shows, with their column labels.
SUMMARY_KEYS = (
    ("average_jaccard", "AJ"),
    ("average_pts_within_thresh", "delta_avg"),
    ("occlusion_accuracy", "OA"),
    ("ate_visible", "ATE_vis"),
    ("ate_occluded", "ATE_occ"),
    ("median_error_visible", "MTE_vis"),
)
#: Their names: what training logs at each held-out evaluation and weights cards keep.
SUMMARY_METRICS = tuple(key for key, _ in SUMMARY_KEYS)
#: The PIPs++ paper's metrics a report's table shows (percent, percent, 256x256 pixels).
PIPS2_KEYS = (("d_avg", "d_avg"), ("survival_16", "survival"), ("median_l2", "median_l2"))
#: How occlusion is scored, by whether the model predicts visibility.
VISIBILITY_BASIS = {
    True: "predicted by the model",
    False: (
        "none predicted (PIPs++): AJ and OA count a point visible wherever its predicted "
        "position lies on the frame"
    ),
}


@dataclasses.dataclass
class EvalReport:
    """Dataset scores per method, with the settings they were computed under.

    Attributes:
        scores: ``{method: {metric: value}}``; TAP-Vid metrics are fractions in [0, 1],
            trajectory errors pixels at ``eval_resolution``.
        per_video: ``{method: {video: {metric: value}}}``.
        skipped: ``[(video, reason)]`` for videos that could not be evaluated.
        input_resolution: ``(H, W)`` the model ran at on the clips.
        eval_resolution: ``(H, W)`` the metrics were computed at.
        weights: a label of the weights and the iterations they ran with
            (:meth:`pips_jax.inference.InferenceSettings.describe`), for people.
        iters: refinement iterations per window the model ran with, or None when only
            the baseline ran.
        precision: the model's compute precision, or None when only the baseline ran.
        visibility: how the model's occlusion predictions were made
            (:data:`VISIBILITY_BASIS`), or None when only the baseline ran.
    """

    dataset: str
    fmt: str
    query_mode: str
    input_resolution: tuple[int, int]
    eval_resolution: tuple[int, int]
    weights: str
    scores: dict[str, dict[str, float]]
    per_video: dict[str, dict[str, dict[str, float]]]
    skipped: list[tuple[str, str]]
    iters: int | None = None
    precision: str | None = None
    visibility: str | None = None

    @property
    def num_videos(self) -> int:
        return len(next(iter(self.per_video.values()), {}))

    def to_json(self) -> str:
        def clean(x):
            if isinstance(x, float) and math.isnan(x):
                return None
            if isinstance(x, dict):
                return {k: clean(v) for k, v in x.items()}
            if isinstance(x, (list, tuple)):
                return [clean(v) for v in x]
            return x

        return json.dumps(clean(dataclasses.asdict(self)), indent=2)

    def table(self) -> str:
        """A readable table: one row per method, percentages for the TAP-Vid metrics."""
        head = f"{'method':<12}" + "".join(f"{label:>10}" for _, label in SUMMARY_KEYS)
        lines = [
            f"{self.fmt} dataset {self.dataset}: {self.num_videos} videos evaluated, "
            f"{len(self.skipped)} skipped; query mode {self.query_mode}",
            f"model input resolution {self.input_resolution[0]}x{self.input_resolution[1]}, "
            f"metrics at {self.eval_resolution[0]}x{self.eval_resolution[1]} "
            f"(errors in pixels at that resolution); weights: {self.weights}",
            head,
            "-" * len(head),
        ]
        for method, scores in self.scores.items():
            cells = []
            for key, _ in SUMMARY_KEYS:
                v = scores.get(key, float("nan"))
                pct = key in ("average_jaccard", "average_pts_within_thresh", "occlusion_accuracy")
                cells.append(f"{100 * v:>10.1f}" if pct else f"{v:>10.2f}")
            lines.append(f"{method:<12}" + "".join(cells))
        head2 = f"{'method':<12}" + "".join(f"{label:>10}" for _, label in PIPS2_KEYS)
        lines += [
            "PIPs++ paper metrics (test_on_tap.py; points queried on frame 0): d_avg and "
            "survival in %, median_l2 in pixels",
            head2,
            "-" * len(head2),
        ]
        for method, scores in self.scores.items():
            cells = [f"{scores.get(key, float('nan')):>10.1f}" for key, _ in PIPS2_KEYS[:2]]
            cells.append(f"{scores.get('median_l2', float('nan')):>10.2f}")
            lines.append(f"{method:<12}" + "".join(cells))
        if self.visibility is not None:
            lines.append(f"visibility: {self.visibility}")
        for name, reason in self.skipped:
            lines.append(f"skipped {name}: {reason}")
        return "\n".join(lines)


def synthetic_samples(num_videos: int, seed: int, config=None) -> Iterator[tuple[str, VideoSample]]:
    """Clips of the synthetic benchmark as ``(name, VideoSample)`` (exact ground truth)."""
    from pips_jax.synthetic import SyntheticConfig, SyntheticDataset

    data = SyntheticDataset(config or SyntheticConfig(), seed=seed, length=num_videos)
    for i in range(num_videos):
        clip = data[i]
        name = f"synthetic_{seed}_{i:04d}"
        yield name, VideoSample(name, clip.video, clip.tracks.astype(np.float64), clip.occluded)


def _video_metrics(ex: EvalExample, tracks: np.ndarray, occluded: np.ndarray) -> dict[str, float]:
    queries = ex.tapvid_query_points
    t = compute_tapvid_metrics(
        queries, ex.occluded, ex.target_points, occluded[None], tracks[None], ex.query_mode
    )
    e = trajectory_errors(ex.target_points, ex.occluded, tracks[None], queries, ex.query_mode)
    out = {k: float(np.asarray(v)[0]) for k, v in {**t, **e}.items()}
    first = ex.query_points[0, :, 0] == 0  # the points PIPs++'s evaluation keeps
    if np.any(first):
        size = ex.video.shape[2:4]
        out.update(
            pips2_metrics(ex.target_points[0, first], ~ex.occluded[0, first], tracks[first], size)
        )
    else:
        out.update({key: float("nan") for key in PIPS2_METRICS})
    return out


#: The keys of :func:`~pips_jax.evaluation.metrics.pips2_metrics`.
PIPS2_METRICS = ("d_1", "d_2", "d_4", "d_8", "d_16", "d_avg", "survival_16", "median_l2")


def evaluate(
    samples: Iterable[tuple[str, VideoSample | InputError]],
    predictors: dict[str, Predictor],
    query_mode: str = "first",
    eval_resolution: tuple[int, int] = (256, 256),
    progress: bool = False,
    share: tuple[int, int] = (0, 1),
    **report_fields,
) -> EvalReport:
    """Evaluates every predictor (plus the zero-motion baseline) on every video.

    A bad video (unreadable, wrong layout, no query point) is reported in
    ``skipped`` and does not stop the others.

    ``share = (I, P)``: this is process ``I`` of a job of ``P``
    (:mod:`pips_jax.runtime`); it evaluates the videos at positions ``I, I + P, ...``
    of ``samples`` and the per-video results of every process are gathered, so every
    process returns the report one process would make (the same videos, in the same
    order, the same scores). Every process must be given the same ``samples``.
    """
    from tqdm.auto import tqdm

    index, count = share
    methods = {**predictors, "zero_motion": _zero_motion}
    per_video: dict[str, dict[str, dict[str, float]]] = {m: {} for m in methods}
    skipped: list[tuple[str, str]] = []
    order: list[str] = []
    for position, (name, sample) in enumerate(
        tqdm(samples, desc="eval", unit="video", disable=not progress, leave=False)
    ):
        interrupts.check()
        order.append(name)
        if position % count != index:
            continue
        if isinstance(sample, Exception):
            skipped.append((name, str(sample)))
            continue
        try:
            ex = prepare_evaluation(sample, query_mode, eval_resolution)
            for method, predict in methods.items():
                tracks, occluded = predict(ex)
                per_video[method][name] = _video_metrics(ex, tracks, occluded)
        except InputError as e:
            for m in methods:
                per_video[m].pop(name, None)
            skipped.append((name, str(e)))
    if count > 1:
        per_video, skipped = _gather_results(per_video, skipped, order)
    if not per_video["zero_motion"]:
        reasons = "; ".join(f"{n}: {r}" for n, r in skipped[:3])
        raise InputError(
            f"no video could be evaluated ({len(skipped)} skipped{': ' + reasons if reasons else ''})"
        )
    scores = {
        m: aggregate_metrics(
            [{k: np.array([v]) for k, v in d.items()} for d in per_video[m].values()]
        )
        for m in methods
    }
    return EvalReport(
        query_mode=query_mode,
        eval_resolution=tuple(eval_resolution),
        scores=scores,
        per_video=per_video,
        skipped=skipped,
        **report_fields,
    )


def _gather_results(
    per_video: dict[str, dict[str, dict[str, float]]],
    skipped: list[tuple[str, str]],
    order: list[str],
) -> tuple[dict[str, dict[str, dict[str, float]]], list[tuple[str, str]]]:
    """Every process's per-video results and skipped videos, merged in the order of
    the videos (``order``: every video's name, as every process read them)."""
    from pips_jax.runtime import allgather_json

    parts = allgather_json({"per_video": per_video, "skipped": skipped})
    position = {name: i for i, name in reversed(list(enumerate(order)))}
    merged = {
        method: dict(
            sorted(
                ((name, row) for part in parts for name, row in part["per_video"][method].items()),
                key=lambda item: position[item[0]],
            )
        )
        for method in per_video
    }
    every_skip = sorted(
        ((name, reason) for part in parts for name, reason in part["skipped"]),
        key=lambda item: position[item[0]],
    )
    return merged, every_skip


def _zero_motion(ex: EvalExample) -> tuple[np.ndarray, np.ndarray]:
    tracks, occluded = zero_motion_prediction(ex.tapvid_query_points, ex.target_points.shape[2])
    return tracks[0], occluded[0]


def tracker_predictor(tracker) -> Predictor:
    """Adapts a :class:`~pips_jax.tracker.Tracker` to :data:`Predictor`."""

    def predict(ex: EvalExample) -> tuple[np.ndarray, np.ndarray]:
        with warnings.catch_warnings():
            # A model input resolution of another aspect ratio is the evaluation's
            # choice (PIPs++'s original runs 256x256 clips at 512x896), stated in
            # the report: not worth a warning per clip.
            warnings.filterwarnings("ignore", "working resolution", PipsWarning)
            result = tracker.track(ex.video[0], queries=ex.query_points[0])
        return result.tracks.astype(np.float64), ~result.visibility

    return predict


def load_samples(dataset: str | None, fmt: str, num_videos: int, seed: int):
    """The ``(name, sample or error)`` stream for ``pips-jax eval``."""
    if fmt == "synthetic":
        if dataset:
            return iter_dataset(dataset, "davis")
        return synthetic_samples(num_videos, seed)
    if not dataset:
        raise InputError(f"--dataset PATH is required for --format {fmt}")
    if not Path(dataset).exists():
        raise InputError(
            f"dataset {dataset} does not exist; expected a pickle file or a folder of pickles"
        )
    return iter_dataset(dataset, fmt)
