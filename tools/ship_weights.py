"""Ships a training run as the package's own weights (a maintainer's tool; not installed).

    python tools/ship_weights.py --run RUN --eval EVAL.json --command "pips-jax train ..." \
        [--validation VAL.json ...] [--resolution-validation VAL.json ...] \
        [--eval-also EVAL.json ...]

Every ``*.json`` is a ``pips-jax eval --json`` report: its ``iters`` and
``input_resolution`` fields say how the model ran, its ``dataset`` on which clips.

1. appends RUN to the card ``src/pips_jax/assets/<name>.json`` as the next training
   stage (its command, TrainConfig, data seed, steps, training time) and updates the
   card's totals and held-out curve (steps counted over all stages);
2. with ``--validation`` (reports on clips other than the benchmark's, one per
   ``--iters``, all at one input resolution), sets the card's ``iters`` to the count
   that scores best and appends the scores to ``iters_validation``; with
   ``--resolution-validation`` (one report per ``--input-resolution``, all with the
   card's ``iters``), the same for ``input_resolution`` (:func:`choose_by_validation`);
3. stores EVAL.json's scores, which must have been measured with the card's (new)
   ``iters`` and ``input_resolution``, as ``evaluation.model`` with the settings of the
   benchmark; ``--eval-also``: the same benchmark with one setting changed, stored as
   ``evaluation.model_<N>_iterations`` or ``evaluation.model_input_<H>x<W>``;
4. writes RUN's latest parameters to ``src/pips_jax/assets/<name>.safetensors``, plots
   the held-out curve into ``docs/small_synthetic_training.png`` and tracks the demo
   clip with the card's settings into ``docs/demo_small_synthetic.gif`` (64 colours),
   printing the demo's median error.

The card holds numbers and choices only; what they mean and why the weights were
trained so is written by hand in ``src/pips_jax/assets/README.md``, as are the READMEs'
tables. Decide whether to ship from EVAL.json first: a new version replaces the shipped
one only when clearly better.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
from pathlib import Path

from pips_jax.evaluation.runner import SUMMARY_METRICS
from pips_jax.files import atomic_write_bytes
from pips_jax.inference import InferenceSettings
from pips_jax.training.log import read_records
from pips_jax.weights import SHIPPED_NAME, load_weights

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "src" / "pips_jax" / "assets"
DOCS = ROOT / "docs"

#: The score that decides a choice between settings (higher is better).
DECIDING = "average_pts_within_thresh"
#: The choices a card makes from validation reports, and the name of a candidate value
#: in its ``<choice>_validation`` entries.
CHOICES = {
    "iters": lambda value: str(value),
    "input_resolution": lambda value: "x".join(str(v) for v in value),
}


def _rounded(row: dict, prefix: str = "") -> dict:
    return {k: round(row[prefix + k], 4) for k in SUMMARY_METRICS}


def card_settings(card: dict) -> InferenceSettings:
    """The settings the card's weights run with on 256x256 clips (``demo``, ``eval``)."""
    return InferenceSettings.resolve(card)


def report_setting(report: dict, choice: str):
    """The value of ``choice`` (``"iters"`` or ``"input_resolution"``) ``report`` was
    measured with; a resolution as an ``(H, W)`` tuple."""
    if report.get(choice) is None:
        raise ValueError(
            f"expected a pips-jax eval report with its {choice!r}, found none in the report "
            f"of {report.get('weights', 'unnamed weights')!r} (re-run pips-jax eval)"
        )
    value = report[choice]
    return tuple(value) if isinstance(value, list) else value


def benchmark_scores(report: dict, settings: InferenceSettings) -> dict:
    """The model's scores in a report, checked to have been measured with ``settings``'
    iterations and clip input resolution."""
    for choice, wanted, flag in (
        ("iters", settings.iters, f"--iters {settings.iters}"),
        (
            "input_resolution",
            settings.clip_resolution,
            f"--input-resolution {CHOICES['input_resolution'](settings.clip_resolution)}",
        ),
    ):
        found = report_setting(report, choice)
        if found != wanted:
            name = CHOICES[choice]
            raise ValueError(
                f"expected an evaluation with {choice} {name(wanted)}, found {name(found)} "
                f"(run pips-jax eval with {flag})"
            )
    return report["scores"]["pips"]


def _dataset(report: dict) -> str:
    return report.get("dataset", "an unnamed dataset")


