"""The ``pips-jax`` command line. Each subcommand is a thin shell over library functions."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from pips_jax.errors import PipsError


def _add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model configuration (defaults: the released reference model)")
    g.add_argument("--stride", type=int, default=4, help="feature stride (default 4)")
    g.add_argument("--S", type=int, default=8, help="frames per clip (default 8)")


def _config(args: argparse.Namespace):
    from pips_jax.config import ModelConfig

    return ModelConfig(S=args.S, stride=args.stride)


def cmd_convert(args: argparse.Namespace) -> int:
    from pips_jax.checkpoint.convert import convert_checkpoint

    t0 = time.perf_counter()
    out = convert_checkpoint(args.input, args.output, _config(args))
    print(f"converted {args.input} -> {out} ({time.perf_counter() - t0:.1f} s)")
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except PipsError as e:
        print(f"pips-jax {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"pips-jax {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
