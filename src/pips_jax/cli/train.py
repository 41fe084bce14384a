"""``pips-jax train``: train PIPs or PIPs++ (``--model pips2``) on synthetic clips
generated on the fly.

The recipe, checkpoint and model-size flags are made from the fields of
:class:`~pips_jax.training.config.TrainConfig` and of every family's model config
(:data:`pips_jax.config.FAMILIES`; each field's :class:`~pips_jax.config.Flag`
metadata), their help and the description written from each family's recipe
(:meth:`TrainConfig.recipe`); a field without that metadata has no flag, and a flag two
families share (``--S``) is one flag. Which settings a new or resumed run gets, and
which flags the run's family refuses (``--mixer-dim`` for PIPs++, ``--delta-dim`` for
PIPs, ...), is decided by :func:`pips_jax.training.loop.resolve_train_config`; this
module only collects the flags that were given.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from pips_jax.cli.args import (
    FLAG_KINDS,
    add_compile_cache_arg,
    add_config_flag,
    add_job_args,
    float_text,
    resolution_text,
)
from pips_jax.config import FAMILIES, Flag, config_class, field_flags
from pips_jax.training.config import FAMILY_FIELDS, TrainConfig

#: Help sections of the config flags (:attr:`~pips_jax.config.Flag.group`), in order.
GROUPS = {
    "recipe": "recipe (defaults: the family's original recipe)",
    "checkpoints": "checkpoints, log and evaluation",
    "model": "model size (defaults: the family's released reference model)",
}
#: Prefix of the parsed arguments (``args.<prefix><field>``) of each config's flags.
TRAIN_PREFIX, MODEL_PREFIX = "train.", "model."


@dataclasses.dataclass(frozen=True)
class _ConfigFlag:
    """One flag of the command: where it is stored, and its default in each family
    whose training reads it (``{family: default}``)."""

    dest: str
    field: dataclasses.Field
    flag: Flag
    defaults: dict[str, Any]


def _config_flags() -> list[_ConfigFlag]:
    """Every config flag, in the order of the help: TrainConfig's, then the model
    configs' (a flag several families share once, from the first family that has it)."""
    recipes = {family: TrainConfig.recipe(family) for family in FAMILIES}
    found = [
        _ConfigFlag(
            TRAIN_PREFIX + field.name,
            field,
            flag,
            {
                family: getattr(cfg, field.name)
                for family, cfg in recipes.items()
                if FAMILY_FIELDS.get(field.name, family) == family
            },
        )
        for field, flag in field_flags(TrainConfig)
    ]
    seen: dict[str, _ConfigFlag] = {}
    for family, cfg in recipes.items():
        for field, flag in field_flags(config_class(family)):
            entry = seen.setdefault(
                flag.name, _ConfigFlag(MODEL_PREFIX + field.name, field, flag, {})
            )
            assert entry.dest == MODEL_PREFIX + field.name, flag.name  # one field per flag
            entry.defaults[family] = getattr(cfg.model, field.name)
    found += seen.values()
    groups = list(GROUPS)
    return sorted(found, key=lambda e: (groups.index(e.flag.group), e.flag.order))


def _help_default(entry: _ConfigFlag) -> tuple[dataclasses.Field, Flag, str]:
    """The field, flag and ``default_label`` to give
    :func:`~pips_jax.cli.args.add_config_flag` so that the help ends with each family's
    default: ``(4)`` where they agree, ``(PIPs 4, PIPs++ 2)`` where they differ,
    ``(PIPs only, 512)`` for one family's flag."""
    labels = {family: config_class(family).label for family in entry.defaults}
    if len(entry.defaults) < len(FAMILIES):
        only = " or ".join(labels.values()) + " only"
        if entry.flag.kind == "off":  # its help has no default: say it there
            return (
                entry.field,
                dataclasses.replace(entry.flag, help=f"{entry.flag.help} ({only})"),
                "",
            )
        return entry.field, entry.flag, f"{only}, "
    *firsts, last = entry.defaults
    if entry.flag.kind == "off" or all(entry.defaults[f] == entry.defaults[last] for f in firsts):
        return entry.field, entry.flag, ""
    text = FLAG_KINDS[entry.flag.kind][1]
    label = "".join(f"{labels[f]} {text(entry.defaults[f])}, " for f in firsts)
    # add_config_flag writes the label, then the field's default: the last family's
    return dataclasses.field(default=entry.defaults[last]), entry.flag, f"{label}{labels[last]} "


def _steps_text(steps: int) -> str:
    """A step count as the description writes it: ``200k``."""
    return f"{steps // 1000}k" if steps % 1000 == 0 else str(steps)


def _recipe_text(c: TrainConfig) -> str:
    """One family's recipe as the description writes it."""
    return (
        f"{c.model.label}: batch {c.batch_size}, S={c.model.S}, {c.num_points} points, "
        f"{resolution_text(c.crop)} crops, {c.iters} iterations, AdamW lr {float_text(c.lr)} "
        f"(weight decay {float_text(c.weight_decay)}) with a one-cycle schedule "
        f"({c.warmup_fraction:.0%} warm-up), {_steps_text(c.num_steps)} steps"
    )


def _description() -> str:
    """The command's description, with each family's recipe."""
    recipes = "; ".join(_recipe_text(TrainConfig.recipe(family)) for family in FAMILIES)
    return (
        "Train PIPs, or PIPs++ with --model pips2, on FlyingThings++-style synthetic clips "
        "made on the fly (background photo + moving textured objects with occlusions, "
        "exact ground truth), with the original recipe's losses and optimizer (defaults: "
        f"{recipes}). PIPs++ has no visibility or score-map loss (its log has no vis or "
        "score) and starts the refinement from the original's noisy trajectories. "
        "Writes DIR/checkpoints (orbax; also on Ctrl-C), DIR/metrics.jsonl, "
        "DIR/curves.png, DIR/config.json and, at the end, DIR/params.safetensors for "
        "pips-jax track --checkpoint. Flags override --config (or, with --resume, the "
        "run's stored settings); a flag of the other family is refused."
    )


def add_parser(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train PIPs or PIPs++ on generated synthetic clips (checkpoints, JSONL log, plot)",
        description=_description(),
    )
    p.add_argument(
        "--model",
        choices=tuple(FAMILIES),
        default=None,
        help="model family: pips (PIPs) or pips2 (PIPs++), with its original recipe "
        "(default: the --config's or the resumed run's family, else pips)",
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
    for entry in _config_flags():
        field, flag, label = _help_default(entry)
        add_config_flag(groups[flag.group], field, flag, entry.dest, default_label=label)
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
        family=args.model,
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
