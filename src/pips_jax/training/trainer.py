"""Train state, optimizer and the data-parallel train step.

The step is one jitted pure function ``(state, batch, rng) -> (new_state, metrics)``.
Data parallelism uses ``jax.sharding``: a 1-D mesh ``('data',)`` over the devices of
every process of the job (:mod:`pips_jax.runtime`), the global batch split along its
first axis, parameters and optimizer state placed by :func:`state_shardings`
(replicated); XLA adds the gradient all-reduce. Each process holds only its own rows
of the batch (:func:`process_rows`) and :func:`shard_batch` assembles the global array
from them. The result does not depend on the number of devices or processes (up to
float summation order).

Batches are dicts (see :mod:`pips_jax.training.data`):

* ``frames``: ``(B, S, H, W, 3)`` uint8 RGB;
* ``trajs``: ``(B, S, N, 2)`` float32 ground truth ``(x, y)`` in input pixels, origin
  at the centre of the top-left pixel (``trajs[:, 0]`` are the query points);
* ``vis``: ``(B, S, N)`` float32, 1 where the point is visible;
* ``valids``: ``(B, S, N)`` float32, 1 where the ground truth is supervised.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import Array
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from pips_jax.config import ModelConfig
from pips_jax.errors import InputError
from pips_jax.model.pips import Params, Pips
from pips_jax.training.config import TrainConfig
from pips_jax.training.losses import (
    balanced_ce_loss,
    score_map_loss_from_terms,
    score_map_terms,
    sequence_loss,
)

Batch = dict[str, Array]

#: OneCycleLR's defaults: start at ``lr / 25``, end at ``lr / 25 / 1e4``.
DIV_FACTOR = 25.0
FINAL_DIV_FACTOR = 1e4
#: Names of the scalars :func:`train_step` returns.
METRIC_NAMES = ("loss", "seq", "vis", "score", "lr", "grad_norm", "ate_vis", "ate_occ")


class TrainState(NamedTuple):
    """Everything that changes during training.

    Attributes:
        step: int32 scalar, optimizer steps done (the next batch's index).
        params: the model parameters.
        opt_state: the optax optimizer state.
    """

    step: Array
    params: Params
    opt_state: Any


def one_cycle_schedule(cfg: TrainConfig) -> optax.Schedule:
    """PyTorch ``OneCycleLR(anneal_strategy='linear')`` as an optax schedule.

    Linear from ``lr / 25`` at step 0 to ``lr`` at ``cfg.warmup_steps``, then linear to
    ``lr / 25 / 1e4`` at step ``num_steps - 1``.
    """
    start = cfg.lr / DIV_FACTOR
    end = start / FINAL_DIV_FACTOR
    warm = cfg.warmup_steps
    return optax.join_schedules(
        [
            optax.linear_schedule(start, cfg.lr, warm),
            optax.linear_schedule(cfg.lr, end, max(cfg.num_steps - 1 - warm, 1)),
        ],
        [warm],
    )


def make_optimizer(cfg: TrainConfig) -> optax.GradientTransformation:
    """Global-norm clipping, then AdamW (PyTorch's defaults and decoupled weight
    decay) under :func:`one_cycle_schedule`."""
    return optax.chain(
        optax.clip_by_global_norm(cfg.grad_clip),
        optax.adamw(
            one_cycle_schedule(cfg), b1=0.9, b2=0.999, eps=cfg.eps, weight_decay=cfg.weight_decay
        ),
    )


@functools.partial(jax.jit, static_argnums=0)
def _init_params(model: ModelConfig, key: Array) -> Params:
    return Pips(model).init(key)


def init_params(model: ModelConfig, seed: int) -> Params:
    """Randomly initialised parameters (Flax defaults) of ``Pips(model)``, compiled once
    per model config."""
    return _init_params(model, jax.random.key(seed))


def init_state(cfg: TrainConfig, params: Params | None = None) -> TrainState:
    """A fresh state: ``params`` (default: :func:`init_params` from ``cfg.seed``), step 0."""
    if params is None:
        params = init_params(cfg.model, cfg.seed)
    params = jax.tree_util.tree_map(jnp.asarray, params)
    return TrainState(jnp.zeros((), jnp.int32), params, make_optimizer(cfg).init(params))


def abstract_state(cfg: TrainConfig) -> TrainState:
    """The state's shapes and dtypes (``jax.ShapeDtypeStruct`` leaves), computing nothing."""
    return jax.eval_shape(lambda: init_state(cfg))


def global_norm(tree: Any) -> Array:
    """``sqrt(sum of squares)`` over every leaf (the norm gradients are clipped by)."""
    return jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jax.tree_util.tree_leaves(tree)))


