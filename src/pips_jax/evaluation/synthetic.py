"""Synthetic point-tracking clips with exact, analytic ground truth.

A clip is a stack of layers painted back to front: a background photograph that moves
under a smooth homography, then ``num_objects`` textured convex polygons / ellipses,
each moving under its own smooth similarity transform (translation + rotation +
isotropic scale). Object ``k`` (layer id ``k``, ``1 <= k <= K``) is in front of every
layer with a smaller id; the background is layer 0.

Conventions (the same everywhere in pips_jax):

* Frame positions are ``(x, y)`` pixels with the origin at the CENTRE of the top-left
  pixel: integer coordinates hit pixel centres and the image area is
  ``[-0.5, W - 0.5] x [-0.5, H - 0.5]``.
* Every layer has its own *reference* plane. The background's reference plane is the
  frame-0 plane (``background_homographies[0]`` is the identity); an object's
  reference plane is its local shape frame (the shape is centred on the origin).
  ``background_homographies[t]`` (3x3) and ``object_affines[k - 1, t]`` (2x3) map
  reference coordinates to frame-``t`` pixels.
* Rendering inverse-maps every pixel centre into each layer and samples that layer's
  texture bilinearly (texture pixel centres at integer texture coordinates); a pixel
  belongs to object ``j`` when its inverse-mapped position is inside ``j``'s shape
  (``ObjectLayer.contains``). Ground truth uses the very same maps and the very same
  shape test, so a point is *visible* at frame ``t`` exactly when it lies in the image
  area and no nearer layer's shape covers it, and a visible point's rendered colour is
  its texture colour.

Everything is numpy and deterministic for a seed. :func:`generate_clip` makes one clip,
:func:`generate_batch` stacks several, :class:`SyntheticDataset` is an indexable,
reproducible stream of clips (a training-data source), and :func:`to_tapvid` /
:func:`write_tapvid_pickle` produce the TAP-Vid DAVIS structure so the same
evaluation code runs on synthetic and real data.

Photographs come from the images bundled inside scikit-image (``skimage.data``, no
download); ``texture_source="procedural"`` needs no scikit-image.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import pickle
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pips_jax.errors import InputError

__all__ = [
    "BACKGROUND_IMAGES",
    "OBJECT_IMAGES",
    "PHOTO_NAMES",
    "Clip",
    "ObjectLayer",
    "Scene",
    "SyntheticConfig",
    "SyntheticDataset",
    "clip_from_scene",
    "color_jitter",
    "generate_batch",
    "generate_clip",
    "ground_truth",
    "load_photo",
    "point_colors",
    "procedural_texture",
    "random_scene",
    "render",
    "sample_points",
    "stack_clips",
    "to_tapvid",
    "write_tapvid_pickle",
]

# --------------------------------------------------------------------------------------
# Photographs bundled with scikit-image (all load offline from the installed package).

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


# --------------------------------------------------------------------------------------
# Configuration.


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_real(value: object) -> bool:
    return (
        isinstance(value, (int, float, np.integer, np.floating))
        and not isinstance(value, (bool, np.bool_))
        and math.isfinite(float(value))
    )


@dataclass(frozen=True)
class SyntheticConfig:
    """Seed-independent parameters of the synthetic benchmark.

    Sizes: ``height`` x ``width`` pixels, ``num_frames`` frames, ``num_objects``
    foreground objects, ``num_points`` tracked points per clip of which
    ``round(fraction_on_objects * num_points)`` lie on objects (split evenly over the
    objects; an object that is never usable gives its share to the background).

    Background motion, reached at the last frame along a smooth (quadratic) path from
    the identity at frame 0: translation up to ``max_background_shift`` pixels,
    rotation up to ``max_background_rotation`` degrees, ``|log zoom|`` up to
    ``max_background_zoom`` and a perspective tilt that changes the homogeneous
    ``w`` by up to ``max_background_perspective`` at the frame border. All zero gives a
    static background.

    Objects: radius in ``object_radius_range`` (fractions of ``min(height, width)``),
    speed up to ``max_object_speed`` pixels per frame (each object passes through the
    frame, entering and/or leaving it), total rotation up to ``max_object_rotation``
    degrees and ``|log scale change|`` up to ``max_object_zoom`` over the clip;
    ``ellipse_probability`` of being an ellipse rather than a convex 3-8-gon.

    ``margin`` (pixels): object points are at least this far inside their object's
    outline in every frame, and at its query frame every point is at least this far
    from the image border and from the outline of every nearer layer.

    Textures: ``texture_source`` is ``"photos"`` (``background_images`` /
    ``object_images`` from :data:`PHOTO_NAMES`; each object texture is procedural with
    probability ``procedural_probability``) or ``"procedural"`` (no scikit-image).
    """

    height: int = 256
    width: int = 256
    num_frames: int = 24
    num_objects: int = 4
    num_points: int = 256
    fraction_on_objects: float = 0.5
    max_background_shift: float = 24.0
    max_background_rotation: float = 6.0
    max_background_zoom: float = 0.15
    max_background_perspective: float = 0.05
    object_radius_range: tuple[float, float] = (0.08, 0.2)
    max_object_speed: float = 6.0
    max_object_rotation: float = 60.0
    max_object_zoom: float = 0.3
    ellipse_probability: float = 0.35
    margin: float = 1.5
    texture_source: str = "photos"
    background_images: tuple[str, ...] = BACKGROUND_IMAGES
    object_images: tuple[str, ...] = OBJECT_IMAGES
    procedural_probability: float = 0.2

    def __post_init__(self) -> None:
        def bad(name: str, expected: str) -> InputError:
            return InputError(
                f"SyntheticConfig.{name}: expected {expected}, got {getattr(self, name)!r}"
            )

        for name, low in (
            ("height", 8),
            ("width", 8),
            ("num_frames", 1),
            ("num_objects", 0),
            ("num_points", 1),
        ):
            value = getattr(self, name)
            if not _is_int(value) or value < low:
                raise bad(name, f"an integer >= {low}")
        for name, low, high in (
            ("fraction_on_objects", 0.0, 1.0),
            ("max_background_shift", 0.0, math.inf),
            ("max_background_rotation", 0.0, 90.0),
            ("max_background_zoom", 0.0, 1.0),
            ("max_background_perspective", 0.0, 0.3),
            ("max_object_speed", 0.0, math.inf),
            ("max_object_rotation", 0.0, math.inf),
            ("max_object_zoom", 0.0, 2.0),
            ("ellipse_probability", 0.0, 1.0),
            ("margin", 0.0, math.inf),
            ("procedural_probability", 0.0, 1.0),
        ):
            value = getattr(self, name)
            if not _is_real(value) or not low <= value <= high:
                raise bad(name, f"a number in [{low}, {high}]")
        radius = self.object_radius_range
        if (
            not isinstance(radius, tuple)
            or len(radius) != 2
            or not all(_is_real(r) for r in radius)
            or not 0 < radius[0] <= radius[1] <= 1
        ):
            raise bad("object_radius_range", "a tuple (low, high) with 0 < low <= high <= 1")
        if self.texture_source not in ("photos", "procedural"):
            raise bad("texture_source", "'photos' or 'procedural'")
        for name in ("background_images", "object_images"):
            names = getattr(self, name)
            if (
                not isinstance(names, tuple)
                or not names
                or any(n not in _PHOTO_LOADERS for n in names)
            ):
                raise bad(name, f"a non-empty tuple of names from {PHOTO_NAMES}")


# --------------------------------------------------------------------------------------
# Geometry helpers.


def _apply_affine(a: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y) -> a[..., :, :2] @ (x, y) + a[..., :, 2]`` for ``a`` broadcastable (..., 2, 3).

    Renderer and ground truth both use this exact sequence of float operations, so a
    pixel's shape test and a point's shape test agree bit for bit.
    """
    u = a[..., 0, 0] * x + a[..., 0, 1] * y + a[..., 0, 2]
    v = a[..., 1, 0] * x + a[..., 1, 1] * y + a[..., 1, 2]
    return u, v