def choose_by_validation(card: dict, choice: str, reports: list[dict], benchmark: dict) -> dict:
    """The card with ``choice`` (``"iters"`` or ``"input_resolution"``) set to the value
    whose validation report scores best on :data:`DECIDING`, and those scores appended
    to ``card["<choice>_validation"]``.

    Args:
        card: the card after :func:`next_card` (its last stage the new weights).
        choice: the setting to decide.
        reports: ``pips-jax eval --json`` reports on the same validation clips, one per
            candidate value, alike in every other setting.
        benchmark: the benchmark report; the validation clips must be other clips.

    Raises:
        ValueError: fewer than two candidates, two reports of one value, reports on
            different clips or on the benchmark's, or with another value of the other
            setting than the card's.
    """
    name = CHOICES[choice]
    datasets = sorted({_dataset(r) for r in reports})
    if len(datasets) != 1:
        raise ValueError(f"expected every validation report on the same clips, found {datasets}")
    if datasets[0] == _dataset(benchmark):
        raise ValueError(
            f"expected validation clips other than the benchmark's, found {datasets[0]!r}"
        )
    (other,) = set(CHOICES) - {choice}
    settings = card_settings(card)
    kept = settings.iters if other == "iters" else settings.clip_resolution
    for report in reports:
        if report_setting(report, other) != kept:
            raise ValueError(
                f"expected validation reports with the card's {other} {name_of(other, kept)}, "
                f"found {name_of(other, report_setting(report, other))}"
            )
    scores = {}
    for report in reports:
        key = name(report_setting(report, choice))
        if key in scores:
            raise ValueError(f"expected one validation report per {choice}, found two at {key}")
        scores[key] = (report_setting(report, choice), _rounded(report["scores"]["pips"]))
    if len(scores) < 2:
        raise ValueError(f"expected validation reports of at least two {choice} values")
    best = max(scores, key=lambda k: scores[k][1][DECIDING])
    entry = {
        "stage": len(card["stages"]),
        "dataset": datasets[0],
        other: kept,
        **{k: v for k, (_, v) in scores.items()},
    }
    value = scores[best][0]
    return {
        **card,
        choice: list(value) if isinstance(value, tuple) else value,
        f"{choice}_validation": [*card.get(f"{choice}_validation", []), _json(entry)],
    }


def name_of(choice: str, value) -> str:
    """How a value of ``choice`` is written as a key: ``"4"``, ``"384x384"``."""
    return CHOICES[choice](value)


def _json(entry: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in entry.items()}


def with_benchmark(card: dict, benchmark: dict, also: tuple[dict, ...] = ()) -> dict:
    """The card with the new weights' benchmark scores.

    Args:
        card: the card after :func:`next_card` and its choices.
        benchmark: the report of the benchmark run with the card's settings; its scores
            become ``evaluation.model`` and its settings ``evaluation.settings``.
        also: reports of the same benchmark with either the iterations or the input
            resolution changed, stored as ``evaluation.model_<N>_iterations`` or
            ``evaluation.model_input_<H>x<W>``.

    Raises:
        ValueError: a report with other settings than those, or on other clips.
    """
    settings = card_settings(card)
    evaluation = {
        "settings": {
            "dataset": _dataset(benchmark),
            "query_mode": benchmark["query_mode"],
            "iters": settings.iters,
            "input_resolution": list(settings.clip_resolution),
            "eval_resolution": list(benchmark["eval_resolution"]),
        },
        "model": _rounded(benchmark_scores(benchmark, settings)),
        "zero_motion": _rounded(benchmark["scores"]["zero_motion"]),
    }
    for report in also:
        if _dataset(report) != _dataset(benchmark):
            raise ValueError(
                f"expected --eval-also on the benchmark's {_dataset(benchmark)!r}, "
                f"found {_dataset(report)!r}"
            )
        iters = report_setting(report, "iters")
        resolution = report_setting(report, "input_resolution")
        if resolution == settings.clip_resolution and iters != settings.iters:
            key = f"model_{iters}_iterations"
        elif iters == settings.iters and resolution != settings.clip_resolution:
            key = f"model_input_{name_of('input_resolution', resolution)}"
        else:
            raise ValueError(
                f"expected --eval-also with one of the card's iters {settings.iters} and input "
                f"resolution {name_of('input_resolution', settings.clip_resolution)} changed, "
                f"found iters {iters} at {name_of('input_resolution', resolution)}"
            )
        evaluation[key] = _rounded(report["scores"]["pips"])
    return {**card, "evaluation": evaluation}


def next_card(card: dict, config: dict, records: list[dict], command: str) -> dict:
    """The card after one more training stage (the benchmark scores of the old weights
    go; :func:`with_benchmark` stores the new ones).

    Args:
        card: the current card (with ``stages``).
        config: the new run's ``config.json`` (a TrainConfig as a dict).
        records: the new run's ``metrics.jsonl`` rows.
        command: the exact ``pips-jax train`` command of the new run.
    """
    train = [r for r in records if r["type"] == "train"]
    evals = [r for r in records if r["type"] == "eval"]
    if not train or train[-1]["step"] != config["num_steps"]:
        raise ValueError(
            f"expected a finished run of {config['num_steps']} steps, found the log ending at "
            f"step {train[-1]['step'] if train else None}"
        )
    offset = card["steps"]
    stages = [
        *card["stages"],
        {
            "training_command": command,
            "training_config": config,
            "data_seed": config["seed"],
            "steps": config["num_steps"],
            "training_time_s": round(train[-1]["elapsed"]),
            "init_stage": len(card["stages"]),
        },
    ]
    curve = dict(card["held_out_curve"])
    curve["points"] = [
        *curve["points"],
        *(
            {
                "step": offset + r["step"],
                **_rounded(r),
                "zero_motion_average_pts_within_thresh": round(
                    r["zero_motion_average_pts_within_thresh"], 4
                ),
            }
            for r in evals
        ),
    ]
    if evals:
        curve["zero_motion"] = _rounded(evals[-1], "zero_motion_")
    new = {k: v for k, v in card.items() if k != "evaluation"}
    new.update(
        training_command=command,
        data_seed=config["seed"],
        steps=offset + config["num_steps"],
        training_time_s=sum(s["training_time_s"] for s in stages),
        stages=stages,
        held_out_curve=curve,
    )
    return new


