"""Scenes: the layers (:class:`ObjectLayer`), the :class:`Scene`, and random scenes.

A scene is a stack of layers painted back to front: a background photograph that moves
under a smooth homography, then textured convex polygons / ellipses, each moving under
its own smooth similarity transform. Object ``k`` (layer id ``k``, ``1 <= k <= K``) is
in front of every layer with a smaller id; the background is layer 0. Every layer has
its own *reference* plane (the background's is the frame-0 plane; an object's is its
local shape frame, the shape centred on the origin), mapped to frame-``t`` pixels
``(x, y)`` (origin at the centre of the top-left pixel).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from pips_jax.config import is_int
from pips_jax.errors import InputError
from pips_jax.synthetic.config import SyntheticConfig
from pips_jax.synthetic.geometry import apply_homography, invert_affines
from pips_jax.synthetic.motion import background_motion, object_motion
from pips_jax.synthetic.textures import photo_texture, procedural_texture, textured_placement

__all__ = ["ObjectLayer", "Scene", "random_scene"]


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
            ("_inverse", invert_affines(affines)),
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
        if not (is_int(self.height) and is_int(self.width) and self.height > 0 and self.width > 0):
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


def _random_object(
    config: SyntheticConfig, rng: np.random.Generator, texture_names: Sequence[str]
) -> ObjectLayer:
    """A random object for ``config``: shape, motion (:func:`object_motion`), texture."""
    h, w = config.height, config.width
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

    affines = object_motion(config, rng)

    extent = np.array([a, b]) if kind == "ellipse" else np.abs(shape).max(axis=0)
    use_procedural = config.texture_source == "procedural" or (
        rng.random() < config.procedural_probability
    )
    if use_procedural:
        size = int(np.ceil(2 * extent.max())) + 6
        texture = procedural_texture(rng, size, size)
        tex_scale = 1.0
    else:
        texture = photo_texture(rng, texture_names[int(rng.integers(len(texture_names)))])
        tex_scale = rng.uniform(0.6, 1.6)
    tex_angle = rng.uniform(0, 2 * np.pi)
    linear = tex_scale * np.array(
        [[math.cos(tex_angle), -math.sin(tex_angle)], [math.sin(tex_angle), math.cos(tex_angle)]]
    )
    tex_affine = textured_placement(rng, texture, linear, -extent, extent)
    return ObjectLayer(kind, shape, affines, texture, tex_affine)


def random_scene(config: SyntheticConfig, rng: np.random.Generator) -> Scene:
    """A random :class:`Scene` for ``config`` drawn from ``rng`` (deterministic for its state).

    The background texture covers every position any frame shows (the image area
    inverse-mapped through every ``background_homographies[t]``).
    """
    if not isinstance(config, SyntheticConfig):
        raise InputError(f"config: expected a SyntheticConfig, got {type(config).__name__}")
    h, w = config.height, config.width
    homs = background_motion(config, rng)
    inv = np.linalg.inv(homs)
    cx = np.array([-1.5, w + 0.5, -1.5, w + 0.5])
    cy = np.array([-1.5, -1.5, h + 0.5, h + 0.5])
    rx, ry = apply_homography(inv[:, None], cx[None], cy[None])
    box_min = np.array([rx.min(), ry.min()])
    box_max = np.array([rx.max(), ry.max()])
    extent = box_max - box_min
    if config.texture_source == "procedural":
        texture = procedural_texture(rng, int(extent[1]) + 6, int(extent[0]) + 6)
        linear = np.eye(2)
        bg_name = None
    else:
        bg_name = config.background_images[int(rng.integers(len(config.background_images)))]
        texture = photo_texture(rng, bg_name)
        # Texture pixels per frame pixel; <1 zooms into the photo. Random mirror.
        scale = rng.uniform(0.5, 1.3)
        mirror = 1.0 if rng.random() < 0.5 else -1.0
        linear = np.diag([scale * mirror, scale])
    tex_affine = textured_placement(rng, texture, linear, box_min, box_max)

    names = [n for n in config.object_images if n != bg_name] or list(config.object_images)
    objects = tuple(_random_object(config, rng, names) for _ in range(config.num_objects))
    return Scene(h, w, texture, tex_affine, homs, objects)
