"""The ``pips-jax`` command line. Each subcommand is a thin shell over library functions."""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import os
import signal
import sys
import time
import warnings
from collections.abc import MutableMapping, Sequence

from pips_jax import interrupts
from pips_jax.errors import PipsError, PipsWarning


def _add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model configuration (defaults: the released reference model)")
    g.add_argument("--stride", type=int, default=4, help="feature stride (default 4)")
    g.add_argument("--S", type=int, default=8, help="frames per clip (default 8)")


def _add_run_args(p: argparse.ArgumentParser) -> None:
    """Options of every command that runs the model."""
    p.add_argument(
        "--checkpoint",
        default=None,
        metavar="PATH",
        help=(
            "an original .pth, a converted .safetensors or a pips-jax train run folder "
            "(its latest checkpoint; default: the cached released weights, else the shipped ones)"
        ),
    )
    p.add_argument(
        "--iters",
        type=int,
        default=None,
        help="refinement iterations per window (default: the weights' recommended count, else 6)",
    )
    p.add_argument(
        "--precision",
        choices=("float32", "bfloat16"),
        default="float32",
        help="compute precision (default float32: exact)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _add_output_args(p: argparse.ArgumentParser, out: str, viz: str) -> None:
    """Options of the commands that write tracks and a visualization."""
    p.add_argument("--out", default=out, metavar="DIR", help=f"output folder (default ./{out})")
    p.add_argument(
        "--viz-format",
        choices=("mp4", "gif"),
        default=viz,
        help=f"visualization format (default {viz})",
    )


def _add_clip_resolution_arg(p: argparse.ArgumentParser) -> None:
    """The model's input resolution on 256x256 clips (``demo`` and ``eval``)."""
    p.add_argument(
        "--input-resolution",
        type=_resolution,
        default=None,
        metavar="HxW",
        help=(
            "resolution the model runs at; frames are resized to it and tracks mapped back "
            "(default: the weights' recommended one, else 256x256)"
        ),
    )


def _config(args: argparse.Namespace):
    from pips_jax.config import ModelConfig

    return ModelConfig(S=args.S, stride=args.stride)


def cmd_convert(args: argparse.Namespace) -> int:
    from pips_jax.checkpoint.convert import convert_checkpoint

    t0 = time.perf_counter()
    out = convert_checkpoint(args.input, args.output, _config(args))
    print(f"converted {args.input} -> {out} ({time.perf_counter() - t0:.1f} s)")
    return 0


def _resolution(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW such as 360x640, got {text!r}") from None
    return h, w


def _int_at_least(minimum: int, what: str):
    """An argparse type: an integer >= ``minimum``, named ``what`` in the error."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {what} >= {minimum}, got {text!r}")
        return value

    return parse


_frame_index = _int_at_least(0, "a frame index")
_positive_int = _int_at_least(1, "an integer")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (value > 0 and value < float("inf")):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def cmd_download(args: argparse.Namespace) -> int:
    from pips_jax.checkpoint.hub import download_reference

    t0 = time.perf_counter()
    out = download_reference(force=args.force)
    print(f"released PIPs weights ready: {out} ({time.perf_counter() - t0:.1f} s)")
    return 0


def cmd_track(args: argparse.Namespace) -> int:
    from pathlib import Path

    from pips_jax.errors import InputError
    from pips_jax.files import StagedOutputs, check_output_dir
    from pips_jax.inference import InferenceSettings
    from pips_jax.tracker import FrameSelection, Tracker, open_video
    from pips_jax.tracks_io import output_names, read_points_csv, save_csv, save_npz
    from pips_jax.weights import load_weights

    t0 = time.perf_counter()
    check_output_dir(args.out)
    selection = FrameSelection(args.start, args.stop, args.step)
    source = open_video(args.video, selection)
    if args.fps is not None:
        source.fps = args.fps
    queries = labels = None
    if args.points:
        queries, labels = read_points_csv(args.points)
        if args.query_frame is not None:
            raise InputError("--query-frame applies to --grid; a points file gives t per point")
    weights = load_weights(args.checkpoint)
    settings = InferenceSettings.resolve(
        weights.card, iters=args.iters, video_resolution=args.resolution, precision=args.precision
    )
    print(f"weights: {settings.describe(weights.description)}", file=sys.stderr)
    tracker = Tracker.from_settings(
        weights.params,
        weights.config,
        settings,
        max_points_per_batch=args.max_points_per_batch,
        progress=not args.quiet,
    )
    result = tracker.track(
        source,
        queries=queries,
        grid_size=None if queries is not None else args.grid,
        grid_query_frame=args.query_frame,
        backward=not args.no_backward,
        labels=labels,
    )
    stem = Path(args.video).stem
    names = output_names(stem)
    with StagedOutputs(args.out, replaces=names.values()) as out:
        save_npz(out.path(names["npz"]), result)
        save_csv(out.path(names["csv"]), result)
        if not args.no_viz:
            from pips_jax.viz import save_visualization

            fps = source.fps / selection.step if source.fps else UNKNOWN_FPS_VIZ
            frames = source.frames()
            try:  # the decoder is closed at once when interrupted
                save_visualization(
                    out.path(names[args.viz_format]),
                    frames,
                    result.tracks,
                    result.visibility,
                    fps=fps,
                    trail=args.trail,
                    frame_labels=[f"frame {i}" for i in result.frame_indices],
                )
            finally:
                frames.close()
    (h, w), (rh, rw) = result.size, result.resolution
    print(
        f"tracked {result.num_points} points through {result.num_frames} frames "
        f"(input {h}x{w}, working resolution {rh}x{rw}, HxW) "
        f"in {time.perf_counter() - t0:.1f} s -> {', '.join(str(p) for p in out.written)}"
    )
    return 0


#: Frame rate of the visualization of an input without one (a folder of frames
#: without --fps).
UNKNOWN_FPS_VIZ = 10.0


def cmd_demo(args: argparse.Namespace) -> int:
    from pips_jax.demo import run_demo
    from pips_jax.files import make_output_dir
    from pips_jax.inference import InferenceSettings
    from pips_jax.weights import load_weights

    weights = load_weights(args.checkpoint)
    out_dir = make_output_dir(args.out)
    settings = InferenceSettings.resolve(
        weights.card,
        iters=args.iters,
        clip_resolution=args.input_resolution,
        precision=args.precision,
    )
    print(f"weights: {settings.describe(weights.description)}", file=sys.stderr)
    s = run_demo(out_dir, weights, settings, viz_format=args.viz_format, progress=not args.quiet)
    resolution = settings.clip_resolution
    print(
        f"demo: tracked {s['points']} points through {s['frames']} frames "
        f"at {resolution[0]}x{resolution[1]} in {s['seconds']:.1f} s; "
        f"visible points: median error {s['median_error_px']:.2f} px, {100 * s['within_4px']:.0f}% within 4 px; "
        f"occlusion accuracy {100 * s['occlusion_accuracy']:.0f}% -> {', '.join(str(p) for p in s['paths'])}"
    )
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from pips_jax.evaluation.runner import evaluate, load_samples, tracker_predictor
    from pips_jax.files import atomic_write_bytes
    from pips_jax.inference import DEFAULT_CLIP_RESOLUTION, InferenceSettings
    from pips_jax.tracker import Tracker

    if args.baseline_only:
        predictors, description, settings = {}, "none (baseline only)", None
        resolution = args.input_resolution or DEFAULT_CLIP_RESOLUTION
    else:
        from pips_jax.weights import load_weights

        weights = load_weights(args.checkpoint)
        settings = InferenceSettings.resolve(
            weights.card,
            iters=args.iters,
            clip_resolution=args.input_resolution,
            precision=args.precision,
        )
        description = settings.describe(weights.description)
        resolution = settings.clip_resolution
        tracker = Tracker.from_settings(weights.params, weights.config, settings, clips=True)
        predictors = {"pips": tracker_predictor(tracker)}
    samples = load_samples(args.dataset, args.format, args.num_videos, args.seed)
    dataset = args.dataset or f"generated: {args.num_videos} clips, seed {args.seed}"
    report = evaluate(
        samples,
        predictors,
        query_mode=args.query_mode,
        progress=not args.quiet,
        dataset=dataset,
        fmt=args.format,
        input_resolution=resolution,
        weights=description,
        iters=None if settings is None else settings.iters,
        precision=None if settings is None else settings.precision,
    )
    print(report.table())
    if args.json:
        atomic_write_bytes(args.json, report.to_json().encode())
        print(f"wrote {args.json}")
    return 0


def cmd_benchmark(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from pips_jax.benchmark import format_table, reference_summary, run_suite
    from pips_jax.files import atomic_write_bytes

    def write(report: dict) -> None:
        if args.json:
            data = reference_summary(report) if args.config == "reference" else report
            atomic_write_bytes(args.json, json.dumps(data, indent=2).encode())
        if args.table:
            atomic_write_bytes(Path(args.table), (format_table(report) + "\n").encode())

    def show(r: dict, report: dict) -> None:
        if "error" in r:
            print(f"  {r['kind']}: error: {r['error']}", file=sys.stderr)
        elif r["kind"] == "forward":
            print(
                f"  forward N={r['num_points']} {r['height']}x{r['width']} {r['precision']}: "
                f"{r['forward_s_min']:.3f} s (compile {r['compile_s']:.1f} s)",
                file=sys.stderr,
            )
        else:
            print(
                f"  video {r['num_frames']} frames, N={r['num_points']}: {r['seconds']:.1f} s",
                file=sys.stderr,
            )
        write(report)  # after every case, so an interrupted run keeps what it measured

    report = run_suite(args.config, runs=args.runs, timeout=args.timeout, on_result=show)
    print(format_table(report))
    for path in (args.json, args.table):
        if path:
            print(f"wrote {path}")
    return 0


def _dims(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated channel counts such as 32,48,64,64, got {text!r}"
        ) from None
    return dims


#: ``pips-jax train`` options -> TrainConfig fields (None: not given).
_TRAIN_FIELDS = {
    "steps": "num_steps",
    "batch_size": "batch_size",
    "num_points": "num_points",
    "crop": "crop",
    "iters": "iters",
    "lr": "lr",
    "weight_decay": "weight_decay",
    "seed": "seed",
    "num_objects": "num_objects",
    "checkpoint_every": "checkpoint_every",
    "keep_checkpoints": "keep_checkpoints",
    "log_every": "log_every",
    "eval_every": "eval_every",
    "eval_clips": "eval_clips",
    "eval_size": "eval_size",
    "eval_frames": "eval_frames",
}
_MODEL_FIELDS = {
    "S": "S",
    "stride": "stride",
    "latent_dim": "latent_dim",
    "encoder_dims": "encoder_dims",
    "stem_dim": "encoder_stem_dim",
    "mixer_dim": "mixer_dim",
    "mixer_depth": "mixer_depth",
    "corr_levels": "corr_levels",
    "corr_radius": "corr_radius",
    "embed_dim": "embed_dim",
}


def _train_config(args: argparse.Namespace):
    """The TrainConfig of ``pips-jax train``: --config (or, with --resume, the run's
    stored one, or the defaults) with the given flags on top; None to let a resumed
    run keep its stored settings."""
    import dataclasses
    from pathlib import Path

    from pips_jax.errors import InputError
    from pips_jax.training import TrainConfig
    from pips_jax.training.checkpoints import RunCheckpoints

    fields = {f: getattr(args, a) for a, f in _TRAIN_FIELDS.items() if getattr(args, a) is not None}
    model = {f: getattr(args, a) for a, f in _MODEL_FIELDS.items() if getattr(args, a) is not None}
    if args.no_augment:
        fields["augment"] = False
    if args.no_remat:
        fields["remat"] = False
    if args.config:
        try:
            text = Path(args.config).read_text()
        except OSError as e:
            raise InputError(
                f"--config {args.config}: cannot read it ({e.strerror or e})"
            ) from None
        base = TrainConfig.from_json(text)
    elif args.resume and Path(args.out).is_dir():
        runs = RunCheckpoints(args.out, read_only=True)
        try:
            if runs.latest_step() is None:
                base = TrainConfig()
            elif not fields and not model:
                return None
            else:
                base = runs.config()
        finally:
            runs.close()
    else:
        base = TrainConfig()
    if model:
        fields["model"] = dataclasses.replace(base.model, **model)
    return dataclasses.replace(base, **fields)


def cmd_train(args: argparse.Namespace) -> int:
    from pips_jax.training import train

    summary = train(
        _train_config(args),
        args.out,
        resume=args.resume,
        init=args.init,
        progress=not args.quiet,
        workers=args.workers,
    )
    loss = summary["loss"]
    print(
        f"trained to step {summary['step']} of {summary['num_steps']} "
        f"({summary['steps_per_s']:.2f} steps/s, {summary['elapsed']:.1f} s in all)"
        + (f"; last logged loss {loss:.4f}" if loss is not None else "")
    )
    if summary["eval"] is not None and "average_jaccard" in summary["eval"]:
        e = summary["eval"]
        print(
            f"held-out synthetic clips at step {e['step']}: AJ {100 * e['average_jaccard']:.1f}, "
            f"delta_avg {100 * e['average_pts_within_thresh']:.1f}, OA {100 * e['occlusion_accuracy']:.1f} "
            f"(zero motion: AJ {100 * e['zero_motion_average_jaccard']:.1f})"
        )
    written = [f"{args.out}/checkpoints (step {summary['checkpoint_step']})", summary["log"]]
    written += [p for p in (summary["plot"], summary["params"]) if p]
    print("wrote " + ", ".join(str(w) for w in written))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pips-jax",
        description="PIPs point tracking in JAX: convert checkpoints, track points in videos.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser(
        "convert",
        help="convert an original PyTorch PIPs checkpoint (.pth) to pips-jax parameters",
        description=(
            "Convert an original PIPs checkpoint (e.g. model-000200000.pth) to a "
            ".safetensors file of Flax parameters. The .pth file is read without torch "
            "and without executing pickle code. Nothing is written if conversion fails."
        ),
    )
    p.add_argument("input", help="original checkpoint, e.g. model-000200000.pth")
    p.add_argument("output", help="output .safetensors file (or an existing folder)")
    _add_model_args(p)
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser(
        "download",
        help="download, convert and cache the released PIPs weights",
        description=(
            "Download model-000200000.pth from the Hugging Face repository aharley/pips "
            "(honours HF_ENDPOINT, HF_HOME and HF_HUB_OFFLINE), convert it once and cache "
            "the converted parameters (folder: $PIPS_JAX_CACHE or ~/.cache/pips-jax)."
        ),
    )
    p.add_argument("--force", action="store_true", help="download and convert again")
    p.set_defaults(func=cmd_download)

    p = sub.add_parser(
        "track",
        help="track points through a video and write tracks + a visualization",
        description=(
            "Track points through a whole video (a file or a folder of frames). Queries are "
            "a grid (--grid K) or a CSV points file with header t,x,y (input pixels, t a "
            "frame index). Writes <name>_tracks.npz, <name>_tracks.csv and a video with "
            "trails into --out."
        ),
    )
    p.add_argument("video", help="video file (mp4, avi, webm, mov, ...) or folder of frames")
    q = p.add_mutually_exclusive_group()
    q.add_argument(
        "--grid", type=int, default=10, metavar="K", help="track a KxK grid (default 10)"
    )
    q.add_argument(
        "--points",
        metavar="FILE.csv",
        help="CSV with header t,x,y (t an input frame index, x,y input pixels)",
    )
    p.add_argument(
        "--query-frame",
        type=int,
        default=None,
        metavar="T",
        help="input frame of the grid (default: the first tracked frame)",
    )
    g = p.add_argument_group(
        "part of the video (frame indices everywhere, outputs included, are the input's)"
    )
    g.add_argument(
        "--start", type=_frame_index, default=0, metavar="T0", help="first frame (default 0)"
    )
    g.add_argument(
        "--stop",
        type=_frame_index,
        default=None,
        metavar="T1",
        help="stop before this frame (default: the end)",
    )
    g.add_argument(
        "--step", type=_positive_int, default=1, metavar="K", help="every K-th frame (default 1)"
    )
    g.add_argument(
        "--fps",
        type=_positive_float,
        default=None,
        help="frame rate of the input (a folder of frames has none; default: the video's)",
    )
    _add_run_args(p)
    _add_output_args(p, "pips_out", "mp4")
    p.add_argument(
        "--resolution",
        type=_resolution,
        default=None,
        metavar="HxW",
        help=(
            "working resolution (default: the input's aspect ratio at about 360x640's "
            "pixel count, each side a multiple of the stride)"
        ),
    )
    p.add_argument(
        "--max-points-per-batch",
        type=int,
        default=1024,
        metavar="N",
        help="points per compiled chunk (default 1024)",
    )
    p.add_argument(
        "--no-backward", action="store_true", help="do not track frames before the query frame"
    )
    p.add_argument(
        "--trail", type=int, default=12, metavar="K", help="trail length in frames (default 12)"
    )
    p.add_argument("--no-viz", action="store_true", help="write tracks only")
    p.set_defaults(func=cmd_track, defer_interrupt=True)

    p = sub.add_parser(
        "demo",
        help="track points on a generated clip with known motion (offline) and show the result",
        description=(
            "Generate a 24-frame clip from a photograph shipped with scikit-image, moving "
            "under a known motion with moving occluders, track its points and write the "
            "tracks and a visualization; prints the error against the exact ground truth."
        ),
    )
    _add_run_args(p)
    _add_output_args(p, "pips_demo", "gif")
    _add_clip_resolution_arg(p)
    p.set_defaults(func=cmd_demo, defer_interrupt=True)

    p = sub.add_parser(
        "eval",
        help="evaluate on TAP-Vid (DAVIS, RoboTAP, RGB-Stacking, Kinetics) or the synthetic benchmark",
        description=(
            "Compute TAP-Vid metrics (AJ, delta_avg, OA) and trajectory errors at 256x256 "
            "for the model and a zero-motion baseline. --format synthetic without "
            "--dataset generates clips with exact ground truth (seed 1000: the held-out set)."
        ),
    )
    p.add_argument(
        "--dataset", default=None, metavar="PATH", help="pickle file or folder of pickles"
    )
    p.add_argument(
        "--format",
        choices=("davis", "robotap", "rgb_stacking", "kinetics", "synthetic"),
        default="synthetic",
    )
    p.add_argument("--query-mode", choices=("first", "strided"), default="first")
    _add_clip_resolution_arg(p)
    p.add_argument(
        "--num-videos",
        type=int,
        default=16,
        metavar="N",
        help="synthetic clips to generate (default 16)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=1000,
        help="seed of the generated synthetic clips (default 1000)",
    )
    p.add_argument(
        "--baseline-only",
        action="store_true",
        help="only the zero-motion baseline (no weights needed)",
    )
    p.add_argument("--json", default=None, metavar="OUT.json", help="also write the report as JSON")
    _add_run_args(p)
    p.set_defaults(func=cmd_eval, defer_interrupt=True)

    p = sub.add_parser(
        "benchmark",
        help="measure forward speed and memory (and whole-video tracking) on this machine",
        description=(
            "Benchmark the PIPs forward pass (batch 1, 8 frames, 360x640, 256 points, 6 "
            "iterations, float32 is the reference) and whole-video tracking. Each case runs "
            "in its own process; reports compile time, min/median forward time, peak memory "
            "(host RSS on CPU, device memory on GPU), GFLOP/s and points x frames / s."
        ),
    )
    p.add_argument(
        "--config",
        choices=("reference", "sweep", "video", "all"),
        default="reference",
        help="which cases (default reference)",
    )
    p.add_argument("--runs", type=int, default=5, help="timed runs after warm-up (default 5)")
    p.add_argument(
        "--timeout", type=float, default=None, metavar="S", help="give up on a case after S seconds"
    )
    p.add_argument("--json", default=None, metavar="OUT.json", help="write results as JSON")
    p.add_argument("--table", default=None, metavar="OUT.md", help="write the Markdown table")
    p.set_defaults(func=cmd_benchmark)

    p = sub.add_parser(
        "train",
        help="train PIPs on generated synthetic clips (checkpoints, JSONL log, plot)",
        description=(
            "Train PIPs on FlyingThings++-style synthetic clips made on the fly (background "
            "photo + moving textured objects with occlusions, exact ground truth), with the "
            "original recipe's losses and optimizer (defaults: batch 4, S=8, 768 points, "
            "384x512 crops, 4 iterations, AdamW lr 5e-4 with a one-cycle schedule, 200k "
            "steps). Writes DIR/checkpoints (orbax; also on Ctrl-C), DIR/metrics.jsonl, "
            "DIR/curves.png, DIR/config.json and, at the end, DIR/params.safetensors for "
            "pips-jax track --checkpoint. Flags override --config (or, with --resume, the "
            "run's stored settings)."
        ),
    )
    p.add_argument(
        "--out", default="pips_train", metavar="DIR", help="run folder (default ./pips_train)"
    )
    p.add_argument(
        "--config",
        default=None,
        metavar="JSON",
        help="TrainConfig JSON file, e.g. a run's config.json",
    )
    p.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its latest checkpoint"
    )
    p.add_argument(
        "--init",
        default=None,
        metavar="PATH",
        help="start from these parameters (.safetensors, original .pth, or a run folder); fine-tuning",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="data worker processes (default: CPU cores - 1, at most 8; 0: in the main process)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    g = p.add_argument_group("recipe (defaults: the original PIPs recipe)")
    g.add_argument("--steps", type=int, default=None, metavar="N", help="optimizer steps (200000)")
    g.add_argument(
        "--batch-size",
        type=int,
        default=None,
        metavar="B",
        help="clips per step, over all devices (4)",
    )
    g.add_argument(
        "--num-points", type=int, default=None, metavar="N", help="points per clip (768)"
    )
    g.add_argument(
        "--crop", type=_resolution, default=None, metavar="HxW", help="clip size (384x512)"
    )
    g.add_argument("--iters", type=int, default=None, help="refinement iterations (4)")
    g.add_argument("--lr", type=float, default=None, help="peak learning rate (5e-4)")
    g.add_argument("--weight-decay", type=float, default=None, help="AdamW weight decay (1e-4)")
    g.add_argument(
        "--seed", type=int, default=None, help="seed of the initial parameters and the data (0)"
    )
    g.add_argument(
        "--num-objects", type=int, default=None, metavar="K", help="moving objects per clip (8)"
    )
    g.add_argument(
        "--no-augment", action="store_true", help="no flips, colour jitter, blur, noise, erasing"
    )
    g.add_argument(
        "--no-remat",
        action="store_true",
        help="keep every refinement iteration's activations for the backward pass (faster, "
        "about iters times more memory) instead of recomputing them",
    )
    g = p.add_argument_group("checkpoints, log and evaluation")
    g.add_argument(
        "--checkpoint-every",
        type=int,
        default=None,
        metavar="N",
        help="steps between checkpoints (1000)",
    )
    g.add_argument(
        "--keep-checkpoints", type=int, default=None, metavar="K", help="checkpoints kept (3)"
    )
    g.add_argument(
        "--log-every", type=int, default=None, metavar="N", help="steps between log lines (10)"
    )
    g.add_argument(
        "--eval-every",
        type=int,
        default=None,
        metavar="N",
        help="steps between held-out evaluations, 0 for none (5000)",
    )
    g.add_argument("--eval-clips", type=int, default=None, metavar="N", help="held-out clips (4)")
    g.add_argument(
        "--eval-size",
        type=_resolution,
        default=None,
        metavar="HxW",
        help="held-out clip size (256x256)",
    )
    g.add_argument(
        "--eval-frames", type=int, default=None, metavar="T", help="frames per held-out clip (24)"
    )
    g = p.add_argument_group("model size (defaults: the released reference model)")
    g.add_argument("--S", type=int, default=None, help="frames per clip (8)")
    g.add_argument("--stride", type=int, default=None, help="feature stride (4)")
    g.add_argument(
        "--latent-dim", type=int, default=None, metavar="C", help="feature channels (128)"
    )
    g.add_argument(
        "--encoder-dims",
        type=_dims,
        default=None,
        metavar="D1,D2,...",
        help="encoder stage channels (64,96,128,128)",
    )
    g.add_argument(
        "--stem-dim", type=int, default=None, metavar="C", help="encoder stem channels (64)"
    )
    g.add_argument("--mixer-dim", type=int, default=None, metavar="C", help="MLP-Mixer width (512)")
    g.add_argument(
        "--mixer-depth", type=int, default=None, metavar="N", help="MLP-Mixer blocks (12)"
    )
    g.add_argument(
        "--corr-levels", type=int, default=None, metavar="L", help="correlation pyramid levels (4)"
    )
    g.add_argument(
        "--corr-radius", type=int, default=None, metavar="R", help="correlation window radius (3)"
    )
    g.add_argument(
        "--embed-dim", type=int, default=None, metavar="E", help="sin/cos embedding channels (64)"
    )
    p.set_defaults(func=cmd_train)
    return parser


#: XLA:CPU flag keeping convolutions off YNNPACK, whose gradient convolutions are
#: several times slower than XLA's own (jaxlib 0.10 on x86: the encoder's forward 1.4x
#: and its gradient 1.6x faster without it, a training step 1.12x).
CPU_CONV_FLAG = "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution"
#: jaxlib versions ``[low, high)`` the flag was measured on. XLA aborts the process on
#: a flag it does not know, so it is not passed to any other version.
CPU_CONV_FLAG_JAXLIB = ((0, 10), (0, 11))


def add_cpu_conv_flag(environ: MutableMapping[str, str] = os.environ) -> bool:
    """Appends :data:`CPU_CONV_FLAG` to ``XLA_FLAGS`` in ``environ`` for the jaxlib
    versions of :data:`CPU_CONV_FLAG_JAXLIB`, unless ``XLA_FLAGS`` already sets YNN
    fusion types (the user's choice wins). Takes effect if JAX's backend has not
    started yet. Returns whether the flag was added."""
    flags = environ.get("XLA_FLAGS", "")
    if "ynn_fusion_type" in flags:
        return False
    try:
        version = tuple(int(p) for p in importlib.metadata.version("jaxlib").split(".")[:2])
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return False
    low, high = CPU_CONV_FLAG_JAXLIB
    if not low <= version < high:
        return False
    environ["XLA_FLAGS"] = f"{flags} {CPU_CONV_FLAG}".strip()
    return True


def _warning_printer(command: str):
    """``warnings.showwarning`` for the CLI: a :class:`PipsWarning` is printed once per
    distinct message as ``pips-jax COMMAND: warning: ...``; others as Python does."""
    seen: set[str] = set()
    default = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if not issubclass(category, PipsWarning):
            return default(message, category, filename, lineno, file, line)
        text = " ".join(str(message).split())
        if text not in seen:
            seen.add(text)
            print(f"pips-jax {command}: warning: {text}", file=sys.stderr)

    return show


def main(argv: Sequence[str] | None = None) -> int:
    """Runs one command; returns its exit code (0, 2: bad input, 130: Ctrl-C).

    ``track``, ``demo`` and ``eval`` take Ctrl-C between frames and windows
    (:mod:`pips_jax.interrupts`), never in the middle of an XLA compile; a second
    Ctrl-C stops at once. A Ctrl-C that comes once the outputs are being put in place
    is too late to stop them: the command completes."""
    parser = build_parser()
    args = parser.parse_args(argv)
    add_cpu_conv_flag()
    defer = interrupts.deferred() if getattr(args, "defer_interrupt", False) else None
    with warnings.catch_warnings(), defer or contextlib.nullcontext():
        warnings.simplefilter("always", PipsWarning)
        warnings.showwarning = _warning_printer(args.command)
        try:
            return args.func(args)
        except PipsError as e:
            print(f"pips-jax {args.command}: error: {e}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print(f"pips-jax {args.command}: interrupted", file=sys.stderr)
            return 130


def entry() -> None:
    """The ``pips-jax`` program (and ``python -m pips_jax``): :func:`main`, then exit.

    After Ctrl-C the process ends with ``os._exit(130)``, skipping the interpreter's
    teardown: XLA may still be compiling in its own threads (after a second Ctrl-C, or
    in a command that takes Ctrl-C at once), and destroying its client under that
    compile crashes the process (segmentation fault). Nothing is lost: outputs are
    written under temporary names that are renamed at the end or removed while the
    interrupt unwinds. After a finished command, a late Ctrl-C is ignored during the
    teardown."""
    code = main()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    if code == 130:
        os._exit(130)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise SystemExit(code)


if __name__ == "__main__":
    entry()
