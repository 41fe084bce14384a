"""The JAX runtime a command runs on: one process or a job of many (JAX's own
multi-controller runtime), its devices, and the persistent compilation cache.

**One process** is the default: a command uses every local device of its process.

**A job of many processes** is joined with :func:`join`, given
``coordinator_address`` (``HOST:PORT``, served by process 0), ``num_processes`` and
``process_id``, or, with none of them, when the environment describes a job that
:func:`jax.distributed.initialize` detects by itself (``JAX_COORDINATOR_ADDRESS``,
a SLURM step or Open MPI job of more than one task). On CPUs the processes talk
through gloo, so a job of several processes runs on one machine too.

**Failure, not hangs.** Joining gives up after ``timeout_s`` seconds
(:data:`DEFAULT_JOIN_TIMEOUT_S`) with one line naming the process and the address
(JAX's own deadline, later, would abort with a stack trace). Processes started with
different settings are refused by every process at once
(:func:`check_same_settings`). A process that dies while the others wait on it is
noticed by JAX's coordination service within ``heartbeat_s`` seconds
(:data:`HEARTBEAT_TIMEOUT_S`),
which then ends the others with its message ("... another task died ..."); outputs
are written under temporary names and renamed only when complete, so nothing is
left half-written.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import socket
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from pips_jax.config import is_int
from pips_jax.errors import InputError

#: Seconds a process waits for every process of its job to join.
DEFAULT_JOIN_TIMEOUT_S = 60.0
#: Seconds without a heartbeat after which JAX's coordination service ends a job
#: whose process died (the default of ``heartbeat_s``).
HEARTBEAT_TIMEOUT_S = 30
#: Extra seconds JAX's own join deadline gets over ours, so ours comes first.
_JAX_DEADLINE_MARGIN_S = 30

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class JobOptions:
    """How a command joins a job (all None: one process, unless the environment
    describes a job).

    Attributes:
        coordinator_address: ``HOST:PORT`` of process 0's coordinator.
        num_processes: processes in the job (>= 1).
        process_id: this process, ``0 .. num_processes - 1``.
        timeout_s: seconds to wait for every process to join.
        heartbeat_s: seconds without a heartbeat from a process after which JAX's
            coordination service ends the job.
    """

    coordinator_address: str | None = None
    num_processes: int | None = None
    process_id: int | None = None
    timeout_s: float = DEFAULT_JOIN_TIMEOUT_S
    heartbeat_s: int = HEARTBEAT_TIMEOUT_S

    def __post_init__(self) -> None:
        address = self.coordinator_address
        if address is not None and not re.fullmatch(r"\[?[\w.:-]+\]?:\d{1,5}", address):
            raise InputError(f"coordinator address: expected HOST:PORT, found {address!r}")
        n, i = self.num_processes, self.process_id
        if n is not None and (not is_int(n) or n < 1):
            raise InputError(f"number of processes: expected an integer >= 1, found {n!r}")
        if i is not None and (not is_int(i) or i < 0):
            raise InputError(f"process id: expected an integer >= 0, found {i!r}")
        if n is not None and i is not None and i >= n:
            raise InputError(
                f"process id {i} is out of range: expected 0 <= id < {n} (the number of processes)"
            )
        if not self.timeout_s > 0:
            raise InputError(f"join timeout: expected a positive number, found {self.timeout_s!r}")
        if not is_int(self.heartbeat_s) or self.heartbeat_s < 1:
            raise InputError(
                f"heartbeat timeout: expected an integer >= 1 (seconds), found {self.heartbeat_s!r}"
            )

    @property
    def given(self) -> bool:
        """Whether any of the three was given."""
        return any(
            v is not None for v in (self.coordinator_address, self.num_processes, self.process_id)
        )


def job_in_environment(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the environment describes a job of several processes that JAX detects:
    ``JAX_COORDINATOR_ADDRESS``, a SLURM step or an Open MPI job of more than one task."""
    if environ.get("JAX_COORDINATOR_ADDRESS"):
        return True
    for name in ("SLURM_STEP_NUM_TASKS", "OMPI_COMM_WORLD_SIZE"):
        value = environ.get(name, "")
        if value.isdigit() and int(value) > 1:
            return True
    return False


@dataclasses.dataclass(frozen=True)
class Job:
    """The processes and devices a command runs on.

    Attributes:
        process_index: this process, ``0 .. process_count - 1``.
        process_count: processes in the job (1 without one).
        local_device_count: devices of this process.
        device_count: devices of all processes.
    """

    process_index: int
    process_count: int
    local_device_count: int
    device_count: int

    @property
    def is_main(self) -> bool:
        """Whether this is process 0 (the one that writes what the job writes once)."""
        return self.process_index == 0

    def describe(self) -> str:
        """``"on 4 devices"``, or ``"on 2 processes, 4 devices"`` (devices of all)."""
        devices = f"{self.device_count} device{'s' if self.device_count != 1 else ''}"
        if self.process_count == 1:
            return f"on {devices}"
        return f"on {self.process_count} processes, {devices}"


def current_job() -> Job:
    """The job this process is part of (one process unless :func:`join` joined one)."""
    import jax

    return Job(
        jax.process_index(), jax.process_count(), jax.local_device_count(), jax.device_count()
    )