def batch_track_errors(
    coords: Array, trajs: Array, vis: Array, valids: Array
) -> tuple[Array, Array]:
    """Mean L2 error on valid visible and on valid occluded points.

    Args:
        coords: ``(B, S, N, 2)`` predicted ``(x, y)`` input pixels.
        trajs: ``(B, S, N, 2)`` ground truth ``(x, y)`` input pixels.
        vis, valids: ``(B, S, N)``; visible means ``vis > 0.5``.

    Returns:
        ``(ate_vis, ate_occ)`` in pixels, NaN where there is no such point.
    """
    err = jnp.linalg.norm(coords - trajs, axis=-1)

    def mean(mask: Array) -> Array:
        count = jnp.sum(mask)
        return jnp.where(count > 0, jnp.sum(err * mask) / jnp.maximum(count, 1.0), jnp.nan)

    return mean(valids * (vis > 0.5)), mean(valids * (vis < 0.5))


def compute_losses(
    model: Pips, cfg: TrainConfig, params: Params, batch: Batch
) -> tuple[Array, dict[str, Array]]:
    """The PIPs training loss on one batch.

    Returns:
        ``(total, parts)``: ``total = seq + vis_weight * vis + score`` and a dict with
        ``seq``, ``vis``, ``score`` and the last iteration's ``coords`` ``(B, S, N, 2)``.
    """
    trajs, vis, valids = batch["trajs"], batch["vis"], batch["valids"]
    score_fn = functools.partial(
        score_map_terms, trajs_gt=trajs, vis=vis, valids=valids, stride=cfg.model.stride
    )
    out = model.forward_train(
        params, batch["frames"], trajs[:, 0], cfg.iters, score_fn=score_fn, remat=cfg.remat
    )
    seq = sequence_loss(out.coords, trajs, valids, cfg.gamma)
    vis_loss = balanced_ce_loss(out.vis_logits, vis, valids)
    score = score_map_loss_from_terms(out.scores)
    total = seq + cfg.vis_weight * vis_loss + score
    return total, {"seq": seq, "vis": vis_loss, "score": score, "coords": out.coords[-1]}


def train_step(
    model: Pips,
    optimizer: optax.GradientTransformation,
    schedule: optax.Schedule,
    cfg: TrainConfig,
    state: TrainState,
    batch: Batch,
    rng: Array,
) -> tuple[TrainState, dict[str, Array]]:
    """One optimizer step (pure; jit it with :func:`make_train_step`).

    Args:
        state: the current :class:`TrainState`.
        batch: see the module docstring.
        rng: a PRNG key for stochastic layers; PIPs has none, so the step does not
            depend on it.

    Returns:
        ``(new_state, metrics)`` with the scalars :data:`METRIC_NAMES`: losses before
        the update, the learning rate used, the gradient norm before clipping, and the
        last iteration's errors on visible / occluded points (``ate_vis``,
        ``ate_occ``, pixels, NaN without such points).
    """
    del rng
    (total, parts), grads = jax.value_and_grad(
        lambda p: compute_losses(model, cfg, p, batch), has_aux=True
    )(state.params)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    ate_vis, ate_occ = batch_track_errors(
        parts["coords"], batch["trajs"], batch["vis"], batch["valids"]
    )
    metrics = {
        "loss": total,
        "seq": parts["seq"],
        "vis": parts["vis"],
        "score": parts["score"],
        "lr": jnp.asarray(schedule(state.step), jnp.float32),
        "grad_norm": global_norm(grads),
        "ate_vis": ate_vis,
        "ate_occ": ate_occ,
    }
    return TrainState(state.step + 1, params, opt_state), metrics


# ---------------------------------------------------------------- parallelism
def make_mesh(devices: list | None = None) -> Mesh:
    """A 1-D ``('data',)`` mesh over ``devices`` (default: ``jax.devices()``, every
    device of every process of the job)."""
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), ("data",))


