"""Argument types and options that several ``pips-jax`` commands share.

The types (:func:`resolution`, :func:`int_at_least`, :func:`positive_float`,
:func:`channel_counts`) turn text into a value or raise argparse's error, which
argparse prints with the usage (exit code 2). The ``add_*`` functions add the options
of the commands that run the model, write tracks or run on 256x256 clips, and the flag
a config dataclass field declares (:class:`pips_jax.config.Flag`).
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pips_jax.config import Flag
from pips_jax.runtime import DEFAULT_JOIN_TIMEOUT_S, HEARTBEAT_TIMEOUT_S

if TYPE_CHECKING:
    from pips_jax.inference import InferenceSettings
    from pips_jax.weights import Weights


def resolution(text: str) -> tuple[int, int]:
    """An argparse type: ``HxW`` (e.g. ``360x640``) as ``(H, W)`` pixels."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW such as 360x640, got {text!r}") from None
    return h, w


def int_at_least(minimum: int, what: str) -> Callable[[str], int]:
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


def positive_float(text: str) -> float:
    """An argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (value > 0 and value < float("inf")):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def channel_counts(text: str) -> tuple[int, ...]:
    """An argparse type: comma-separated channel counts, ``32,48,64,64``."""
    try:
        dims = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated channel counts such as 32,48,64,64, got {text!r}"
        ) from None
    return dims


def resolution_text(size: tuple[int, int]) -> str:
    """``(H, W)`` as the help writes it: ``HxW``."""
    return f"{size[0]}x{size[1]}"


def float_text(value: float) -> str:
    """A number as the help writes it: ``5e-4`` below 0.01 (learning rates, decays),
    else the shortest form (``0.05``, ``10``)."""
    if value and abs(value) < 1e-2:
        mantissa, exponent = f"{value:e}".split("e")
        return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
    return f"{value:g}"


#: Each :attr:`~pips_jax.config.Flag.kind` of a value flag: its argparse type and how
#: the help writes a value of it.
FLAG_KINDS: dict[str, tuple[Callable[[str], Any], Callable[[Any], str]]] = {
    "int": (int, str),
    "float": (float, float_text),
    "resolution": (resolution, resolution_text),
    "channels": (channel_counts, lambda dims: ",".join(str(d) for d in dims)),
}


def add_config_flag(
    group: Any,
    field: dataclasses.Field,
    flag: Flag,
    dest: str,
    default: Any = None,
    default_label: str = "",
) -> None:
    """Adds to ``group`` (a parser or an argument group) the ``flag`` of the config
    dataclass ``field``, stored in ``dest`` (``default`` when not given; None tells
    "not given" apart).

    The help ends with the field's default, as ``(4)``, or ``(default 4)`` with
    ``default_label="default "``. An ``"off"`` flag stores False when given.
    """
    if flag.kind == "off":
        group.add_argument(
            flag.name, dest=dest, action="store_const", const=False, default=None, help=flag.help
        )
        return
    parse, text = FLAG_KINDS[flag.kind]
    group.add_argument(
        flag.name,
        dest=dest,
        type=parse,
        default=default,
        # argparse's own metavar for this flag's name: --weight-decay WEIGHT_DECAY
        metavar=flag.metavar or flag.name.lstrip("-").replace("-", "_").upper(),
        help=f"{flag.help} ({default_label}{text(field.default)})",
    )


def add_run_args(p: argparse.ArgumentParser) -> None:
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
        "--window",
        type=int_at_least(2, "a number of frames"),
        default=None,
        metavar="S",
        help=(
            "PIPs++ only: frames per window (default 128, the original's evaluation; "
            "PIPs runs its own 8-frame windows)"
        ),
    )
    p.add_argument(
        "--precision",
        choices=("float32", "bfloat16"),
        default="float32",
        help="compute precision (default float32: exact)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def add_output_args(p: argparse.ArgumentParser, out: str, viz: str) -> None:
    """Options of the commands that write tracks and a visualization: the folder
    (default ``./out``) and the visualization's format (default ``viz``)."""
    p.add_argument(
        "--out", default=out, metavar="DIR", help="output folder (default ./%(default)s)"
    )
    p.add_argument(
        "--viz-format",
        choices=("mp4", "gif"),
        default=viz,
        help="visualization format (default %(default)s)",
    )


