"""Textures of the layers: bundled photographs, procedural textures, their placement.

Photographs come from the images bundled inside scikit-image (``skimage.data``, no
download); :func:`procedural_texture` needs no scikit-image. Textures are ``(h, w, 3)``
(uint8, or float in ``[0, 255]``) with row ``0`` at the top and texture pixel ``[r, c]``
centred at ``(x, y) = (c, r)``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np

from pips_jax.errors import InputError
from pips_jax.synthetic.geometry import apply_affine, sample_texture

__all__ = [
    "BACKGROUND_IMAGES",
    "OBJECT_IMAGES",
    "PHOTO_NAMES",
    "load_photo",
    "photo_texture",
    "procedural_texture",
    "textured_placement",
]

_PHOTO_LOADERS: dict[str, Callable[[Any], np.ndarray]] = {
    "astronaut": lambda d: d.astronaut(),
    "chelsea": lambda d: d.chelsea(),
    "coffee": lambda d: d.coffee(),
    "rocket": lambda d: d.rocket(),
    "motorcycle": lambda d: d.stereo_motorcycle()[0],
    "immunohistochemistry": lambda d: d.immunohistochemistry(),
    "camera": lambda d: d.camera(),
    "brick": lambda d: d.brick(),
    "grass": lambda d: d.grass(),
    "gravel": lambda d: d.gravel(),
    "moon": lambda d: d.moon(),
    "coins": lambda d: d.coins(),
}
#: Every photograph name :func:`load_photo` knows.
PHOTO_NAMES: tuple[str, ...] = tuple(_PHOTO_LOADERS)
#: Default background photographs (colour, richly textured).
BACKGROUND_IMAGES: tuple[str, ...] = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "motorcycle",
    "immunohistochemistry",
)
#: Default object textures; the grey ones get a random colour tint. (``camera``,
#: ``moon`` and ``rocket`` are left out: they are mostly flat sky / surface.)
OBJECT_IMAGES: tuple[str, ...] = tuple(
    n for n in PHOTO_NAMES if n not in ("camera", "moon", "rocket")
)


@functools.cache
def load_photo(name: str) -> np.ndarray:
    """One bundled scikit-image photograph, cached, read-only.

    Returns uint8 ``(h, w, 3)`` for colour images or ``(h, w)`` for grey ones (row
    ``0`` is the top; texture pixel centres are at integer coordinates).
    """
    if name not in _PHOTO_LOADERS:
        raise InputError(f"photo: expected one of {', '.join(PHOTO_NAMES)}, got {name!r}")
    try:
        import skimage.data
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise InputError(
            "texture_source='photos': expected scikit-image to be installed "
            "(pip install scikit-image), found it missing; or use texture_source='procedural'"
        ) from err
    image = np.ascontiguousarray(_PHOTO_LOADERS[name](skimage.data), dtype=np.uint8)
    if image.ndim == 3:
        image = np.ascontiguousarray(image[..., :3])
    image.setflags(write=False)
    return image


def procedural_texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A random colourful multi-scale texture, float32 ``(height, width, 3)`` in [0, 255].

    Value noise at several scales (bilinear upsampling of random grids) plus two
    oriented gratings, so it has both blobs and fine trackable detail.
    """
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    out = np.zeros((height, width, 3), np.float32)
    for cell, weight in ((40.0, 1.0), (16.0, 0.8), (6.0, 0.6), (2.5, 0.45)):
        grid = rng.random((int(height / cell) + 2, int(width / cell) + 2, 3), dtype=np.float32)
        out += weight * sample_texture(grid, xx / cell, yy / cell)
    for _ in range(2):
        angle = rng.uniform(0, np.pi)
        period = rng.uniform(4.0, 24.0)
        phase = rng.uniform(0, 2 * np.pi)
        colour = rng.uniform(-0.5, 0.5, 3).astype(np.float32)
        wave = np.sin((np.cos(angle) * xx + np.sin(angle) * yy) * (2 * np.pi / period) + phase)
        out += wave[..., None] * colour
    low = out.min(axis=(0, 1))
    high = out.max(axis=(0, 1))
    return (out - low) / np.maximum(high - low, 1e-6) * 255.0


def photo_texture(rng: np.random.Generator, name: str) -> np.ndarray:
    """A bundled photo as ``(h, w, 3)``; grey photos get a random colour tint (float32)."""
    photo = load_photo(name)
    if photo.ndim == 3:
        return photo
    gain = rng.uniform(0.5, 1.0, 3).astype(np.float32)
    base = rng.uniform(0.0, 1.0, 3).astype(np.float32) * (1.0 - gain) * 255.0
    return photo[..., None].astype(np.float32) * gain + base


def _fit_texture_affine(
    rng: np.random.Generator,
    linear: np.ndarray,
    box_min: np.ndarray,
    box_max: np.ndarray,
    tex_shape: tuple[int, int],
) -> np.ndarray:
    """A ``(2, 3)`` map ``ref -> texture`` whose linear part is ``linear`` shrunk to fit.

    The reference box ``[box_min, box_max]`` lands inside the texture with a one-pixel
    border, at a random offset.
    """
    corners = np.array(
        [[box_min[0], box_min[1]], [box_max[0], box_min[1]], [box_min[0], box_max[1]], box_max]
    )
    mapped = corners @ linear.T
    span = mapped.max(axis=0) - mapped.min(axis=0)
    room = np.array([tex_shape[1] - 3.0, tex_shape[0] - 3.0])
    shrink = min(1.0, float(np.min(room / np.maximum(span, 1e-9))))
    linear = linear * shrink
    mapped = corners @ linear.T
    low = 1.0 - mapped.min(axis=0)
    high = np.array([tex_shape[1] - 2.0, tex_shape[0] - 2.0]) - mapped.max(axis=0)
    offset = low + rng.random(2) * np.maximum(high - low, 0.0)
    return np.concatenate([linear, offset[:, None]], axis=1)


def textured_placement(
    rng: np.random.Generator,
    texture: np.ndarray,
    linear: np.ndarray,
    box_min: np.ndarray,
    box_max: np.ndarray,
    tries: int = 8,
) -> np.ndarray:
    """The most textured of ``tries`` random :func:`_fit_texture_affine` placements.

    Texturedness is the colour standard deviation on a 12 x 12 grid over the box, so
    flat crops (sky, walls) are avoided where the photo allows.
    """
    gx, gy = np.meshgrid(
        np.linspace(box_min[0], box_max[0], 12), np.linspace(box_min[1], box_max[1], 12)
    )
    best, best_score = None, -1.0
    for _ in range(tries):
        affine = _fit_texture_affine(rng, linear, box_min, box_max, texture.shape[:2])
        u, v = apply_affine(affine, gx, gy)
        score = float(sample_texture(texture, u, v).std(axis=(0, 1)).sum())
        if score > best_score:
            best, best_score = affine, score
    assert best is not None
    return best
