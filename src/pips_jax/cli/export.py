"""``pips-jax export``: PIPs as three programs of fixed shapes (frame encoding, query
features, one window's refinement) with their parameters inside, as StableHLO
(``jax.export``) or ONNX, and an ``export.json`` that describes them
(:mod:`pips_jax.export`)."""

from __future__ import annotations

import argparse
import time

from pips_jax.cli.args import add_run_args, int_at_least, resolution, resolution_text

# The parser is built before JAX is imported (the program must take Ctrl-C at once), so
# it names what pips_jax.export defines without importing it; tests/test_export.py
# checks that the two agree.
FORMATS = ("stablehlo", "onnx")
PLATFORMS_HELP = "cpu,cuda"
HOW_TO_GET_EXTRA = 'pip install "pips-jax[export]"'
#: The shapes exported when none are given: the original demo's 360x640 (the tracker's
#: working resolution for 16:9 videos), 256 points, one window's 8 frames per encode.
DEFAULT_RESOLUTION = (360, 640)
DEFAULT_POINTS = 256
DEFAULT_BATCH = 8


def add_parser(sub) -> None:
    p = sub.add_parser(
        "export",
        help="export PIPs as StableHLO or ONNX programs of fixed shapes for other runtimes",
        description=(
            "Write into the folder OUT three programs of fixed shapes with the weights' "
            "parameters inside: encode (B frames, uint8 RGB at the working resolution, "
            "to feature maps), query_features (points on one feature map to their "
            "features) and window (one S-frame window's refinement to positions and "
            "visibility probabilities), and export.json, which names every input and "
            "output with its shape, dtype and coordinates ((x, y) pixels of the working "
            "resolution, origin at the centre of the top-left pixel). StableHLO files "
            "reload with jax.export.deserialize, ONNX files run with onnxruntime; both need "
            f"the [export] extra ({HOW_TO_GET_EXTRA}; ONNX on Python >= 3.11). PIPs weights "
            "only. Nothing is written if a step fails."
        ),
    )
    p.add_argument("out", metavar="OUT", help="output folder (created)")
    p.add_argument(
        "--format",
        choices=FORMATS,
        default="stablehlo",
        help="stablehlo (default; jax.export) or onnx (jax2onnx)",
    )
    p.add_argument(
        "--resolution",
        type=resolution,
        default=DEFAULT_RESOLUTION,
        metavar="HxW",
        help=(
            "working resolution the frames are resized to before encoding, each side a "
            f"multiple of the stride (default {resolution_text(DEFAULT_RESOLUTION)})"
        ),
    )
    p.add_argument(
        "--points",
        type=int_at_least(1, "a number of points"),
        default=DEFAULT_POINTS,
        metavar="N",
        help="points per window (default %(default)s; a runtime pads fewer)",
    )
    p.add_argument(
        "--batch",
        type=int_at_least(1, "a number of frames"),
        default=DEFAULT_BATCH,
        metavar="B",
        help="frames per encode call (default %(default)s)",
    )
    p.add_argument(
        "--platforms",
        type=lambda text: tuple(v for v in text.split(",") if v),
        default=None,
        metavar="P1,P2",
        help=(
            f"stablehlo only: the platforms the programs are lowered for (default {PLATFORMS_HELP})"
        ),
    )
    add_run_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pips_jax.cli.args import load_run_weights
    from pips_jax.export import (
        ExportShapes,
        check_converter,
        check_family,
        export_model,
        weights_name,
    )

    t0 = time.perf_counter()
    check_converter(args.format)  # before loading anything
    weights, settings = load_run_weights(args, announce=not args.quiet)
    config = check_family(weights.config)
    shapes = ExportShapes(args.resolution, args.points, settings.iters, args.batch).check(config)
    written = export_model(
        args.out,
        weights.params,
        config,
        shapes,
        format=args.format,
        weights=weights_name(weights),
        precision=settings.precision,
        platforms=args.platforms,
    )
    h, w = shapes.resolution
    print(
        f"exported {config.label} as {args.format} at {h}x{w} (HxW), {shapes.points} points, "
        f"{shapes.iters} iterations, {shapes.batch} frames per encode "
        f"({time.perf_counter() - t0:.1f} s) -> {', '.join(str(p) for p in written)}"
    )
    return 0
