"""The generator's configuration: :class:`SyntheticConfig`, checked when it is made."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pips_jax.config import is_int
from pips_jax.errors import InputError
from pips_jax.synthetic.textures import BACKGROUND_IMAGES, OBJECT_IMAGES, PHOTO_NAMES

__all__ = ["SyntheticConfig"]


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
            if not is_int(value) or value < low:
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
                or any(n not in PHOTO_NAMES for n in names)
            ):
                raise bad(name, f"a non-empty tuple of names from {PHOTO_NAMES}")
