"""Drawing point tracks on video frames (Pillow) and saving them as MP4 or GIF.

Coordinates are ``(x, y)`` in pixels with the origin at the centre of the top-left
pixel (as everywhere in pips_jax): a point at ``(10, 5)`` is drawn centred on row 5,
column 10. Each point gets a stable colour (:func:`point_colors`), a trail of line
segments through its last ``trail`` positions, older segments fading out, a filled
circle where it is visible and a hollow circle (outline only) where it is occluded.
Points or segments with a non-finite coordinate are skipped. Drawing is aliased
(no antialiasing), so pixel colours are exact.

Example::

    from pips_jax.viz import save_visualization
    save_visualization("out.mp4", frames, result.tracks, result.visibility, result.fps)
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pips_jax.errors import InputError
from pips_jax.video import DEFAULT_FPS, as_rgb_frame, as_rgb_video, read_frames, write_video

_GOLDEN = 0.6180339887498949
# (saturation, value) cycled with the point index so that neighbouring hues also
# differ in brightness once there are many points.
_SV = ((0.85, 1.0), (0.55, 1.0), (1.0, 0.75))
_COORD_LIMIT = 1e5  # coordinates are clipped to this before drawing (Pillow uses C ints)
#: Circle radius and trail width, in pixels, when none is given.
RADIUS = 3
LINE_WIDTH = 2


def point_colors(n: int, seed: int = 0) -> np.ndarray:
    """``(n, 3)`` uint8 RGB colours, one per point, distinct and stable.

    Point ``i``'s hue is ``(h0 + i * 0.618...) mod 1`` (golden-ratio steps spread any
    number of hues evenly), with ``h0`` set by ``seed``; saturation and value cycle
    with ``i``. Point ``i``'s colour does not depend on ``n``, so the first points keep
    their colours when more are added.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise InputError(f"point_colors: n={n!r}; expected a non-negative integer")
    i = np.arange(int(n))
    h = (seed * 0.3819660112501051 + i * _GOLDEN) % 1.0
    sv = np.array(_SV)[i % len(_SV)]
    s, v = sv[:, 0], sv[:, 1]
    k = np.floor(h * 6.0)
    f = h * 6.0 - k
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    k = k.astype(int) % 6
    r = np.choose(k, [v, q, p, p, t, v])
    g = np.choose(k, [t, v, v, q, p, p])
    b = np.choose(k, [p, p, t, v, v, q])
    return (
        np.clip(np.rint(np.stack([r, g, b], axis=-1) * 255), 0, 255).astype(np.uint8).reshape(-1, 3)
    )


def _check_colors(colors: Any, n: int) -> np.ndarray:
    if colors is None:
        return point_colors(n)
    c = np.asarray(colors)
    if c.shape == (3,):
        c = np.broadcast_to(c, (n, 3))
    if (
        c.shape != (n, 3)
        or not np.issubdtype(c.dtype, np.number)
        or not np.all((c >= 0) & (c <= 255))
    ):
        raise InputError(
            f"colors: expected an ({n}, 3) array (or one (3,) colour) of RGB values in 0..255, got shape {c.shape}"
        )
    return np.rint(c).astype(np.uint8)


def _check_tracks(tracks: Any, visible: Any) -> tuple[np.ndarray, np.ndarray]:
    tr = np.asarray(tracks)
    if tr.ndim != 3 or tr.shape[-1] != 2 or not np.issubdtype(tr.dtype, np.number):
        raise InputError(
            f"tracks: expected an (N, T, 2) array of (x, y) pixels, got shape {tr.shape} dtype {tr.dtype}"
        )
    tr = tr.astype(np.float64)
    if visible is None:
        vis = np.ones(tr.shape[:2], bool)
    else:
        vis = np.asarray(visible)
        if vis.shape != tr.shape[:2]:
            raise InputError(
                f"visible: expected shape {tr.shape[:2]} (N, T) like tracks, got {vis.shape}"
            )
        if vis.dtype != bool and not np.issubdtype(vis.dtype, np.integer):
            raise InputError(
                f"visible: expected an (N, T) bool array, got dtype {vis.dtype}; threshold it first (e.g. confidence > 0.5)"
            )
        vis = vis.astype(bool)
    return tr, vis