def plot_curve(card: dict, out: Path) -> None:
    """The card's held-out curve: delta_avg, median error and OA against total steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = card["held_out_curve"]["points"]
    zero = card["held_out_curve"].get("zero_motion", {})
    steps = [p["step"] for p in points]
    panels = [
        ("average_pts_within_thresh", 100, "held-out delta_avg"),
        ("median_error_visible", 1, "held-out median error, visible (px)"),
        ("occlusion_accuracy", 100, "held-out occlusion accuracy"),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for ax, (key, scale, title) in zip(axes, panels, strict=True):
        ax.plot(steps, [scale * p[key] for p in points], "o-", label=card["name"])
        if key in zero:
            ax.axhline(scale * zero[key], color="gray", ls="--", label="zero motion / all visible")
        start = 0
        for i, stage in enumerate(card["stages"][:-1]):
            start += stage["steps"]
            ax.axvline(start, color="k", alpha=0.2, label="stage boundary" if i == 0 else None)
        ax.set(title=title, xlabel="training step (all stages)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("4 held-out synthetic clips, 24 frames at 256x256", fontsize=10)
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=80)
    plt.close(fig)
    atomic_write_bytes(out, png.getvalue())


def demo_gif(weights_path: Path, out: Path, settings: InferenceSettings) -> dict:
    """Tracks the demo clip with ``weights_path`` run as ``settings`` say and writes a
    64-colour GIF to ``out``."""
    from PIL import Image, ImageSequence

    from pips_jax.demo import run_demo

    with tempfile.TemporaryDirectory() as tmp:
        summary = run_demo(Path(tmp), load_weights(weights_path), settings, viz_format="gif")
        frames, durations = [], []
        with Image.open(Path(tmp) / "demo_tracks.gif") as im:
            for frame in ImageSequence.Iterator(im):
                frames.append(frame.convert("RGB").quantize(64, method=Image.Quantize.MEDIANCUT))
                durations.append(frame.info.get("duration", 100))
    gif = io.BytesIO()
    frames[0].save(
        gif,
        format="GIF",
        save_all=True,
        append_images=frames[1:],
        duration=durations,
        loop=0,
        optimize=True,
    )
    atomic_write_bytes(out, gif.getvalue())
    return summary


def _reports(paths) -> list[dict]:
    return [json.loads(Path(p).read_text()) for p in paths or ()]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", type=Path, required=True, help="the finished training run folder")
    p.add_argument("--eval", type=Path, required=True, help="pips-jax eval --json of its weights")
    p.add_argument("--command", required=True, help="the exact pips-jax train command of the run")
    p.add_argument(
        "--validation",
        type=Path,
        nargs="+",
        metavar="VAL",
        help="pips-jax eval --json on clips of another --seed, one per --iters: decides iters",
    )
    p.add_argument(
        "--resolution-validation",
        type=Path,
        nargs="+",
        metavar="VAL",
        help="pips-jax eval --json on clips of another --seed, one per --input-resolution: "
        "decides input_resolution",
    )
    p.add_argument(
        "--eval-also",
        type=Path,
        nargs="+",
        metavar="EVAL",
        help="pips-jax eval --json of the benchmark with other --iters or --input-resolution",
    )
    p.add_argument("--name", default=SHIPPED_NAME, help="the shipped weights' name")
    args = p.parse_args(argv)

    from pips_jax.training import export_params

    card_path = ASSETS / f"{args.name}.json"
    card = json.loads(card_path.read_text())
    try:
        benchmark = json.loads(args.eval.read_text())
        card = next_card(
            card,
            json.loads((args.run / "config.json").read_text()),
            read_records(args.run / "metrics.jsonl"),
            args.command,
        )
        for choice, paths in (
            ("iters", args.validation),
            ("input_resolution", args.resolution_validation),
        ):
            if paths:
                card = choose_by_validation(card, choice, _reports(paths), benchmark)
        card = with_benchmark(card, benchmark, tuple(_reports(args.eval_also)))
    except ValueError as e:
        print(f"ship_weights: {e}", file=sys.stderr)
        return 2
    weights = export_params(args.run, ASSETS / f"{args.name}.safetensors")
    atomic_write_bytes(card_path, (json.dumps(card, indent=1) + "\n").encode())
    plot_curve(card, DOCS / "small_synthetic_training.png")
    summary = demo_gif(weights, DOCS / "demo_small_synthetic.gif", card_settings(card))
    print(json.dumps(card["evaluation"], indent=1))
    print(
        f"demo: median error {summary['median_error_px']:.2f} px, "
        f"{100 * summary['within_4px']:.0f}% within 4 px"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
