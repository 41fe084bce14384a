"""Geometry and texture sampling shared by the scene, the renderer and the ground truth.

Points are ``(x, y)``; maps are NumPy arrays broadcast over leading axes: affines
``(..., 2, 3)`` and homographies ``(..., 3, 3)`` acting on ``(x, y, 1)``. Textures are
sampled with texture pixel ``[r, c]`` centred at ``(x, y) = (c, r)``.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "apply_affine",
    "apply_homography",
    "invert_affines",
    "min_singular_values",
    "sample_texture",
]


def apply_affine(a: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y) -> a[..., :, :2] @ (x, y) + a[..., :, 2]`` for ``a`` broadcastable (..., 2, 3).

    Renderer and ground truth both use this exact sequence of float operations, so a
    pixel's shape test and a point's shape test agree bit for bit.
    """
    u = a[..., 0, 0] * x + a[..., 0, 1] * y + a[..., 0, 2]
    v = a[..., 1, 0] * x + a[..., 1, 1] * y + a[..., 1, 2]
    return u, v


def apply_homography(h: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Projective map of ``(x, y)`` by ``h`` broadcastable (..., 3, 3)."""
    w = h[..., 2, 0] * x + h[..., 2, 1] * y + h[..., 2, 2]
    u = (h[..., 0, 0] * x + h[..., 0, 1] * y + h[..., 0, 2]) / w
    v = (h[..., 1, 0] * x + h[..., 1, 1] * y + h[..., 1, 2]) / w
    return u, v


def invert_affines(a: np.ndarray) -> np.ndarray:
    """Inverse of each ``(..., 2, 3)`` affine, as ``(..., 2, 3)``."""
    full = np.zeros(a.shape[:-2] + (3, 3))
    full[..., :2, :] = a
    full[..., 2, 2] = 1.0
    return np.linalg.inv(full)[..., :2, :]


def min_singular_values(a: np.ndarray) -> np.ndarray:
    """Smallest singular value of the linear part of each ``(..., 2, 3)`` affine."""
    return np.linalg.svd(a[..., :2, :2], compute_uv=False)[..., -1]


def sample_texture(texture: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Bilinear sample of ``texture`` (h, w, C) at texture coordinates ``x, y`` (any shape S).

    Texture pixel ``[r, c]`` has its centre at ``(x, y) = (c, r)``; coordinates are
    clamped to ``[0, w - 1] x [0, h - 1]``. Returns float32 ``S + (C,)``.
    """
    h, w, c = texture.shape
    x = np.clip(x, 0.0, w - 1.0)
    y = np.clip(y, 0.0, h - 1.0)
    x0 = np.minimum(x.astype(np.int64), max(w - 2, 0))
    y0 = np.minimum(y.astype(np.int64), max(h - 2, 0))
    fx = (x - x0).astype(np.float32)[..., None]
    fy = (y - y0).astype(np.float32)[..., None]
    dx = 1 if w > 1 else 0
    dy = w if h > 1 else 0
    flat = texture.reshape(h * w, c)
    i00 = y0 * w + x0
    v00 = np.take(flat, i00, axis=0).astype(np.float32)
    v01 = np.take(flat, i00 + dx, axis=0).astype(np.float32)
    v10 = np.take(flat, i00 + dy, axis=0).astype(np.float32)
    v11 = np.take(flat, i00 + dy + dx, axis=0).astype(np.float32)
    top = v00 + (v01 - v00) * fx
    bottom = v10 + (v11 - v10) * fx
    return top + (bottom - top) * fy
