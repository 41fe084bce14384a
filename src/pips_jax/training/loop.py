"""The training loop: :func:`train` runs (or resumes) a run in an output folder.

A run folder holds:

* ``config.json``: the :class:`~pips_jax.training.config.TrainConfig` (the model's
  family in it);
* ``checkpoints/<step>/``: the latest ``keep_checkpoints`` checkpoints (orbax), one
  every ``checkpoint_every`` steps and one at exit, Ctrl-C included;
* ``metrics.jsonl``: the log (:mod:`pips_jax.training.log`), ``curves.png`` its plot;
* ``params.safetensors``: the final parameters in the converted format, for
  ``pips-jax track --checkpoint`` (:func:`~pips_jax.training.checkpoints.export_params`
  writes one for any checkpoint).

Which settings a run gets, new or resumed, is decided here: :func:`resolve_train_config`
(a config file, the stored config or the defaults, with flags on top) and :func:`train`
(only :data:`RESUMABLE_FIELDS` may change when resuming).

Batch ``k`` and the update it makes depend only on the config and the state after
step ``k``, which the checkpoints hold exactly, so a resumed run continues with the
same data and the same losses as an uninterrupted one.

**A job of many processes** (:func:`pips_jax.runtime.join` first; ``pips-jax train
--coordinator-address ... --num-processes P --process-id I``) trains one run over the
devices of every process: the global batch (``batch_size``, a multiple of all the
devices) is split over them, each process makes only its own clips of it, and the
losses are those of one process with as many devices. Every process is given the same
settings and run folder (one path on a file system all of them see):

* the run folder is checked by every process at once, after process 0 has created it;
  they must all see the same (otherwise every process refuses, naming the first one
  that differs), so all of them decide alike whether to start or resume;
* every process saves and restores the checkpoints (orbax's multi-host checkpointing;
  process 0 writes the replicated state), and ``resume`` works as in one process;
* only process 0 writes ``config.json``, ``metrics.jsonl``, ``curves.png`` and
  ``params.safetensors``, shows the progress bar and prints;
* every process runs the held-out evaluation, each on its share of the clips
  (:mod:`pips_jax.training.heldout`);
* Ctrl-C in any process stops every process after the same step, with a checkpoint
  (the processes agree on it after each step). An error in one process does not save
  at exit (the others are not at the same point): the job ends and the latest
  periodic checkpoint is the one to resume from.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import jax
import numpy as np

from pips_jax import runtime
from pips_jax.checkpoint.store import save_params
from pips_jax.errors import InputError, PipsError
from pips_jax.files import atomic_write_bytes, make_output_dir
from pips_jax.training.checkpoints import RunCheckpoints, check_model_config, load_init_params
from pips_jax.training.config import TrainConfig, check_family_flags
from pips_jax.training.data import BatchLoader, ClipSpec
from pips_jax.training.log import MetricsLog, plot_curves
from pips_jax.training.trainer import (
    METRICS,
    TrainState,
    abstract_state,
    init_state,
    make_mesh,
    make_train_step,
    process_rows,
    put_global,
    shard_batch,
    state_shardings,
)
from pips_jax.training.trainer import init_params as initial_params

#: Fields that may change when a run is resumed (they do not change the results).
RESUMABLE_FIELDS = (
    "checkpoint_every",
    "keep_checkpoints",
    "log_every",
    "eval_every",
    "eval_clips",
    "eval_size",
    "eval_frames",
)
CONFIG_FILE = "config.json"
LOG_FILE = "metrics.jsonl"
PLOT_FILE = "curves.png"
PARAMS_FILE = "params.safetensors"
PLOT_INTERVAL_S = 60.0

T = TypeVar("T")


def default_workers() -> int:
    """Data worker processes: one per CPU core but one, at most 8."""
    return max(0, min(8, (os.cpu_count() or 1) - 1))


def _resume_config(stored: TrainConfig, given: TrainConfig | None, where: Path) -> TrainConfig:
    if given is None:
        return stored
    diffs = [d for d in stored.differences(given) if d not in RESUMABLE_FIELDS]
    if any(d.startswith("model.") for d in diffs):
        check_model_config(stored.model, given.model, f"resume: the checkpoint in {where}")
    if diffs:
        old, new = stored.to_dict(), given.to_dict()
        changes = ", ".join(f"{d}: {old[d]} -> {new[d]}" for d in diffs)
        raise InputError(
            f"resume: the run in {where} was started with other settings ({changes}); "
            f"only {', '.join(RESUMABLE_FIELDS)} may change (start a new run with init={where} to train further)"
        )
    return given


def resolve_train_config(
    out_dir: str | os.PathLike,
    resume: bool,
    config_path: str | os.PathLike | None = None,
    overrides: Mapping[str, Any] | None = None,
    model_overrides: Mapping[str, Any] | None = None,
    family: str | None = None,
) -> TrainConfig | None:
    """The ``config`` to pass to :func:`train` for ``pips-jax train``'s settings.

    The base is the TrainConfig JSON file ``config_path``, else (with ``resume``) the
    config stored by the run in ``out_dir``, else the original recipe of ``family``
    (:meth:`TrainConfig.recipe`; default PIPs); ``overrides`` (TrainConfig fields) and
    ``model_overrides`` (fields of the family's model config) go on top. A resumed run
    without overrides gives None: :func:`train` keeps its stored settings. A run
    folder without a checkpoint starts from the recipe.

    Args:
        family: the model family asked for (``--model``); a base of another family
            is refused. None: the base's family (PIPs for the recipe).

    Raises:
        InputError: ``config_path`` cannot be read (the message calls it ``--config``)
            or holds no valid TrainConfig; the base is of another family than
            ``family``; an override applies to the other family only (naming its
            flag); the overrides make an invalid config.
    """
    fields = dict(overrides or {})
    model = dict(model_overrides or {})
    base, where, stored = None, None, False
    if config_path:
        try:
            text = Path(config_path).read_text()
        except OSError as e:
            raise InputError(
                f"--config {config_path}: cannot read it ({e.strerror or e})"
            ) from None
        base, where = TrainConfig.from_json(text), f"--config {config_path}"
    elif resume and Path(out_dir).is_dir():
        runs = RunCheckpoints(out_dir, read_only=True)
        try:
            if runs.latest_step() is not None:
                base, where, stored = runs.config(), f"the run in {out_dir}", True
        finally:
            runs.close()
    if base is None:
        base = TrainConfig.recipe(family or "pips")
    elif family is not None and family != base.family:
        raise InputError(
            f"--model {family}: {where} trains {base.model.label} ({base.family}); "
            f"leave --model out or give --model {base.family}"
        )
    check_family_flags(base.family, fields, model)
    if stored and not fields and not model:
        return None
    if model:
        fields["model"] = dataclasses.replace(base.model, **model)
    return dataclasses.replace(base, **fields)


class _DeferredInterrupt:
    """Turns the first Ctrl-C into a flag checked between steps (the second one stops
    at once), so the state is never caught half-updated. Main thread only.

    Args:
        announce: print that a checkpoint follows (process 0 of a job only).
    """

    def __init__(self, announce: bool = True) -> None:
        self.raised = False
        self.announce = announce
        self._previous: Any = None

    def _handle(self, signum: int, frame: Any) -> None:
        if self.raised:
            raise KeyboardInterrupt
        self.raised = True
        if self.announce:
            print(
                "\npips-jax train: interrupted; saving a checkpoint after this step (Ctrl-C again to stop now)",
                file=sys.stderr,
            )

    def __enter__(self) -> _DeferredInterrupt:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


def _mean_record(pending: list[dict[str, Any]], names: tuple[str, ...]) -> dict[str, float]:
    """Means over steps of the fetched metrics ``names`` (NaN-aware for the errors)."""
    values = jax.device_get(pending)
    out = {}
    for name in names:
        column = np.array([float(v[name]) for v in values])
        finite = column[np.isfinite(column)]
        out[name] = float(finite.mean()) if finite.size else float("nan")
    return out


# ------------------------------------------------------------ across processes
def _everywhere(job: runtime.Job, check: Callable[[], T]) -> T:
    """``check()`` on every process of the job, failing on all of them at once: an
    :class:`InputError` of any process is raised by every process (the first one's,
    naming its process unless it is process 0). Returns this process's value."""
    if job.process_count == 1:
        return check()
    value, error = None, None
    try:
        value = check()
    except InputError as e:
        error = str(e)
    found = runtime.first_message(error, own=0)
    if found is not None:
        raise InputError(found)
    return value  # type: ignore[return-value]


def _same_everywhere(job: runtime.Job, value: dict[str, Any], where: Path) -> None:
    """Refuses, on every process, a view of the run folder ``where`` (JSON) that
    differs from process 0's."""
    if job.process_count == 1:
        return
    found = runtime.first_difference(value)
    if found is None:
        return
    i, key, theirs, first = found
    seen = (
        "its stored config differs" if key == "config" else f"{key} {theirs!r}, process 0 {first!r}"
    )
    raise InputError(
        f"process {i} sees another run folder {where} than process 0 ({seen}); "
        "expected one folder that every process shares (the same path on a shared file system)"
    )


def _any_process(job: runtime.Job, flag: bool) -> bool:
    """Whether ``flag`` is set in any process of the job (a collective: every process
    calls it at the same point)."""
    if job.process_count == 1:
        return flag
    from jax.experimental import multihost_utils

    flags = multihost_utils.process_allgather(np.array([int(flag)], np.int32))
    return bool(np.asarray(flags).any())


def _look_at_run(out: Path) -> dict[str, Any]:
    """What the run folder holds (JSON): whether it is a folder, the latest checkpoint's
    step, its stored config (a dict) and the training time so far."""
    found = RunCheckpoints(out, read_only=True)
    try:
        latest = found.latest_step()
        meta = found.meta(latest) if latest is not None else {}
    finally:
        found.close()
    return {
        "folder": out.is_dir(),
        "latest": latest,
        "config": meta.get("config"),
        "elapsed": float(meta.get("elapsed", 0.0)),
    }


def _usable(state: TrainState) -> bool:
    return not any(
        isinstance(x, jax.Array) and x.is_deleted() for x in jax.tree_util.tree_leaves(state)
    )


def train(
    config: TrainConfig | None = None,
    out_dir: str | os.PathLike = "pips_train",
    resume: bool = False,
    init: str | os.PathLike | None = None,
    progress: bool = True,
    workers: int | None = None,
    until_step: int | None = None,
    on_step: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Trains PIPs or PIPs++ (``config.model``'s family) on synthetic clips; see the
    module docstring for what is written.

    Args:
        config: the run's settings (default: ``TrainConfig()``, the original PIPs
            recipe; :meth:`TrainConfig.recipe` gives PIPs++'s; with ``resume``,
            default: the stored ones).
        out_dir: the run folder.
        resume: continue the run in ``out_dir`` from its latest checkpoint (a folder
            without checkpoints starts a new run). Only
            :data:`RESUMABLE_FIELDS` of ``config`` may differ from the stored config.
        init: start a new run from these parameters (not the optimizer state): a
            converted ``.safetensors`` file, an original ``.pth`` or a run folder, of
            the run's family.
        progress: show a progress bar (tqdm, stderr).
        workers: data worker processes (of each process of a job; default
            :func:`default_workers`; 0 makes the clips in this thread). The results do
            not depend on it.
        until_step: stop (with a checkpoint) after this many steps instead of
            ``num_steps``; the schedule still spans ``num_steps``, and ``resume``
            continues from there.
        on_step: called with the number of completed steps after every step.

    Returns:
        A summary: ``step``, ``num_steps``, ``loss`` (last logged), ``last_record``,
        ``eval`` (last held-out record or None), ``checkpoint_step``, ``out_dir``,
        ``log``, ``plot``, ``params`` (exported file or None), ``elapsed`` and
        ``steps_per_s``. Every process of a job returns it (the same steps, losses
        and scores); ``plot`` and ``params`` are None but on process 0, which wrote
        them.

    Raises:
        InputError: before any compute, for a bad config, output folder, ``init`` of
            another model family or size, a run that already exists without ``resume``, or a
            resume with changed settings; in a job, on every process at once, also
            for a run folder the processes see differently or a batch that does not
            split over every process's devices. KeyboardInterrupt: after saving a
            checkpoint.
    """
    t_call = time.perf_counter()
    job = runtime.current_job()
    main = job.is_main

    def say(message: str) -> None:
        if main:
            print(f"pips-jax train: {message}", file=sys.stderr)

    # Process 0 creates the folder; then every process looks at it (nothing is written
    # until all of them have looked) and they must all see the same.
    out = _everywhere(job, lambda: make_output_dir(out_dir) if main else Path(out_dir))
    look = _everywhere(job, lambda: _look_at_run(out))
    _same_everywhere(job, look, out)
    latest = look["latest"]
    stored = TrainConfig.from_dict(look["config"]) if latest is not None else None
    elapsed_before = look["elapsed"]
    if latest is not None and not resume:
        raise InputError(
            f"output directory {out} already holds a training run (checkpoint at step {latest}); "
            "resume it (--resume) or choose another folder"
        )
    if latest is not None and init is not None:
        raise InputError(
            f"init applies to a new run; {out} holds a run to resume (checkpoint at step {latest})"
        )
    if stored is not None:
        cfg = _resume_config(stored, config, out)
    else:
        cfg = config if config is not None else TrainConfig()
        if resume:
            say(f"no checkpoint in {out}, starting a new run")
    if not isinstance(cfg, TrainConfig):
        raise InputError(f"config: expected a TrainConfig, found {type(cfg).__name__}")
    cfg.validate(job.device_count, job.process_count)
    stop = cfg.num_steps if until_step is None else int(until_step)
    if not 1 <= stop <= cfg.num_steps:
        raise InputError(f"until_step: expected 1..{cfg.num_steps}, found {until_step}")
    workers = default_workers() if workers is None else int(workers)
    if workers < 0:
        raise InputError(f"workers: expected >= 0 processes, found {workers}")
    init_params = None
    if init is not None:
        init_params, source = _everywhere(job, lambda: load_init_params(init, cfg.model))
        say(f"starting from {source}")

    # Everything is checked; from here on, compute.
    mesh = make_mesh(jax.devices())
    step_fn = make_train_step(cfg, mesh)
    checkpoints = RunCheckpoints(out, keep=cfg.keep_checkpoints)
    log: MetricsLog | None = None
    try:
        shardings = state_shardings(abstract_state(cfg), mesh)
        if main:
            atomic_write_bytes(out / CONFIG_FILE, json.dumps(cfg.to_dict(), indent=2).encode())
        if latest is not None:
            state, _ = checkpoints.restore(cfg, latest, shardings)
        else:
            if init_params is None:
                init_params = initial_params(cfg.model, cfg.seed)
            fresh = jax.jit(functools.partial(init_state, cfg))(init_params)
            state = put_global(jax.device_get(fresh), shardings)
        start = int(jax.device_get(state.step))
        if main:
            log = MetricsLog(out / LOG_FILE, keep_until=start if latest is not None else None)
        heldout = None
        if cfg.eval_every:
            from pips_jax.training.heldout import HeldOutSet

            heldout = HeldOutSet(cfg)
    except BaseException:
        checkpoints.close()
        raise
    key = jax.random.key(cfg.seed)
    rows = process_rows(mesh, cfg.batch_size)
    loader = BatchLoader(
        ClipSpec.from_config(cfg), cfg.batch_size, cfg.seed, start, max(stop, start), workers,
        indices=rows,
    )  # fmt: skip

    from tqdm.auto import tqdm

    bar = tqdm(
        total=cfg.num_steps, initial=start, disable=not (progress and main), unit="step",
        desc="train", dynamic_ncols=True,
    )  # fmt: skip
    summary: dict[str, Any] = {
        "out_dir": str(out), "num_steps": cfg.num_steps, "loss": None, "last_record": None,
        "eval": None, "params": None, "plot": None, "log": str(out / LOG_FILE),
    }  # fmt: skip
    pending: list[dict[str, Any]] = []
    t_loop = time.perf_counter()
    mark = (start, t_loop)
    saved = latest
    done = start
    agreed_stop = False

    def elapsed() -> float:
        return elapsed_before + time.perf_counter() - t_call

    def write_record() -> None:
        nonlocal pending, mark
        now = time.perf_counter()
        record = {"type": "train", "step": done, **_mean_record(pending, METRICS[cfg.family])}
        record["steps_per_s"] = (done - mark[0]) / max(now - mark[1], 1e-9)
        record["elapsed"] = elapsed()
        if log is not None:
            log.write(record)
        summary["loss"], summary["last_record"] = record["loss"], record
        bar.set_postfix(loss=f"{record['loss']:.3f}", steps_s=f"{record['steps_per_s']:.2f}")
        pending, mark = [], (done, now)

    def save() -> None:
        nonlocal saved
        checkpoints.save(
            state,
            {
                "config": cfg.to_dict(),
                "data": {"seed": cfg.seed, "next_batch": done},
                "elapsed": elapsed(),
            },
        )
        saved = done

    last_plot = [-math.inf]

    def plot(force: bool = False) -> None:
        # Drawing takes about a second: at most once a minute, and at exit.
        if log is None or (not force and time.perf_counter() - last_plot[0] < PLOT_INTERVAL_S):
            return
        last_plot[0] = time.perf_counter()
        try:
            summary["plot"] = str(plot_curves(log.records(), out / PLOT_FILE) or "") or None
        except Exception as e:  # a plot must never stop training
            say(f"plotting failed: {e}")

    try:
        with _DeferredInterrupt(announce=main) as interrupt:
            for step, host_batch in loader:
                if job.process_count == 1 and interrupt.raised:
                    raise KeyboardInterrupt
                batch = shard_batch(host_batch, mesh, cfg.batch_size)
                state, metrics = step_fn(state, batch, jax.random.fold_in(key, step))
                done = step + 1
                pending.append(metrics)
                bar.update(1)
                if done % cfg.log_every == 0 or done == stop:
                    write_record()
                if done % cfg.checkpoint_every == 0 or done == stop:
                    save()
                    plot()
                if heldout is not None and (done % cfg.eval_every == 0 or done == cfg.num_steps):
                    try:
                        scores = heldout.evaluate(state.params)
                    except PipsError as e:
                        scores = {"error": str(e)}
                    if log is not None:
                        log.write({"type": "eval", "step": done, **scores})
                    summary["eval"] = {"step": done, **scores}
                if on_step is not None:
                    on_step(done)
                # In a job, a Ctrl-C of any process stops all of them after this step.
                if _any_process(job, interrupt.raised):
                    agreed_stop = True
                    raise KeyboardInterrupt
    except BaseException:
        # Ctrl-C, or an error outside the step (data, evaluation, a hook): keep what the
        # completed steps learned. (A state an interrupted step consumed is not saved.)
        # In a job only a stop every process agreed on saves: after an error of one
        # process the others are not at the same point.
        if _usable(state) and (job.process_count == 1 or agreed_stop):
            try:
                if pending:
                    write_record()
                if saved != done:
                    save()
                    say(f"saved a checkpoint at step {done} in {out}")
            except Exception as e:
                say(f"could not save a checkpoint at exit: {e}")
        raise
    finally:
        loader.close()
        bar.close()
        checkpoints.wait()
        checkpoints.close()
        plot(force=True)
    if done == cfg.num_steps and main:
        summary["params"] = str(
            save_params(
                out / PARAMS_FILE,
                jax.device_get(state.params),
                cfg.model,
                metadata={"source": f"pips-jax train run {out.absolute()}, step {done}"},
            )
        )
    summary.update(
        step=done,
        checkpoint_step=saved,
        elapsed=elapsed(),
        steps_per_s=(done - start) / max(time.perf_counter() - t_loop, 1e-9),
    )
    return summary
