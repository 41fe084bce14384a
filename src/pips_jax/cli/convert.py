"""``pips-jax convert``: an original PyTorch PIPs or PIPs++ checkpoint (.pth) to a
.safetensors file of pips-jax parameters that names its family, for a model of the
given stride (and, for PIPs, clip length)."""

from __future__ import annotations

import argparse
import time

from pips_jax.cli.args import add_config_flag
from pips_jax.config import FAMILIES, ModelConfig, field_flags

#: The config fields ``convert`` takes, in the order of the help (the stride is not
#: stored in the weights; the other sizes are the released models').
MODEL_FLAGS = ("stride", "S")


def add_parser(sub) -> None:
    p = sub.add_parser(
        "convert",
        help="convert an original PyTorch PIPs or PIPs++ checkpoint (.pth) to pips-jax parameters",
        description=(
            "Convert an original PIPs (aharley/pips) or PIPs++ (aharley/pips2) checkpoint "
            "(e.g. model-000200000.pth) to a .safetensors file of Flax parameters; the "
            "family is read from the checkpoint's keys and written into the file, so "
            "track, eval and benchmark pick the right model. The .pth file is read without "
            "torch and without executing pickle code. Nothing is written if conversion fails."
        ),
    )
    p.add_argument("input", help="original checkpoint, e.g. model-000200000.pth")
    p.add_argument("output", help="output .safetensors file (or an existing folder)")
    p.add_argument(
        "--model",
        choices=tuple(FAMILIES),
        default=None,
        help="the checkpoint's family, pips or pips2 (default: read from its keys)",
    )
    g = p.add_argument_group(
        "model configuration (defaults: the released reference model of the family: "
        "PIPs stride 4, PIPs++ stride 8)"
    )
    flags = {field.name: (field, flag) for field, flag in field_flags(ModelConfig)}
    for name in MODEL_FLAGS:
        field, flag = flags[name]
        add_config_flag(g, field, flag, name)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pips_jax.checkpoint.convert import convert_checkpoint, detect_family, ignored_keys
    from pips_jax.checkpoint.pth import load_state_dict

    t0 = time.perf_counter()
    state_dict = load_state_dict(args.input)
    family = args.model or detect_family(state_dict)
    given = {name: getattr(args, name) for name in MODEL_FLAGS if getattr(args, name) is not None}
    config = FAMILIES[family](**given)
    out = convert_checkpoint(args.input, args.output, config, family=args.model)
    ignored = ignored_keys(state_dict)
    note = (
        f"; accepted {len(ignored)} keys the {config.label} forward never reads: {', '.join(ignored)}"
        if ignored
        else ""
    )
    print(
        f"converted {config.label} {args.input} -> {out} ({time.perf_counter() - t0:.1f} s){note}"
    )
    return 0
