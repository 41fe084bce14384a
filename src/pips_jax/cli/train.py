"""``pips-jax train``: train PIPs on synthetic clips generated on the fly.

The recipe, checkpoint and model-size flags are made from the fields of
:class:`~pips_jax.training.config.TrainConfig` and :class:`~pips_jax.config.ModelConfig`
(each field's :class:`~pips_jax.config.Flag` metadata), their help and the
description written from the dataclasses' defaults; a field without that metadata has
no flag. Which settings a new or resumed run gets is decided by
:func:`pips_jax.training.loop.resolve_train_config`; this module only collects the
flags that were given.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from pips_jax.cli.args import (
    add_compile_cache_arg,
    add_config_flag,
    add_job_args,
    float_text,
    resolution_text,
)
from pips_jax.config import Flag, ModelConfig, field_flags
from pips_jax.training.config import TrainConfig

#: Help sections of the config flags (:attr:`~pips_jax.config.Flag.group`), in order.
GROUPS = {
    "recipe": "recipe (defaults: the original PIPs recipe)",
    "checkpoints": "checkpoints, log and evaluation",
    "model": "model size (defaults: the released reference model)",
}
#: Prefix of the parsed arguments (``args.<prefix><field>``) of each config's flags.
TRAIN_PREFIX, MODEL_PREFIX = "train.", "model."


def _config_flags() -> list[tuple[str, dataclasses.Field, Flag]]:
    """``(dest, field, flag)`` of every config flag, in the order of the help."""
    found = [
        (prefix + field.name, field, flag)
        for cls, prefix in ((TrainConfig, TRAIN_PREFIX), (ModelConfig, MODEL_PREFIX))
        for field, flag in field_flags(cls)
    ]
    groups = list(GROUPS)
    return sorted(found, key=lambda entry: (groups.index(entry[2].group), entry[2].order))


def _steps_text(steps: int) -> str:
    """A step count as the description writes it: ``200k``."""
    return f"{steps // 1000}k" if steps % 1000 == 0 else str(steps)


def _description(c: TrainConfig) -> str:
    """The command's description, with the recipe's defaults of ``c``."""
    return (
        "Train PIPs on FlyingThings++-style synthetic clips made on the fly (background "
        "photo + moving textured objects with occlusions, exact ground truth), with the "
        f"original recipe's losses and optimizer (defaults: batch {c.batch_size}, "
        f"S={c.model.S}, {c.num_points} points, {resolution_text(c.crop)} crops, "
        f"{c.iters} iterations, AdamW lr {float_text(c.lr)} with a one-cycle schedule, "
        f"{_steps_text(c.num_steps)} steps). Writes DIR/checkpoints (orbax; also on Ctrl-C), DIR/metrics.jsonl, "
        "DIR/curves.png, DIR/config.json and, at the end, DIR/params.safetensors for "
        "pips-jax track --checkpoint. Flags override --config (or, with --resume, the "
        "run's stored settings)."
    )


def add_parser(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train PIPs on generated synthetic clips (checkpoints, JSONL log, plot)",
        description=_description(TrainConfig()),
    )
    p.add_argument(
        "--out", default="pips_train", metavar="DIR", help="run folder (default ./%(default)s)"
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
    groups = {name: p.add_argument_group(title) for name, title in GROUPS.items()}
    for dest, field, flag in _config_flags():
        add_config_flag(groups[flag.group], field, flag, dest)
    add_compile_cache_arg(p)
    add_job_args(p)
    p.set_defaults(func=run)


def _given(args: argparse.Namespace, prefix: str) -> dict[str, Any]:
    """The config fields whose flags (``args.<prefix><field>``) were given."""
    return {
        dest.removeprefix(prefix): value
        for dest, value in vars(args).items()
        if dest.startswith(prefix) and value is not None
    }


def run(args: argparse.Namespace) -> int:
    from pips_jax.runtime import current_job
    from pips_jax.training import train
    from pips_jax.training.loop import resolve_train_config

    config = resolve_train_config(
        args.out,
        args.resume,
        args.config,
        overrides=_given(args, TRAIN_PREFIX),
        model_overrides=_given(args, MODEL_PREFIX),
    )
    summary = train(
        config,
        args.out,
        resume=args.resume,
        init=args.init,
        progress=not args.quiet,
        workers=args.workers,
    )
    if not current_job().is_main:  # process 0 reports the job's run
        return 0
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