def join(options: JobOptions, prefix: str = "pips-jax") -> Job:
    """Joins the job ``options`` describe (see the module docstring), or none.

    Must come before anything starts JAX's backend. Within ``options.timeout_s``
    either every process has joined, or this process writes
    ``"<prefix>: error: process I of P could not join ..."`` to stderr and exits with
    code 2 (a watchdog: JAX's own deadline would abort the process).

    Raises:
        InputError: options JAX refuses (for example a job the environment does not
            describe fully).
    """
    import jax

    if not (options.given or job_in_environment()):
        return current_job()
    if jax.distributed.is_initialized():
        return current_job()
    # the CPU backend's collectives across processes (ignored by other backends)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    who = "this process" if options.process_id is None else f"process {options.process_id}"
    if options.num_processes is not None:
        who += f" of {options.num_processes}"
    where = options.coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS", "")
    message = (
        f"{prefix}: error: {who} could not join the job at {where or 'the detected coordinator'} "
        f"within {options.timeout_s:g} s; expected every process of the job started with the "
        "same --coordinator-address and --num-processes, and process 0 serving that address"
    )
    watchdog = threading.Timer(options.timeout_s, _give_up, args=(message,))
    watchdog.daemon = True
    watchdog.start()
    try:
        jax.distributed.initialize(
            coordinator_address=options.coordinator_address,
            num_processes=options.num_processes,
            process_id=options.process_id,
            initialization_timeout=int(options.timeout_s) + _JAX_DEADLINE_MARGIN_S,
            heartbeat_timeout_seconds=options.heartbeat_s,
        )
    except (ValueError, RuntimeError) as e:
        raise InputError(f"joining the job: {' '.join(str(e).split())}") from None
    finally:
        watchdog.cancel()
    return current_job()


def _give_up(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()
    os._exit(2)


# ----------------------------------------------------------- across processes
def allgather_bytes(data: bytes) -> list[bytes]:
    """``data`` of every process, in process order (every process gets the list)."""
    import jax
    import numpy as np
    from jax.experimental import multihost_utils

    if jax.process_count() == 1:
        return [data]
    lengths = multihost_utils.process_allgather(np.array([len(data)], np.int64))
    lengths = np.asarray(lengths).reshape(-1)
    padded = np.zeros(int(lengths.max()) or 1, np.uint8)
    padded[: len(data)] = np.frombuffer(data, np.uint8)
    gathered = np.asarray(multihost_utils.process_allgather(padded)).reshape(len(lengths), -1)
    return [gathered[i, : lengths[i]].tobytes() for i in range(len(lengths))]


def allgather_json(value: Any) -> list[Any]:
    """The JSON-serialisable ``value`` of every process, in process order (dict keys
    keep their order)."""
    texts = allgather_bytes(json.dumps(value).encode())
    return [json.loads(t) for t in texts]


def first_difference(value: Mapping[str, Any]) -> tuple[int, str, Any, Any] | None:
    """Across the job (every process calls it): the first process whose ``value`` (a
    JSON object) differs from process 0's, as ``(process, key, its value, process 0's
    value)`` for the first differing key in sorted order; None when all agree."""
    every = allgather_json(value)
    first = every[0]
    for i, other in enumerate(every[1:], start=1):
        key = next(
            (k for k in sorted(set(first) | set(other)) if first.get(k) != other.get(k)), None
        )
        if key is not None:
            return i, key, other.get(key), first.get(key)
    return None


def first_message(message: str | None, own: int) -> str | None:
    """Across the job (every process calls it): the first process's ``message`` that
    is not None, prefixed ``"process I: "`` unless it comes from process ``own``;
    None when no process has one (for errors every process must raise at once)."""
    for i, found in enumerate(allgather_json(message)):
        if found is not None:
            return found if i == own else f"process {i}: {found}"
    return None


def check_same_settings(settings: Mapping[str, Any], what: str = "settings") -> None:
    """Refuses, in every process at once, a job whose processes were given different
    ``settings`` (JSON-serialisable; for a command, its arguments but the process id).

    Raises:
        InputError: naming the first process and setting that differ from process 0's.
    """
    found = first_difference(json.loads(json.dumps(settings, sort_keys=True, default=str)))
    if found is not None:
        i, key, theirs, first = found
        raise InputError(
            f"the processes were started with different {what}: process {i} has "
            f"{key}={theirs!r}, process 0 {key}={first!r}; expected the "
            "same command line for every process but --process-id"
        )


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that is free now (for a coordinator on one machine)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def share(items: Sequence[T], index: int, count: int) -> list[T]:
    """Worker ``index``'s share of ``items`` among ``count`` workers: every
    ``count``-th item from position ``index`` (a stable split by position)."""
    if not (is_int(count) and count >= 1 and is_int(index) and 0 <= index < count):
        raise InputError(f"share {index}/{count}: expected 0 <= I < N")
    return list(items[index::count])


# ------------------------------------------------------------------ devices
def local_mesh(axis: str):
    """A 1-D :class:`jax.sharding.Mesh` named ``axis`` over this process's devices."""
    import jax
    import numpy as np

    return jax.sharding.Mesh(np.asarray(jax.local_devices()), (axis,))


def global_mesh(axis: str):
    """A 1-D :class:`jax.sharding.Mesh` named ``axis`` over every process's devices."""
    import jax
    import numpy as np

    return jax.sharding.Mesh(np.asarray(jax.devices()), (axis,))


# ------------------------------------------------------------ compile cache
def enable_compilation_cache(folder: str | os.PathLike) -> Path:
    """Switches on JAX's persistent compilation cache in ``folder``, so that a second
    command with the same shapes loads its programs instead of compiling them."""
    import jax

    folder = Path(folder).expanduser()
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)  # every program
    return folder
