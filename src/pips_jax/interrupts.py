"""Deferred Ctrl-C for the commands that run the model.

Python raises :class:`KeyboardInterrupt` wherever the main thread happens to be when
SIGINT is handled. In a JAX program that is often the wait for an XLA compile, which
jaxlib makes interruptible: the wait gives up, but the compile goes on in XLA's thread
pool. The process then tears the interpreter down, the XLA client and its devices
are destroyed while that compile still uses them, and it dies with a segmentation
fault after printing ``interrupted``. SIGINT handled inside a garbage collector
callback (JAX registers one) or an ``atexit`` function is worse: the exception is
printed as "Exception ignored" and the run carries on as if nothing happened.

Inside :func:`deferred` the first Ctrl-C only sets a flag; :func:`check`, called by
the tracker, the video reader and the video writer between units of work (a frame, a
window), turns it into :class:`KeyboardInterrupt` there, when no compile or
computation is half done. A second Ctrl-C before such a point interrupts at once
(Python's usual behaviour), for a run that seems stuck. Outside :func:`deferred`
(library use, tests) :func:`check` never raises and SIGINT keeps its usual meaning.

:func:`held` is for the few steps that must not be cut in half whoever runs them (the
renames that put a set of outputs in place): it blocks SIGINT itself for a moment.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

_pending = False


def check() -> None:
    """Raises :class:`KeyboardInterrupt` if a deferred Ctrl-C is pending."""
    global _pending
    if _pending:
        _pending = False
        raise KeyboardInterrupt


def _handle(signum: int, frame: Any) -> None:
    global _pending
    if _pending:  # a second Ctrl-C before a safe point: stop now
        _pending = False
        raise KeyboardInterrupt
    _pending = True


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Defers SIGINT to the next :func:`check` while the block runs (main thread only;
    elsewhere, or where the handler was changed from Python's default, it does nothing).
    A Ctrl-C still pending when the block ends is dropped (call :func:`check` last
    to raise it)."""
    global _pending
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield
        return
    _pending = False
    signal.signal(signal.SIGINT, _handle)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        _pending = False


@contextlib.contextmanager
def held() -> Iterator[None]:
    """Blocks SIGINT (Ctrl-C) until the block is done; a Ctrl-C pressed meanwhile is
    delivered at its end. A no-op outside the main thread or where signal masks do not
    exist (Windows)."""
    main = threading.current_thread() is threading.main_thread()
    if not main or not hasattr(signal, "pthread_sigmask"):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
