"""Starting and ending the processes of multi-process tests.

A ``pips-jax`` process of a job runs its command in a supervised child
(``pips_jax.cli.supervise``), so every process starts in a session of its own and is
ended with its whole process group: no child outlives a test, whether it passed,
failed or hung."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess


def start(argv: list[str], env: dict[str, str]) -> subprocess.Popen:
    """Starts ``argv`` with ``env``, its output captured as text, in its own session."""
    return subprocess.Popen(
        argv,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def kill(proc: subprocess.Popen) -> None:
    """Kills ``proc`` and every process it started."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def finish(procs: list[subprocess.Popen], timeout: float) -> list[tuple[int, str, str]]:
    """``(returncode, stdout, stderr)`` of every process, each waited for at most
    ``timeout`` seconds (a guard against hangs, not a timing); kills them all on the
    way out."""
    results = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=timeout)
            results.append((p.returncode, out, err))
        return results
    finally:
        for p in procs:
            kill(p)
            with contextlib.suppress(Exception):
                p.communicate(timeout=30)  # reaps it
