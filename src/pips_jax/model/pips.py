"""PIPs (Harley et al., ECCV 2022) in JAX/Flax, numerically equal to the original.

Two layers:

* :class:`PipsNet`, a thin Flax module that only holds the parameters (encoder,
  MLP-Mixer, feature updater, visibility head) and exposes one method per stage;
* :class:`Pips`, a plain object with pure functions of ``params`` for every stage
  and for the full forward. The refinement loop is a ``jax.lax.scan``, so one compiled
  program serves any number of iterations' worth of trace.

Coordinate conventions for everything public here: points are ``(x, y)`` in input
pixels with the origin at the centre of the top-left pixel (``x`` along the width).
Frames are ``(B, S, H, W, 3)`` uint8 RGB. Feature maps are channels last,
``(B, S, H // stride, W // stride, latent_dim)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from einops import rearrange
from jax import Array

from pips_jax.config import ModelConfig
from pips_jax.errors import InputError
from pips_jax.model.correlation import build_pyramid, sample_correlations
from pips_jax.model.encoder import BasicEncoder
from pips_jax.model.mixer import MLPMixer, dense, gelu, layer_norm
from pips_jax.ops.embedding import sincos_embedding_3d, torch_linspace
from pips_jax.ops.sampling import sample_clamped

Params = dict


class PipsNet(nn.Module):
    """Parameter holder of PIPs; every method is one stage on already-shaped arrays."""

    config: ModelConfig
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
        self.delta_block = MLPMixer(
            tokens=cfg.S,
            dim=cfg.mixer_dim,
            depth=cfg.mixer_depth,
            output_dim=cfg.S * (cfg.latent_dim + 2),
            expansion=cfg.mixer_expansion,
            dtype=self.compute_dtype,
        )
        # The original's GroupNorm(1, C) on (rows, C) inputs normalises each row over
        # its C channels with per-channel affine: a LayerNorm.
        self.ffeat_norm = layer_norm("ffeat_norm")
        self.ffeat_updater = dense(cfg.latent_dim)
        self.vis_predictor = dense(1)

    def encode(self, images: Array) -> Array:
        """``(B, H, W, 3)`` images in [-1, 1] -> ``(B, H/stride, W/stride, C)``."""
        return self.fnet(images)

    def delta(self, ffeats: Array, fcorrs: Array, flows: Array) -> Array:
        """Mixer update of one trajectory per row.

        Args:
            ffeats: ``(M, S, C)`` point features per frame.
            fcorrs: ``(M, S, levels * (2r+1)^2)`` correlation features.
            flows: ``(M, S, 3)`` as (x - x_0, y - y_0, t) in feature pixels.

        Returns:
            ``(M, S, 2 + C)``: coordinate deltas (x, y) in feature pixels, then feature
            deltas.
        """
        cfg = self.config
        embedded = sincos_embedding_3d(flows, cfg.embed_dim)
        x = jnp.concatenate([ffeats, fcorrs, embedded], axis=-1)
        out = self.delta_block(x)
        return out.reshape(x.shape[0], cfg.S, cfg.latent_dim + 2)

    def update_features(self, ffeats: Array, delta_feats: Array) -> Array:
        """``ffeats + GELU(Linear(GroupNorm(delta_feats)))``; both ``(..., C)``."""
        return gelu(self.ffeat_updater(self.ffeat_norm(delta_feats))) + ffeats

    def visibility(self, ffeats: Array) -> Array:
        """Visibility logits ``(...)`` from features ``(..., C)``."""
        return self.vis_predictor(ffeats)[..., 0]

    def __call__(self, images: Array, ffeats: Array, fcorrs: Array, flows: Array) -> Array:
        # Only used by ``init`` to create every parameter once.
        fmaps = self.encode(images)
        d = self.delta(ffeats, fcorrs, flows)
        f = self.update_features(ffeats, d[..., 2:])
        return jnp.sum(fmaps) + jnp.sum(self.visibility(f))


class PipsOutput(NamedTuple):
    """Result of :meth:`Pips.forward`.

    Attributes:
        coords: ``(iters, B, S, N, 2)`` trajectories after every refinement step,
            ``(x, y)`` in input pixels.
        vis_logits: ``(B, S, N)`` visibility logits after the last step.
        feat_init: ``(B, N, C)`` the frame-0 point features used (for chaining).
    """

    coords: Array
    vis_logits: Array
    feat_init: Array


class EncoderStages:
    """The stages both families share, as pure functions of the parameters: encoding
    frames with the BasicEncoder, the correlation pyramid and point features.
    Subclasses set :attr:`net_class`, a Flax module with an ``encode`` method."""

    net_class: Any = None

    def __init__(self, config: Any = None, compute_dtype: Any = jnp.float32):
        """Args:
        config: the architecture (default: the released model).
        compute_dtype: ``float32`` (default, exact) or ``bfloat16``: convolutions and
            dense layers then round their inputs and weights to bfloat16 and
            accumulate in float32; norms, correlations and coordinates stay float32.
        """
        self.config = config or self.default_config()
        self.compute_dtype = jnp.dtype(compute_dtype)
        if self.compute_dtype not in (jnp.dtype(jnp.float32), jnp.dtype(jnp.bfloat16)):
            raise InputError(
                f"compute_dtype: expected float32 or bfloat16, got {self.compute_dtype}"
            )
        self.net = self.net_class(self.config, self.compute_dtype)

    @staticmethod
    def default_config() -> Any:
        raise NotImplementedError

    def param_shapes(self) -> Params:
        """The parameter tree as ``jax.ShapeDtypeStruct`` leaves, computing nothing."""
        return jax.eval_shape(self.init, jax.random.key(0))

    # -------------------------------------------------------------------- stages
    def encode(self, params: Params, frames: Array, per_frame: bool = True) -> Array:
        """Encodes frames to feature maps.

        Args:
            frames: ``(..., H, W, 3)`` uint8 RGB (any leading axes, e.g. ``B, S``).
            per_frame: encode one frame at a time (:meth:`encode_images`; fastest for
                inference) rather than all at once (what training differentiates:
                XLA's CPU backward of convolutions inside a loop is far slower).

        Returns:
            ``(..., H // stride, W // stride, latent_dim)`` float32 feature maps.
        """
        lead = frames.shape[:-3]
        images = 2.0 * (frames.astype(jnp.float32) / 255.0) - 1.0
        images = images.reshape(-1, *frames.shape[-3:])
        if per_frame:
            fmaps = self.encode_images(params, images)
        else:
            fmaps = self.net.apply({"params": params}, images, method=self.net_class.encode)
        return fmaps.reshape(*lead, *fmaps.shape[1:])

    def encode_images(self, params: Params, images: Array) -> Array:
        """Encodes ``(F, H, W, 3)`` images in [-1, 1] to ``(F, H', W', C)`` maps.

        Frames go through the encoder one at a time (a ``lax.map``): the result is
        the same as encoding the batch at once, but every activation buffer is one
        frame's size and is reused from frame to frame. On CPUs, where freshly
        allocated memory is paid for in page faults, this is faster (measured in
        ``benchmarks/README.md``).
        """
        encode_one = lambda im: self.net.apply(  # noqa: E731
            {"params": params}, im[None], method=self.net_class.encode
        )[0]
        return jax.lax.map(encode_one, images)

    def pyramid(self, fmaps: Array) -> list[Array]:
        """The correlation pyramid: ``levels`` arrays ``(B, S, H_l, W_l, C)``."""
        return build_pyramid(fmaps, self.config.corr_levels)

    def point_features(self, fmap: Array, xys: Array) -> Array:
        """Features of points on one frame's feature map.

        Args:
            fmap: ``(B, H', W', C)`` feature maps of the query frame.
            xys: ``(B, N, 2)`` points ``(x, y)`` in input pixels.

        Returns:
            ``(B, N, C)``: bilinear samples at ``xys / stride`` with clamped borders,
            as the original's ``bilinear_sample2d``.
        """
        return jax.vmap(sample_clamped)(fmap, xys / float(self.config.stride))


class Pips(EncoderStages):
    """PIPs as pure functions of its parameters.

    Example::

        model = Pips(ModelConfig())
        params = model.init(jax.random.key(0))          # or load converted weights
        out = jax.jit(model.forward, static_argnames="iters")(params, frames, xys, iters=6)
        tracks = out.coords[-1]                          # (B, S, N, 2), (x, y) pixels

    Stages, for callers that drive the loop themselves (long videos, training):
    :meth:`encode`, :meth:`pyramid`, :meth:`point_features`, :meth:`step`,
    :meth:`visibility`.
    """

    net_class = PipsNet

    @staticmethod
    def default_config() -> ModelConfig:
        return ModelConfig()

    # ---------------------------------------------------------------- parameters
    def init(self, rng: Array, image_size: tuple[int, int] | None = None) -> Params:
        """Randomly initialised parameters (Flax defaults), ``{"fnet": ..., ...}``."""
        cfg = self.config
        h, w = image_size or (cfg.stride * cfg.min_feature_size * 2,) * 2
        images = jnp.zeros((1, h, w, 3), jnp.float32)
        ffeats = jnp.zeros((1, cfg.S, cfg.latent_dim), jnp.float32)
        fcorrs = jnp.zeros((1, cfg.S, cfg.corr_dim), jnp.float32)
        flows = jnp.zeros((1, cfg.S, 3), jnp.float32)
        return self.net.init(rng, images, ffeats, fcorrs, flows)["params"]

    def step(
        self,
        params: Params,
        pyramid: list[Array],
        coords: Array,
        ffeats: Array,
        lock_first: bool = True,
    ) -> tuple[Array, Array, Array]:
        """One refinement iteration of the whole trajectory.

        Args:
            pyramid: from :meth:`pyramid`, levels ``(B, S, H_l, W_l, C)``.
            coords: ``(B, S, N, 2)`` current trajectories, ``(x, y)`` input pixels.
            ffeats: ``(B, S, N, C)`` current per-frame point features.
            lock_first: keep frame 0 where it is (the original does at inference).

        Returns:
            ``(coords, ffeats, fcorrs)``: updated ``(B, S, N, 2)`` coordinates in input
            pixels, updated ``(B, S, N, C)`` features, and the ``(B, S, N, L)``
            correlation features this step sampled.
        """
        cfg = self.config
        b, s, n, _ = coords.shape
        if s != cfg.S:
            raise InputError(f"expected trajectories of S={cfg.S} frames, got {s}")
        c = coords / float(cfg.stride)
        fcorrs = sample_correlations(pyramid, ffeats, c, cfg.corr_radius)
        flows = rearrange(c - c[:, :1], "b s n d -> (b n) s d")
        times = jnp.broadcast_to(jnp.asarray(torch_linspace(0, s, s))[None, :, None], (b * n, s, 1))
        flows = jnp.concatenate([flows, times], axis=-1)
        ffeats_ = rearrange(ffeats, "b s n c -> (b n) s c")
        fcorrs_ = rearrange(fcorrs, "b s n l -> (b n) s l")
        delta = self.net.apply({"params": params}, ffeats_, fcorrs_, flows, method=PipsNet.delta)
        ffeats_ = self.net.apply(
            {"params": params}, ffeats_, delta[..., 2:], method=PipsNet.update_features
        )
        new_ffeats = rearrange(ffeats_, "(b n) s c -> b s n c", b=b, n=n)
        new_c = c + rearrange(delta[..., :2], "(b n) s d -> b s n d", b=b, n=n)
        if lock_first:
            new_c = new_c.at[:, 0].set(c[:, 0])
        return new_c * float(cfg.stride), new_ffeats, fcorrs

    def visibility(self, params: Params, ffeats: Array) -> Array:
        """Visibility logits ``(B, S, N)`` from features ``(B, S, N, C)``."""
        return self.net.apply({"params": params}, ffeats, method=PipsNet.visibility)

    # ------------------------------------------------------------------- forward
    def forward(
        self,
        params: Params,
        frames: Array,
        xys: Array,
        iters: int = 6,
        coords_init: Array | None = None,
        feat_init: Array | None = None,
    ) -> PipsOutput:
        """Tracks points through an S-frame clip.

        Args:
            params: parameter tree from :meth:`init` or a converted checkpoint.
            frames: ``(B, S, H, W, 3)`` uint8 RGB.
            xys: ``(B, N, 2)`` query points ``(x, y)`` in input pixels on frame 0.
            iters: refinement iterations (static).
            coords_init: optional ``(B, S, N, 2)`` initial trajectories ``(x, y)`` in
                input pixels (default: every frame at ``xys``, i.e. zero velocity).
                Frame 0 of it stays locked.
            feat_init: optional ``(B, N, C)`` point features to track (default:
                sampled from frame 0's feature map at ``xys``).

        Returns:
            :class:`PipsOutput` with the coordinates after every iteration.
        """
        check_frames(frames, self.config)
        check_points(xys, frames.shape[0], frames.shape[2:4])
        fmaps = self.encode(params, frames)
        return self.forward_features(params, fmaps, xys, iters, coords_init, feat_init)

    def forward_features(
        self,
        params: Params,
        fmaps: Array,
        xys: Array,
        iters: int = 6,
        coords_init: Array | None = None,
        feat_init: Array | None = None,
    ) -> PipsOutput:
        """:meth:`forward` on already encoded frames (each frame is encoded once).

        Args:
            fmaps: ``(B, S, H', W', C)`` feature maps from :meth:`encode`.
            xys, iters, coords_init, feat_init: as in :meth:`forward`.
        """
        cfg = self.config
        b, s = fmaps.shape[:2]
        if s != cfg.S or fmaps.ndim != 5 or fmaps.shape[-1] != cfg.latent_dim:
            raise InputError(
                f"fmaps: expected (B, {cfg.S}, H', W', {cfg.latent_dim}), got {tuple(fmaps.shape)}"
            )
        check_shape("xys", xys, (b, xys.shape[1], 2))
        n = xys.shape[1]
        pyramid = self.pyramid(fmaps)
        if coords_init is None:
            coords = jnp.broadcast_to(xys[:, None].astype(jnp.float32), (b, s, n, 2))
        else:
            check_shape("coords_init", coords_init, (b, s, n, 2))
            coords = coords_init.astype(jnp.float32)
        if feat_init is None:
            feat_init = self.point_features(fmaps[:, 0], coords[:, 0])
        else:
            check_shape("feat_init", feat_init, (b, n, cfg.latent_dim))
        ffeats = jnp.broadcast_to(feat_init[:, None], (b, s, n, cfg.latent_dim))

        def body(carry: tuple[Array, Array], _: None) -> tuple[tuple[Array, Array], Array]:
            coords, ffeats = carry
            coords, ffeats, _ = self.step(params, pyramid, coords, ffeats)
            return (coords, ffeats), coords

        (_, ffeats), all_coords = jax.lax.scan(body, (coords, ffeats), None, length=iters)
        return PipsOutput(all_coords, self.visibility(params, ffeats), feat_init)

    def forward_train(
        self,
        params: Params,
        frames: Array,
        xys: Array,
        iters: int = 4,
        score_fn: Callable[[list[Array], Array], Any] | None = None,
        remat: bool = False,
    ) -> TrainOutput:
        """The original's training forward (``is_train=True``).

        Differences from :meth:`forward`, all as in the original: frame 0 is not
        locked; gradients do not flow through the coordinates from one iteration to
        the next (they are detached at the start of every iteration), only through the
        features; and at the start of every iteration the point features are compared
        with the whole correlation pyramid (the original's score maps), here through
        ``score_fn``.

        Args:
            frames: ``(B, S, H, W, 3)`` RGB, uint8 or float in [0, 255].
            xys: ``(B, N, 2)`` points ``(x, y)`` in input pixels on frame 0.
            iters: refinement iterations (static).
            score_fn: optional ``score_fn(pyramid, ffeats) -> pytree`` called at the
                start of every iteration with the pyramid levels ``(B, S, H_l, W_l, C)``
                and the ``(B, S, N, C)`` features that iteration starts from. Its
                outputs are stacked over iterations: e.g.
                :func:`pips_jax.training.losses.score_maps` gives the full
                ``(iters, B, S, N, H', W')`` maps, a partial of
                :func:`pips_jax.training.losses.score_map_terms` only the sums the
                score-map loss needs.
            remat: recompute each iteration's refinement step in the backward pass
                (``jax.checkpoint``) instead of keeping its activations: the memory of
                one iteration instead of ``iters``, for about a third more compute.
        """
        cfg = self.config
        b, s = frames.shape[:2]
        n = xys.shape[1]
        fmaps = self.encode(params, frames, per_frame=False)
        pyramid = self.pyramid(fmaps)
        coords = jnp.broadcast_to(xys[:, None].astype(jnp.float32), (b, s, n, 2))
        feat_init = self.point_features(fmaps[:, 0], coords[:, 0])
        ffeats = jnp.broadcast_to(feat_init[:, None], (b, s, n, cfg.latent_dim))

        def refine(params: Params, pyramid: list[Array], coords: Array, ffeats: Array):
            coords, ffeats, _ = self.step(params, pyramid, coords, ffeats, lock_first=False)
            return coords, ffeats

        if remat:
            refine = jax.checkpoint(refine)

        def body(carry: tuple[Array, Array], _: None):
            coords, ffeats = carry
            coords = jax.lax.stop_gradient(coords)
            scores = None if score_fn is None else score_fn(pyramid, ffeats)
            coords, ffeats = refine(params, pyramid, coords, ffeats)
            return (coords, ffeats), (coords, scores)

        # Unrolled: a rolled loop stacks every iteration's activations for the backward
        # pass into one buffer and copies them in and out (a sixth of a CPU step).
        (_, ffeats), (all_coords, scores) = jax.lax.scan(
            body, (coords, ffeats), None, length=iters, unroll=True
        )
        return TrainOutput(all_coords, self.visibility(params, ffeats), scores)


class TrainOutput(NamedTuple):
    """Result of :meth:`Pips.forward_train`.

    Attributes:
        coords: ``(iters, B, S, N, 2)`` trajectories after every iteration, ``(x, y)``
            input pixels (frame 0 is not locked in training, as in the original).
        vis_logits: ``(B, S, N)`` visibility logits.
        scores: the outputs of ``score_fn`` stacked along a leading ``iters`` axis, or
            None without a ``score_fn``.
    """

    coords: Array
    vis_logits: Array
    scores: Any


# ---------------------------------------------------------------------- checks
def check_shape(name: str, x: Array, shape: tuple[int, ...]) -> None:
    if tuple(x.shape) != tuple(shape):
        raise InputError(f"{name}: expected shape {tuple(shape)}, got {tuple(x.shape)}")


def check_frames(frames: Array, config: Any) -> None:
    """Raises :class:`InputError` unless frames are ``(B, S, H, W, 3)`` uint8 of a usable
    size: S is PIPs' own window length, or any S >= 2 for PIPs++."""
    if frames.ndim != 5:
        raise InputError(
            f"frames: expected a (B, S, H, W, 3) array, got {frames.ndim} dims {tuple(frames.shape)}"
        )
    b, s, h, w, c = frames.shape
    if c != 3:
        raise InputError(
            f"frames: expected 3 RGB channels in the last axis, got {c} (shape {tuple(frames.shape)})"
        )
    if frames.dtype != jnp.uint8:
        raise InputError(f"frames: expected dtype uint8 (0..255 RGB), got {frames.dtype}")
    if config.family == "pips" and s != config.S:
        raise InputError(f"frames: expected S={config.S} frames per clip, got {s}")
    if s < 2:
        raise InputError(f"frames: expected a window of at least 2 frames, got {s}")
    min_side = config.stride * config.min_feature_size
    if h < min_side or w < min_side:
        raise InputError(
            f"frames: expected H and W >= {min_side} (stride {config.stride} x "
            f"2^{config.corr_levels - 1} pyramid), got {h}x{w}"
        )


def check_points(xys: Array, batch: int, size: tuple[int, int]) -> None:
    """Raises :class:`InputError` unless xys is ``(B, N, 2)`` and plausibly ``(x, y)``.

    When the values are concrete, points outside the ``H x W`` frame that would all
    fit if their two columns were swapped are reported as given in ``(y, x)`` order.
    """
    if xys.ndim != 3 or xys.shape[0] != batch or xys.shape[2] != 2:
        raise InputError(
            f"xys: expected shape ({batch}, N, 2) as (x, y) pixels, got {tuple(xys.shape)}"
        )
    try:
        pts = np.asarray(xys, dtype=np.float64)
    except jax.errors.TracerArrayConversionError:
        return  # traced inside jit: values are checked by the caller, shapes above
    if not np.all(np.isfinite(pts)):
        raise InputError("xys: expected finite coordinates, got NaN or inf")
    h, w = size

    def inside(p: np.ndarray, width: int, height: int) -> np.ndarray:
        return (
            (p[..., 0] >= 0)
            & (p[..., 0] <= width - 1)
            & (p[..., 1] >= 0)
            & (p[..., 1] <= height - 1)
        )

    if not np.all(inside(pts, w, h)) and np.all(inside(pts[..., ::-1], w, h)):
        raise InputError(
            f"xys: points lie outside the {w}x{h} (W x H) frame as (x, y) but inside it "
            "as (y, x); expected (x, y) pixel coordinates"
        )
