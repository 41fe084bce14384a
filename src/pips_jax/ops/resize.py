"""Resizing and pooling of channels-last maps.

All maps are ``(..., H, W, C)``: any leading batch axes, then rows, columns,
channels.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array


def _align_corners_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weights of an align-corners linear resize along one axis.

    Output index ``i`` reads the input at ``i * (n_in - 1) / (n_out - 1)`` (0 when
    ``n_out == 1``), the convention of PyTorch ``interpolate(align_corners=True)``;
    the scale is computed in float32 as PyTorch does.
    """
    if n_out > 1:
        scale = np.float32(n_in - 1) / np.float32(n_out - 1)
    else:
        scale = np.float32(0)
    src = np.arange(n_out, dtype=np.float32) * scale
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    lam = (src - i0.astype(np.float32)).astype(np.float32)
    return i0, i1, lam


def align_corners_matrix(n_in: int, n_out: int) -> np.ndarray:
    """The align-corners linear resize along one axis as a matrix.

    Returns:
        ``(n_out, n_in)`` float32; row ``i`` holds output ``i``'s two weights (one
        where both taps are the same input), so ``m @ v`` resizes a vector ``v``.
    """
    i0, i1, lam = _align_corners_taps(n_in, n_out)
    m = np.zeros((n_out, n_in), np.float32)
    np.add.at(m, (np.arange(n_out), i0), 1 - lam)
    np.add.at(m, (np.arange(n_out), i1), lam)
    return m


def resize_bilinear_align_corners(x: Array, size: tuple[int, int]) -> Array:
    """Bilinear resize with aligned corners (first and last pixel centres kept).

    Args:
        x: ``(..., H, W, C)`` maps.
        size: output ``(H_out, W_out)``.

    Returns:
        ``(..., H_out, W_out, C)``; identical to PyTorch
        ``F.interpolate(mode="bilinear", align_corners=True)`` on NCHW data.

    The gradient is the transposed interpolation applied as two small matrix products
    rather than the scatter-add that differentiating the forward's gathers gives, which
    XLA:CPU runs several times slower.
    """
    h_in, w_in = x.shape[-3], x.shape[-2]
    if (h_in, w_in) == tuple(size):
        return x
    return _resize((h_in, w_in), tuple(size), x)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _resize(in_size: tuple[int, int], size: tuple[int, int], x: Array) -> Array:
    (h_in, w_in), (h_out, w_out) = in_size, size
    r0, r1, ry = _align_corners_taps(h_in, h_out)
    c0, c1, cx = _align_corners_taps(w_in, w_out)
    ry = jnp.asarray(ry)[:, None, None]
    cx = jnp.asarray(cx)[:, None]
    top = jnp.take(x, r0, axis=-3)
    bottom = jnp.take(x, r1, axis=-3)
    rows = top + ry * (bottom - top) if h_in > 1 else top
    left = jnp.take(rows, c0, axis=-2)
    right = jnp.take(rows, c1, axis=-2)
    return left + cx * (right - left) if w_in > 1 else left


def _resize_fwd(in_size: tuple[int, int], size: tuple[int, int], x: Array) -> tuple[Array, None]:
    return _resize(in_size, size, x), None


def _resize_bwd(
    in_size: tuple[int, int], size: tuple[int, int], _: None, grad: Array
) -> tuple[Array]:
    rows = jnp.asarray(align_corners_matrix(in_size[0], size[0]))  # H_out, H
    cols = jnp.asarray(align_corners_matrix(in_size[1], size[1]))  # W_out, W
    out = jnp.einsum("...hvc,vw->...hwc", grad, cols)
    return (jnp.einsum("...hwc,hi->...iwc", out, rows).astype(grad.dtype),)


_resize.defvjp(_resize_fwd, _resize_bwd)


def avg_pool_2x2(x: Array) -> Array:
    """2x2 average pooling with stride 2; an odd last row/column is dropped.

    Args:
        x: ``(..., H, W, C)``.

    Returns:
        ``(..., H // 2, W // 2, C)``, as PyTorch ``F.avg_pool2d(x, 2, stride=2)``.
    """
    h, w = x.shape[-3] // 2 * 2, x.shape[-2] // 2 * 2
    x = x[..., :h, :w, :]
    a = x[..., 0::2, 0::2, :]
    b = x[..., 0::2, 1::2, :]
    c = x[..., 1::2, 0::2, :]
    d = x[..., 1::2, 1::2, :]
    return (a + b + c + d) * 0.25
