"""Checkpoints of training runs (orbax), initial parameters, and export.

A run folder holds ``checkpoints/<step>/`` written by ``orbax.checkpoint``: the item
``state`` (step, parameters, optimizer state) and the item ``meta`` (JSON: the
:class:`~pips_jax.training.config.TrainConfig`, the data position and the training
time so far). Orbax writes each checkpoint into ``<step>.orbax-checkpoint-tmp`` and
renames it when complete, so a crash while saving leaves the previous checkpoints as
they were; the unfinished folder is never read, and is removed when the run is next
opened for writing (a resume).

**A job of many processes** (:mod:`pips_jax.runtime`) shares one run folder (the same
path on a file system every process sees). A :class:`RunCheckpoints` opened for
writing is the job's: every process opens it, saves and restores at the same points
(orbax synchronises them); the state is replicated, so process 0 writes the arrays
and each process restores them onto its own devices. One opened ``read_only`` is this
process's alone: it waits on no other process, so any process may read a run by
itself.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from pips_jax.checkpoint.store import flatten, load_params, save_params
from pips_jax.config import AnyConfig
from pips_jax.errors import CheckpointError, InputError
from pips_jax.model.families import model_for
from pips_jax.model.pips import Params
from pips_jax.training.config import TrainConfig
from pips_jax.training.trainer import TrainState, abstract_state

CHECKPOINT_DIR = "checkpoints"
META_VERSION = 1


class RunCheckpoints:
    """The checkpoints of one run folder.

    Args:
        run_dir: the run folder (checkpoints go to ``run_dir/checkpoints``).
        keep: how many of the latest checkpoints to keep (None: all).
        read_only: only read (nothing is created or deleted).
    """

    def __init__(
        self, run_dir: str | os.PathLike, keep: int | None = None, read_only: bool = False
    ):
        self.directory = (Path(run_dir) / CHECKPOINT_DIR).absolute()
        self.read_only = read_only
        self._manager: ocp.CheckpointManager | None = None
        if read_only and not self.directory.is_dir():
            return
        # Reading uses a plain manager that neither creates nor cleans up (orbax's
        # read_only mode logs warnings on every open), of this process alone (no
        # barrier with the other processes of a job); writing, one of every process.
        me = jax.process_index()
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep,
            create=not read_only,
            cleanup_tmp_directories=not read_only,
            multiprocessing_options=ocp.options.MultiprocessingOptions(
                primary_host=me, active_processes={me}
            )
            if read_only
            else ocp.options.MultiprocessingOptions(),
        )
        self._manager = ocp.CheckpointManager(
            self.directory, options=options, item_names=("state", "meta")
        )

    def latest_step(self) -> int | None:
        """The step of the newest complete checkpoint, or None."""
        return None if self._manager is None else self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return [] if self._manager is None else list(self._manager.all_steps())

    def save(self, state: TrainState, meta: dict[str, Any]) -> int:
        """Starts saving ``state`` (in the background) under its step; returns the step.

        In a job, every process calls it with the same (replicated) state; process 0
        writes it.
        """
        if self._manager is None or self.read_only:
            raise CheckpointError(f"{self.directory}: opened read-only, cannot save")
        # A host copy: the training step donates the device buffers right after this
        # returns, while orbax may still be writing in the background. (A replicated
        # array of a job is copied from this process's own devices.)
        host = jax.device_get(state._asdict())
        step = int(host["step"])
        self._manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(host),
                meta=ocp.args.JsonSave({**meta, "step": step, "version": META_VERSION}),
            ),
            force=True,
        )
        return step

    def meta(self, step: int | None = None) -> dict[str, Any]:
        """The JSON metadata of checkpoint ``step`` (default: the latest)."""
        step = self.resolve_step(step)
        assert self._manager is not None
        restored = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        return dict(restored["meta"])

    def config(self, step: int | None = None) -> TrainConfig:
        """The :class:`TrainConfig` stored with checkpoint ``step`` (default: latest)."""
        return TrainConfig.from_dict(self.meta(step)["config"])

    def restore(
        self,
        cfg: TrainConfig,
        step: int | None = None,
        sharding: jax.sharding.Sharding | TrainState | None = None,
    ) -> tuple[TrainState, dict[str, Any]]:
        """Restores checkpoint ``step`` (default: latest) of a run of ``cfg``.

        Args:
            sharding: where the arrays go: one sharding for every leaf, or a
                :class:`TrainState` of shardings
                (:func:`~pips_jax.training.trainer.state_shardings`); default this
                process's first device. A sharding over several processes' devices
                needs every process to restore.

        Returns:
            ``(state, meta)``.
        """
        step = self.resolve_step(step)
        assert self._manager is not None
        shapes = abstract_state(cfg)
        if sharding is None:
            sharding = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        if isinstance(sharding, jax.sharding.Sharding):
            sharding = jax.tree_util.tree_map(lambda _: sharding, shapes)
        target = jax.tree_util.tree_map(
            lambda s, where: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=where),
            shapes._asdict(),
            sharding._asdict(),
        )
        restored = self._manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()
            ),
        )
        return TrainState(**restored["state"]), dict(restored["meta"])

    def resolve_step(self, step: int | None) -> int:
        """``step`` if there is such a checkpoint, the latest one for None."""
        latest = self.latest_step()
        if latest is None:
            raise InputError(f"{self.directory}: expected a training checkpoint, found none")
        if step is None:
            return latest
        if step not in self.all_steps():
            raise InputError(
                f"{self.directory}: expected a checkpoint of step {step}, found steps {self.all_steps()}"
            )
        return step

    def wait(self) -> None:
        """Blocks until background saves are complete."""
        if self._manager is not None:
            self._manager.wait_until_finished()

    def close(self) -> None:
        if self._manager is not None:
            self._manager.close()
            self._manager = None


# ---------------------------------------------------------- parameter checks
def _shapes(tree: Any) -> dict[str, tuple[int, ...]]:
    return {k: tuple(np.shape(v)) for k, v in flatten(tree).items()}


def shape_mismatches(expected: Params, found: Params) -> list[str]:
    """Human-readable differences between two parameter trees' shapes (empty if none)."""
    want, got = _shapes(expected), _shapes(found)
    out = [
        f"{k}: expected {want[k]}, found {got[k]}" for k in want if k in got and want[k] != got[k]
    ]
    out += [f"{k}: missing" for k in want if k not in got]
    out += [f"{k}: unexpected" for k in got if k not in want]
    return out