def add_clip_resolution_arg(p: argparse.ArgumentParser) -> None:
    """The model's input resolution on 256x256 clips (``demo`` and ``eval``)."""
    p.add_argument(
        "--input-resolution",
        type=resolution,
        default=None,
        metavar="HxW",
        help=(
            "resolution the model runs at; frames are resized to it and tracks mapped back "
            "(default: the weights' recommended one, else 256x256)"
        ),
    )


def add_job_args(p: argparse.ArgumentParser) -> None:
    """Options of the commands that run as one process of a job of many
    (:mod:`pips_jax.runtime`); without them a command is one process on all its local
    devices, unless the environment describes a job (SLURM, Open MPI,
    ``JAX_COORDINATOR_ADDRESS``)."""
    g = p.add_argument_group(
        "many processes (JAX's distributed runtime; default: one process on all local devices)"
    )
    g.add_argument(
        "--coordinator-address",
        default=None,
        metavar="HOST:PORT",
        help="address of process 0's coordinator (every process gives the same)",
    )
    g.add_argument(
        "--num-processes",
        type=int_at_least(1, "a number of processes"),
        default=None,
        metavar="P",
        help="processes in the job",
    )
    g.add_argument(
        "--process-id",
        type=int_at_least(0, "a process id"),
        default=None,
        metavar="I",
        help="this process, 0 .. P-1 (process 0 serves the coordinator)",
    )
    g.add_argument(
        "--join-timeout",
        type=positive_float,
        default=DEFAULT_JOIN_TIMEOUT_S,
        metavar="S",
        help="seconds to wait for every process to join (default %(default)g)",
    )
    g.add_argument(
        "--heartbeat-timeout",
        type=int_at_least(1, "a number of seconds"),
        default=HEARTBEAT_TIMEOUT_S,
        metavar="S",
        help="seconds after which a job one of whose processes died is ended (default %(default)s)",
    )
    p.set_defaults(job=True)


def add_compile_cache_arg(p: argparse.ArgumentParser) -> None:
    """``--no-compile-cache``: the commands that compile the model keep their compiled
    programs in the cache folder (``$PIPS_JAX_CACHE/xla``, default
    ``~/.cache/pips-jax/xla``) unless given."""
    p.add_argument(
        "--no-compile-cache",
        dest="compile_cache",
        action="store_false",
        help=(
            "do not keep compiled programs in the cache folder ($PIPS_JAX_CACHE/xla, default "
            "~/.cache/pips-jax/xla), which spares a later run with the same shapes compiling"
        ),
    )


def load_run_weights(
    args: argparse.Namespace, announce: bool = True, **resolution: Any
) -> tuple[Weights, InferenceSettings]:
    """The weights of ``--checkpoint`` (:func:`pips_jax.weights.load_weights`) and the
    settings they run with: the card's choices under the user's ``--iters``,
    ``--precision`` and ``resolution`` (``clip_resolution=`` or ``video_resolution=``,
    ``(H, W)`` or None). With ``announce``, says on stderr which weights run how."""
    import sys

    from pips_jax.inference import settings_for
    from pips_jax.weights import load_weights

    weights = load_weights(args.checkpoint)
    settings = settings_for(
        weights,
        iters=args.iters,
        precision=args.precision,
        window=getattr(args, "window", None),
        window_flag="--window",
        **resolution,
    )
    if announce:
        print(f"weights: {settings.describe(weights.description)}", file=sys.stderr)
    return weights, settings
