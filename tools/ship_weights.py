"""Ships a training run as the package's own weights (a maintainer's tool; not installed).

    python tools/ship_weights.py --run RUN --eval EVAL.json --command "pips-jax train ..." \
        [--eval-original EVAL6.json] [--validation VAL.json VAL6.json] \
        [--eval-at EVAL256.json ...] [--resolution-validation VAL256.json VAL384.json ...]

1. writes RUN's latest parameters to ``src/pips_jax/assets/<name>.safetensors``;
2. appends RUN to the card ``<name>.json`` as the next training stage (its command,
   TrainConfig, data seed, steps, training time, what it started from) and sets the
   card's top-level fields: description, latest command and data seed, total steps and
   time, the benchmark scores from EVAL.json (``pips-jax eval --format synthetic --json
   --iters N --input-resolution R`` on the new weights, N the card's ``iters`` and R its
   ``input_resolution``: a run folder has no card, so its evaluation runs 6 iterations
   at 256x256 unless told; a report of another count or resolution is refused)
   and the held-out curve of every stage, steps counted over all stages; with
   ``--eval-original``, the same benchmark at the original's 6 iterations as
   ``evaluation.model_6_iterations``; with ``--validation`` (the card's count, then 6, on
   clips of another seed), the new weights' entry in ``iters_validation`` and the
   ``iters_choice`` sentence written from all its entries; with ``--eval-at``, the
   benchmark at other input resolutions as ``evaluation.model_input_<H>x<W>``; with
   ``--resolution-validation`` (the card's count at several input resolutions, the
   card's among them, on clips of another seed), the new weights' entry in
   ``input_resolution_validation`` and the ``input_resolution_choice`` sentence;
3. plots that curve into ``docs/small_synthetic_training.png``;
4. tracks the demo clip with the new weights (the card's ``iters`` and input
   resolution) into ``docs/demo_small_synthetic.gif`` (64 colours) and prints the demo's
   median error.

The READMEs' prose and tables are edited by hand afterwards. Decide whether to ship
from EVAL.json first: a new version replaces the shipped one only when clearly better.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
from pathlib import Path

from pips_jax.config import DEFAULT_ITERS
from pips_jax.files import atomic_write_bytes
from pips_jax.training.heldout import REPORTED
from pips_jax.training.log import read_records
from pips_jax.weights import CLIP_INPUT_RESOLUTION, SHIPPED_NAME, Weights, load_weights

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "src" / "pips_jax" / "assets"
DOCS = ROOT / "docs"


def _rounded(row: dict, prefix: str = "") -> dict:
    return {k: round(row[prefix + k], 4) for k in REPORTED}


def _stage_phrase(stage: dict) -> str:
    h, w = stage["training_config"]["crop"]
    return f"{stage['steps']} steps on {h}x{w} crops"


def _hw(resolution) -> str:
    return "x".join(str(v) for v in resolution)


def card_resolution(card: dict) -> tuple[int, int]:
    """The ``(H, W)`` the card's weights run at on 256x256 clips (its
    ``input_resolution``, else the default of ``pips-jax eval``)."""
    return tuple(card.get("input_resolution") or CLIP_INPUT_RESOLUTION)


def benchmark_scores(report: dict, iters: int, resolution: tuple[int, int]) -> dict:
    """The model's scores in a ``pips-jax eval --json`` report, checked to have been
    measured with ``iters`` refinement iterations per window (the report's ``weights``
    field ends with "iterations per window: N") at the model input ``resolution``
    ``(H, W)`` (the report's ``input_resolution``)."""
    found = Weights.described_iters(report["weights"])
    if found != iters:
        raise ValueError(
            f"expected an evaluation with the card's {iters} iterations per window, found "
            f"{'no count' if found is None else found} in {report['weights']!r} "
            f"(run pips-jax eval with --iters {iters})"
        )
    found = tuple(report["input_resolution"])
    if found != tuple(resolution):
        raise ValueError(
            f"expected an evaluation at model input resolution {_hw(resolution)}, found "
            f"{_hw(found)} (run pips-jax eval with --input-resolution {_hw(resolution)})"
        )
    return report["scores"]["pips"]


# The scores the iteration sentence gives: key, scale, label, format.
SHOWN = (
    ("average_pts_within_thresh", 100, "delta_avg ", "{:.1f}"),
    ("median_error_visible", 1, "median ", "{:.2f} px"),
    ("occlusion_accuracy", 100, "OA ", "{:.1f}"),
)
# The score that decides between iteration counts.
DECIDING = "average_pts_within_thresh"


def _score(scores: dict, key: str, label: bool = True) -> str:
    """One score as the sentences give it, e.g. ``delta_avg 62.4`` or ``2.45 px``."""
    _, scale, name, f = next(row for row in SHOWN if row[0] == key)
    return (name if label else "") + f.format(scale * scores[key])


def _shown(scores: dict, labels: bool = True) -> str:
    return ", ".join(_score(scores, row[0], labels) for row in SHOWN)


def _dataset(report: dict) -> str:
    return report.get("dataset", "an unnamed dataset")


def _validation_clips(reports, benchmark: dict) -> str:
    """The one dataset all validation ``reports`` ran on, checked not to be the
    ``benchmark`` report's."""
    datasets = sorted({_dataset(r) for r in reports})
    if len(datasets) != 1:
        raise ValueError(f"expected every validation report on the same clips, found {datasets}")
    if datasets[0] == _dataset(benchmark):
        raise ValueError(
            f"expected validation clips other than the benchmark's, found {datasets[0]!r}"
        )
    return datasets[0]


def iteration_evidence(
    card: dict,
    benchmark: dict,
    original: dict | None = None,
    validation: tuple[dict, dict] | None = None,
) -> dict:
    """The card with the new weights' evidence for their iteration count.

    Args:
        card: the card after :func:`next_card` (its last stage the new weights).
        benchmark: the ``pips-jax eval --json`` report its scores came from.
        original: the same benchmark at the original's ``DEFAULT_ITERS`` iterations, or
            None; stored as ``evaluation.model_<DEFAULT_ITERS>_iterations``.
        validation: reports on clips of another seed with the card's ``iters`` and with
            ``DEFAULT_ITERS``, or None; appended to ``iters_validation`` (one entry per
            version checked) from which the ``iters_choice`` sentence is rewritten.

    Raises:
        ValueError: a report of the wrong iteration count or dataset, or a validation
            where the original's count beats the card's on delta_avg.
    """
    iters, stage = card.get("iters", DEFAULT_ITERS), len(card["stages"])
    resolution = card_resolution(card)
    new = dict(card)
    if original is not None:
        if _dataset(original) != _dataset(benchmark):
            raise ValueError(
                f"expected --eval-original on the benchmark's {_dataset(benchmark)!r}, "
                f"found {_dataset(original)!r}"
            )
        scores = benchmark_scores(original, DEFAULT_ITERS, resolution)
        new["evaluation"] = {
            **card["evaluation"],
            f"model_{DEFAULT_ITERS}_iterations": _rounded(scores),
        }
    if validation is None:
        return new
    if iters == DEFAULT_ITERS:
        raise ValueError(
            f"expected a card whose iters differ from the original's {DEFAULT_ITERS} for "
            f"--validation, found iters {iters}"
        )
    mine, theirs = validation
    dataset = _validation_clips(validation, benchmark)
    card_scores = _rounded(benchmark_scores(mine, iters, resolution))
    original_scores = _rounded(benchmark_scores(theirs, DEFAULT_ITERS, resolution))
    if card_scores[DECIDING] < original_scores[DECIDING]:
        raise ValueError(
            f"expected the card's {iters} iterations to beat {DEFAULT_ITERS} on the validation "
            f"clips, found {_score(card_scores, DECIDING)} against "
            f"{_score(original_scores, DECIDING, label=False)} (change the card's iters first)"
        )
    entry = {
        "stage": stage,
        "dataset": dataset,
        "input_resolution": list(resolution),
        str(iters): card_scores,
        str(DEFAULT_ITERS): original_scores,
    }
    entries = [*card.get("iters_validation", []), entry]
    new["iters_validation"] = entries
    trained = card["stages"][-1]["training_config"].get("iters")
    new["iters_choice"] = iters_sentence(iters, entries, trained_with=trained == iters)
    return new


def iters_sentence(iters: int, entries: list[dict], trained_with: bool = True) -> str:
    """Why the card's ``iters`` is the default, from its ``iters_validation`` entries
    (newest last; the older ones are listed newest first); ``trained_with``: the last
    stage trained with that many iterations."""
    last, *older = reversed(entries)
    mine, theirs = str(iters), str(DEFAULT_ITERS)
    why = ", the count the weights were trained with," if trained_with else ""
    sentence = (
        f"{iters} refinement iterations per window{why} "
        f"is their default in track, demo and eval: on validation clips ({last['dataset']}; not "
        f"the benchmark's), with model input {_hw(last['input_resolution'])}, {iters} iterations "
        f"scored {_shown(last[mine])} against "
        f"{_shown(last[theirs], labels=False)} with the original's {DEFAULT_ITERS}"
    )
    if not older:
        return sentence
    every = all(e[mine][DECIDING] >= e[theirs][DECIDING] for e in older)
    listed = "; ".join(
        f"stage {e['stage']}'s weights {_shown(e[mine], labels=False)} against "
        f"{_shown(e[theirs], labels=False)}"
        for e in older
    )
    lead = "as for every earlier version checked" if every else "earlier versions"
    return f"{sentence} ({lead}: {listed})"


def _by_size(key: str) -> int:
    h, w = (int(v) for v in key.split("x"))
    return h * w


def resolution_evidence(
    card: dict,
    benchmark: dict,
    others: tuple[dict, ...] = (),
    validation: tuple[dict, ...] | None = None,
) -> dict:
    """The card with the new weights' evidence for their model input resolution on
    256x256 clips (the card's ``input_resolution``, the default of ``demo`` and ``eval``).

    Args:
        card: the card after :func:`next_card` (its last stage the new weights).
        benchmark: the ``pips-jax eval --json`` report its scores came from.
        others: the same benchmark at other input resolutions (the card's iterations),
            each stored as ``evaluation.model_input_<H>x<W>``.
        validation: reports on clips of another seed with the card's iterations, one
            per input resolution, the card's among them, or None; appended to
            ``input_resolution_validation`` (one entry per version checked), from which
            the ``input_resolution_choice`` sentence is written.

    Raises:
        ValueError: a report of the wrong iteration count or dataset, no validation
            report at the card's resolution, or one at another resolution that beats it
            on delta_avg.
    """
    iters, mine = card.get("iters", DEFAULT_ITERS), _hw(card_resolution(card))
    new = dict(card)
    evaluation = dict(card["evaluation"])
    for report in others:
        if _dataset(report) != _dataset(benchmark):
            raise ValueError(
                f"expected --eval-at on the benchmark's {_dataset(benchmark)!r}, "
                f"found {_dataset(report)!r}"
            )
        res = tuple(report["input_resolution"])
        evaluation[f"model_input_{_hw(res)}"] = _rounded(benchmark_scores(report, iters, res))
    new["evaluation"] = evaluation
    if validation is None:
        return new
    dataset = _validation_clips(validation, benchmark)
    scores = {}
    for report in validation:
        res = tuple(report["input_resolution"])
        scores[_hw(res)] = _rounded(benchmark_scores(report, iters, res))
    if mine not in scores:
        raise ValueError(
            f"expected a validation report at the card's input resolution {mine}, found "
            f"{', '.join(scores)}"
        )
    best = max(scores, key=lambda k: scores[k][DECIDING])
    if scores[best][DECIDING] > scores[mine][DECIDING]:
        raise ValueError(
            f"expected the card's input resolution {mine} to score best on the validation "
            f"clips, found {best} with {_score(scores[best], DECIDING)} against "
            f"{_score(scores[mine], DECIDING, label=False)} (change the card's "
            "input_resolution first)"
        )
    entry = {"stage": len(card["stages"]), "dataset": dataset, **scores}
    new["input_resolution_validation"] = [*card.get("input_resolution_validation", []), entry]
    rest = sorted((k for k in scores if k != mine), key=_by_size)
    new["input_resolution_choice"] = (
        f"a model input of {mine} for 256x256 clips (frames resized to it, tracks mapped "
        f"back) is their default in demo and eval: on validation clips ({dataset}; not "
        f"the benchmark's) with {iters} iterations it scored {_shown(scores[mine])}, against "
        + "; ".join(f"{_shown(scores[k], labels=False)} at {k}" for k in rest)
    )
    return new


def next_card(card: dict, config: dict, records: list[dict], scores: dict, command: str) -> dict:
    """The card after one more training stage.

    Args:
        card: the current card (with ``stages``).
        config: the new run's ``config.json`` (a TrainConfig as a dict).
        records: the new run's ``metrics.jsonl`` rows.
        scores: the new weights' benchmark scores (``report["scores"]["pips"]``).
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
    stages = [*card["stages"]]
    stages.append(
        {
            "training_command": command,
            "training_config": config,
            "data_seed": config["seed"],
            "steps": config["num_steps"],
            "training_time_s": round(train[-1]["elapsed"]),
            "init": f"stage {len(stages)}'s weights (the previous {card['name']}.safetensors)",
        }
    )
    phrases = [_stage_phrase(s) for s in stages]
    what, found, _ = card["description"].partition(", in ")
    if not found:
        raise ValueError(f"expected the card's description to say ', in N stages', found {what!r}")
    new = dict(card)
    new["description"] = (
        f"{what}, in {len(stages)} stages: {phrases[0]}, then "
        + ", then ".join(f"{p} fine-tuning the previous stage" for p in phrases[1:])
        + ". A demonstration that training works and an offline default, far from the "
        "released model's quality."
    )
    new["training_command"] = command
    new["data_seed"] = config["seed"]
    new["steps"] = offset + config["num_steps"]
    new["training_time_s"] = sum(s["training_time_s"] for s in stages)
    new["stages"] = stages
    # The benchmark's description and baseline stay; any other score is the old weights'.
    kept = {k: card["evaluation"][k] for k in ("benchmark", "zero_motion")}
    new["evaluation"] = {**kept, "model": _rounded(scores)}
    starts, step = [], 0
    for number, previous in enumerate(stages[:-1], start=2):
        step += previous["steps"]
        starts.append(f"stage {number} starts at {step}")
    curve = dict(card["held_out_curve"])
    curve["clips"] = (
        curve["clips"].split(";")[0] + "; steps counted over all stages (" + ", ".join(starts) + ")"
    )
    points = [*curve["points"]]
    for r in evals:
        points.append(
            {
                "step": offset + r["step"],
                **_rounded(r),
                "zero_motion_average_pts_within_thresh": round(
                    r["zero_motion_average_pts_within_thresh"], 4
                ),
            }
        )
    curve["points"] = points
    if evals:
        curve["zero_motion"] = _rounded(evals[-1], "zero_motion_")
    new["held_out_curve"] = curve
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


def demo_gif(
    weights_path: Path,
    out: Path,
    iters: int | None = None,
    resolution: tuple[int, int] | None = None,
) -> dict:
    """Tracks the demo clip with ``weights_path`` (``iters`` refinement iterations per
    window, default 6; model input ``resolution`` ``(H, W)``, default 256x256) and writes
    a 64-colour GIF to ``out``."""
    from PIL import Image, ImageSequence

    from pips_jax.demo import run_demo

    with tempfile.TemporaryDirectory() as tmp:
        summary = run_demo(
            Path(tmp),
            load_weights(weights_path),
            viz_format="gif",
            iters=iters,
            resolution=resolution,
        )
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", type=Path, required=True, help="the finished training run folder")
    p.add_argument("--eval", type=Path, required=True, help="pips-jax eval --json of its weights")
    p.add_argument("--command", required=True, help="the exact pips-jax train command of the run")
    p.add_argument(
        "--eval-original",
        type=Path,
        help=f"pips-jax eval --json of the same benchmark with --iters {DEFAULT_ITERS}",
    )
    p.add_argument(
        "--validation",
        type=Path,
        nargs=2,
        metavar=("VAL", f"VAL{DEFAULT_ITERS}"),
        help=f"pips-jax eval --json on clips of another --seed, with the card's iters and "
        f"with --iters {DEFAULT_ITERS}",
    )
    p.add_argument(
        "--eval-at",
        type=Path,
        nargs="+",
        default=(),
        metavar="EVAL",
        help="pips-jax eval --json of the same benchmark at other --input-resolution values",
    )
    p.add_argument(
        "--resolution-validation",
        type=Path,
        nargs="+",
        metavar="VAL",
        help="pips-jax eval --json on clips of another --seed, one per --input-resolution, "
        "the card's among them",
    )
    p.add_argument("--name", default=SHIPPED_NAME, help="the shipped weights' name")
    args = p.parse_args(argv)

    from pips_jax.training import export_params

    card_path = ASSETS / f"{args.name}.json"
    card = json.loads(card_path.read_text())
    iters = card.get("iters", DEFAULT_ITERS)
    try:
        report = json.loads(args.eval.read_text())
        card = next_card(
            card,
            json.loads((args.run / "config.json").read_text()),
            read_records(args.run / "metrics.jsonl"),
            benchmark_scores(report, iters, card_resolution(card)),
            args.command,
        )
        card = iteration_evidence(
            card,
            report,
            json.loads(args.eval_original.read_text()) if args.eval_original else None,
            tuple(json.loads(v.read_text()) for v in args.validation) if args.validation else None,
        )
        card = resolution_evidence(
            card,
            report,
            tuple(json.loads(v.read_text()) for v in args.eval_at),
            tuple(json.loads(v.read_text()) for v in args.resolution_validation)
            if args.resolution_validation
            else None,
        )
    except ValueError as e:
        print(f"ship_weights: {e}", file=sys.stderr)
        return 2
    weights = export_params(args.run, ASSETS / f"{args.name}.safetensors")
    atomic_write_bytes(card_path, (json.dumps(card, indent=1) + "\n").encode())
    plot_curve(card, DOCS / "small_synthetic_training.png")
    summary = demo_gif(weights, DOCS / "demo_small_synthetic.gif", iters, card_resolution(card))
    print(json.dumps(card["evaluation"], indent=1))
    print(
        f"demo: median error {summary['median_error_px']:.2f} px, "
        f"{100 * summary['within_4px']:.0f}% within 4 px"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
