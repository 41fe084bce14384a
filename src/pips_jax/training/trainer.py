"""Train state, optimizer and the data-parallel train step, for both model families.

The step is one jitted pure function ``(state, batch, rng) -> (new_state, metrics)``.
PIPs' loss is the sequence, visibility and score-map losses (:func:`pips_losses`);
PIPs++'s the sequence loss alone (:func:`pips2_losses`; its model has no visibility
head and no score maps), with the refinement started from the original's noisy
trajectories drawn from ``rng`` (``TrainConfig.random_init``). The metrics of each
family are :data:`METRICS` (PIPs++ has no ``vis`` or ``score``).
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

from pips_jax.config import AnyConfig
from pips_jax.errors import InputError
from pips_jax.model.families import model_for
from pips_jax.model.pips import Params, Pips
from pips_jax.model.pips2 import Pips2
from pips_jax.training.config import TrainConfig
from pips_jax.training.losses import (
    PIPS2_EPS,
    balanced_ce_loss,
    score_map_loss_from_terms,
    score_map_terms,
    sequence_loss,
)

Batch = dict[str, Array]

#: OneCycleLR's defaults: start at ``lr / 25``, end at ``lr / 25 / 1e4``.
DIV_FACTOR = 25.0
FINAL_DIV_FACTOR = 1e4
#: Names of the scalars :func:`train_step` returns for PIPs.
METRIC_NAMES = ("loss", "seq", "vis", "score", "lr", "grad_norm", "ate_vis", "ate_occ")
#: The scalars :func:`train_step` returns, per family: PIPs++ has no visibility or
#: score-map loss, so its ``loss`` is its ``seq`` and there is no ``vis`` or ``score``.
METRICS: dict[str, tuple[str, ...]] = {
    "pips": METRIC_NAMES,
    "pips2": tuple(n for n in METRIC_NAMES if n not in ("vis", "score")),
}


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
def _init_params(model: AnyConfig, key: Array) -> Params:
    return model_for(model).init(key)


def init_params(model: AnyConfig, seed: int) -> Params:
    """Randomly initialised parameters (Flax defaults) of ``model_for(model)``, compiled
    once per model config."""
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


def random_trajectories(key: Array, trajs: Array, size: tuple[int, int]) -> Array:
    """The trajectories PIPs++'s training starts the refinement from (the original
    ``train.py``'s ``run_model``).

    Per point: uniform random positions on every frame (``x`` in ``[0, W-1]``, ``y`` in
    ``[0, H-1]``, independent per frame) mixed with the ground truth by a share ``c``
    drawn uniformly in ``[0, 1)``, ``c * random + (1 - c) * gt``; then, for half of the
    points (a fair coin each), the zero-velocity trajectory (frame 0's ground truth on
    every frame) instead; then frame 0 at the ground truth for all of them.

    Args:
        key: a PRNG key.
        trajs: ``(B, S, N, 2)`` ground truth ``(x, y)`` in input pixels.
        size: ``(H, W)`` of the frames.

    Returns:
        ``(B, S, N, 2)`` ``(x, y)`` input pixels.
    """
    b, s, n, _ = trajs.shape
    h, w = size
    k_x, k_y, k_mix, k_zero = jax.random.split(key, 4)
    x = jax.random.uniform(k_x, (b, s, n), maxval=w - 1.0)
    y = jax.random.uniform(k_y, (b, s, n), maxval=h - 1.0)
    mix = jax.random.uniform(k_mix, (b, 1, n, 1))
    noisy = jnp.stack([x, y], axis=-1) * mix + trajs * (1.0 - mix)
    zero_velocity = jnp.broadcast_to(trajs[:, :1], trajs.shape)
    moving = jax.random.uniform(k_zero, (b, 1, n, 1)) > 0.5
    start = jnp.where(moving, noisy, zero_velocity)
    return start.at[:, 0].set(trajs[:, 0])


def pips_losses(
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


def pips2_losses(
    model: Pips2, cfg: TrainConfig, params: Params, batch: Batch, rng: Array
) -> tuple[Array, dict[str, Array]]:
    """The PIPs++ training loss on one batch: the sequence loss of every iteration's
    prediction (frame 0 as the update left it, as the original's loss sees it), with
    the original's ``EPS`` (:data:`~pips_jax.training.losses.PIPS2_EPS`).

    Args:
        rng: draws the starting trajectories (:func:`random_trajectories`) when
            ``cfg.random_init``; unused otherwise.

    Returns:
        ``(seq, parts)``: a dict with ``seq`` and the result ``coords`` ``(B, S, N, 2)``
        (frame 0 locked to the query).
    """
    frames, trajs = batch["frames"], batch["trajs"]
    xys = trajs[:, 0]
    if cfg.random_init:
        start = random_trajectories(rng, trajs, frames.shape[2:4])
        fmaps = model.encode(params, frames, per_frame=False)
        out = model.forward_features(params, fmaps, xys, cfg.iters, coords_init=start)
    else:
        out = model.forward_train(params, frames, xys, cfg.iters)
    seq = sequence_loss(out.coords[:-1], trajs, batch["valids"], cfg.gamma, eps=PIPS2_EPS)
    return seq, {"seq": seq, "coords": out.coords[-1]}


def compute_losses(
    model: Pips | Pips2, cfg: TrainConfig, params: Params, batch: Batch, rng: Array
) -> tuple[Array, dict[str, Array]]:
    """The training loss of ``cfg``'s family on one batch (:func:`pips_losses` or
    :func:`pips2_losses`): ``(total, parts)``, ``parts`` with the family's losses and
    the result ``coords`` ``(B, S, N, 2)``."""
    if isinstance(model, Pips2):
        return pips2_losses(model, cfg, params, batch, rng)
    return pips_losses(model, cfg, params, batch)


def train_step(
    model: Pips | Pips2,
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
        rng: a PRNG key: PIPs++'s starting trajectories (``cfg.random_init``); PIPs
            draws nothing, so its step does not depend on it.

    Returns:
        ``(new_state, metrics)`` with the scalars of :data:`METRICS` for the family:
        losses before the update, the learning rate used, the gradient norm before
        clipping, and the result's errors on visible / occluded points (``ate_vis``,
        ``ate_occ``, pixels, NaN without such points).
    """
    (total, parts), grads = jax.value_and_grad(
        lambda p: compute_losses(model, cfg, p, batch, rng), has_aux=True
    )(state.params)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    ate_vis, ate_occ = batch_track_errors(
        parts["coords"], batch["trajs"], batch["vis"], batch["valids"]
    )
    values = {
        **parts,
        "loss": total,
        "lr": jnp.asarray(schedule(state.step), jnp.float32),
        "grad_norm": global_norm(grads),
        "ate_vis": ate_vis,
        "ate_occ": ate_occ,
    }
    metrics = {name: values[name] for name in METRICS[cfg.family]}
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
    "random_init",
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
            train_step, model_for(cfg.model), make_optimizer(cfg), one_cycle_schedule(cfg), cfg
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
