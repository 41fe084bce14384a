"""``pips-jax convert``: an original PyTorch PIPs checkpoint (.pth) to a .safetensors
file of pips-jax parameters, for a model of the given clip length and stride."""

from __future__ import annotations

import argparse
import time

from pips_jax.cli.args import add_config_flag
from pips_jax.config import ModelConfig, field_flags

#: The ModelConfig fields ``convert`` takes, in the order of the help (the stride is not
#: stored in the weights; the other sizes are the released model's).
MODEL_FLAGS = ("stride", "S")


def add_parser(sub) -> None:
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
    g = p.add_argument_group("model configuration (defaults: the released reference model)")
    flags = {field.name: (field, flag) for field, flag in field_flags(ModelConfig)}
    for name in MODEL_FLAGS:
        field, flag = flags[name]
        add_config_flag(g, field, flag, name, default=field.default, default_label="default ")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pips_jax.checkpoint.convert import convert_checkpoint

    t0 = time.perf_counter()
    config = ModelConfig(**{name: getattr(args, name) for name in MODEL_FLAGS})
    out = convert_checkpoint(args.input, args.output, config)
    print(f"converted {args.input} -> {out} ({time.perf_counter() - t0:.1f} s)")
    return 0