def _mismatch_error(what: str, mismatches: list[str]) -> InputError:
    shown = "; ".join(mismatches[:6])
    more = f" and {len(mismatches) - 6} more" if len(mismatches) > 6 else ""
    return InputError(f"{what} does not fit the model (another model size?): {shown}{more}")


def _family_error(what: str, stored: AnyConfig, wanted: AnyConfig) -> InputError:
    return InputError(
        f"{what} holds a {stored.label} model ({stored.family}); this run trains "
        f"{wanted.label} ({wanted.family})"
    )


def check_model_config(stored: AnyConfig, wanted: AnyConfig, what: str) -> None:
    """Raises :class:`InputError` naming the other family, or the parameter shapes that
    differ between the two configs' models (computed with ``jax.eval_shape``, no
    compute)."""
    if stored == wanted:
        return
    if stored.family != wanted.family:
        raise _family_error(what, stored, wanted)
    mismatches = shape_mismatches(
        model_for(wanted).param_shapes(), model_for(stored).param_shapes()
    )
    if not mismatches:  # same shapes, other hyper-parameters (e.g. corr_radius is shape-free)
        fields = [k for k, v in wanted.to_dict().items() if stored.to_dict()[k] != v]
        mismatches = [
            f"{k}: expected {wanted.to_dict()[k]}, found {stored.to_dict()[k]}" for k in fields
        ]
    raise _mismatch_error(what, mismatches)


def load_run_params(
    run_dir: str | os.PathLike,
    step: int | None = None,
    check: tuple[AnyConfig, str] | None = None,
) -> tuple[Params, AnyConfig, int]:
    """The parameters of one checkpoint of a training run (the optimizer state is dropped).

    Args:
        run_dir: a training run folder (``run_dir/checkpoints/<step>/``).
        step: which checkpoint (default: the latest).
        check: ``(model, what)``: refuse, naming ``what``, a run of another model family
            or size before anything is restored.

    Returns:
        ``(params, model_config, step)`` with the parameters as NumPy arrays.

    Raises:
        InputError: no checkpoint (of that step) in ``run_dir``, or another model size.
    """
    runs = RunCheckpoints(run_dir, read_only=True)
    try:
        step = runs.resolve_step(step)
        cfg = runs.config(step)
        if check is not None:
            check_model_config(cfg.model, check[0], f"{check[1]} (step {step})")
        state, _ = runs.restore(cfg, step)
    finally:
        runs.close()
    return jax.device_get(state.params), cfg.model, step


def load_init_params(path: str | os.PathLike, model: AnyConfig) -> tuple[Params, str]:
    """Parameters to start (fine-tune) from, checked against ``model`` before any compute.

    Args:
        path: a converted ``.safetensors`` file (:mod:`pips_jax.checkpoint.store`), an
            original ``.pth`` checkpoint (of PIPs or PIPs++), or a training run folder
            (its latest checkpoint's parameters; the optimizer state is not used).
        model: the configuration being trained (either family).

    Returns:
        ``(params, description)``: NumPy parameter tree and where it came from.

    Raises:
        InputError: no such file, or parameters of the other family or of another
            model size (naming the parameter shapes that differ).
    """
    path = Path(path)
    if path.is_dir():
        params, _, step = load_run_params(path, check=(model, f"init {path}"))
        return params, f"{path} (training run, step {step})"
    if not path.is_file():
        raise InputError(
            f"init {path} does not exist; expected a .safetensors or .pth file or a training run folder"
        )
    if path.suffix == ".pth":
        from pips_jax.checkpoint.convert import convert_state_dict
        from pips_jax.checkpoint.pth import load_state_dict

        try:
            params = convert_state_dict(load_state_dict(path), model)
        except CheckpointError as e:
            raise InputError(f"init {path}: {e}") from None
        return params, f"{path} (original checkpoint)"
    params, stored, _ = load_params(path)
    if stored.family != model.family:
        raise _family_error(f"init {path}", stored, model)
    mismatches = shape_mismatches(model_for(model).param_shapes(), params)
    if mismatches:
        raise _mismatch_error(f"init {path}", mismatches)
    return params, str(path)


def export_params(
    run_dir: str | os.PathLike, out_path: str | os.PathLike, step: int | None = None
) -> Path:
    """Writes a run's parameters as a converted ``.safetensors`` file.

    The file is the format of :mod:`pips_jax.checkpoint.store` (the model config in its
    metadata), so ``pips-jax track --checkpoint OUT`` and
    :func:`pips_jax.checkpoint.store.load_params` read it.

    Args:
        run_dir: a training run folder.
        out_path: the ``.safetensors`` file to write (atomically).
        step: which checkpoint (default: the latest).

    Returns:
        The written path.
    """
    params, model, step = load_run_params(run_dir, step)
    return save_params(
        out_path,
        params,
        model,
        metadata={"source": f"pips-jax train run {Path(run_dir).absolute()}, step {step}"},
    )
