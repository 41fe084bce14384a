"""``pips-jax benchmark``: forward speed and memory of the model (and whole-video
tracking) on this machine, each case in its own process (:mod:`pips_jax.benchmark`)."""

from __future__ import annotations

import argparse
import sys


def add_parser(sub) -> None:
    p = sub.add_parser(
        "benchmark",
        help="measure forward speed and memory (and whole-video tracking) on this machine",
        description=(
            "Benchmark the PIPs or PIPs++ forward pass (batch 1, 8 frames, 360x640, 256 "
            "points, 6 iterations, float32 is the reference) and whole-video tracking. Each case runs "
            "in its own process; reports compile time, min/median forward time, peak memory "
            "(host RSS on CPU, device memory on GPU), GFLOP/s and points x frames / s."
        ),
    )
    p.add_argument(
        "--config",
        choices=("reference", "sweep", "video", "all", "scaling", "stream"),
        default="reference",
        help=(
            "which cases (default %(default)s; scaling: tracking and training on 1, 2, 4 "
            "devices and on 2 processes; stream: track --stream on 100 and 1,000 frames)"
        ),
    )
    p.add_argument(
        "--model",
        choices=("pips", "pips2"),
        default="pips",
        help=(
            "the family to measure (default %(default)s; pips2: PIPs++, reference one "
            "window of 8 frames, sweeps over windows of 16, 32, 64 frames and 1024 points)"
        ),
    )
    p.add_argument(
        "--runs", type=int, default=5, help="timed runs after warm-up (default %(default)s)"
    )
    p.add_argument(
        "--timeout", type=float, default=None, metavar="S", help="give up on a case after S seconds"
    )
    p.add_argument("--json", default=None, metavar="OUT.json", help="write results as JSON")
    p.add_argument("--table", default=None, metavar="OUT.md", help="write the Markdown table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
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
                f"  forward {r['model']} {r['frames']} frames N={r['num_points']} "
                f"{r['height']}x{r['width']} {r['precision']}: "
                f"{r['forward_s_min']:.3f} s (compile {r['compile_s']:.1f} s)",
                file=sys.stderr,
            )
        elif r["kind"] == "video":
            print(
                f"  video {r['num_frames']} frames, N={r['num_points']}: {r['seconds']:.1f} s",
                file=sys.stderr,
            )
        else:
            speed = (
                f"{r['points_frames_per_s']:.0f} points x frames / s"
                if r["task"] == "track"
                else f"{r['steps_per_s']:.3f} steps / s"
            )
            print(
                f"  {r['task']} on {r['processes']} process(es) x {r['devices']} device(s): {speed}",
                file=sys.stderr,
            )
        write(report)  # after every case, so an interrupted run keeps what it measured

    report = run_suite(
        args.config, runs=args.runs, timeout=args.timeout, on_result=show, model=args.model
    )
    print(format_table(report))
    for path in (args.json, args.table):
        if path:
            print(f"wrote {path}")
    return 0
