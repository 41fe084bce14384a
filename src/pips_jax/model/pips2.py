"""PIPs++ (Zheng, Harley et al., ICCV 2023; aharley/pips2) in JAX/Flax, numerically
equal to the original.

The same two layers as :mod:`pips_jax.model.pips`:

* :class:`Pips2Net`, a Flax module that only holds the parameters (the BasicEncoder
  ``fnet`` PIPs++ shares with PIPs, and the ``delta_block``, a 1-D convolutional
  ResNet over time) and exposes one method per stage;
* :class:`Pips2`, pure functions of ``params`` for every stage and the forward. The
  refinement loop is a ``jax.lax.scan``.

What PIPs++ does differently from PIPs: a window has any number of frames S; every
frame's point is compared with three templates (the frame-0 feature, and the
features at the current estimates of frames t-2 and t-4, indices clipped at 0,
re-sampled from the second iteration on), 3 x levels x (2r+1)^2 correlations; the
update sees only those correlations and the per-frame flow; no feature update, no
visibility head. Correlations are sampled only where they are needed
(:func:`~pips_jax.model.correlation.sample_correlations`): the original's full
``(S, N, H/8, W/8)`` volumes per template and level are never built.

Coordinate conventions for everything public here: points are ``(x, y)`` in input
pixels with the origin at the centre of the top-left pixel (``x`` along the width).
Frames are ``(B, S, H, W, 3)`` uint8 RGB. Feature maps are channels last,
``(B, S, H // stride, W // stride, latent_dim)``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from einops import rearrange
from jax import Array

from pips_jax.config import Pips2Config
from pips_jax.errors import InputError
from pips_jax.model.correlation import sample_correlations
from pips_jax.model.encoder import BasicEncoder, conv_f32_accumulate, jax_rsqrt
from pips_jax.model.mixer import dense
from pips_jax.model.pips import EncoderStages, Params, check_frames, check_points, check_shape
from pips_jax.ops.embedding import sincos_embedding_2d
from pips_jax.ops.sampling import sample_clamped

INSTANCE_NORM_EPS = 1e-5


def instance_norm_1d(x: Array, eps: float = INSTANCE_NORM_EPS) -> Array:
    """Normalises each channel of each sequence over time (no affine part).

    Args:
        x: ``(M, S, C)``.

    Returns:
        ``(M, S, C)`` with zero mean and unit (biased) variance over S per row and
        channel, as PyTorch ``InstanceNorm1d(affine=False)`` on ``(M, C, S)``.
    """
    mean = jnp.mean(x, axis=1, keepdims=True)
    centred = x - mean
    var = jnp.mean(jnp.square(centred), axis=1, keepdims=True)
    return centred * jax_rsqrt(var + eps)


def conv1d(features: int, kernel: int, name: str, dtype: Any = jnp.float32) -> nn.Conv:
    """The original's ``Conv1dPad`` at stride 1: a 1-D convolution over time with
    "same" zero padding, ``(k-1)//2`` frames before and the rest after."""
    left = (kernel - 1) // 2
    reduced = jnp.dtype(dtype) != jnp.float32
    return nn.Conv(
        features,
        kernel_size=(kernel,),
        padding=((left, kernel - 1 - left),),
        name=name,
        dtype=dtype,
        conv_general_dilated=conv_f32_accumulate if reduced else None,
    )


class ResidualBlock1d(nn.Module):
    """The original's ``ResidualBlock1d`` (no dropout): pre-activation
    ``IN -> ReLU -> conv1 -> IN -> ReLU -> conv2`` (the first block skips the first
    IN -> ReLU), plus the identity, zero-padded on the channel axis when the block
    widens (``(out - in) // 2`` channels before, the rest after)."""

    in_dim: int
    out_dim: int
    kernel: int
    first: bool = False
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        """Args: x ``(M, S, in_dim)``. Returns ``(M, S, out_dim)``."""
        y = x if self.first else nn.relu(instance_norm_1d(x))
        y = conv1d(self.out_dim, self.kernel, "conv1", self.dtype)(y).astype(jnp.float32)
        y = nn.relu(instance_norm_1d(y))
        y = conv1d(self.out_dim, self.kernel, "conv2", self.dtype)(y).astype(jnp.float32)
        if self.out_dim != self.in_dim:
            before = (self.out_dim - self.in_dim) // 2
            after = self.out_dim - self.in_dim - before
            x = jnp.pad(x, ((0, 0), (0, 0), (before, after)))
        return y + x