def _apply_homography(h: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Projective map of ``(x, y)`` by ``h`` broadcastable (..., 3, 3)."""
    w = h[..., 2, 0] * x + h[..., 2, 1] * y + h[..., 2, 2]
    u = (h[..., 0, 0] * x + h[..., 0, 1] * y + h[..., 0, 2]) / w
    v = (h[..., 1, 0] * x + h[..., 1, 1] * y + h[..., 1, 2]) / w
    return u, v


def _invert_affines(a: np.ndarray) -> np.ndarray:
    """Inverse of each ``(..., 2, 3)`` affine, as ``(..., 2, 3)``."""
    full = np.zeros(a.shape[:-2] + (3, 3))
    full[..., :2, :] = a
    full[..., 2, 2] = 1.0
    return np.linalg.inv(full)[..., :2, :]


def _min_singular_values(a: np.ndarray) -> np.ndarray:
    """Smallest singular value of the linear part of each ``(..., 2, 3)`` affine."""
    return np.linalg.svd(a[..., :2, :2], compute_uv=False)[..., -1]


def _bilinear(texture: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
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


# --------------------------------------------------------------------------------------
# Scene description.


@dataclass(frozen=True, eq=False)
class ObjectLayer:
    """One foreground object.

    ``kind`` is ``"polygon"`` (``shape``: ``(V, 2)`` vertices of a convex polygon in
    local coordinates, in either winding order) or ``"ellipse"`` (``shape``: ``(2,)``
    semi-axes ``(a, b)`` along local ``x`` and ``y``); local ``(0, 0)`` should be inside. ``affines`` ``(T, 2, 3)`` maps local
    ``(x, y)`` to frame-``t`` pixels; ``texture`` ``(h, w, 3)`` (uint8 or float in
    ``[0, 255]``) is sampled at ``texture_affine @ (x_local, y_local, 1)``.
    """

    kind: str
    shape: np.ndarray
    affines: np.ndarray
    texture: np.ndarray
    texture_affine: np.ndarray
    _normals: np.ndarray = field(init=False, repr=False)
    _offsets: np.ndarray = field(init=False, repr=False)
    _inverse: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        shape = np.asarray(self.shape, dtype=np.float64)
        affines = np.asarray(self.affines, dtype=np.float64)
        texture = np.asarray(self.texture)
        texture_affine = np.asarray(self.texture_affine, dtype=np.float64)
        if affines.ndim != 3 or affines.shape[1:] != (2, 3) or not np.isfinite(affines).all():
            raise InputError(
                f"ObjectLayer.affines: expected finite (T, 2, 3), got shape {affines.shape}"
            )
        det = np.linalg.det(affines[:, :, :2])
        if not (np.abs(det) > 1e-9).all():
            raise InputError("ObjectLayer.affines: expected invertible affines, got a singular one")
        if texture.ndim != 3 or texture.shape[2] != 3 or min(texture.shape[:2]) < 2:
            raise InputError(
                f"ObjectLayer.texture: expected (h, w, 3) with h, w >= 2, got {texture.shape}"
            )
        if texture_affine.shape != (2, 3):
            raise InputError(
                f"ObjectLayer.texture_affine: expected (2, 3), got {texture_affine.shape}"
            )
        if self.kind == "ellipse":
            if shape.shape != (2,) or not (shape > 0).all():
                raise InputError(
                    f"ObjectLayer.shape: expected positive ellipse semi-axes (2,), got {shape!r}"
                )
            normals = offsets = np.zeros((0,))
        elif self.kind == "polygon":
            if shape.ndim != 2 or shape.shape[1] != 2 or shape.shape[0] < 3:
                raise InputError(
                    f"ObjectLayer.shape: expected (V >= 3, 2) polygon vertices, got {shape.shape}"
                )
            nxt = np.roll(shape, -1, axis=0)
            edges = nxt - shape
            cross = (
                edges[:, 0] * np.roll(edges, -1, axis=0)[:, 1]
                - edges[:, 1] * np.roll(edges, -1, axis=0)[:, 0]
            )
            if (cross < 0).all():
                shape = shape[::-1].copy()
                nxt = np.roll(shape, -1, axis=0)
                edges = nxt - shape
                cross = -cross[::-1]
            if not (cross > 0).all():
                raise InputError(
                    "ObjectLayer.shape: expected the vertices of a convex polygon, got a non-convex or degenerate one"
                )
            # Outward unit normals of a polygon whose turns are positive (x right, y down).
            normals = np.stack([edges[:, 1], -edges[:, 0]], axis=1)
            normals /= np.linalg.norm(normals, axis=1, keepdims=True)
            offsets = np.einsum("vi,vi->v", normals, shape)
        else:
            raise InputError(
                f"ObjectLayer.kind: expected 'polygon' or 'ellipse', got {self.kind!r}"
            )
        for name, value in (
            ("shape", shape),
            ("affines", affines),
            ("texture", texture),
            ("texture_affine", texture_affine),
            ("_normals", normals),
            ("_offsets", offsets),
            ("_inverse", _invert_affines(affines)),
        ):
            object.__setattr__(self, name, value)

    @property
    def inverse_affines(self) -> np.ndarray:
        """``(T, 2, 3)`` maps from frame-``t`` pixels to local coordinates."""
        return self._inverse

    @property
    def extent(self) -> np.ndarray:
        """``(2,)`` half-widths ``(ex, ey)`` of the shape's local bounding box (centred at 0)."""
        if self.kind == "ellipse":
            return self.shape.copy()
        return np.abs(self.shape).max(axis=0)

    def signed_distance(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Conservative signed distance of local points ``(x, y)`` (any shape S) to the outline.

        Negative inside, positive outside, and ``|d|`` never exceeds the true Euclidean
        distance to the outline in local units (exact inside a polygon). Float64, shape S.
        """
        if self.kind == "ellipse":
            a, b = self.shape
            rho = np.sqrt((x / a) ** 2 + (y / b) ** 2)
            return (rho - 1.0) * min(a, b)
        n, d = self._normals, self._offsets
        out = n[0, 0] * x + n[0, 1] * y - d[0]
        for i in range(1, len(d)):
            np.maximum(out, n[i, 0] * x + n[i, 1] * y - d[i], out=out)
        return out

    def contains(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Whether local points ``(x, y)`` are strictly inside the shape (the renderer's test)."""
        return self.signed_distance(x, y) < 0


@dataclass(frozen=True, eq=False)
class Scene:
    """Everything needed to render a clip and to compute its ground truth.

    ``background_texture`` ``(h, w, 3)`` (uint8 or float in ``[0, 255]``) is sampled at
    ``background_texture_affine @ (x_ref, y_ref, 1)``; ``background_homographies``
    ``(T, 3, 3)`` maps background reference coordinates to frame-``t`` pixels.
    ``objects`` are ordered back to front: ``objects[k - 1]`` is layer ``k``.
    """

    height: int
    width: int
    background_texture: np.ndarray
    background_texture_affine: np.ndarray
    background_homographies: np.ndarray
    objects: tuple[ObjectLayer, ...] = ()

    def __post_init__(self) -> None:
        if not (
            _is_int(self.height) and _is_int(self.width) and self.height > 0 and self.width > 0
        ):
            raise InputError(
                f"Scene: expected positive integer height/width, got {self.height!r}, {self.width!r}"
            )
        homs = np.asarray(self.background_homographies, dtype=np.float64)
        if homs.ndim != 3 or homs.shape[1:] != (3, 3) or len(homs) < 1:
            raise InputError(
                f"Scene.background_homographies: expected (T, 3, 3), got shape {homs.shape}"
            )
        tex = np.asarray(self.background_texture)
        if tex.ndim != 3 or tex.shape[2] != 3 or min(tex.shape[:2]) < 2:
            raise InputError(
                f"Scene.background_texture: expected (h, w, 3) with h, w >= 2, got {tex.shape}"
            )
        tex_affine = np.asarray(self.background_texture_affine, dtype=np.float64)
        if tex_affine.shape != (2, 3):
            raise InputError(
                f"Scene.background_texture_affine: expected (2, 3), got {tex_affine.shape}"
            )
        objects = tuple(self.objects)
        for k, obj in enumerate(objects):
            if not isinstance(obj, ObjectLayer):
                raise InputError(f"Scene.objects[{k}]: expected an ObjectLayer, got {type(obj)}")
            if len(obj.affines) != len(homs):
                raise InputError(
                    f"Scene.objects[{k}].affines: expected {len(homs)} frames, got {len(obj.affines)}"
                )
        object.__setattr__(self, "background_homographies", homs)
        object.__setattr__(self, "background_texture", tex)
        object.__setattr__(self, "background_texture_affine", tex_affine)
        object.__setattr__(self, "objects", objects)

    @property
    def num_frames(self) -> int:
        return len(self.background_homographies)

    @property
    def object_affines(self) -> np.ndarray:
        """``(K, T, 2, 3)`` float64: local -> frame-``t`` pixels for each object."""
        if not self.objects:
            return np.zeros((0, self.num_frames, 2, 3))
        return np.stack([o.affines for o in self.objects])


# --------------------------------------------------------------------------------------
# Random scenes.


def procedural_texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A random colourful multi-scale texture, float32 ``(height, width, 3)`` in [0, 255].

    Value noise at several scales (bilinear upsampling of random grids) plus two
    oriented gratings, so it has both blobs and fine trackable detail.
    """
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    out = np.zeros((height, width, 3), np.float32)
    for cell, weight in ((40.0, 1.0), (16.0, 0.8), (6.0, 0.6), (2.5, 0.45)):
        grid = rng.random((int(height / cell) + 2, int(width / cell) + 2, 3), dtype=np.float32)
        out += weight * _bilinear(grid, xx / cell, yy / cell)
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


def _photo_texture(rng: np.random.Generator, name: str) -> np.ndarray:
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


def _textured_placement(
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
        u, v = _apply_affine(affine, gx, gy)
        score = float(_bilinear(texture, u, v).std(axis=(0, 1)).sum())
        if score > best_score:
            best, best_score = affine, score
    assert best is not None
    return best


def _background_homographies(config: SyntheticConfig, rng: np.random.Generator) -> np.ndarray:
    """``(T, 3, 3)`` smooth homographies, identity at frame 0 (see :class:`SyntheticConfig`)."""
    t_count, h, w = config.num_frames, config.height, config.width
    s = np.linspace(0.0, 1.0, t_count) if t_count > 1 else np.zeros(1)

    def path(end: float) -> np.ndarray:
        # |end * (s + a s (1 - s))| <= |end| for |a| <= 1: smooth, bounded, zero at s = 0.
        return end * (s + rng.uniform(-1.0, 1.0) * s * (1.0 - s))

    radius = config.max_background_shift * math.sqrt(rng.random())
    direction = rng.uniform(0.0, 2.0 * np.pi)
    tx = path(radius * math.cos(direction))
    ty = path(radius * math.sin(direction))
    angle = path(np.deg2rad(rng.uniform(-1, 1) * config.max_background_rotation))
    zoom = np.exp(path(rng.uniform(-1, 1) * config.max_background_zoom))
    px = path(rng.uniform(-1, 1) * config.max_background_perspective)
    py = path(rng.uniform(-1, 1) * config.max_background_perspective)

    cx, cy, r = (w - 1) / 2.0, (h - 1) / 2.0, max(h, w) / 2.0
    homs = np.zeros((t_count, 3, 3))
    cos, sin = zoom * np.cos(angle), zoom * np.sin(angle)
    # H = Translate(c + t) @ RotateScale @ Perspective @ Translate(-c)
    lin = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], -2)  # (T, 2, 2)
    persp = np.stack([px / r, py / r], -1)  # (T, 2)
    homs[:, :2, :2] = lin
    homs[:, 2, :2] = persp
    homs[:, 2, 2] = 1.0
    centre_in = np.array([[1, 0, -cx], [0, 1, -cy], [0, 0, 1.0]])
    out = np.zeros((t_count, 3, 3))
    out[:, 0, 0] = out[:, 1, 1] = out[:, 2, 2] = 1.0
    out[:, 0, 2] = cx + tx
    out[:, 1, 2] = cy + ty
    out = out @ homs @ centre_in
    return out / out[:, 2:3, 2:3]


def _random_object(
    config: SyntheticConfig, rng: np.random.Generator, texture_names: Sequence[str]
) -> ObjectLayer:
    t_count, h, w = config.num_frames, config.height, config.width
    lo, hi = config.object_radius_range
    radius = rng.uniform(lo, hi) * min(h, w)
    a, b = radius, radius * rng.uniform(0.5, 1.0)
    if rng.random() < config.ellipse_probability:
        kind, shape = "ellipse", np.array([a, b])
    else:
        count = int(rng.integers(3, 9))
        phi = (np.arange(count) + rng.uniform(-0.2, 0.2, count)) * (2 * np.pi / count)
        phi += rng.uniform(0, 2 * np.pi)
        kind, shape = "polygon", np.stack([a * np.cos(phi), b * np.sin(phi)], axis=1)

    # The object is at a random point of the central frame area at a random frame and
    # moves through it along a gently bent path, so it enters and/or leaves the frame.
    t = np.arange(t_count, dtype=np.float64)
    t_mid = rng.uniform(0, t_count - 1)
    via = np.array([rng.uniform(0.15, 0.85) * (w - 1), rng.uniform(0.15, 0.85) * (h - 1)])
    speed = rng.uniform(0.3, 1.0) * config.max_object_speed
    heading = rng.uniform(0, 2 * np.pi)
    velocity = speed * np.array([math.cos(heading), math.sin(heading)])
    bend = rng.uniform(-1, 1) * config.max_object_speed / max(t_count, 2)
    accel = bend * np.array([-math.sin(heading), math.cos(heading)])
    dt = (t - t_mid)[:, None]
    centre = via + velocity * dt + 0.5 * accel * dt**2
    span = max(t_count - 1, 1)
    angle0 = rng.uniform(0, 2 * np.pi)
    spin = np.deg2rad(rng.uniform(-1, 1) * config.max_object_rotation) / span
    growth = rng.uniform(-1, 1) * config.max_object_zoom / span
    angle = angle0 + spin * (t - t_mid)
    scale = np.exp(growth * (t - t_mid))
    affines = np.zeros((t_count, 2, 3))
    affines[:, 0, 0] = scale * np.cos(angle)
    affines[:, 0, 1] = -scale * np.sin(angle)
    affines[:, 1, 0] = scale * np.sin(angle)
    affines[:, 1, 1] = scale * np.cos(angle)
    affines[:, :, 2] = centre

    extent = np.array([a, b]) if kind == "ellipse" else np.abs(shape).max(axis=0)
    use_procedural = config.texture_source == "procedural" or (
        rng.random() < config.procedural_probability
    )
    if use_procedural:
        size = int(np.ceil(2 * extent.max())) + 6
        texture = procedural_texture(rng, size, size)
        tex_scale = 1.0
    else:
        texture = _photo_texture(rng, texture_names[int(rng.integers(len(texture_names)))])
        tex_scale = rng.uniform(0.6, 1.6)
    tex_angle = rng.uniform(0, 2 * np.pi)
    linear = tex_scale * np.array(
        [[math.cos(tex_angle), -math.sin(tex_angle)], [math.sin(tex_angle), math.cos(tex_angle)]]
    )
    tex_affine = _textured_placement(rng, texture, linear, -extent, extent)
    return ObjectLayer(kind, shape, affines, texture, tex_affine)


def random_scene(config: SyntheticConfig, rng: np.random.Generator) -> Scene:
    """A random :class:`Scene` for ``config`` drawn from ``rng`` (deterministic for its state).

    The background texture covers every position any frame shows (the image area
    inverse-mapped through every ``background_homographies[t]``).
    """
    if not isinstance(config, SyntheticConfig):
        raise InputError(f"config: expected a SyntheticConfig, got {type(config).__name__}")
    h, w = config.height, config.width
    homs = _background_homographies(config, rng)
    inv = np.linalg.inv(homs)
    cx = np.array([-1.5, w + 0.5, -1.5, w + 0.5])
    cy = np.array([-1.5, -1.5, h + 0.5, h + 0.5])
    rx, ry = _apply_homography(inv[:, None], cx[None], cy[None])
    box_min = np.array([rx.min(), ry.min()])
    box_max = np.array([rx.max(), ry.max()])
    extent = box_max - box_min
    if config.texture_source == "procedural":
        texture = procedural_texture(rng, int(extent[1]) + 6, int(extent[0]) + 6)
        linear = np.eye(2)
        bg_name = None
    else:
        bg_name = config.background_images[int(rng.integers(len(config.background_images)))]
        texture = _photo_texture(rng, bg_name)
        # Texture pixels per frame pixel; <1 zooms into the photo. Random mirror.
        scale = rng.uniform(0.5, 1.3)
        mirror = 1.0 if rng.random() < 0.5 else -1.0
        linear = np.diag([scale * mirror, scale])
    tex_affine = _textured_placement(rng, texture, linear, box_min, box_max)

    names = [n for n in config.object_images if n != bg_name] or list(config.object_images)
    objects = tuple(_random_object(config, rng, names) for _ in range(config.num_objects))
    return Scene(h, w, texture, tex_affine, homs, objects)


# --------------------------------------------------------------------------------------
# Rendering and ground truth.


def render(scene: Scene) -> np.ndarray:
    """Renders ``scene`` as uint8 ``(T, H, W, 3)``.

    Pixel ``[t, r, c]`` is the colour, at its centre ``(x, y) = (c, r)``, of the
    nearest layer whose shape contains the centre's inverse-mapped position (the
    background contains everything), sampled bilinearly from that layer's texture.
    """
    h, w, t_count = scene.height, scene.width, scene.num_frames
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    # Frame -> background texture: texture_affine @ H_t^{-1}, one projective map per frame
    # (float32 is ample for sampling colours: ~1e-4 px; shape tests below use float64).
    inv = np.linalg.inv(scene.background_homographies)
    tex = np.concatenate([scene.background_texture_affine, [[0.0, 0.0, 1.0]]])
    frame_to_tex = (tex @ inv).astype(np.float32)  # (T, 3, 3)
    xs32, ys32 = xs.astype(np.float32), ys.astype(np.float32)
    u, v = _apply_homography(frame_to_tex[:, None, None], xs32[None], ys32[None])
    video = _bilinear(scene.background_texture, u, v)  # (T, H, W, 3) float32

    for obj in scene.objects:
        ext = obj.extent
        corners = np.array([[-1, -1], [1, -1], [-1, 1], [1, 1]]) * ext
        fx, fy = _apply_affine(obj.affines[:, None], corners[None, :, 0], corners[None, :, 1])
        x0 = np.maximum(np.ceil(fx.min(axis=1)), 0).astype(int)
        x1 = np.minimum(np.floor(fx.max(axis=1)), w - 1).astype(int)
        y0 = np.maximum(np.ceil(fy.min(axis=1)), 0).astype(int)
        y1 = np.minimum(np.floor(fy.max(axis=1)), h - 1).astype(int)
        for t in range(t_count):
            if x0[t] > x1[t] or y0[t] > y1[t]:
                continue
            sub_x = xs[y0[t] : y1[t] + 1, x0[t] : x1[t] + 1]
            sub_y = ys[y0[t] : y1[t] + 1, x0[t] : x1[t] + 1]
            lx, ly = _apply_affine(obj.inverse_affines[t], sub_x, sub_y)
            rows, cols = np.nonzero(obj.contains(lx, ly))
            if rows.size == 0:
                continue
            lx, ly = lx[rows, cols], ly[rows, cols]
            tu, tv = _apply_affine(obj.texture_affine, lx, ly)
            video[t, rows + y0[t], cols + x0[t]] = _bilinear(obj.texture, tu, tv)
    return np.clip(np.rint(video), 0, 255).astype(np.uint8)


def _check_points(scene: Scene, layer: np.ndarray, ref_xy: np.ndarray) -> tuple[np.ndarray, ...]:
    layer = np.asarray(layer)
    ref_xy = np.asarray(ref_xy, dtype=np.float64)
    if layer.ndim != 1 or not np.issubdtype(layer.dtype, np.integer):
        raise InputError(f"layer: expected an integer (N,) array, got {layer.dtype} {layer.shape}")
    if ref_xy.shape != (len(layer), 2) or not np.isfinite(ref_xy).all():
        raise InputError(f"ref_xy: expected finite ({len(layer)}, 2), got shape {ref_xy.shape}")
    if len(layer) and (layer.min() < 0 or layer.max() > len(scene.objects)):
        raise InputError(
            f"layer: expected ids in [0, {len(scene.objects)}], got range [{layer.min()}, {layer.max()}]"
        )
    return layer.astype(np.int64), ref_xy


def ground_truth(
    scene: Scene, layer: np.ndarray, ref_xy: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Exact tracks and occlusion of points given on their layers' reference planes.

    Args:
        layer: ``(N,)`` int layer ids (0 = background, ``k`` = ``scene.objects[k-1]``).
        ref_xy: ``(N, 2)`` ``(x, y)`` in each point's layer reference coordinates.

    Returns:
        ``tracks`` float64 ``(N, T, 2)`` ``(x, y)`` frame pixels (origin at the centre of
        the top-left pixel) and ``occluded`` bool ``(N, T)``: True where the point is
        outside the image area ``[-0.5, W - 0.5] x [-0.5, H - 0.5]`` or inside the shape
        of a nearer object (the renderer's shape test).
    """
    layer, ref_xy = _check_points(scene, layer, ref_xy)
    n, t_count = len(layer), scene.num_frames
    tracks = np.empty((n, t_count, 2))
    x, y = ref_xy[:, 0:1], ref_xy[:, 1:2]  # (N, 1)
    on_bg = layer == 0
    tracks[on_bg, :, 0], tracks[on_bg, :, 1] = _apply_homography(
        scene.background_homographies[None], x[on_bg], y[on_bg]
    )
    for k, obj in enumerate(scene.objects, start=1):
        on_k = layer == k
        tracks[on_k, :, 0], tracks[on_k, :, 1] = _apply_affine(obj.affines[None], x[on_k], y[on_k])
    px, py = tracks[..., 0], tracks[..., 1]
    occluded = (px < -0.5) | (px > scene.width - 0.5) | (py < -0.5) | (py > scene.height - 0.5)
    occluded |= ~np.isfinite(px) | ~np.isfinite(py)
    for j, obj in enumerate(scene.objects, start=1):
        behind = layer < j
        if not behind.any():
            continue
        lx, ly = _apply_affine(obj.inverse_affines[None], px[behind], py[behind])
        occluded[behind] |= obj.contains(lx, ly)
    return tracks, occluded


def point_colors(scene: Scene, layer: np.ndarray, ref_xy: np.ndarray) -> np.ndarray:
    """Texture colour (float32 ``(N, 3)``, 0..255, before uint8 rounding) of each point.

    A visible point's rendered colour at a pixel centre equals this colour (up to the
    uint8 rounding); ``layer`` / ``ref_xy`` as in :func:`ground_truth`.
    """
    layer, ref_xy = _check_points(scene, layer, ref_xy)
    out = np.zeros((len(layer), 3), np.float32)
    textures = [(scene.background_texture, scene.background_texture_affine)] + [
        (o.texture, o.texture_affine) for o in scene.objects
    ]
    for k, (texture, affine) in enumerate(textures):
        sel = layer == k
        if sel.any():
            u, v = _apply_affine(affine, ref_xy[sel, 0], ref_xy[sel, 1])
            out[sel] = _bilinear(texture, u, v)
    return out


def _first_visible(occluded: np.ndarray) -> np.ndarray:
    """Index of the first False along the last axis (``-1`` where all are True)."""
    first = np.argmax(~occluded, axis=-1)
    return np.where(occluded.all(axis=-1), -1, first)


def sample_points(
    scene: Scene,
    num_points: int,
    rng: np.random.Generator,
    fraction_on_objects: float = 0.5,
    margin: float = 1.5,
) -> tuple[np.ndarray, np.ndarray]:
    """Samples points that are unambiguously visible at their first visible frame.

    ``round(fraction_on_objects * num_points)`` points go on objects (split evenly; an
    object that yields no usable point hands its share to the background), the rest on
    the background. Candidates are drawn at a uniformly random frame (background:
    uniform over the image area; objects: uniform inside the shape and at least
    ``margin`` pixels from the outline in every frame) and kept when the point's first
    visible frame has it at least ``margin`` pixels from the image border and from
    every nearer object's outline. Returns shuffled ``layer`` int32 ``(N,)`` and
    ``ref_xy`` float64 ``(N, 2)`` (layer reference coordinates).
    """
    if not _is_int(num_points) or num_points < 1:
        raise InputError(f"num_points: expected an integer >= 1, got {num_points!r}")
    h, w, t_count = scene.height, scene.width, scene.num_frames
    k_count = len(scene.objects)
    quota = np.zeros(k_count + 1, dtype=np.int64)
    if k_count:
        on_objects = int(round(fraction_on_objects * num_points))
        quota[1:] = on_objects // k_count
        extra = rng.permutation(k_count)[: on_objects - quota[1:].sum()]
        quota[1 + extra] += 1
    quota[0] = num_points - quota[1:].sum()
    inv_homs = np.linalg.inv(scene.background_homographies)
    inner = [
        margin / max(float(_min_singular_values(o.affines).min()), 1e-12) for o in scene.objects
    ]
    sv = [_min_singular_values(o.affines) for o in scene.objects]  # (T,) each

    got_layer: list[np.ndarray] = []
    got_ref: list[np.ndarray] = []
    failures = np.zeros(k_count + 1, dtype=np.int64)
    for _ in range(40):
        if quota.sum() == 0:
            break
        cand_layer, cand_ref = [], []
        for k in np.nonzero(quota)[0]:
            m = int(3 * quota[k] + 16)
            if k == 0:
                ts = rng.integers(0, t_count, m)
                fx = rng.uniform(margin - 0.5, w - 0.5 - margin, m)
                fy = rng.uniform(margin - 0.5, h - 0.5 - margin, m)
                rx, ry = _apply_homography(inv_homs[ts], fx, fy)
                ref = np.stack([rx, ry], axis=1)
            else:
                obj = scene.objects[k - 1]
                ext = obj.extent
                ref = rng.uniform(-ext, ext, (m, 2))
                ref = ref[obj.signed_distance(ref[:, 0], ref[:, 1]) <= -inner[k - 1]]
            cand_layer.append(np.full(len(ref), k, dtype=np.int64))
            cand_ref.append(ref)
        layer = np.concatenate(cand_layer)
        ref = np.concatenate(cand_ref)
        tracks, occluded = ground_truth(scene, layer, ref)
        first = _first_visible(occluded)
        ok = first >= 0
        idx = np.arange(len(layer))
        pos = tracks[idx, np.maximum(first, 0)]
        border = np.minimum.reduce(
            [pos[:, 0] + 0.5, w - 0.5 - pos[:, 0], pos[:, 1] + 0.5, h - 0.5 - pos[:, 1]]
        )
        ok &= border >= margin
        for j, obj in enumerate(scene.objects, start=1):
            sel = np.nonzero(ok & (layer < j))[0]
            if sel.size:
                f = first[sel]
                lx, ly = _apply_affine(obj.inverse_affines[f], pos[sel, 0], pos[sel, 1])
                ok[sel] &= obj.signed_distance(lx, ly) * sv[j - 1][f] >= margin
        for k in np.nonzero(quota)[0]:
            valid = np.nonzero(ok & (layer == k))[0][: quota[k]]
            got_layer.append(layer[valid])
            got_ref.append(ref[valid])
            quota[k] -= len(valid)
            failures[k] = failures[k] + 1 if len(valid) == 0 else 0
        # Objects that keep failing (tiny, or always hidden) give their share away.
        for k in range(1, k_count + 1):
            if quota[k] and failures[k] >= 3:
                quota[0] += quota[k]
                quota[k] = 0
    if quota.sum():
        raise InputError(
            f"sample_points: expected to find {num_points} unambiguously visible points, found {num_points - quota.sum()}"
        )
    layer = np.concatenate(got_layer)
    ref = np.concatenate(got_ref)
    order = rng.permutation(len(layer))
    return layer[order].astype(np.int32), ref[order]


# --------------------------------------------------------------------------------------
# Clips.


@dataclass(frozen=True, eq=False)
class Clip:
    """One synthetic clip with exact ground truth.

    Attributes:
        video: uint8 ``(T, H, W, 3)``.
        tracks: float32 ``(N, T, 2)`` ``(x, y)`` pixels, origin at the centre of the
            top-left pixel.
        occluded: bool ``(N, T)``; True outside the image area
            ``[-0.5, W - 0.5] x [-0.5, H - 0.5]`` or behind a nearer layer.
        query_points: float32 ``(N, 3)`` ``(t, y, x)``: each point's first visible frame
            and its position there (``occluded[i, t] is False``).
        layer: int32 ``(N,)`` layer ids (0 = background, ``k`` = object ``k``; larger
            ids are nearer).
        reference_points: float64 ``(N, 2)`` ``(x, y)`` in the layer's reference plane.
        object_affines: float64 ``(K, T, 2, 3)`` local -> frame pixels per object.
        background_homographies: float64 ``(T, 3, 3)`` background reference (frame 0)
            -> frame pixels.
        seed: the seed the clip was generated from (``-1`` for explicit scenes).
        scene: the :class:`Scene` (textures, shapes) the clip was rendered from.
    """

    video: np.ndarray
    tracks: np.ndarray
    occluded: np.ndarray
    query_points: np.ndarray
    layer: np.ndarray
    reference_points: np.ndarray
    object_affines: np.ndarray
    background_homographies: np.ndarray
    seed: int = -1
    scene: Scene | None = field(default=None, repr=False)


def clip_from_scene(scene: Scene, layer: np.ndarray, ref_xy: np.ndarray, seed: int = -1) -> Clip:
    """Renders ``scene`` and tracks the given points (``layer``, ``ref_xy`` as in
    :func:`ground_truth`); every point must be visible in at least one frame."""
    tracks, occluded = ground_truth(scene, layer, ref_xy)
    first = _first_visible(occluded)
    if (first < 0).any():
        raise InputError(
            f"clip_from_scene: expected every point to be visible in some frame, got {int((first < 0).sum())} never visible"
        )
    pos = tracks[np.arange(len(first)), first]
    query = np.stack([first, pos[:, 1], pos[:, 0]], axis=1).astype(np.float32)
    return Clip(
        video=render(scene),
        tracks=tracks.astype(np.float32),
        occluded=occluded,
        query_points=query,
        layer=np.asarray(layer, dtype=np.int32),
        reference_points=np.asarray(ref_xy, dtype=np.float64),
        object_affines=scene.object_affines,
        background_homographies=scene.background_homographies.copy(),
        seed=int(seed),
        scene=scene,
    )


def _check_seed(seed: object) -> int:
    if not _is_int(seed) or int(seed) < 0:  # type: ignore[call-overload]
        raise InputError(f"seed: expected a non-negative integer, got {seed!r}")
    return int(seed)  # type: ignore[call-overload]


def generate_clip(config: SyntheticConfig | None = None, seed: int = 0) -> Clip:
    """Generates the clip for ``(config, seed)``; identical arrays for identical inputs.

    See :class:`Clip` for shapes and conventions. ``config=None`` uses the defaults
    (256x256, 24 frames, 4 objects, 256 points).
    """
    config = SyntheticConfig() if config is None else config
    if not isinstance(config, SyntheticConfig):
        raise InputError(f"config: expected a SyntheticConfig, got {type(config).__name__}")
    seed = _check_seed(seed)
    rng = np.random.default_rng(seed)
    scene = random_scene(config, rng)
    layer, ref = sample_points(
        scene, config.num_points, rng, config.fraction_on_objects, config.margin
    )
    return clip_from_scene(scene, layer, ref, seed)


_STACK_KEYS = (
    "video",
    "tracks",
    "occluded",
    "query_points",
    "layer",
    "reference_points",
    "object_affines",
    "background_homographies",
)


def stack_clips(clips: Sequence[Clip]) -> dict[str, np.ndarray]:
    """Stacks same-shaped clips: ``{key: (B, ...)}`` for every array of :class:`Clip`
    (``video`` (B, T, H, W, 3) uint8, ``tracks`` (B, N, T, 2), ``occluded`` (B, N, T),
    ``query_points`` (B, N, 3) ``(t, y, x)``, ``layer`` (B, N), ...) plus ``seed`` (B,)."""
    clips = list(clips)
    if not clips or not all(isinstance(c, Clip) for c in clips):
        raise InputError("stack_clips: expected a non-empty sequence of Clip, got something else")
    out = {}
    for key in _STACK_KEYS:
        arrays = [getattr(c, key) for c in clips]
        if len({a.shape for a in arrays}) != 1:
            raise InputError(
                f"stack_clips: expected equal {key} shapes, got {sorted({a.shape for a in arrays})}"
            )
        out[key] = np.stack(arrays)
    out["seed"] = np.array([c.seed for c in clips], dtype=np.int64)
    return out


def generate_batch(config: SyntheticConfig | None, seeds: Iterable[int]) -> dict[str, np.ndarray]:
    """:func:`generate_clip` for every seed, stacked by :func:`stack_clips`."""
    seeds = list(seeds)
    if not seeds:
        raise InputError("seeds: expected at least one seed, got none")
    return stack_clips([generate_clip(config, s) for s in seeds])


# --------------------------------------------------------------------------------------
# Dataset and augmentation.

Augment = Callable[[Clip, np.random.Generator], Clip]


def color_jitter(
    clip: Clip,
    rng: np.random.Generator,
    brightness: float = 0.15,
    contrast: float = 0.2,
    saturation: float = 0.2,
    noise_std: float = 2.0,
) -> Clip:
    """Per-clip brightness / contrast / saturation jitter plus per-pixel Gaussian noise.

    Changes only ``video`` (still uint8 ``(T, H, W, 3)``); tracks, occlusion and all
    geometry are untouched. Usable as :class:`SyntheticDataset`'s ``augment``.
    """
    video = clip.video.astype(np.float32)
    mean = video.mean()
    grey = video.mean(axis=-1, keepdims=True)
    video = grey + (video - grey) * np.float32(1 + rng.uniform(-saturation, saturation))
    video = mean + (video - mean) * np.float32(1 + rng.uniform(-contrast, contrast))
    video = video * np.float32(1 + rng.uniform(-brightness, brightness))
    if noise_std > 0:
        video += rng.normal(0.0, noise_std, video.shape).astype(np.float32)
    return dataclasses.replace(clip, video=np.clip(np.rint(video), 0, 255).astype(np.uint8))


class SyntheticDataset(Sequence[Clip]):
    """A reproducible, indexable sequence of ``length`` synthetic clips.

    Clip ``i`` is ``generate_clip(config, dataset.clip_seed(i))`` where the clip seed
    is derived from ``(seed, i)`` with ``numpy.random.SeedSequence``; if ``augment`` is
    given it is applied as ``augment(clip, rng)`` with an rng also derived from
    ``(seed, i)``, so ``dataset[i]`` is the same every time and in every process.
    """

    def __init__(
        self,
        config: SyntheticConfig | None = None,
        seed: int = 0,
        length: int = 1000,
        augment: Augment | None = None,
    ) -> None:
        self.config = SyntheticConfig() if config is None else config
        if not isinstance(self.config, SyntheticConfig):
            raise InputError(
                f"config: expected a SyntheticConfig, got {type(self.config).__name__}"
            )
        self.seed = _check_seed(seed)
        if not _is_int(length) or length < 0:
            raise InputError(f"length: expected a non-negative integer, got {length!r}")
        if augment is not None and not callable(augment):
            raise InputError(f"augment: expected a callable or None, got {type(augment).__name__}")
        self.length = int(length)
        self.augment = augment

    def __len__(self) -> int:
        return self.length

    def _index(self, index: object) -> int:
        if not _is_int(index):
            raise TypeError(f"index: expected an integer, got {type(index).__name__}")
        i = int(index)  # type: ignore[call-overload]
        if i < 0:
            i += self.length
        if not 0 <= i < self.length:
            raise IndexError(f"index {index} out of range for a dataset of {self.length} clips")
        return i

    def clip_seed(self, index: int) -> int:
        """The :func:`generate_clip` seed of clip ``index`` (a 63-bit integer)."""
        i = self._index(index)
        state = np.random.SeedSequence(self.seed, spawn_key=(i, 0)).generate_state(1, np.uint64)
        return int(state[0] >> np.uint64(1))

    def __getitem__(self, index: int) -> Clip:  # type: ignore[override]
        i = self._index(index)
        clip = generate_clip(self.config, self.clip_seed(i))
        if self.augment is not None:
            rng = np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(i, 1)))
            clip = self.augment(clip, rng)
        return clip

    def __iter__(self) -> Iterator[Clip]:
        for i in range(self.length):
            yield self[i]

    def batch(self, indices: Iterable[int]) -> dict[str, np.ndarray]:
        """Clips ``indices`` stacked by :func:`stack_clips`."""
        return stack_clips([self[i] for i in indices])


