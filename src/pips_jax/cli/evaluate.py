"""``pips-jax eval``: TAP-Vid metrics of the model and of a zero-motion baseline on a
TAP-Vid dataset or on generated synthetic clips with exact ground truth."""

from __future__ import annotations

import argparse

from pips_jax.cli.args import (
    add_clip_resolution_arg,
    add_compile_cache_arg,
    add_job_args,
    add_run_args,
    load_run_weights,
)


def add_parser(sub) -> None:
    p = sub.add_parser(
        "eval",
        help="evaluate on TAP-Vid (DAVIS, RoboTAP, RGB-Stacking, Kinetics) or the synthetic benchmark",
        description=(
            "Compute TAP-Vid metrics (AJ, delta_avg, OA), trajectory errors and the PIPs++ "
            "paper's d_avg, survival and median_l2 at 256x256 for the model (PIPs or "
            "PIPs++, from the weights) and a zero-motion baseline. --format synthetic without "
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
    add_clip_resolution_arg(p)
    p.add_argument(
        "--num-videos",
        type=int,
        default=16,
        metavar="N",
        help="synthetic clips to generate (default %(default)s)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=1000,
        help="seed of the generated synthetic clips (default %(default)s)",
    )
    p.add_argument(
        "--baseline-only",
        action="store_true",
        help="only the zero-motion baseline (no weights needed)",
    )
    p.add_argument("--json", default=None, metavar="OUT.json", help="also write the report as JSON")
    add_run_args(p)
    add_compile_cache_arg(p)
    add_job_args(p)
    p.set_defaults(func=run, defer_interrupt=True)


def run(args: argparse.Namespace) -> int:
    from pips_jax.evaluation.runner import (
        VISIBILITY_BASIS,
        evaluate,
        load_samples,
        tracker_predictor,
    )
    from pips_jax.files import atomic_write_bytes
    from pips_jax.inference import DEFAULT_CLIP_RESOLUTION
    from pips_jax.runtime import current_job
    from pips_jax.tracker import Tracker

    visibility = None
    if args.baseline_only:
        predictors, description, settings = {}, "none (baseline only)", None
        resolution = args.input_resolution or DEFAULT_CLIP_RESOLUTION
    else:
        weights, settings = load_run_weights(
            args, announce=False, clip_resolution=args.input_resolution
        )
        description = settings.describe(weights.description)
        resolution = settings.clip_resolution
        tracker = Tracker.from_settings(weights.params, weights.config, settings, clips=True)
        predictors = {weights.config.family: tracker_predictor(tracker)}
        visibility = VISIBILITY_BASIS[tracker.has_visibility]
    samples = load_samples(args.dataset, args.format, args.num_videos, args.seed)
    dataset = args.dataset or f"generated: {args.num_videos} clips, seed {args.seed}"
    job = current_job()
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
        visibility=visibility,
        share=(job.process_index, job.process_count),
    )
    if not job.is_main:  # every process holds the job's report; process 0 reports it
        return 0
    print(report.table())
    if args.json:
        atomic_write_bytes(args.json, report.to_json().encode())
        print(f"wrote {args.json}")
    return 0
