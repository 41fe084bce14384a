"""Correlation pyramid of PIPs, computed only where it is sampled.

Conventions: feature maps are channels last, ``(B, S, H, W, C)``; point coordinates
are ``(x, y)`` in pixels of the level-0 feature map (input pixels / stride) with the
origin at the centre of the top-left feature pixel.

The original builds, at every refinement step, full correlation volumes
``(B, S, N, H_l, W_l)`` between each point's feature and every pixel of every pyramid
level, and then samples a ``(2r+1) x (2r+1)`` window around each point with bilinear
interpolation. Bilinear interpolation is linear, and all taps of one window share the
same fractional offset, so the same numbers come from reading the
``(2r+2) x (2r+2)`` integer pixels around the window, taking their dot products with
the point feature, and interpolating those. :func:`sample_correlations` does that;
memory and work no longer grow with ``N x H x W``. The full volumes are still
available (:func:`correlation_volumes`) for training losses and for testing.

Window order follows the original exactly: its offset grid is built as ``(dy, dx)``
but added to ``(x, y)`` coordinates, so in the flattened ``(2r+1)^2`` window the
*major* index moves along x and the minor index along y.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from pips_jax.ops.resize import avg_pool_2x2
from pips_jax.ops.sampling import sample_zeros


def build_pyramid(fmaps: Array, levels: int) -> list[Array]:
    """Average-pools feature maps ``levels - 1`` times by 2x2.

    Args:
        fmaps: ``(..., H, W, C)`` feature maps.
        levels: number of levels, the first being ``fmaps`` itself.

    Returns:
        ``levels`` arrays, level ``l`` of shape ``(..., H >> l, W >> l, C)`` (odd
        sizes floor at every step).
    """
    pyramid = [fmaps]
    for _ in range(levels - 1):
        pyramid.append(avg_pool_2x2(pyramid[-1]))
    return pyramid


def window_offsets(radius: int) -> np.ndarray:
    """The ``((2r+1)^2, 2)`` window offsets ``(dx, dy)`` in the original's order.

    Index ``a * (2r+1) + b`` is offset ``dx = a - r``, ``dy = b - r``.
    """
    k = 2 * radius + 1
    a, b = np.meshgrid(np.arange(k), np.arange(k), indexing="ij")
    return np.stack([a.ravel() - radius, b.ravel() - radius], axis=-1).astype(np.float32)


def _window_one_frame(fmap: Array, feats: Array, xy: Array, radius: int) -> Array:
    """Correlation windows of N points with K templates each on one feature map.

    Args:
        fmap: ``(H, W, C)``.
        feats: ``(N, K, C)`` point features (K templates per point).
        xy: ``(N, 2)`` window centres ``(x, y)`` in pixels of ``fmap``.

    Returns:
        ``(N, K, (2r+1)^2)`` correlations (dot product / sqrt(C)), original order. The
        neighbourhood is read once for all K templates.
    """
    h, w, c = fmap.shape
    k = 2 * radius + 1
    x0 = jnp.floor(xy[:, 0])
    y0 = jnp.floor(xy[:, 1])
    fx = (xy[:, 0] - x0)[:, None, None, None]
    fy = (xy[:, 1] - y0)[:, None, None, None]
    taps = jnp.arange(k + 1)
    cols = x0.astype(jnp.int32)[:, None] - radius + taps  # N, k+1
    rows = y0.astype(jnp.int32)[:, None] - radius + taps  # N, k+1
    inside = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]
    patch = fmap[jnp.clip(rows, 0, h - 1)[:, :, None], jnp.clip(cols, 0, w - 1)[:, None, :]]
    corr = jnp.einsum("nyxc,nkc->nkyx", patch, feats) / jnp.sqrt(jnp.float32(c))
    corr = jnp.where(inside[:, None], corr, 0.0)  # N, K, k+1 (y), k+1 (x)
    window = (
        (1 - fy) * (1 - fx) * corr[..., :k, :k]
        + (1 - fy) * fx * corr[..., :k, 1:]
        + fy * (1 - fx) * corr[..., 1:, :k]
        + fy * fx * corr[..., 1:, 1:]
    )  # N, K, y, x
    return jnp.swapaxes(window, -1, -2).reshape(*feats.shape[:2], k * k)


def sample_correlations(pyramid: list[Array], feats: Array, coords: Array, radius: int) -> Array:
    """Correlation features of every point on every frame and pyramid level.

    Args:
        pyramid: levels ``(B, S, H_l, W_l, C)`` from :func:`build_pyramid`.
        feats: ``(B, S, N, C)`` per-frame point features, or ``(B, S, N, K, C)`` for K
            templates per point (PIPs++'s three), all sampled at the same positions.
        coords: ``(B, S, N, 2)`` point positions ``(x, y)`` in level-0 feature pixels.
        radius: window radius r.

    Returns:
        ``(B, S, N, levels * (2r+1)^2)``: for each level in order, the bilinearly
        sampled window of ``<feature map, point feature> / sqrt(C)`` centred at
        ``coords / 2**level``, zero outside the map. With K templates
        ``(B, S, N, K * levels * (2r+1)^2)``: template by template, each as above.
    """
    b, s, n, _ = coords.shape
    multi = feats.ndim == 5
    templates = feats if multi else feats[..., None, :]
    kk = templates.shape[3]
    out = []
    for level, fmap in enumerate(pyramid):
        xy = (coords / (2.0**level)).reshape(b * s, n, 2)
        args = (fmap.reshape(b * s, *fmap.shape[2:]), templates.reshape(b * s, n, kk, -1), xy)
        # One frame at a time: the gathered (N, 2r+2, 2r+2, C) neighbourhoods of all
        # frames at once would dominate memory for large N.
        windows = jax.lax.map(lambda a: _window_one_frame(*a, radius), args)
        out.append(windows.reshape(b, s, n, kk, -1))
    return jnp.concatenate(out, axis=-1).reshape(b, s, n, -1)


def correlation_volumes(pyramid: list[Array], feats: Array) -> list[Array]:
    """Full correlation volumes (the original's ``CorrBlock.corr``).

    Args:
        pyramid: levels ``(B, S, H_l, W_l, C)``.
        feats: ``(B, S, N, C)``.

    Returns:
        Per level ``(B, S, N, H_l, W_l)`` of ``<feature, point feature> / sqrt(C)``.
    """
    c = feats.shape[-1]
    return [jnp.einsum("bshwc,bsnc->bsnhw", f, feats) / jnp.sqrt(jnp.float32(c)) for f in pyramid]


def sample_correlation_volumes(volumes: list[Array], coords: Array, radius: int) -> Array:
    """Samples windows from full volumes, the original's way (reference for tests).

    Args:
        volumes: per level ``(B, S, N, H_l, W_l)``.
        coords: ``(B, S, N, 2)`` as ``(x, y)`` in level-0 feature pixels.
        radius: window radius r.

    Returns:
        ``(B, S, N, levels * (2r+1)^2)``, equal to :func:`sample_correlations`.
    """
    offsets = jnp.asarray(window_offsets(radius))
    out = []
    for level, vol in enumerate(volumes):
        taps = (coords / (2.0**level))[..., None, :] + offsets  # B, S, N, K, 2
        sample = jax.vmap(jax.vmap(jax.vmap(sample_zeros)))
        out.append(sample(vol[..., None], taps)[..., 0])
    return jnp.concatenate(out, axis=-1)