class DeltaBlock(nn.Module):
    """PIPs++'s update network: ``(M, S, delta_input_dim)`` -> ``(M, S, 2)``.

    The first convolution to ``delta_dim`` channels and a ReLU, the residual blocks
    (:meth:`Pips2Config.block_widths`), a ReLU, and a dense layer to ``(dx, dy)`` per
    frame. (The original also defines ``first_block_norm`` and ``final_norm``, which
    its forward never calls; they have no parameters.)
    """

    config: Pips2Config
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        cfg = self.config
        k = cfg.delta_kernel
        out = nn.relu(conv1d(cfg.delta_dim, k, "first_conv", self.dtype)(x).astype(jnp.float32))
        for i, (c_in, c_out) in enumerate(cfg.block_widths()):
            out = ResidualBlock1d(c_in, c_out, k, i == 0, self.dtype, name=f"block_{i}")(out)
        return dense(2, "head", self.dtype)(nn.relu(out)).astype(jnp.float32)


class Pips2Net(nn.Module):
    """Parameter holder of PIPs++; every method is one stage on already-shaped arrays."""

    config: Pips2Config
    compute_dtype: Any = jnp.float32

    def setup(self) -> None:
        cfg = self.config
        self.fnet = BasicEncoder(
            output_dim=cfg.latent_dim,
            stride=cfg.stride,
            stem_dim=cfg.encoder_stem_dim,
            stage_dims=cfg.encoder_dims,
            dtype=self.compute_dtype,
        )
        self.delta_block = DeltaBlock(cfg, self.compute_dtype)

    def encode(self, images: Array) -> Array:
        """``(B, H, W, 3)`` images in [-1, 1] -> ``(B, H/stride, W/stride, C)``."""
        return self.fnet(images)

    def delta(self, fcorrs: Array, flows: Array) -> Array:
        """Coordinate updates of one trajectory per row.

        Args:
            fcorrs: ``(M, S, 3 * levels * (2r+1)^2)`` correlations of the three templates.
            flows: ``(M, S, 2)`` per-frame flow (x, y) in feature pixels.

        Returns:
            ``(M, S, 2)`` deltas (x, y) in feature pixels.
        """
        embedded = sincos_embedding_2d(flows, self.config.embed_dim)
        return self.delta_block(jnp.concatenate([fcorrs, embedded], axis=-1))

    def __call__(self, images: Array, fcorrs: Array, flows: Array) -> Array:
        # Only used by ``init`` to create every parameter once.
        return jnp.sum(self.encode(images)) + jnp.sum(self.delta(fcorrs, flows))


Templates = tuple[Array, Array, Array]
"""PIPs++'s ``feats``: the three ``(B, S, N, C)`` templates (frame 0's feature, and
the features at frames t-2 and t-4)."""


class Pips2Output(NamedTuple):
    """Result of :meth:`Pips2.forward`.

    Attributes:
        coords: ``(iters + 1, B, S, N, 2)`` trajectories, ``(x, y)`` input pixels:
            ``coords[i]`` for ``i < iters`` after iteration ``i`` (frame 0 as the update
            left it, as the original's ``coord_predictions1`` and its loss see it), and
            ``coords[iters]`` the result, frame 0 locked to the query.
        feats: the templates the last iteration used (the original's ``feats``, for
            chaining windows: the next window's ``feat_init``).
    """

    coords: Array
    feats: Templates


def trajectory_flows(coords: Array) -> Array:
    """The flow PIPs++ embeds: ``coords[t+1] - coords[t]``, the last one repeated.

    Args:
        coords: ``(B, S, N, 2)`` positions (x, y), S >= 2.

    Returns:
        ``(B, S, N, 2)`` in the units of ``coords``.
    """
    flows = coords[:, 1:] - coords[:, :-1]
    return jnp.concatenate([flows, flows[:, -1:]], axis=1)


def template_frames(s: int, lag: int) -> np.ndarray:
    """``(S,)`` frame indices ``max(t - lag, 0)`` of a template lagging by ``lag``."""
    return np.maximum(np.arange(s) - lag, 0)


