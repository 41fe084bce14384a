"""One process of a job of many, run under a small supervisor that keeps the
command's output to what the command says.

In a job (job flags given, or a job in the environment: :mod:`pips_jax.runtime`),
``pips-jax`` runs the command in a child process and forwards its output, leaving out
the runtime's own log lines (the C++ logs of JAX's coordination service and gloo). If
the job ends the child, which JAX's coordination service does when another process
died or stopped answering (it aborts the survivors with a native stack trace), the
supervisor says so in one line and exits with code 1. The child's exit code is
passed on otherwise. ``PIPS_JAX_RUNTIME_LOG=1`` forwards everything, for debugging.

The supervisor ignores Ctrl-C (the terminal sends it to the child as well, which
handles it) and forwards ``SIGTERM`` (a scheduler's cancel) to the child.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from typing import BinaryIO

from pips_jax.runtime import job_in_environment

#: Set in the child's environment: the child runs the command itself.
CHILD_MARKER = "PIPS_JAX_SUPERVISED"
#: Set to 1 to forward the runtime's own log lines too.
SHOW_LOG = "PIPS_JAX_RUNTIME_LOG"
JOB_FLAGS = ("--coordinator-address", "--num-processes", "--process-id")

# A line of a C++ log (absl/glog): "E1204 03:12:09.173350   12568 file.cc:289] ..."
_LOG_LINE = re.compile(rb"^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+\s+\d+ \S+:\d+\] ")
_GLOO_LINE = re.compile(rb"^\[Gloo\] ")
# The lines that follow a fatal or error log line: its continuation, the stack trace.
_OURS = re.compile(rb"^(pips-jax |Traceback |\r)")


def wanted(argv: Sequence[str], environ: Mapping[str, str] = os.environ) -> bool:
    """Whether ``pips-jax argv`` is one process of a job and not already supervised."""
    if environ.get(CHILD_MARKER) == "1":
        return False
    flags = any(a == f or a.startswith(f + "=") for a in argv for f in JOB_FLAGS)
    return flags or job_in_environment(environ)


class _Filter:
    """Forwards one output stream of the child, line by line (a progress bar's ``\\r``
    updates as they come), without the runtime's log lines, which it keeps."""

    def __init__(self, source: BinaryIO, sink: BinaryIO, show_all: bool):
        self.source, self.sink, self.show_all = source, sink, show_all
        self.dropped: list[bytes] = []  # the runtime's log lines (all, with show_all)
        self._in_log = False  # inside an error log's continuation lines

    def run(self) -> None:
        pending = b""
        while chunk := os.read(self.source.fileno(), 1 << 16):
            pending += chunk
            pieces = re.split(rb"(?<=[\r\n])", pending)
            pending = pieces.pop()  # an unterminated piece waits for its end
            self._forward(pieces)
        if pending:
            self._forward([pending])

    def _forward(self, pieces: list[bytes]) -> None:
        out = []
        for piece in pieces:
            if not self._drops(piece) or self.show_all:
                out.append(piece)
        if out:
            self.sink.write(b"".join(out))
            self.sink.flush()

    def _drops(self, piece: bytes) -> bool:
        if _GLOO_LINE.match(piece):
            self.dropped.append(piece)
            return True
        if _LOG_LINE.match(piece):
            self.dropped.append(piece)
            self._in_log = piece[:1] in (b"E", b"F")
            return True
        if self._in_log and not _OURS.match(piece):
            self.dropped.append(piece)
            return True
        self._in_log = False
        return False


def _option(argv: Sequence[str], flag: str) -> str | None:
    for i, a in enumerate(argv):
        if a == flag and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
    return None


def _reason(dropped: list[bytes], code: int) -> str:
    """What ended the child, in words, from the runtime's log lines it left."""
    text = b"".join(dropped).decode(errors="replace")
    task = re.search(r"Task (\d+) heartbeat timeout", text) or re.search(
        r"stopped sending heartbeats\):\s*(\d+(?:[\s,]+\d+)*)", text
    )
    if task:
        ids = re.findall(r"\d+", task.group(1))
        which = f"process {ids[0]}" if len(ids) == 1 else f"processes {', '.join(ids)}"
        return (
            f"{which} of the job stopped answering (no heartbeat within the "
            "--heartbeat-timeout): it died or was stopped; see its output"
        )
    if "another task died" in text or "Socket closed" in text or "UNAVAILABLE" in text:
        return "another process of the job died or the coordinator (process 0) went away"
    name = signal.Signals(-code).name if code < 0 and -code in signal.valid_signals() else ""
    return f"it ended with signal {name or -code}"


def run(argv: Sequence[str]) -> int:
    """Runs ``pips-jax argv`` in a supervised child; returns the exit code to use."""
    command = next((a for a in argv if not a.startswith("-")), "")
    env = {**os.environ, CHILD_MARKER: "1", "PYTHONUNBUFFERED": "1"}
    child = subprocess.Popen(
        [sys.executable, "-m", "pips_jax", *argv],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: child.send_signal(signal.SIGTERM))
    show_all = os.environ.get(SHOW_LOG) == "1"
    filters = [
        _Filter(child.stdout, sys.stdout.buffer, show_all),
        _Filter(child.stderr, sys.stderr.buffer, show_all),
    ]
    threads = [threading.Thread(target=f.run, daemon=True) for f in filters]
    for t in threads:
        t.start()
    code = child.wait()
    for t in threads:
        t.join()
    fatal = any(line[:1] == b"F" and _LOG_LINE.match(line) for f in filters for line in f.dropped)
    if code >= 0 and not fatal:
        return code
    who = _option(argv, "--process-id")
    who = f"process {who}" if who is not None else "this process"
    total = _option(argv, "--num-processes")
    if total is not None:
        who += f" of {total}"
    dropped = [line for f in filters for line in f.dropped]
    sys.stderr.write(f"pips-jax {command}: error: {who} stopped: {_reason(dropped, code)}\n")
    sys.stderr.flush()
    return 1
