"""The ``pips-jax`` program: its parser, made of one module per command, and how a
command runs (the XLA flag, warnings, one-line errors, Ctrl-C and the exit code).

Each command is a module of :mod:`pips_jax.cli` with ``add_parser(sub)``, which adds
its subparser and sets ``func`` to its ``run(args)``; a new command is one more module
in :data:`COMMANDS`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import warnings
from collections.abc import Sequence

from pips_jax import interrupts, runtime
from pips_jax.cli import (
    benchmark,
    convert,
    demo,
    download,
    evaluate,
    export,
    supervise,
    track,
    train,
)
from pips_jax.cli.xla_flags import add_cpu_conv_flag
from pips_jax.errors import PipsError, PipsWarning
from pips_jax.files import cache_dir

#: The commands, in the order of the help.
COMMANDS = (convert, download, track, demo, evaluate, benchmark, train, export)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pips-jax",
        description="PIPs point tracking in JAX: convert checkpoints, track points in videos.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def _warning_printer(command: str):
    """``warnings.showwarning`` for the CLI: a :class:`PipsWarning` is printed once per
    distinct message as ``pips-jax COMMAND: warning: ...``; others as Python does."""
    seen: set[str] = set()
    default = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if not issubclass(category, PipsWarning):
            return default(message, category, filename, lineno, file, line)
        text = " ".join(str(message).split())
        if text not in seen:
            seen.add(text)
            print(f"pips-jax {command}: warning: {text}", file=sys.stderr)

    return show


def _start_runtime(args: argparse.Namespace) -> None:
    """Joins the job the arguments describe (commands with :func:`add_job_args`),
    refusing processes started with different arguments, and switches on the
    compilation cache (commands with :func:`add_compile_cache_arg`)."""
    if getattr(args, "job", False):
        options = runtime.JobOptions(
            args.coordinator_address,
            args.num_processes,
            args.process_id,
            args.join_timeout,
            args.heartbeat_timeout,
        )
        job = runtime.join(options, prefix=f"pips-jax {args.command}")
        if job.process_count > 1:
            runtime.check_same_settings(
                {k: v for k, v in vars(args).items() if k not in ("process_id", "func")},
                "arguments",
            )
    if getattr(args, "compile_cache", False):
        runtime.enable_compilation_cache(cache_dir() / "xla")


def main(argv: Sequence[str] | None = None) -> int:
    """Runs one command; returns its exit code (0, 2: bad input, 130: Ctrl-C).

    ``track``, ``demo`` and ``eval`` take Ctrl-C between frames and windows
    (:mod:`pips_jax.interrupts`), never in the middle of an XLA compile; a second
    Ctrl-C stops at once. A Ctrl-C that comes once the outputs are being put in place
    is too late to stop them: the command completes."""
    parser = build_parser()
    args = parser.parse_args(argv)
    add_cpu_conv_flag()
    defer = interrupts.deferred() if getattr(args, "defer_interrupt", False) else None
    with warnings.catch_warnings(), defer or contextlib.nullcontext():
        warnings.simplefilter("always", PipsWarning)
        warnings.showwarning = _warning_printer(args.command)
        try:
            _start_runtime(args)
            return args.func(args)
        except PipsError as e:
            print(f"pips-jax {args.command}: error: {e}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print(f"pips-jax {args.command}: interrupted", file=sys.stderr)
            return 130


def entry() -> None:
    """The ``pips-jax`` program (and ``python -m pips_jax``): :func:`main`, then exit.

    After Ctrl-C the process ends with ``os._exit(130)``, skipping the interpreter's
    teardown: XLA may still be compiling in its own threads (after a second Ctrl-C, or
    in a command that takes Ctrl-C at once), and destroying its client under that
    compile crashes the process (segmentation fault). Nothing is lost: outputs are
    written under temporary names that are renamed at the end or removed while the
    interrupt unwinds. After a finished command, a late Ctrl-C is ignored during the
    teardown. One process of a job of many runs under a supervisor
    (:mod:`pips_jax.cli.supervise`)."""
    if supervise.wanted(sys.argv[1:]):
        raise SystemExit(supervise.run(sys.argv[1:]))
    code = main()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    if code == 130:
        os._exit(130)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise SystemExit(code)