def _bbox(x: float, y: float, r: float) -> tuple[float, float, float, float]:
    return (x - r, y - r, x + r, y + r)


def _frames_iter(frames: Any) -> Iterator[np.ndarray]:
    if isinstance(frames, (str, os.PathLike)):
        return read_frames(frames)
    if isinstance(frames, np.ndarray):
        return iter(as_rgb_video(frames))
    if isinstance(frames, Iterable):
        return iter(frames)
    raise InputError(
        f"frames: expected a (T, H, W, 3) uint8 array, an iterable of frames or a video path, got {type(frames).__name__}"
    )


def draw_tracks(
    frames: Any,
    tracks: Any,
    visible: Any = None,
    *,
    trail: int = 16,
    radius: float = RADIUS,
    colors: Any = None,
    line_width: int = LINE_WIDTH,
) -> Iterator[np.ndarray]:
    """Yields the frames with the tracks drawn on them, one ``(H, W, 3)`` uint8 frame at a time.

    Args:
        frames: ``(T, H, W, 3)`` uint8 array, an iterable of ``(H, W, 3)`` frames
            (e.g. :func:`pips_jax.video.read_frames`) or a video path.
        tracks: ``(N, T, 2)`` ``(x, y)`` pixels; NaN / inf positions are skipped.
        visible: ``(N, T)`` bool (None: all visible). Visible points are filled
            circles, occluded ones hollow circles.
        trail: number of past frames whose positions are joined by line segments; the
            newest segment is opaque, older ones fade linearly (0 draws no trail).
        radius: circle radius in pixels (0 draws no circles).
        colors: ``(N, 3)`` RGB (or one ``(3,)`` colour); default :func:`point_colors`.
        line_width: trail line width in pixels.

    Raises:
        InputError: bad shapes or dtypes (at once), or a number of frames other
            than ``T`` (while iterating).
    """
    tr, vis = _check_tracks(tracks, visible)
    cols = _check_colors(colors, tr.shape[0])
    for name, value in (("trail", trail), ("line_width", line_width)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise InputError(f"{name}={value!r}; expected a non-negative integer")
    if not (np.isfinite(radius) and radius >= 0):
        raise InputError(f"radius={radius!r}; expected a non-negative number of pixels")
    return _draw_tracks(
        _frames_iter(frames), tr, vis, cols, int(trail), float(radius), int(line_width)
    )


class TrailDrawer:
    """Draws points with their trails one frame at a time, remembering the last
    ``trail`` positions of each point: the drawing of :func:`draw_tracks`, for frames
    that come one by one (a stream).

    Args:
        colors: ``(N, 3)`` uint8 RGB, one per point.
        trail, radius, line_width: as in :func:`draw_tracks` (checked there).
    """

    def __init__(
        self,
        colors: np.ndarray,
        trail: int,
        radius: float = RADIUS,
        line_width: int = LINE_WIDTH,
    ):
        self.rgb = [tuple(int(v) for v in c) for c in colors]
        self.trail, self.radius, self.line_width = trail, radius, line_width
        self.outline = max(1, int(round(radius / 3)))
        # the last `trail` frames' (N,) finite flags and (N, 2) clipped positions
        self._past: list[tuple[np.ndarray, np.ndarray]] = []

    def draw(self, frame: np.ndarray, xy: np.ndarray, visible: np.ndarray) -> np.ndarray:
        """``frame`` ``(H, W, 3)`` uint8 with the points at ``xy`` ``(N, 2)`` ``(x, y)``
        pixels (origin at the centre of the top-left pixel; NaN / inf skipped) drawn,
        ``visible`` ``(N,)`` bool filled, the others hollow, and the trails through the
        positions given to the previous calls."""
        from PIL import Image, ImageDraw

        xy = np.asarray(xy, np.float64)
        now = (
            np.isfinite(xy).all(axis=-1),
            np.clip(np.nan_to_num(xy), -_COORD_LIMIT, _COORD_LIMIT),
        )
        positions = [*self._past, now]  # oldest first; the newest is this frame's
        finite = [f for f, _ in positions]
        clipped = [c for _, c in positions]
        img = Image.fromarray(frame)
        draw = ImageDraw.Draw(img, "RGBA")
        # Trails, oldest segment first so that newer ones are drawn over them.
        if self.line_width > 0:
            newest = len(positions) - 1
            for s in range(1, len(positions)):
                alpha = int(round(255 * (self.trail - (newest - s)) / self.trail))
                ok = np.flatnonzero(finite[s] & finite[s - 1])
                seg = np.concatenate([clipped[s - 1][ok], clipped[s][ok]], axis=-1).tolist()
                for i, coords in zip(ok.tolist(), seg, strict=True):
                    draw.line(coords, fill=(*self.rgb[i], alpha), width=self.line_width)
        # Circles on top of every trail.
        if self.radius > 0:
            ok = np.flatnonzero(finite[-1])
            for i, (x, y), v in zip(
                ok.tolist(), clipped[-1][ok].tolist(), np.asarray(visible)[ok].tolist(), strict=True
            ):
                box = _bbox(x, y, self.radius)
                if v:
                    draw.ellipse(box, fill=(*self.rgb[i], 255))
                else:
                    draw.ellipse(box, outline=(*self.rgb[i], 255), width=self.outline)
        self._past = positions[len(positions) - self.trail :] if self.trail else []
        return np.asarray(img)


def _draw_tracks(
    frames: Iterator[np.ndarray],
    tr: np.ndarray,
    vis: np.ndarray,
    cols: np.ndarray,
    trail: int,
    radius: float,
    line_width: int,
) -> Iterator[np.ndarray]:
    num_t = tr.shape[1]
    drawer = TrailDrawer(cols, trail, radius, line_width)
    shape = None
    count = 0
    for t, frame in enumerate(frames):
        count += 1
        if t >= num_t:
            raise InputError(
                f"frames: more frames than the {num_t} frames of the tracks; expected as many frames as tracks have"
            )
        frame = as_rgb_frame(frame, t, "frames")
        if shape is None:
            shape = frame.shape
        elif frame.shape != shape:
            raise InputError(
                f"frames: frame {t} has shape {frame.shape} but frame 0 has {shape}; expected frames of one size"
            )
        yield drawer.draw(frame, tr[:, t], vis[:, t])
    if count != num_t:
        raise InputError(
            f"frames: got {count} frames but the tracks have {num_t}; expected as many frames as tracks have"
        )


def draw_queries(
    frame: np.ndarray,
    queries: Any,
    *,
    colors: Any = None,
    radius: float = 4,
    frame_index: int | None = None,
) -> np.ndarray:
    """One frame with every query point drawn on it (e.g. the first frame, as a legend).

    Args:
        frame: ``(H, W, 3)`` uint8.
        queries: ``(N, 3)`` rows ``(t, x, y)``.
        colors: ``(N, 3)`` RGB; default :func:`point_colors` (the colours of
            :func:`draw_tracks`).
        radius: marker radius in pixels.
        frame_index: when given, queries on this frame are filled circles and the
            others (queried on another frame) hollow; when None all are filled.

    Returns:
        A new ``(H, W, 3)`` uint8 frame; markers have a 1-pixel black outline.
    """
    from PIL import Image, ImageDraw

    frame = as_rgb_frame(frame, 0, "draw_queries")
    q = np.asarray(queries)
    if q.ndim != 2 or q.shape[-1] != 3 or not np.issubdtype(q.dtype, np.number):
        raise InputError(
            f"queries: expected an (N, 3) array of (t, x, y) rows, got shape {q.shape}"
        )
    cols = _check_colors(colors, q.shape[0])
    q = q.astype(np.float64)
    img = Image.fromarray(frame)
    draw = ImageDraw.Draw(img)
    for (t, x, y), c in zip(q.tolist(), cols.tolist(), strict=True):
        if not np.isfinite([t, x, y]).all():
            continue
        x, y = (float(np.clip(v, -_COORD_LIMIT, _COORD_LIMIT)) for v in (x, y))
        filled = frame_index is None or round(t) == frame_index
        if filled:
            draw.ellipse(_bbox(x, y, radius + 1), fill=(0, 0, 0))
            draw.ellipse(_bbox(x, y, radius), fill=tuple(c))
        else:
            draw.ellipse(_bbox(x, y, radius), outline=tuple(c), width=max(1, round(radius / 3)))
    return np.asarray(img)


def side_by_side(query_panel: np.ndarray, frame: np.ndarray, gap: int = 0) -> np.ndarray:
    """``query_panel`` and ``frame`` next to each other (left, right), ``gap`` black columns between.

    Frames of different heights are padded with black at the bottom.
    """
    a = as_rgb_frame(query_panel, 0, "query_panel")
    b = as_rgb_frame(frame, 0, "frame")
    h = max(a.shape[0], b.shape[0])
    out = np.zeros((h, a.shape[1] + gap + b.shape[1], 3), np.uint8)
    out[: a.shape[0], : a.shape[1]] = a
    out[: b.shape[0], a.shape[1] + gap :] = b
    return out


def save_visualization(
    path: str | os.PathLike,
    frames: Any,
    tracks: Any,
    visible: Any = None,
    fps: float | None = None,
    *,
    queries: Any = None,
    trail: int = 16,
    radius: float = RADIUS,
    colors: Any = None,
    line_width: int = LINE_WIDTH,
    frame_labels: Sequence[str] | None = None,
) -> Path:
    """Draws the tracks (:func:`draw_tracks`) and writes an MP4 or GIF (by extension), atomically.

    Args:
        path: ``.mp4`` / ``.gif`` (or another extension :func:`pips_jax.video.write_video`
            takes).
        frames: ``(T, H, W, 3)`` uint8, an iterable of frames or a video path
            (streamed: the video is not loaded whole).
        tracks, visible: ``(N, T, 2)`` ``(x, y)`` pixels and ``(N, T)`` bool.
        fps: frame rate; None or 0 (unknown) uses :data:`pips_jax.video.DEFAULT_FPS`.
        queries: optional ``(N, 3)`` ``(t, x, y)``: each output frame then has, on its
            left, the first frame with every query drawn (:func:`draw_queries`).
        trail, radius, colors, line_width: as in :func:`draw_tracks`.
        frame_labels: optional ``T`` texts written in the top-left corner of the
            frames (for example each frame's index in the input video).

    Returns:
        The written path. Nothing is written when anything fails.
    """
    tr, _ = _check_tracks(tracks, visible)
    cols = _check_colors(colors, tr.shape[0])
    source = _frames_iter(frames)
    panel = None
    if queries is not None:
        first = next(source, None)
        if first is None:
            raise InputError("frames: no frames; expected at least one")
        panel = draw_queries(first, queries, colors=cols, radius=radius + 1, frame_index=0)
        source = itertools.chain([first], source)
    drawn = draw_tracks(
        source, tr, visible, trail=trail, radius=radius, colors=cols, line_width=line_width
    )
    if frame_labels is not None:
        if len(frame_labels) != tr.shape[1]:
            raise InputError(
                f"frame_labels: expected one per frame ({tr.shape[1]}), got {len(frame_labels)}"
            )
        drawn = (label_frame(f, text) for f, text in zip(drawn, frame_labels, strict=False))
    if panel is not None:
        drawn = (side_by_side(panel, f, gap=4) for f in drawn)
    return write_video(path, drawn, fps if fps else DEFAULT_FPS)


def label_frame(frame: np.ndarray, text: str) -> np.ndarray:
    """``frame`` with ``text`` written in its top-left corner, white on a black outline.

    The font is Pillow's default at about 1/24 of the frame height (at least 10 px).
    """
    from PIL import Image, ImageDraw, ImageFont

    frame = as_rgb_frame(frame, 0, "label_frame")
    size = max(10, round(frame.shape[0] / 24))
    img = Image.fromarray(frame)
    font = ImageFont.load_default(size=size)
    stroke = max(1, size // 8)
    ImageDraw.Draw(img).text(
        (stroke + 2, stroke + 1), text, fill=(255, 255, 255), font=font,
        stroke_width=stroke, stroke_fill=(0, 0, 0),
    )  # fmt: skip
    return np.asarray(img)