def replicated(mesh: Mesh) -> NamedSharding:
    """Every device holds the whole array."""
    return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Arrays split along their first (batch) axis over the mesh."""
    return NamedSharding(mesh, P("data"))


def state_shardings(state: Any, mesh: Mesh) -> Any:
    """Where each leaf of the train state lives: the one place that decides it.

    Args:
        state: a :class:`TrainState` (or any tree of its shape: arrays or
            ``jax.ShapeDtypeStruct`` leaves, e.g. :func:`abstract_state`).

    Returns:
        The same tree with a :class:`~jax.sharding.NamedSharding` per leaf. Today every
        leaf is replicated (pure data parallelism); sharding the parameters or the
        optimizer state over ``'data'`` later changes this function only (and the
        checkpoint save, which copies replicated arrays to the host).
    """
    rep = replicated(mesh)
    return jax.tree_util.tree_map(lambda _: rep, state)


def put_global(tree: Any, shardings: Any) -> Any:
    """Host values that are the same on every process as global arrays.

    Args:
        tree: NumPy (or JAX) leaves, equal on every process of the job.
        shardings: a tree of :class:`~jax.sharding.Sharding` of the same structure.

    Returns:
        ``jax.Array`` leaves; each process places only its own devices' parts.
    """

    def put(x: Any, sharding: jax.sharding.Sharding) -> Array:
        host = np.asarray(x)
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    return jax.tree_util.tree_map(put, tree, shardings)


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Puts a pytree (state, params; the same on every process) on every device."""
    host = jax.device_get(tree)
    return put_global(host, jax.tree_util.tree_map(lambda _: replicated(mesh), host))


def process_rows(mesh: Mesh, batch_size: int) -> list[int]:
    """The rows of a global batch of ``batch_size`` that this process's devices hold
    under :func:`batch_sharding` (all of them in one process), ascending.

    This process makes only these clips; :func:`shard_batch` assembles the global batch.
    """
    index_map = batch_sharding(mesh).addressable_devices_indices_map((batch_size,))
    rows = {r for index in index_map.values() for r in range(*index[0].indices(batch_size))}
    return sorted(rows)


def shard_batch(batch: dict[str, np.ndarray], mesh: Mesh, batch_size: int | None = None) -> Batch:
    """The global batch, split along its first axis over the mesh, from this process's
    share of it.

    Args:
        batch: this process's rows of the global batch (:func:`process_rows`),
            stacked in that order; in a single process, the whole batch.
        batch_size: the global batch size (default: this share's size times the
            mesh's devices over this process's devices in the mesh).

    Returns:
        Global ``jax.Array`` leaves of shape ``(batch_size, ...)``; each process puts
        only its own rows on its own devices (nothing crosses processes).
    """
    sharding = batch_sharding(mesh)
    local = {k: np.asarray(v) for k, v in batch.items()}
    count = len(next(iter(local.values())))
    if batch_size is None:
        batch_size = count * mesh.devices.size // len(mesh.local_devices)
    rows = process_rows(mesh, batch_size)
    if count != len(rows):
        raise InputError(
            f"batch: expected this process's {len(rows)} of {batch_size} clips, found {count}"
        )
    position = {row: i for i, row in enumerate(rows)}

    def put(x: np.ndarray) -> Array:
        def part(index: tuple[slice, ...]) -> np.ndarray:
            start, stop, _ = index[0].indices(batch_size)
            return x[position[start] : position[start] + stop - start]

        return jax.make_array_from_callback((batch_size, *x.shape[1:]), sharding, part)

    return {k: put(v) for k, v in local.items()}


#: The TrainConfig fields :func:`train_step` reads; configs that agree on them share
#: one compiled step.
STEP_FIELDS = (
    "model",
    "iters",
    "gamma",
    "vis_weight",
    "remat",
    "lr",
    "weight_decay",
    "eps",
    "warmup_fraction",
    "grad_clip",
    "num_steps",
)
_compiled_steps: dict[Any, Callable] = {}


def make_train_step(
    cfg: TrainConfig, mesh: Mesh
) -> Callable[[TrainState, Batch, Array], tuple[TrainState, dict[str, Array]]]:
    """:func:`train_step` jitted for ``mesh``: batch sharded, state placed by
    :func:`state_shardings` and donated, metrics replicated. Cached per mesh and :data:`STEP_FIELDS`, so the runs of one process (a
    resumed run, tests) share the compiled program."""
    key = (tuple(getattr(cfg, f) for f in STEP_FIELDS), mesh)
    if key not in _compiled_steps:
        if len(_compiled_steps) >= 8:
            _compiled_steps.clear()
        step = functools.partial(
            train_step, Pips(cfg.model), make_optimizer(cfg), one_cycle_schedule(cfg), cfg
        )
        rep = replicated(mesh)
        state = state_shardings(abstract_state(cfg), mesh)
        _compiled_steps[key] = jax.jit(
            step,
            in_shardings=(state, batch_sharding(mesh), rep),
            out_shardings=(state, rep),
            donate_argnums=0,
        )
    return _compiled_steps[key]