# --------------------------------------------------------------------------------------
# TAP-Vid export.


def to_tapvid(clips: Mapping[str, Clip] | Iterable[Clip]) -> dict[str, dict[str, np.ndarray]]:
    """TAP-Vid DAVIS-style dict ``{name: {'video', 'points', 'occluded'}}``.

    ``video`` uint8 ``(T, H, W, 3)``; ``points`` float64 ``(N, T, 2)`` ``(x, y)``
    normalised to [0, 1] with (0, 0) the top-left CORNER of the top-left pixel
    (``x_norm = (x_px + 0.5) / W``, ``y_norm = (y_px + 0.5) / H``); ``occluded`` bool
    ``(N, T)``. A sequence of clips is named ``synthetic_00000``, ``synthetic_00001``, ...
    """
    items = (
        list(clips.items())
        if isinstance(clips, Mapping)
        else [(f"synthetic_{i:05d}", c) for i, c in enumerate(clips)]
    )
    out: dict[str, dict[str, np.ndarray]] = {}
    for name, clip in items:
        if not isinstance(clip, Clip):
            raise InputError(
                f"to_tapvid: expected Clip values, got {type(clip).__name__} for {name!r}"
            )
        _, h, w, _ = clip.video.shape
        points = (clip.tracks.astype(np.float64) + 0.5) / np.array([w, h], dtype=np.float64)
        out[str(name)] = {
            "video": clip.video,
            "points": points,
            "occluded": clip.occluded.astype(bool),
        }
    return out


def write_tapvid_pickle(
    path: str | os.PathLike[str], clips: Mapping[str, Clip] | Iterable[Clip]
) -> str:
    """Writes :func:`to_tapvid` ``(clips)`` as a pickle, atomically (temp file, then
    ``os.replace``); returns the path written."""
    from pips_jax.files import atomic_write_bytes

    path = os.fspath(path)
    atomic_write_bytes(path, pickle.dumps(to_tapvid(clips), protocol=pickle.HIGHEST_PROTOCOL))
    return path
