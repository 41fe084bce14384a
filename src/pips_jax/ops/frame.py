"""Where pixel coordinates lie relative to a frame, and the working resolution of a frame.

Pixel coordinates are ``(x, y)`` with the origin at the centre of the top-left pixel,
so a ``W x H`` frame covers ``-0.5 <= x <= W - 0.5`` and ``-0.5 <= y <= H - 0.5``
(its pixels' areas); sizes are ``(H, W)``.
"""

from __future__ import annotations

import math

import numpy as np

#: A forced working resolution whose aspect ratio departs from the input's by more
#: than this fraction gets a warning (rounding each side to a multiple of the model's
#: stride moves it by about 1% at the original demo's size).
ASPECT_TOLERANCE = 0.03


def inside_frame(xy: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Whether ``(..., 2)`` ``(x, y)`` pixel positions lie on a ``size = (H, W)`` frame.

    A position is on the frame when it is within the area of its pixels, that is at
    most half a pixel past the centres of the border pixels: ``-0.5 <= x <= W - 0.5``
    and ``-0.5 <= y <= H - 0.5`` (origin at the centre of the top-left pixel). NaN is
    off the frame.

    Returns:
        ``(...)`` bool.
    """
    h, w = size
    xy = np.asarray(xy)
    x, y = xy[..., 0], xy[..., 1]
    return (x >= -0.5) & (x <= w - 0.5) & (y >= -0.5) & (y <= h - 0.5)


def resolution_for(
    size: tuple[int, int], pixels: int, multiple: int, minimum: int
) -> tuple[int, int]:
    """The working resolution of an ``(H, W)`` input: its aspect ratio at about ``pixels``.

    Each side is scaled by ``sqrt(pixels / (H * W))`` and rounded to the nearest
    multiple of ``multiple``, at least ``minimum``. A 720x1280 or 480x854 input at
    ``pixels = 360 * 640`` gives 360x640; a portrait 480x368 gives 548x420.

    Returns:
        ``(H, W)``.
    """
    h, w = size
    scale = math.sqrt(pixels / (h * w))
    return tuple(max(minimum, multiple * round(side * scale / multiple)) for side in (h, w))  # type: ignore[return-value]


def aspect_distortion(size: tuple[int, int], resolution: tuple[int, int]) -> float:
    """How much resizing ``size`` to ``resolution`` (both ``(H, W)``) stretches the frame:
    the ratio of the two aspect ratios, minus 1, as a non-negative fraction (0.0 for no
    stretch, 0.25 for 25% wider or taller)."""
    ratio = (resolution[1] / resolution[0]) / (size[1] / size[0])
    return max(ratio, 1.0 / ratio) - 1.0


def to_normalized(xy: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``(..., 2)`` ``(x, y)`` pixels to TAP-Vid's normalised coordinates: float64
    ``(x, y)`` in [0, 1] over the frame's area, (0, 0) the top-left corner of the
    top-left pixel and (1, 1) the bottom-right corner of the bottom-right one, so
    ``x_norm = (x + 0.5) / W`` (positions off the frame fall outside [0, 1])."""
    h, w = size
    return (np.asarray(xy, np.float64) + 0.5) / np.array([w, h], np.float64)


def to_model_pixels(
    xy: np.ndarray, size: tuple[int, int], resolution: tuple[int, int]
) -> np.ndarray:
    """Maps ``(..., 2)`` ``(x, y)`` input pixels to pixels of the resized frames.

    Both use pixel-centre origins and the resize maps the image *area* onto the
    image area (half-pixel centres), so ``x_m = (x + 0.5) * W_m / W - 0.5``.
    """
    scale = np.array([resolution[1] / size[1], resolution[0] / size[0]], np.float64)
    return ((np.asarray(xy, np.float64) + 0.5) * scale - 0.5).astype(np.float32)


def to_input_pixels(
    xy: np.ndarray, size: tuple[int, int], resolution: tuple[int, int]
) -> np.ndarray:
    """Inverse of :func:`to_model_pixels`."""
    scale = np.array([size[1] / resolution[1], size[0] / resolution[0]], np.float64)
    return ((np.asarray(xy, np.float64) + 0.5) * scale - 0.5).astype(np.float32)