class Pips2(EncoderStages):
    """PIPs++ as pure functions of its parameters.

    Example::

        model = Pips2(Pips2Config())
        params = model.init(jax.random.key(0))            # or load converted weights
        out = jax.jit(model.forward, static_argnames="iters")(params, frames, xys, iters=6)
        tracks = out.coords[-1]                            # (B, S, N, 2), (x, y) pixels

    Stages: :meth:`encode`, :meth:`pyramid`, :meth:`point_features` (shared with
    PIPs), :meth:`templates`, :meth:`step`.
    """

    net_class = Pips2Net

    @staticmethod
    def default_config() -> Pips2Config:
        return Pips2Config()

    def init(self, rng: Array, image_size: tuple[int, int] | None = None) -> Params:
        """Randomly initialised parameters (Flax defaults), ``{"fnet": ..., "delta_block": ...}``."""
        cfg = self.config
        h, w = image_size or (cfg.stride * cfg.min_feature_size * 2,) * 2
        images = jnp.zeros((1, h, w, 3), jnp.float32)
        fcorrs = jnp.zeros((1, cfg.S, cfg.templates * cfg.corr_dim), jnp.float32)
        flows = jnp.zeros((1, cfg.S, 2), jnp.float32)
        return self.net.init(rng, images, fcorrs, flows)["params"]

    def templates(self, fmaps: Array, coords: Array) -> tuple[Array, Array]:
        """The two moving templates at the current trajectories.

        Args:
            fmaps: ``(B, S, H', W', C)`` feature maps.
            coords: ``(B, S, N, 2)`` trajectories ``(x, y)`` in input pixels.

        Returns:
            ``(feats2, feats4)``, each ``(B, S, N, C)``: at frame t, the feature of frame
            ``max(t-2, 0)`` (resp. ``max(t-4, 0)``) at that frame's position, sampled
            as the original's ``bilinear_sample2d`` (clamped borders).
        """
        s = coords.shape[1]
        sample = jax.vmap(jax.vmap(sample_clamped))  # over B, S
        here = sample(fmaps, coords / float(self.config.stride))  # B, S, N, C
        return here[:, template_frames(s, 2)], here[:, template_frames(s, 4)]

    def step(
        self, params: Params, pyramid: list[Array], coords: Array, feats: Templates
    ) -> tuple[Array, Array]:
        """One refinement iteration of the whole trajectory (frame 0 moves too; the
        caller locks it).

        Args:
            pyramid: from :meth:`pyramid`, levels ``(B, S, H_l, W_l, C)``.
            coords: ``(B, S, N, 2)`` current trajectories, ``(x, y)`` input pixels.
            feats: the three ``(B, S, N, C)`` templates.

        Returns:
            ``(delta, fcorrs)``: the ``(B, S, N, 2)`` update in input pixels and the
            ``(B, S, N, 3 * levels * (2r+1)^2)`` correlations it saw (templates 1, 2, 4;
            then levels; then the window in the original's order).
        """
        cfg = self.config
        b, s, n, _ = coords.shape
        c = coords / float(cfg.stride)
        # the three templates share each neighbourhood read
        fcorrs = sample_correlations(pyramid, jnp.stack(feats, axis=3), c, cfg.corr_radius)
        flows = rearrange(trajectory_flows(c), "b s n d -> (b n) s d")
        fcorrs_ = rearrange(fcorrs, "b s n l -> (b n) s l")
        delta = self.net.apply({"params": params}, fcorrs_, flows, method=Pips2Net.delta)
        delta = rearrange(delta, "(b n) s d -> b s n d", b=b, n=n)
        return delta * float(cfg.stride), fcorrs

    def forward(
        self,
        params: Params,
        frames: Array,
        xys: Array,
        iters: int = 6,
        coords_init: Array | None = None,
        feat_init: Templates | None = None,
        beautify: bool = False,
    ) -> Pips2Output:
        """Tracks points through a clip of any S >= 2 frames.

        Args:
            params: parameter tree from :meth:`init` or a converted checkpoint.
            frames: ``(B, S, H, W, 3)`` uint8 RGB.
            xys: ``(B, N, 2)`` query points ``(x, y)`` in input pixels on frame 0.
            iters: refinement iterations (static).
            coords_init: optional ``(B, S, N, 2)`` initial trajectories ``(x, y)`` in
                input pixels (default: every frame at ``xys``). Frame 0 of it stays
                locked.
            feat_init: optional templates ``(feats1, feats2, feats4)``, each
                ``(B, S, N, C)`` (default: all three the frame-0 feature at frame 0's
                position).
            beautify: halve the updates of iterations ``i > 3 * iters // 4`` (static).

        Returns:
            :class:`Pips2Output`.
        """
        check_frames(frames, self.config)
        check_points(xys, frames.shape[0], frames.shape[2:4])
        fmaps = self.encode(params, frames)
        return self.forward_features(params, fmaps, xys, iters, coords_init, feat_init, beautify)

    def forward_features(
        self,
        params: Params,
        fmaps: Array,
        xys: Array,
        iters: int = 6,
        coords_init: Array | None = None,
        feat_init: Templates | None = None,
        beautify: bool = False,
    ) -> Pips2Output:
        """:meth:`forward` on already encoded frames.

        Args:
            fmaps: ``(B, S, H', W', C)`` feature maps from :meth:`encode`.
            xys, iters, coords_init, feat_init, beautify: as in :meth:`forward`.
        """
        cfg = self.config
        if fmaps.ndim != 5 or fmaps.shape[1] < 2 or fmaps.shape[-1] != cfg.latent_dim:
            raise InputError(
                f"fmaps: expected (B, S >= 2, H', W', {cfg.latent_dim}), got {tuple(fmaps.shape)}"
            )
        b, s = fmaps.shape[:2]
        check_shape("xys", xys, (b, xys.shape[1], 2))
        n = xys.shape[1]
        if coords_init is None:
            coords = jnp.broadcast_to(xys[:, None].astype(jnp.float32), (b, s, n, 2))
        else:
            check_shape("coords_init", coords_init, (b, s, n, 2))
            coords = coords_init.astype(jnp.float32)
        if feat_init is None:
            first = self.point_features(fmaps[:, 0], coords[:, 0])
            feats = (jnp.broadcast_to(first[:, None], (b, s, n, cfg.latent_dim)),) * 3
        else:
            if len(feat_init) != 3:
                raise InputError(
                    f"feat_init: expected 3 templates (feats1, feats2, feats4), got {len(feat_init)}"
                )
            for name, f in zip(("feats1", "feats2", "feats4"), feat_init, strict=True):
                check_shape(f"feat_init {name}", f, (b, s, n, cfg.latent_dim))
            feats = tuple(jnp.asarray(f, jnp.float32) for f in feat_init)
        return self._refine(params, fmaps, coords, feats, iters, beautify)

    def _refine(
        self,
        params: Params,
        fmaps: Array,
        coords: Array,
        feats: Templates,
        iters: int,
        beautify: bool,
        unroll: bool = False,
    ) -> Pips2Output:
        pyramid = self.pyramid(fmaps)
        first = coords[:, 0]
        halved_after = 3 * iters // 4

        def body(carry: tuple[Array, Array, Array], itr: Array):
            coords, feats2, feats4 = carry
            coords = jax.lax.stop_gradient(coords)  # detached, as the original's loop
            moved2, moved4 = self.templates(fmaps, coords)
            feats2 = jnp.where(itr >= 1, moved2, feats2)
            feats4 = jnp.where(itr >= 1, moved4, feats4)
            delta, _ = self.step(params, pyramid, coords, (feats[0], feats2, feats4))
            if beautify:
                delta = jnp.where(itr > halved_after, 0.5 * delta, delta)
            coords = coords + delta
            return (coords.at[:, 0].set(first), feats2, feats4), coords

        carry = (coords, feats[1], feats[2])
        (coords, feats2, feats4), predictions = jax.lax.scan(
            body, carry, jnp.arange(iters), unroll=unroll
        )
        all_coords = jnp.concatenate([predictions, coords[None]], axis=0)
        return Pips2Output(all_coords, (feats[0], feats2, feats4))

    def forward_train(
        self, params: Params, frames: Array, xys: Array, iters: int = 6
    ) -> Pips2Output:
        """The original's training forward: the same as :meth:`forward` (PIPs++ has no
        train-only branch; coordinates are detached at every iteration's start in both),
        with frames encoded as one batch (what XLA's CPU backward prefers) and the loop
        unrolled.

        Args:
            frames: ``(B, S, H, W, 3)`` RGB, uint8 or float in [0, 255].
            xys: ``(B, N, 2)`` points ``(x, y)`` in input pixels on frame 0.
        """
        cfg = self.config
        b, s = frames.shape[:2]
        n = xys.shape[1]
        fmaps = self.encode(params, frames, per_frame=False)
        coords = jnp.broadcast_to(xys[:, None].astype(jnp.float32), (b, s, n, 2))
        first = self.point_features(fmaps[:, 0], coords[:, 0])
        feats = (jnp.broadcast_to(first[:, None], (b, s, n, cfg.latent_dim)),) * 3
        return self._refine(params, fmaps, coords, feats, iters, False, unroll=True)
