"""Bilinear sampling of channels-last maps at (x, y) pixel coordinates.

Conventions for every function here: maps are ``(H, W, C)`` (channels last);
coordinates are ``(..., 2)`` arrays of ``(x, y)`` in pixels of that map, with the
origin at the *centre* of the top-left pixel, so integer coordinates hit pixel
centres exactly (``x`` indexes columns ``0 .. W-1``, ``y`` rows ``0 .. H-1``).

Two border behaviours exist because the original PIPs uses both:

* :func:`sample_zeros` treats everything outside the map as 0 (PyTorch
  ``grid_sample(..., align_corners=True, padding_mode="zeros")``, the original's
  ``bilinear_sampler``), used for the correlation windows;
* :func:`sample_clamped` clamps the four neighbour indices into the map but keeps the
  unclamped interpolation weights (the original's ``utils.samp.bilinear_sample2d``),
  used to read a point's initial feature.
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import Array


def _corners(xy: Array) -> tuple[Array, Array, Array, Array]:
    x = xy[..., 0]
    y = xy[..., 1]
    x0 = jnp.floor(x)
    y0 = jnp.floor(y)
    return x, y, x0, y0


def sample_clamped(fmap: Array, xy: Array) -> Array:
    """Bilinear sample with neighbour indices clamped into the map.

    Args:
        fmap: ``(H, W, C)`` map.
        xy: ``(..., 2)`` coordinates ``(x, y)`` in pixels of ``fmap`` (pixel-centre
            origin).

    Returns:
        ``(..., C)`` samples. Weights use the unclamped neighbours, exactly like the
        original ``bilinear_sample2d``: outside the map this extrapolates from the
        border pixels rather than fading to zero.
    """
    h, w = fmap.shape[0], fmap.shape[1]
    x, y, x0, y0 = _corners(xy)
    x1 = x0 + 1
    y1 = y0 + 1
    x0i = jnp.clip(x0.astype(jnp.int32), 0, w - 1)
    x1i = jnp.clip(x1.astype(jnp.int32), 0, w - 1)
    y0i = jnp.clip(y0.astype(jnp.int32), 0, h - 1)
    y1i = jnp.clip(y1.astype(jnp.int32), 0, h - 1)
    w00 = ((x1 - x) * (y1 - y))[..., None]
    w01 = ((x - x0) * (y1 - y))[..., None]
    w10 = ((x1 - x) * (y - y0))[..., None]
    w11 = ((x - x0) * (y - y0))[..., None]
    return w00 * fmap[y0i, x0i] + w01 * fmap[y0i, x1i] + w10 * fmap[y1i, x0i] + w11 * fmap[y1i, x1i]


def sample_zeros(fmap: Array, xy: Array) -> Array:
    """Bilinear sample with zero padding outside the map.

    Equals PyTorch ``grid_sample(align_corners=True, padding_mode="zeros")`` after
    converting pixel coordinates with ``2 * x / (W - 1) - 1``.

    Args:
        fmap: ``(H, W, C)`` map.
        xy: ``(..., 2)`` coordinates ``(x, y)`` in pixels of ``fmap``.

    Returns:
        ``(..., C)`` samples; neighbours outside the map contribute 0.
    """
    h, w = fmap.shape[0], fmap.shape[1]
    x, y, x0, y0 = _corners(xy)
    fx = x - x0
    fy = y - y0
    out = 0.0
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            xi = x0.astype(jnp.int32) + dx
            yi = y0.astype(jnp.int32) + dy
            inside = (xi >= 0) & (xi <= w - 1) & (yi >= 0) & (yi <= h - 1)
            v = fmap[jnp.clip(yi, 0, h - 1), jnp.clip(xi, 0, w - 1)]
            out = out + jnp.where(inside, wx * wy, 0.0)[..., None] * v
    return out
