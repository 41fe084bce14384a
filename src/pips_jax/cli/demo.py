"""``pips-jax demo``: track points on a generated clip with known motion (offline) and
print the error against its exact ground truth."""

from __future__ import annotations

import argparse

from pips_jax.cli.args import (
    add_clip_resolution_arg,
    add_compile_cache_arg,
    add_output_args,
    add_run_args,
    load_run_weights,
)


def add_parser(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="track points on a generated clip with known motion (offline) and show the result",
        description=(
            "Generate a 24-frame clip from a photograph shipped with scikit-image, moving "
            "under a known motion with moving occluders, track its points and write the "
            "tracks and a visualization; prints the error against the exact ground truth."
        ),
    )
    add_run_args(p)
    add_output_args(p, "pips_demo", "gif")
    add_clip_resolution_arg(p)
    add_compile_cache_arg(p)
    p.set_defaults(func=run, defer_interrupt=True)


def run(args: argparse.Namespace) -> int:
    from pips_jax.demo import run_demo
    from pips_jax.files import make_output_dir

    weights, settings = load_run_weights(args, clip_resolution=args.input_resolution)
    out_dir = make_output_dir(args.out)
    s = run_demo(out_dir, weights, settings, viz_format=args.viz_format, progress=not args.quiet)
    resolution = settings.clip_resolution
    print(
        f"demo: tracked {s['points']} points through {s['frames']} frames "
        f"at {resolution[0]}x{resolution[1]} in {s['seconds']:.1f} s; "
        f"visible points: median error {s['median_error_px']:.2f} px, {100 * s['within_4px']:.0f}% within 4 px; "
        f"occlusion accuracy {100 * s['occlusion_accuracy']:.0f}% -> {', '.join(str(p) for p in s['paths'])}"
    )
    return 0
