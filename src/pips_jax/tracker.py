"""Tracking any number of points through videos of any length with PIPs.

Conventions: a video is ``(T, H, W, 3)`` uint8 RGB; queries are ``(t, x, y)`` rows,
``t`` a frame index and ``(x, y)`` in input pixels with the origin at the centre of the
top-left pixel (the TAP-Vid query convention with x before y); tracks are
``(N, T, 2)`` as ``(x, y)`` input pixels.

How a whole video is tracked
----------------------------
PIPs refines S-frame windows (S = 8). Long videos are chained the way the original
``chain_demo.py`` does it, but for all points at once:

1. Every frame is resized to the working resolution and encoded **once**; the
   feature maps are kept (in memory, or in a memory-mapped temporary file for long
   videos) and every window that includes a frame reuses them.
2. Each point starts a window at its query frame with its query position and the
   feature sampled there (``feat_init``), which it keeps for the whole video.
3. After a window, each point re-anchors at the latest frame ``s`` in ``2 .. S-1``
   of the window whose visibility confidence exceeds a threshold that starts at 0.9
   and drops by 0.02 until one is found (the original's rule), and the next window
   starts there from the position predicted for that frame.
4. Points are grouped by anchor frame and groups are run in time order; a group runs
   in chunks of at most ``max_points_per_batch`` points padded to a few fixed sizes,
   so one compiled program serves every chunk.
5. A point is finished once one of its windows reaches the last frame. (The
   original keeps re-anchoring until its anchor passes the end, which re-tracks the
   last frames from shorter, padded windows; stopping at the first window that covers
   the end means a video of exactly S frames gets the same answer as one forward.)
6. Windows that run past the end repeat the last frame, and the extra frames are
   dropped.
7. Frames before a point's query frame are tracked the same way on the time-reversed
   video, so every query gets a full track.

PIPs++ windows
--------------
With PIPs++ weights (:class:`~pips_jax.config.Pips2Config`) the windows are chained
exactly as the original's ``test_on_tap.py`` does it, for each query frame's points
at once (:func:`pips2_windows`): windows of ``window`` frames from the query frame
that overlap by one frame, the last one shifted back to end at the last frame (a pass
shorter than ``window`` is one window of its length); each window starts from the
trajectory predicted so far and, beyond it, the last predicted position (zero
velocity); the three templates a window returns are the next window's ``feat_init``,
sliced to its length. Frames are encoded once and shared as for PIPs; the time-reversed
pass serves the frames before each query. PIPs++ predicts no visibility:
``TrackResult.has_visibility`` is False, a point is visible wherever its predicted
position lies on the frame, and ``confidence`` is NaN. Each distinct window length
compiles once (passes shorter than ``window`` start near the end of a video).

What the tracker adds to the model's output
-------------------------------------------
* **Visibility is honest about the frame.** A point is visible where the model's
  visibility probability exceeds 0.5 *and* its predicted position lies on the frame
  (at most half a pixel past the border pixels' centres, :func:`~pips_jax.ops.frame.inside_frame`),
  as TAP-Vid counts it. The position itself is kept as predicted, never clamped, so a
  track shows where the point went off the frame; ``confidence`` stays the model's
  probability. The query frame is visible by definition.
* **The aspect ratio is kept.** Without a forced resolution, each video is worked on
  at its own aspect ratio at about the pixel count of the original demo's 360x640,
  each side a multiple of the model's stride (:func:`working_resolution`); a forced
  resolution that stretches the frames by more than 3% is warned about.
* **Frames are what decodes, and any part of a video can be tracked.** A video file
  has the frames that decode, not the count its header announces (see
  :mod:`pips_jax.video`); the feature store grows or shrinks to them. A
  :class:`FrameSelection` (``start``, ``stop``, ``step``) picks the input frames to
  track before any is resized or encoded; queries, results and exports use **input
  frame indices** (``TrackResult.frame_indices`` maps each tracked frame to its index
  in the input).

Devices
-------
A tracker runs on every device of a 1-D :class:`jax.sharding.Mesh` (default: this
process's devices, :func:`pips_jax.runtime.local_mesh`). PIPs' points are independent,
so each chunk of points is split over the mesh's axis: every device runs the model on
its slice of the points' positions and features, with the parameters and the window's
feature maps replicated (``jax.shard_map``). Frames are encoded in batches split over
the devices the same way, and query features are sampled from the point slices. Every
output is gathered back replicated, so each device (and each process) reads the whole
result. Chunks are padded to a few fixed sizes that are multiples of the device count
and the encode batch is one, so one compiled program serves every chunk and every video
of the same working resolution.

A mesh over the devices of several processes (:func:`pips_jax.runtime.global_mesh`
after :func:`pips_jax.runtime.join`) works the same way: every process runs the same
host loop on the same video and queries (each decodes the video itself; each encodes
only its devices' share of the frames), the device computation is split over all
processes' devices, and every process gets the full result.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import tempfile
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from pips_jax import interrupts, runtime
from pips_jax.config import DEFAULT_ITERS, ModelConfig, Pips2Config
from pips_jax.errors import InputError, PipsWarning
from pips_jax.inference import InferenceSettings
from pips_jax.model.families import model_for
from pips_jax.model.pips import Params
from pips_jax.ops.frame import (
    ASPECT_TOLERANCE,
    aspect_distortion,
    inside_frame,
    resolution_for,
    to_input_pixels,
    to_model_pixels,
)
from pips_jax.tracks_io import TrackResult

DEFAULT_PIXELS = 360 * 640
"""Pixels of the default working resolution (the original demo's 360x640), at the input's aspect ratio."""
PIPS2_PIXELS = 512 * 896
"""Pixels of PIPs++'s default working resolution (the original evaluation's 512x896)."""
FEATURE_MEMORY_BYTES = 4 << 30  # above this the feature maps go to a memory-mapped file
VISIBILITY_THRESHOLD = 0.5
#: PIPs++'s window length when none is set: the original's evaluation
#: (``test_on_tap.py``, ``S = 128``).
PIPS2_WINDOW = 128


def pips2_windows(length: int, window: int, start: int = 0) -> list[tuple[int, int]]:
    """The ``[start, end)`` windows PIPs++'s ``test_on_tap.py`` runs through a pass of
    ``length`` frames: ``window`` frames each, overlapping by one frame, the last one
    shifted back (not before 0) so that it ends at the last frame; from ``start`` on,
    the windows that follow one ending at ``start + 1`` (a stream that has run those
    before).

    For 39 frames and windows of 16: ``[(0, 16), (15, 31), (23, 39)]``.
    """
    if window < 2:
        raise InputError(f"window: expected at least 2 frames, found {window}")
    out = []
    cur = start
    while True:
        end = cur + window
        if end > length:
            cur = max(cur - (end - length), 0)
            end = length
        out.append((cur, end))
        if end >= length:
            return out
        cur += window - 1


def grid_queries(
    size: tuple[int, int],
    grid_size: int,
    query_frame: int = 0,
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """A ``grid_size x grid_size`` grid of queries at the centres of equal cells.

    Args:
        size: ``(H, W)`` of the video.
        grid_size: points per side.
        query_frame: the frame the grid is placed on.
        mask: optional ``(H, W)`` bool; grid points on False pixels are dropped.

    Returns:
        ``(N, 3)`` float32 rows ``(t, x, y)``, row-major (y outer, x inner).
    """
    h, w = size
    if grid_size < 1:
        raise InputError(f"grid size must be >= 1, got {grid_size}")
    xs = (np.arange(grid_size) + 0.5) * w / grid_size - 0.5
    ys = (np.arange(grid_size) + 0.5) * h / grid_size - 0.5
    gy, gx = np.meshgrid(ys, xs, indexing="ij")
    pts = np.stack([np.full(gx.size, query_frame), gx.ravel(), gy.ravel()], axis=-1)
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape != (h, w):
            raise InputError(f"grid mask: expected shape {(h, w)} (H, W), got {mask.shape}")
        keep = mask.astype(bool)[np.rint(pts[:, 2]).astype(int), np.rint(pts[:, 1]).astype(int)]
        pts = pts[keep]
        if len(pts) == 0:
            raise InputError("grid mask: no grid point falls on a True pixel of the mask")
    return pts.astype(np.float32)


@dataclasses.dataclass(frozen=True)
class FrameSelection:
    """Which input frames are tracked: ``start, start + step, ...`` below ``stop``.

    Attributes:
        start: the first input frame index (>= 0).
        stop: the input frame index the selection ends before (exclusive, like a
            Python slice); ``None``: to the end of the video.
        step: take every ``step``-th frame (>= 1).
    """

    start: int = 0
    stop: int | None = None
    step: int = 1

    def __post_init__(self) -> None:
        for name in ("start", "stop", "step"):
            value = getattr(self, name)
            if value is None and name == "stop":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise InputError(f"frame selection: {name}={value!r}; expected an integer")
        if self.start < 0 or self.step < 1 or (self.stop is not None and self.stop <= self.start):
            raise InputError(
                f"frame selection: start={self.start}, stop={self.stop}, step={self.step}; "
                "expected 0 <= start < stop and step >= 1"
            )

    def indices(self, count: int) -> np.ndarray:
        """``(count,)`` int64 input frame indices of the first ``count`` selected frames."""
        return self.start + self.step * np.arange(count, dtype=np.int64)

    def position(self, index: np.ndarray) -> np.ndarray:
        """Where selected input frame indices lie among the selected frames (the
        inverse of :meth:`indices`; ``index`` must be selected frames)."""
        return (np.asarray(index) - self.start) // self.step

    def describe(self) -> str:
        """``"every 2nd frame from 10 before 100"``-style text for messages."""
        every = "every frame" if self.step == 1 else f"every {_ordinal(self.step)} frame"
        end = "" if self.stop is None else f" before {self.stop}"
        return f"{every} from {self.start}{end}"


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def check_queries(
    queries: np.ndarray,
    num_frames: int | None,
    size: tuple[int, int],
    selection: FrameSelection = FrameSelection(),
    labels: Sequence[str] | None = None,
) -> np.ndarray:
    """Validates ``(N, 3)`` ``(t, x, y)`` queries against a video.

    Args:
        queries: rows ``(t, x, y)``: ``t`` an input frame index, ``(x, y)`` input
            pixels with the origin at the centre of the top-left pixel.
        num_frames: the number of selected frames, or ``None`` where it is not known
            yet (a video file before decoding: only the selection is checked).
        size: ``(H, W)`` of the video.
        selection: the input frames tracked; ``t`` must be one of them.
        labels: a name per row for the messages (for example ``"points.csv line 3"``);
            default ``"query i"`` counted from 0.

    Returns:
        ``(N, 3)`` float32.
    """
    q = np.asarray(queries, dtype=np.float64)
    if q.ndim != 2 or q.shape[1] != 3:
        raise InputError(
            f"queries: expected an (N, 3) array of (t, x, y) rows, got shape {q.shape}"
        )
    if len(q) == 0:
        raise InputError("queries: expected at least one (t, x, y) row, got none")

    def name(i: int) -> str:
        return labels[i] if labels is not None else f"query {i}"

    if not np.all(np.isfinite(q)):
        bad = int(np.argmax(~np.all(np.isfinite(q), axis=1)))
        raise InputError(f"{name(bad)} has NaN or infinite values {q[bad].tolist()}")
    t = q[:, 0]
    bad_t = (
        (t != np.round(t)) | (t < selection.start) | ((t - selection.start) % selection.step != 0)
    )
    if selection.stop is not None:
        bad_t |= t >= selection.stop
    if num_frames is not None:
        bad_t |= t > selection.start + selection.step * (num_frames - 1)
    if np.any(bad_t):
        bad = int(np.argmax(bad_t))
        if num_frames is not None:
            last = selection.start + selection.step * (num_frames - 1)
            if selection.step == 1:
                expected = f"an integer in {selection.start}..{last}"
            else:
                expected = f"one of the tracked frames {selection.start}, {selection.start + selection.step}, ..., {last}"
        else:
            expected = f"a tracked frame ({selection.describe()})"
        raise InputError(f"{name(bad)} has frame index {q[bad, 0]:g}; expected {expected}")
    h, w = size
    out = ~inside_frame(q[:, 1:], size)
    if np.any(out):
        bad = int(np.argmax(out))
        hint = ""
        if inside_frame(q[bad, [2, 1]], size):
            hint = " (were x and y swapped? rows are t,x,y)"
        raise InputError(
            f"{name(bad)} (x={q[bad, 1]:g}, y={q[bad, 2]:g}) lies outside the {w}x{h} (W x H) "
            f"frame{hint}; expected -0.5 <= x <= W-0.5 and -0.5 <= y <= H-0.5 in pixels"
        )
    return q.astype(np.float32)


def check_window(window: int | None, config: ModelConfig | Pips2Config) -> int:
    """The window length a tracker of ``config``'s family runs: PIPs its own S (a
    ``window`` given must equal it), PIPs++ ``window`` (default :data:`PIPS2_WINDOW`).

    Raises:
        InputError: a PIPs window other than S, or a PIPs++ window below 2 frames.
    """
    if window is not None and (
        not isinstance(window, (int, np.integer)) or isinstance(window, bool)
    ):
        raise InputError(f"window: expected an integer number of frames, found {window!r}")
    if config.family == "pips":
        if window is not None and window != config.S:
            raise InputError(
                f"window: PIPs runs windows of its S={config.S} frames, found {window}; "
                "the window length is a PIPs++ setting"
            )
        return int(config.S)
    window = PIPS2_WINDOW if window is None else int(window)
    if window < 2:
        raise InputError(f"window: PIPs++ needs windows of at least 2 frames, found {window}")
    return window


def default_pixels(config: ModelConfig | Pips2Config) -> int:
    """Pixels of the default working resolution: the original demo's 360x640 for PIPs,
    the original evaluation's 512x896 for PIPs++ (at each video's aspect ratio)."""
    return DEFAULT_PIXELS if config.family == "pips" else PIPS2_PIXELS


def check_resolution(resolution: tuple[int, int], config: ModelConfig) -> tuple[int, int]:
    """The working resolution must be a multiple of the stride and fit the pyramid."""
    h, w = (int(v) for v in resolution)
    minimum = config.stride * config.min_feature_size
    for side in (h, w):
        if side % config.stride or side < minimum:
            raise InputError(
                f"resolution {h}x{w}: expected each side a multiple of the stride {config.stride} "
                f"and at least {minimum} (stride x 2^(pyramid levels - 1))"
            )
    return h, w


def working_resolution(
    size: tuple[int, int], config: ModelConfig, resolution: tuple[int, int] | None = None
) -> tuple[int, int]:
    """The ``(H, W)`` the model works at on an ``(H, W)`` input.

    ``resolution`` forces one (checked against the model; a warning when it stretches
    the frames by more than :data:`~pips_jax.ops.frame.ASPECT_TOLERANCE`). Without
    it: the input's aspect ratio at about :func:`default_pixels` pixels (for PIPs the
    original demo's 360x640, for PIPs++ the original evaluation's 512x896), each side a
    multiple of the stride, so with PIPs a 720x1280 or 480x854 video runs at 360x640
    and a portrait 480x368 one at 548x420.
    """
    if resolution is None:
        return resolution_for(
            size, default_pixels(config), config.stride, config.stride * config.min_feature_size
        )
    res = check_resolution(resolution, config)
    stretch = aspect_distortion(size, res)
    if stretch > ASPECT_TOLERANCE:
        warnings.warn(
            f"working resolution {res[0]}x{res[1]} (HxW) stretches the {size[0]}x{size[1]} "
            f"input's aspect ratio by {100 * stretch:.0f}%; without a forced resolution "
            f"the tracker keeps it ({'x'.join(map(str, working_resolution(size, config)))})",
            PipsWarning,
            stacklevel=3,
        )
    return res


# ------------------------------------------------------------------------ video
@dataclasses.dataclass
class VideoSource:
    """A video to track: its size, the frames selected, and a way to stream them (any
    number of times).

    Attributes:
        height, width: input size in pixels.
        fps: frames per second (0 if unknown).
        selection: the input frames tracked.
        num_frames: the number of selected frames; ``None`` for a video file until its
            frames have been streamed to the end once (the header's count is only an
            estimate: the frames that decode are the truth).
        estimated_frames: the expected number of selected frames before decoding
            (for progress bars; ``None`` if unknown).
    """

    height: int
    width: int
    fps: float
    selection: FrameSelection = FrameSelection()
    num_frames: int | None = None
    estimated_frames: int | None = None
    array: np.ndarray | None = None
    path: Path | None = None

    @property
    def size(self) -> tuple[int, int]:
        """``(H, W)``."""
        return self.height, self.width

    @property
    def frame_indices(self) -> np.ndarray:
        """``(T,)`` int64 input frame indices of the selected frames (once counted)."""
        if self.num_frames is None:
            raise RuntimeError("frame_indices: the video has not been decoded yet")
        return self.selection.indices(self.num_frames)

    def frames(self) -> Iterator[np.ndarray]:
        """Yields the selected ``(H, W, 3)`` uint8 RGB frames in order, decoding as it goes.

        A pass that runs to the end settles :attr:`num_frames`.

        Raises:
            InputError: no frame of the video is in the selection.
        """
        sel = self.selection
        if self.array is not None:
            frames: Iterable[np.ndarray] = self.array[sel.start : sel.stop : sel.step]
        else:
            from pips_jax.video import read_frames

            frames = read_frames(self.path, sel.start, sel.stop, sel.step)
        count = 0
        for frame in frames:
            count += 1
            yield frame
        if count == 0:
            raise InputError(
                f"{self.path if self.path is not None else 'video'}: no frame to track: the "
                f"video ends before frame {sel.start}; expected --start below its frame count"
            )
        self.num_frames = count


def open_video(video: Any, selection: FrameSelection | None = None) -> VideoSource:
    """Wraps a ``(T, H, W, 3)`` uint8 array, a video file or a folder of frames.

    Nothing is decoded but a video file's first frame (for its size): a file's frame
    count is settled by the first full pass of :meth:`VideoSource.frames`.
    """
    from pips_jax.video import load_video, probe_video

    sel = selection or FrameSelection()
    if isinstance(video, VideoSource):
        if selection is not None and selection != video.selection:
            raise InputError("open_video: the VideoSource already has another frame selection")
        return video
    if isinstance(video, (str, os.PathLike)):
        info = probe_video(video)
        exact = Path(video).is_dir()
        count = _selected_count(info.estimated_frames, sel)
        if exact and count == 0:
            raise InputError(
                f"{video}: no frame to track: the folder has {info.num_frames} images "
                f"(0..{info.num_frames - 1}); expected --start below that"
            )
        return VideoSource(
            info.height,
            info.width,
            float(info.fps or 0.0),
            sel,
            num_frames=count if exact else None,
            estimated_frames=count,
            path=Path(video),
        )
    frames, info = load_video(video)
    count = _selected_count(len(frames), sel)
    if count == 0:
        raise InputError(
            f"video: no frame to track: the array has {len(frames)} frames; "
            f"expected a start below that, got {sel.start}"
        )
    return VideoSource(
        frames.shape[1], frames.shape[2], float(info.fps or 0.0), sel, count, count, array=frames
    )


def _selected_count(total: int | None, sel: FrameSelection) -> int | None:
    """How many of ``total`` frames the selection takes (None if ``total`` is)."""
    if total is None:
        return None
    end = total if sel.stop is None else min(sel.stop, total)
    return max(0, -(-(end - sel.start) // sel.step))


# --------------------------------------------------------------- re-anchoring
def reanchor_offsets(confidence: np.ndarray) -> np.ndarray:
    """The original chain's choice of the next anchor within a window.

    Args:
        confidence: ``(S, N)`` visibility probabilities of one window.

    Returns:
        ``(N,)`` frame offsets ``s`` in ``2 .. S-1``: the latest frame whose confidence
        exceeds a threshold that starts at 0.9 and is lowered by 0.02 (as Python floats,
        like the original) until some frame passes.
    """
    s_count = confidence.shape[0]
    lo = min(2, s_count - 1)
    window = confidence[lo:].astype(np.float64)  # offsets lo .. S-1
    thresholds = [0.9]
    while thresholds[-1] > -0.02:
        thresholds.append(thresholds[-1] - 0.02)
    thr = np.asarray(thresholds)
    best = window.max(axis=0)  # N
    k = np.argmax(best[None, :] > thr[:, None], axis=0)  # first threshold that passes
    passes = window > thr[k][None, :]  # (S - lo, N)
    last = window.shape[0] - 1 - np.argmax(passes[::-1], axis=0)
    return (lo + last).astype(np.int64)


def next_anchors(a: int, xy: np.ndarray, confidence: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where the points of a PIPs window started at frame ``a`` start their next one.

    Args:
        a: the window's first frame.
        xy: ``(S, N, 2)`` the window's positions (model pixels).
        confidence: ``(S, N)`` its visibility probabilities.

    Returns:
        ``(N,)`` anchor frames ``a + s`` (:func:`reanchor_offsets`) and ``(N, 2)`` the
        positions predicted there.
    """
    step = reanchor_offsets(confidence)
    return a + step, xy[step, np.arange(xy.shape[1])]


def first_templates(feats: np.ndarray, length: int) -> np.ndarray:
    """PIPs++'s templates for a point's first window: ``(n, C)`` query features to
    ``(n, 3, length, C)`` (all three templates the query feature on every frame)."""
    return np.repeat(np.repeat(feats[:, None, None], 3, axis=1), length, axis=2)


# --------------------------------------------------------------- feature store
class FeatureStore:
    """Feature maps of every frame, each computed once, at a known working resolution.

    Frames are appended as they are encoded; the store grows as needed, since a video
    file's frame count is known only once it has decoded (``capacity`` is an estimate).
    Small videos keep the maps in memory; above ``memory_bytes`` they live in a
    memory-mapped temporary file that is deleted on :meth:`close`.

    Attributes:
        resolution: ``(H, W)`` of the frames the maps were computed from.
        data: ``(T, h, w, C)`` float32 maps of the ``T`` frames appended so far.
    """

    def __init__(
        self,
        capacity: int,
        shape: tuple[int, int, int],
        memory_bytes: int,
        resolution: tuple[int, int] | None = None,
    ):
        self.shape = tuple(shape)
        self.resolution = resolution
        self.memory_bytes = memory_bytes
        self.count = 0
        self._tmp: tempfile.TemporaryDirectory | None = None
        self._buf = self._allocate(max(1, int(capacity)))

    @property
    def data(self) -> np.ndarray:
        return self._buf[: self.count]

    def _allocate(self, capacity: int) -> np.ndarray:
        nbytes = capacity * math.prod(self.shape) * 4
        if self._tmp is None and nbytes <= self.memory_bytes:
            return np.empty((capacity, *self.shape), np.float32)
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="pips-jax-features-")
        path = os.path.join(self._tmp.name, "fmaps.f32")
        with open(path, "ab") as f:  # grow the file (sparse) to the new capacity
            f.truncate(max(nbytes, os.path.getsize(path)))
        return np.memmap(path, dtype=np.float32, mode="r+", shape=(capacity, *self.shape))

    def append(self, maps: np.ndarray) -> None:
        """Adds ``(n, h, w, C)`` maps of the next ``n`` frames."""
        n = len(maps)
        if self.count + n > len(self._buf):
            capacity = max(self.count + n, len(self._buf) + len(self._buf) // 4 + 8)
            if self._tmp is None:
                old = self._buf
                self._buf = self._allocate(capacity)
                self._buf[: self.count] = old[: self.count]
            else:  # the same file, longer: its data stays where it is
                self._buf.flush()
                self._buf = self._allocate(capacity)
        self._buf[self.count : self.count + n] = maps
        self.count += n

    def window(self, frame_ids: np.ndarray) -> np.ndarray:
        return np.asarray(self._buf[frame_ids])

    def close(self) -> None:
        self._buf = np.empty((0, *self.shape), np.float32)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


# ----------------------------------------------------------------------- tracker
def _bucket(n: int, cap: int, multiple: int = 1) -> int:
    """Pads chunk sizes to a few fixed sizes: powers of two, at least 16, at most
    ``cap``, each rounded up to a multiple of ``multiple`` (the device count)."""
    return _round_up(min(cap, max(16, 1 << (n - 1).bit_length())), multiple)


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def check_mesh(mesh: Any) -> Mesh:
    """A tracker's mesh must be a 1-D :class:`jax.sharding.Mesh` (one axis, the one
    the points are split over).

    Raises:
        InputError: not a mesh, or a mesh of more than one axis.
    """
    if not isinstance(mesh, Mesh):
        raise InputError(f"mesh: expected a jax.sharding.Mesh, found {type(mesh).__name__}")
    if len(mesh.axis_names) != 1:
        raise InputError(
            "mesh: expected a 1-D mesh (one axis the points are split over), found axes "
            f"{tuple(mesh.axis_names)} of shape {tuple(mesh.devices.shape)}"
        )
    return mesh


class Tracker:
    """PIPs on whole videos: model + parameters + compiled functions.

    Example::

        tracker = Tracker(params, config)
        result = tracker.track("video.mp4", grid_size=20)
        result.tracks      # (N, T, 2) (x, y) input pixels

    Args:
        params: parameters of ``model_for(config)``.
        config: the model configuration, :class:`~pips_jax.config.ModelConfig` (PIPs)
            or :class:`~pips_jax.config.Pips2Config` (PIPs++).
        resolution: ``(H, W)`` every video is resized to before encoding; ``None``
            (default): each video's own aspect ratio at about 360x640's pixel count
            (:func:`working_resolution`). Each side a multiple of the stride.
        iters: refinement iterations per window.
        max_points_per_batch: points per compiled chunk (memory bound).
        progress: show progress bars (tqdm) on stderr.
        feature_memory_bytes: above this, frame features go to a memory-mapped file.
        encode_batch: frames encoded per compiled call.
        compute_dtype: ``"float32"`` (exact) or ``"bfloat16"`` (faster where the
            hardware has bfloat16 matrix units; see the benchmark for its accuracy).
        mesh: a 1-D :class:`jax.sharding.Mesh` whose axis the points (and the encoded
            frames) are split over; default every device of this process
            (:func:`pips_jax.runtime.local_mesh`). A mesh over several processes'
            devices (:func:`pips_jax.runtime.global_mesh`) needs every process to
            track the same video and queries; each gets the full result. Chunk sizes
            are padded to multiples of its device count, and ``encode_batch`` is
            rounded up to one.
        window: PIPs++ only: frames per window (default :data:`PIPS2_WINDOW`, the
            original's evaluation); PIPs runs its own S-frame windows.
    """

    def __init__(
        self,
        params: Params,
        config: ModelConfig | None = None,
        resolution: tuple[int, int] | None = None,
        iters: int = DEFAULT_ITERS,
        max_points_per_batch: int = 1024,
        progress: bool = False,
        feature_memory_bytes: int = FEATURE_MEMORY_BYTES,
        encode_batch: int = 8,
        compute_dtype: Any = "float32",
        mesh: Mesh | None = None,
        window: int | None = None,
    ):
        self.config = config or ModelConfig()
        self.model = model_for(self.config, compute_dtype=compute_dtype)
        self.window = check_window(window, self.config)
        self.mesh = check_mesh(runtime.local_mesh("points") if mesh is None else mesh)
        self._axis = self.mesh.axis_names[0]
        self._replicated = NamedSharding(self.mesh, P())
        self.params = params
        self.resolution = None if resolution is None else check_resolution(resolution, self.config)
        if iters < 1:
            raise InputError(f"iters must be >= 1, got {iters}")
        if max_points_per_batch < 1:
            raise InputError(f"max_points_per_batch must be >= 1, got {max_points_per_batch}")
        self.iters = int(iters)
        self.max_points_per_batch = int(max_points_per_batch)
        self.progress = progress
        self.feature_memory_bytes = feature_memory_bytes
        self.encode_batch = _round_up(max(1, int(encode_batch)), self.device_count)
        # Each is one program over the whole mesh: replicated parameters and feature
        # maps, frames or points split over the axis, outputs gathered back replicated.
        self._encode = jax.jit(
            self._encode_sharded, static_argnames="resolution", out_shardings=self._replicated
        )
        points = P(self._axis)
        if self.has_visibility:
            self._window = jax.jit(
                self._sharded(self._window_impl, (P(), P(), points, points), P(None, self._axis)),
                out_shardings=self._replicated,
            )
        else:
            self._window = jax.jit(
                self._sharded(self._window2_impl, (P(), P(), points, points), points),
                out_shardings=self._replicated,
            )
        self._sample = jax.jit(
            self._sharded(self._sample_impl, (P(), points), points),
            out_shardings=self._replicated,
        )

    @property
    def has_visibility(self) -> bool:
        """Whether the model predicts visibility (PIPs does, PIPs++ does not)."""
        return self.config.family == "pips"

    @property
    def device_count(self) -> int:
        """The devices this tracker runs on: every device of its mesh, of all processes."""
        return int(self.mesh.size)

    @property
    def params(self) -> Params:
        """The parameters, replicated on every device of the mesh (assigning new ones
        places them there; the compiled functions take them as arguments)."""
        return self._params

    @params.setter
    def params(self, params: Params) -> None:
        def put(x: Any) -> jax.Array:
            if isinstance(x, jax.Array) and x.sharding == self._replicated:
                return x
            if self.mesh.is_multi_process:
                host = np.asarray(x)
                return self._put(host.astype(jax.dtypes.canonicalize_dtype(host.dtype)), P())
            return jax.device_put(jnp.asarray(x), self._replicated)

        self._params = jax.tree_util.tree_map(put, params)

    @classmethod
    def from_settings(
        cls,
        params: Params,
        config: ModelConfig,
        settings: InferenceSettings,
        *,
        clips: bool = False,
        **options: Any,
    ) -> Tracker:
        """A tracker that runs as ``settings`` say.

        Args:
            params, config: as for the constructor.
            settings: the run's :class:`~pips_jax.inference.InferenceSettings`.
            clips: the inputs are 256x256 benchmark clips (``demo``, ``eval``): the
                model runs at ``settings.clip_resolution``; otherwise at
                ``settings.video_resolution`` (None: each video's own).
            options: the constructor's other arguments (``max_points_per_batch``,
                ``progress``, ``mesh``, ...).

        Raises:
            InputError: ``settings.window`` is not PIPs' S (PIPs runs S-frame windows),
                or below 2 frames for PIPs++.
        """
        return cls(
            params,
            config,
            resolution=settings.clip_resolution if clips else settings.video_resolution,
            iters=settings.iters,
            compute_dtype=settings.precision,
            window=settings.window,
            **options,
        )

    # ------------------------------------------------------------ jitted pieces
    def _sharded(self, fn: Any, in_specs: tuple[P, ...], out_specs: P) -> Any:
        """``fn`` run by each device on its slices of the arguments (split along the
        mesh axis where the spec names it, whole where it is ``P()``)."""
        return jax.shard_map(
            self._in_precision(fn), mesh=self.mesh, in_specs=in_specs, out_specs=out_specs
        )

    def _in_precision(self, fn: Any) -> Any:
        """``fn`` traced with full float32 matrix products and convolutions when the
        tracker computes in float32: XLA's default on GPUs and TPUs rounds their inputs
        (TF32, bfloat16 passes), and ``"float32"`` means exact. A no-op on CPUs, whose
        default is already full float32; bfloat16 keeps the default."""
        if self.model.compute_dtype != jnp.float32:
            return fn

        @functools.wraps(fn)  # the compiled program keeps fn's name
        def exact(*args: Any) -> Any:
            with jax.default_matmul_precision("highest"):
                return fn(*args)

        return exact

    def _encode_sharded(
        self, params: Params, frames: jax.Array, resolution: tuple[int, int]
    ) -> jax.Array:
        """``(F, H, W, 3)`` uint8 frames, split over the mesh on F, to ``(F, h, w, C)``."""

        def encode(params: Params, frames: jax.Array) -> jax.Array:
            return self._encode_impl(params, frames, resolution)

        frames_split = P(self._axis)
        return self._sharded(encode, (P(), frames_split), frames_split)(params, frames)

    def _encode_impl(
        self, params: Params, frames: jax.Array, resolution: tuple[int, int]
    ) -> jax.Array:
        """``(F, H, W, 3)`` uint8 RGB frames, resized to ``resolution = (h, w)``, to
        ``(F, h / stride, w / stride, C)`` float32 feature maps."""
        h, w = resolution
        x = frames.astype(jnp.float32)
        if x.shape[1:3] != (h, w):
            x = jax.image.resize(x, (x.shape[0], h, w, 3), method="bilinear")
        images = 2.0 * (x / 255.0) - 1.0
        return self.model.encode_images(params, images)

    def _sample_impl(self, fmap: jax.Array, xys: jax.Array) -> jax.Array:
        """``(n, C)`` features of ``(n, 2)`` points ``(x, y)`` in model pixels (origin
        at the centre of the top-left pixel) on one frame's ``(h, w, C)`` map."""
        return self.model.point_features(fmap[None], xys[None])[0]

    def _window_impl(
        self, params: Params, fmaps: jax.Array, xys: jax.Array, feats: jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        """One window: ``(S, h, w, C)`` feature maps (the working resolution divided by
        the stride), ``(n, 2)`` start points ``(x, y)`` in model pixels on frame 0
        (origin at the centre of the top-left pixel) and their ``(n, C)`` features to
        ``(S, n, 2)`` positions in model pixels and ``(S, n)`` visibility probabilities."""
        out = self.model.forward_features(
            params, fmaps[None], xys[None], self.iters, feat_init=feats[None]
        )
        return out.coords[-1, 0], jax.nn.sigmoid(out.vis_logits[0])

    def _window2_impl(
        self, params: Params, fmaps: jax.Array, coords: jax.Array, feats: jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        """One PIPs++ window: ``(S, h, w, C)`` feature maps, ``(n, S, 2)`` initial
        trajectories ``(x, y)`` in model pixels (origin at the centre of the top-left
        pixel; frame 0 the start, kept) and ``(n, 3, S, C)`` templates to ``(n, S, 2)``
        trajectories in model pixels and the ``(n, 3, S, C)`` templates for the next
        window."""
        layout = lambda x: jnp.swapaxes(x, 0, 1)[None]  # noqa: E731  (n, S, .) -> (1, S, n, .)
        templates = tuple(layout(feats[:, k]) for k in range(3))
        out = self.model.forward_features(
            params, fmaps[None], coords[:, 0][None], self.iters, layout(coords), templates
        )
        back = jnp.stack([jnp.swapaxes(f[0], 0, 1) for f in out.feats], axis=1)
        return jnp.swapaxes(out.coords[-1, 0], 0, 1), back

    # ------------------------------------------------------------------ public
    def working_resolution(self, size: tuple[int, int]) -> tuple[int, int]:
        """The ``(H, W)`` this tracker works at on an ``(H, W)`` input (see
        :func:`working_resolution`)."""
        return working_resolution(size, self.config, self.resolution)

    def encode_video(
        self,
        frames: Iterable[np.ndarray],
        num_frames: int | None,
        resolution: tuple[int, int] | None = None,
    ) -> FeatureStore:
        """Encodes every frame once at the working resolution.

        Args:
            frames: iterable of ``(H, W, 3)`` uint8 frames (streamed); every frame it
                yields is encoded, however many there are.
            num_frames: the expected count (sizes the store and the progress bar; an
                estimate is fine, ``None`` if unknown).
            resolution: ``(H, W)`` to encode at; default :attr:`resolution` (then it
                must be set).

        Returns:
            A :class:`FeatureStore` of as many frames as ``frames`` yielded.
        """
        resolution = resolution or self.resolution
        if resolution is None:
            raise InputError("encode_video: expected a working resolution (H, W)")
        h, w = check_resolution(resolution, self.config)
        s = self.config.stride
        store = FeatureStore(
            num_frames or 64,
            (h // s, w // s, self.config.latent_dim),
            self.feature_memory_bytes,
            (h, w),
        )
        bar = _progress(self.progress, num_frames, "encode", "frame")
        batch: list[np.ndarray] = []
        try:
            for frame in frames:
                interrupts.check()
                batch.append(frame)
                if len(batch) == self.encode_batch:
                    store.append(self._encode_batch(batch, (h, w)))
                    bar.update(len(batch))
                    batch = []
            if batch:
                store.append(self._encode_batch(batch, (h, w)))
                bar.update(len(batch))
        except BaseException:
            store.close()
            raise
        finally:
            bar.close()
        return store

    def _encode_batch(
        self, batch: list[np.ndarray], resolution: tuple[int, int], size: int | None = None
    ) -> np.ndarray:
        """``(n, h, w, C)`` maps of ``n`` frames, encoded as one compiled batch of
        ``size`` frames (default :attr:`encode_batch`; the last frame repeated)."""
        n = len(batch)
        size = self.encode_batch if size is None else size
        arr = np.stack(batch)
        if n < size:  # keep one compiled shape
            arr = np.concatenate([arr, np.repeat(arr[-1:], size - n, axis=0)])
        frames = self._put(arr, P(self._axis))
        return _fetch(self._encode(self.params, frames, resolution=resolution))[:n]

    def track(
        self,
        video: Any,
        queries: np.ndarray | None = None,
        grid_size: int | None = None,
        grid_query_frame: int | None = None,
        grid_mask: np.ndarray | None = None,
        backward: bool = True,
        start: int = 0,
        stop: int | None = None,
        step: int = 1,
        labels: Sequence[str] | None = None,
    ) -> TrackResult:
        """Tracks query points through a whole video (or a part of it).

        Args:
            video: ``(T, H, W, 3)`` uint8 RGB array, a video file path, a folder of
                frames, or a :class:`VideoSource`.
            queries: ``(N, 3)`` rows ``(t, x, y)``: an input frame index (one of the
                selected frames) and input pixels (origin at the centre of the
                top-left pixel).
            grid_size: instead of ``queries``, a ``K x K`` grid on ``grid_query_frame``
                (an input frame index; default the first selected frame), optionally
                only where ``grid_mask``, ``(H, W)`` bool, is True.
            backward: also track frames before each query frame (time-reversed).
            start, stop, step: track the input frames ``start, start + step, ...``
                below ``stop`` (None: to the end); nothing outside is resized or
                encoded. Ignored for a :class:`VideoSource` (it has its own).
            labels: a name per query row for error messages (see :func:`check_queries`).

        Returns:
            :class:`TrackResult` with ``(N, T)`` tracks, visibility and confidence over
            the ``T`` selected frames; ``frame_indices`` names their input indices.
        """
        if isinstance(video, VideoSource):
            source = video
        else:
            source = open_video(video, FrameSelection(start, stop, step))
        sel, size = source.selection, source.size
        if (queries is None) == (grid_size is None):
            raise InputError("track: give exactly one of queries (N, 3) or grid_size")
        if queries is None:
            t0 = sel.start if grid_query_frame is None else grid_query_frame
            queries = grid_queries(size, int(grid_size), t0, grid_mask)
        q = check_queries(queries, source.num_frames, size, sel, labels)
        resolution = self.working_resolution(size)
        frames = source.frames()
        try:  # the decoder is closed at once when interrupted, not at a later collection
            store = self.encode_video(frames, source.estimated_frames, resolution)
        finally:
            frames.close()
        try:
            q = check_queries(q, store.count, size, sel, labels)  # the frames that decoded
            positions = q.copy()
            positions[:, 0] = sel.position(q[:, 0])
            result = self.track_features(store, positions, size, source.fps, backward)
        finally:
            store.close()
        result.queries = q
        result.frame_indices = sel.indices(result.num_frames)
        return result

    def stream(
        self,
        frames: Iterable[np.ndarray],
        queries: np.ndarray | None = None,
        *,
        grid_size: int | None = None,
        grid_query_frame: int = 0,
        keep_frames: bool = False,
    ) -> Iterator[StreamedFrame]:
        """Tracks points forward through frames as they come (a file, a generator, a
        camera), yielding each frame's result as soon as it is final, in order, and
        holding only the features of the frames a window still needs: memory does not
        grow with the number of frames (see :class:`TrackStream`).

        Forward tracking only: backward tracking needs the frames after a query before
        those before it, which a stream cannot give, so frames before a point's query
        frame have no position (NaN). On the frames from each query on, the results
        equal :meth:`track` with ``backward=False`` on the same frames (the same
        windows and anchors). With PIPs a frame is final at most ``S - 1`` frames
        after it was pushed, with PIPs++ about ``window`` to ``2 * window`` frames
        after; every frame once ``frames`` ends.

        Args:
            frames: ``(H, W, 3)`` uint8 RGB frames, all of the first one's size.
            queries: ``(N, 3)`` rows ``(t, x, y)``: ``t`` the index of a frame in the
                stream (counted from 0, any frame the stream reaches), ``(x, y)`` input
                pixels with the origin at the centre of the top-left pixel. For points
                added while the stream runs, use :class:`TrackStream` directly.
            grid_size: instead of ``queries``, a ``K x K`` grid on frame
                ``grid_query_frame`` (see :func:`grid_queries`).
            keep_frames: also return each input frame with its result (for drawing).

        Yields:
            :class:`StreamedFrame` ``(t, positions (N, 2), visibility (N,), confidence
            (N,), frame)`` for ``t = 0, 1, ...``.

        Raises:
            InputError: no frames, a frame of another size or type, a query off the
                frame, or the stream ending before a query's frame (after the frames
                before it have been yielded).
        """
        if (queries is None) == (grid_size is None):
            raise InputError("stream: give exactly one of queries (N, 3) or grid_size")
        source = iter(frames)
        first = next(source, None)
        if first is None:
            raise InputError("stream: no frames; expected at least one (H, W, 3) frame")
        first = np.asarray(first)
        if first.ndim != 3:
            raise InputError(
                f"stream frame 0: expected an (H, W, 3) uint8 RGB frame, found shape {first.shape}"
            )
        size = (int(first.shape[0]), int(first.shape[1]))
        if queries is None:
            queries = grid_queries(size, int(grid_size), grid_query_frame)
        live = TrackStream(self, size, queries, keep_frames=keep_frames)
        yield from live.push(first)
        for frame in source:
            yield from live.push(frame)
        yield from live.close()

    def track_features(
        self,
        store: FeatureStore,
        queries: np.ndarray,
        size: tuple[int, int],
        fps: float = 0.0,
        backward: bool = True,
    ) -> TrackResult:
        """Tracks validated ``(t, x, y)`` queries on already encoded frames.

        Here ``t`` is a position in the store (``0 .. T-1``) and ``(x, y)`` input
        pixels of an ``size = (H, W)`` input; the store's resolution is the working one.
        """
        resolution = store.resolution or self.resolution
        t_count = store.count
        n = len(queries)
        q_t = queries[:, 0].astype(np.int64)
        q_xy = to_model_pixels(queries[:, 1:], size, resolution)
        feats = self._query_features(store, q_t, q_xy)
        tracks = np.zeros((n, t_count, 2), np.float32)
        conf = np.zeros((n, t_count), np.float32)
        chain = self._chain if self.has_visibility else self._chain_pips2
        chain(store, np.arange(t_count), q_t, q_xy, feats, tracks, conf)
        if backward and np.any(q_t > 0):
            sel = np.nonzero(q_t > 0)[0]
            rev = np.arange(t_count)[::-1].copy()
            b_tracks = np.zeros((len(sel), t_count, 2), np.float32)
            b_conf = np.zeros((len(sel), t_count), np.float32)
            chain(store, rev, t_count - 1 - q_t[sel], q_xy[sel], feats[sel], b_tracks, b_conf)
            before = np.arange(t_count)[None, :] < q_t[sel][:, None]  # (n_sel, T) in real time
            tracks[sel] = np.where(before[..., None], b_tracks[:, ::-1], tracks[sel])
            conf[sel] = np.where(before, b_conf[:, ::-1], conf[sel])
        tracks = to_input_pixels(tracks, size, resolution)
        if not self.has_visibility:
            conf = np.full_like(conf, np.nan)
        visible = self.visible(tracks, conf, size)
        visible[np.arange(n), q_t] = True  # a query is on a visible point by definition
        return TrackResult(
            tracks=tracks,
            visibility=visible,
            confidence=conf,
            queries=queries.astype(np.float32),
            fps=float(fps),
            size=(int(size[0]), int(size[1])),
            resolution=tuple(int(v) for v in resolution),
            has_visibility=self.has_visibility,
        )

    def visible(self, xy: np.ndarray, confidence: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """Where points are visible: ``(...)`` bool of ``(..., 2)`` ``(x, y)`` input
        pixels of an ``(H, W)`` ``size`` frame and their ``(...)`` visibility
        probabilities. PIPs: the probability exceeds :data:`VISIBILITY_THRESHOLD` and
        the position lies on the frame; PIPs++ (no visibility head): wherever the
        position lies on the frame. (Query frames are visible by definition: the
        callers set them.)"""
        on_frame = inside_frame(xy, size)
        return on_frame & (confidence > VISIBILITY_THRESHOLD) if self.has_visibility else on_frame

    # --------------------------------------------------------------- internals
    def _query_features(self, store: FeatureStore, q_t: np.ndarray, q_xy: np.ndarray) -> np.ndarray:
        feats = np.zeros((len(q_t), self.config.latent_dim), np.float32)
        for t in np.unique(q_t):
            idx = np.nonzero(q_t == t)[0]
            fmap = self._put(store.window(np.array([t]))[0], P())
            for chunk in self._chunks(idx):
                xy = self._points(q_xy[chunk])
                feats[chunk] = _fetch(self._sample(fmap, xy))[: len(chunk)]
                interrupts.check()
        return feats

    def _put(self, host: np.ndarray, spec: P) -> jax.Array:
        """A host array as one array over the mesh, split as ``spec`` says (each process
        places the slices of its own devices, so this serves a global mesh too)."""
        sharding = NamedSharding(self.mesh, spec)
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    def _points(self, rows: np.ndarray) -> jax.Array:
        """``(n, ...)`` per-point rows padded to their chunk's fixed size (repeating the
        last row; those results are dropped) and split over the mesh on the points."""
        size = _bucket(len(rows), self.max_points_per_batch, self.device_count)
        return self._put(_pad_rows(rows, size), P(self._axis))

    def _chunks(self, idx: np.ndarray) -> Iterator[np.ndarray]:
        for i in range(0, len(idx), self.max_points_per_batch):
            yield idx[i : i + self.max_points_per_batch]

    def _run_window(
        self, fmaps: jax.Array, starts: np.ndarray, feats: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """One window for one chunk of ``n`` points, on the host.

        PIPs: ``(n, 2)`` start points and ``(n, C)`` features to ``(S, n, 2)``
        positions and ``(S, n)`` visibility probabilities; PIPs++: ``(n, S, 2)``
        initial trajectories and ``(n, 3, S, C)`` templates to ``(n, S, 2)``
        trajectories and the next ``(n, 3, S, C)`` templates (model pixels, see
        :meth:`_window_impl` and :meth:`_window2_impl`). ``fmaps`` are the window's
        replicated ``(S, h, w, C)`` maps.
        """
        n = len(starts)
        a, b = self._window(self.params, fmaps, self._points(starts), self._points(feats))
        if self.has_visibility:  # the points are the second axis
            return _fetch(a)[:, :n], _fetch(b)[:, :n]
        return _fetch(a)[:n], _fetch(b)[:n]

    def _chain(
        self,
        store: FeatureStore,
        frame_ids: np.ndarray,
        start: np.ndarray,
        start_xy: np.ndarray,
        feats: np.ndarray,
        tracks: np.ndarray,
        conf: np.ndarray,
    ) -> None:
        """Chains windows along ``frame_ids`` (time order of this pass) for all points.

        ``start`` are the query frames in this pass's time; results are written into
        ``tracks``/``conf`` in this pass's time.
        """
        s = self.config.S
        t_count = len(frame_ids)
        anchor = start.copy()
        anchor_xy = start_xy.copy()
        active = np.ones(len(start), bool)
        bar = _progress(self.progress, None, "track", "window")
        try:
            while np.any(active):
                a = int(anchor[active].min())
                group = np.nonzero(active & (anchor == a))[0]
                ids = frame_ids[np.minimum(np.arange(a, a + s), t_count - 1)]
                fmaps = self._put(store.window(ids), P())
                keep = min(s, t_count - a)
                for chunk in self._chunks(group):
                    xy, c = self._run_window(fmaps, anchor_xy[chunk], feats[chunk])
                    tracks[chunk, a : a + keep] = xy[:keep].transpose(1, 0, 2)
                    conf[chunk, a : a + keep] = c[:keep].T
                    if a + s >= t_count:
                        active[chunk] = False
                    else:
                        anchor[chunk], anchor_xy[chunk] = next_anchors(a, xy, c)
                    bar.update(1)
                    interrupts.check()
        finally:
            bar.close()

    def _chain_pips2(
        self,
        store: FeatureStore,
        frame_ids: np.ndarray,
        start: np.ndarray,
        start_xy: np.ndarray,
        feats: np.ndarray,
        tracks: np.ndarray,
        conf: np.ndarray,
    ) -> None:
        """PIPs++'s chaining (:func:`pips2_windows`) along ``frame_ids`` (time order of
        this pass), for the points of each start frame at once; arguments as for
        :meth:`_chain`, ``conf`` is left as it is (PIPs++ has no visibility)."""
        del conf
        t_count = len(frame_ids)
        bar = _progress(self.progress, None, "track", "window")
        try:
            for a in np.unique(start):
                group = np.nonzero(start == a)[0]
                length = t_count - int(a)
                traj = np.repeat(start_xy[group][:, None], length, axis=1)  # n, L, 2
                if length >= 2:
                    self._pips2_pass(store, frame_ids[a:], traj, feats[group], bar)
                tracks[group, a:] = traj
        finally:
            bar.close()

    def _pips2_pass(
        self,
        store: FeatureStore,
        frame_ids: np.ndarray,
        traj: np.ndarray,
        feats: np.ndarray,
        bar: Any,
    ) -> None:
        """One start frame's points through the ``L = len(frame_ids)`` frames from it:
        ``traj`` ``(n, L, 2)`` (model pixels, every frame at the query to begin with)
        is filled in place; ``feats`` ``(n, C)`` are the query features."""
        n = len(traj)
        templates: np.ndarray | None = None  # (n, 3, S, C) the last window returned
        for cur, end in pips2_windows(len(frame_ids), self.window):
            s_local = end - cur
            if templates is None:
                templates = first_templates(feats, s_local)
            templates = templates[:, :, :s_local]
            fmaps = self._put(store.window(frame_ids[cur:end]), P())
            new_templates = np.empty_like(templates)
            for chunk in self._chunks(np.arange(n)):
                traj[chunk, cur:end], new_templates[chunk] = self._run_window(
                    fmaps, traj[chunk, cur:end], templates[chunk]
                )
                bar.update(1)
                interrupts.check()
            traj[:, end:] = traj[:, end - 1 : end]  # zero velocity beyond the window
            templates = new_templates


class StreamedFrame(NamedTuple):
    """One frame of a stream, final.

    Attributes:
        t: the frame's index in the stream (0 for the first frame pushed).
        positions: ``(N, 2)`` float32 ``(x, y)`` input pixels (origin at the centre of
            the top-left pixel), as predicted (off the frame where the point left it);
            NaN for points whose query frame is later.
        visibility: ``(N,)`` bool, as :meth:`Tracker.track` decides it (False before
            a point's query frame).
        confidence: ``(N,)`` float32, the model's visibility probability (NaN before a
            point's query frame).
        frame: the input ``(H, W, 3)`` uint8 frame when the stream keeps frames, else None.
    """

    t: int
    positions: np.ndarray
    visibility: np.ndarray
    confidence: np.ndarray
    frame: np.ndarray | None = None


class _HeldMaps:
    """The feature maps a stream still holds, by frame index (a :class:`FeatureStore`
    of the frames a window still needs)."""

    def __init__(self) -> None:
        self.maps: dict[int, np.ndarray] = {}

    def window(self, frame_ids: np.ndarray) -> np.ndarray:
        return np.stack([self.maps[int(t)] for t in frame_ids])


@dataclasses.dataclass
class _Pips2Pass:
    """The PIPs++ windows of the points a stream added with one query frame: they run
    through the frames from ``start`` as :func:`pips2_windows` says (frames counted
    from ``start``)."""

    start: int  # the query frame (stream index)
    points: np.ndarray  # (n,) the stream's point indices
    templates: np.ndarray | None = None  # (n, 3, S, C) the last window returned
    cur: int = 0  # the next window's start
    last_end: int = 0  # the end of the last window run (0: none yet)
    done: bool = False


class TrackStream:
    """Tracking frame by frame: push frames as they come, add points at any time, take
    each frame's result once it is final. Forward only.

    Both families' chaining can run as frames come, because a window needs only the
    frames from its start:

    * **PIPs**: a point's window starts at its anchor and its next anchor lies inside
      that window. A group of points anchored at frame ``a`` runs once frame
      ``a + S - 1`` has been pushed, and a frame is final once every point still
      tracked is anchored after it: at most ``S - 1`` frames after it was pushed.
    * **PIPs++**: the windows of a query frame's points overlap by one frame, and the
      last one is shifted back to end at the last frame, which only the end of the
      stream tells. A window runs once its ``window`` frames have been pushed; a frame
      is final once the next window starts after it and it lies more than ``window``
      frames before the newest (the shifted last window cannot reach it): about
      ``window`` to ``2 * window`` frames late.

    Only the features of frames not yet final are held (about one window for PIPs,
    two for PIPs++), whatever the stream's length. When the stream ends
    (:meth:`close`) the windows left run as :meth:`Tracker.track` runs its last ones,
    so the results equal ``Tracker.track(..., backward=False)`` on the same frames,
    from each point's query frame on. Backward tracking is not possible online: before
    its query frame a point has no position (NaN).

    Example::

        live = TrackStream(tracker, (480, 640), queries)
        for frame in camera:
            for t, xy, visible, confidence, _ in live.push(frame):
                ...
        for t, xy, visible, confidence, _ in live.close():
            ...

    Args:
        tracker: a :class:`Tracker` of either family.
        size: ``(H, W)`` of every frame.
        queries: optional ``(N, 3)`` rows ``(t, x, y)`` (see :meth:`add`).
        keep_frames: hold each input frame until it is final and return it with the
            result (:attr:`StreamedFrame.frame`).
    """

    def __init__(
        self,
        tracker: Tracker,
        size: tuple[int, int],
        queries: np.ndarray | None = None,
        *,
        keep_frames: bool = False,
    ):
        self.tracker = tracker
        self.size = (int(size[0]), int(size[1]))
        self.resolution = tracker.working_resolution(self.size)
        self.keep_frames = keep_frames
        self.count = 0  # frames pushed
        self.next_final = 0  # the first frame not yet returned
        self.closed = False
        self._held = _HeldMaps()
        self._frames: dict[int, np.ndarray] = {}
        self._xy: dict[int, np.ndarray] = {}  # frames not final: (N, 2) model pixels
        self._conf: dict[int, np.ndarray] = {}  # and (N,) visibility probabilities
        c = tracker.config.latent_dim
        self._queries = np.zeros((0, 3), np.float32)
        self._q_xy = np.zeros((0, 2), np.float32)  # model pixels
        self._feats = np.zeros((0, c), np.float32)
        self._started = np.zeros(0, bool)
        # PIPs: each point's anchor, position there, last window start (-1: none), done
        self._anchor = np.zeros(0, np.int64)
        self._anchor_xy = np.zeros((0, 2), np.float32)
        self._last_start = np.zeros(0, np.int64)
        self._done = np.zeros(0, bool)
        self._passes: list[_Pips2Pass] = []  # PIPs++
        if queries is not None:
            self.add(queries)

    @property
    def num_points(self) -> int:
        return len(self._queries)

    @property
    def held_frames(self) -> int:
        """How many frames' feature maps the stream holds now."""
        return len(self._held.maps)

    def add(self, queries: np.ndarray) -> np.ndarray:
        """Adds points to track.

        Args:
            queries: ``(n, 3)`` rows ``(t, x, y)``: ``t`` a frame of the stream not yet
                final (``t >= next_final``; a frame already pushed, or a later one),
                ``(x, y)`` input pixels with the origin at the centre of the top-left
                pixel.

        Returns:
            ``(n,)`` the new points' indices (rows of every later result).
        """
        if self.closed:
            raise InputError("stream: closed; expected points to be added before close()")
        q = check_queries(queries, None, self.size)
        early = q[:, 0] < self.next_final
        if np.any(early):
            bad = int(np.argmax(early))
            raise InputError(
                f"query {bad} is on frame {q[bad, 0]:g}, which is already final (frames "
                f"0..{self.next_final - 1} have been returned); expected a frame from "
                f"{self.next_final} on"
            )
        n, first = len(q), self.num_points
        q_xy = to_model_pixels(q[:, 1:], self.size, self.resolution)
        grow = lambda old, new: np.concatenate([old, new])  # noqa: E731
        self._queries = grow(self._queries, q)
        self._q_xy = grow(self._q_xy, q_xy)
        self._feats = grow(self._feats, np.zeros((n, self._feats.shape[1]), np.float32))
        self._started = grow(self._started, np.zeros(n, bool))
        self._anchor = grow(self._anchor, q[:, 0].astype(np.int64))
        self._anchor_xy = grow(self._anchor_xy, q_xy)
        self._last_start = grow(self._last_start, np.full(n, -1, np.int64))
        self._done = grow(self._done, np.zeros(n, bool))
        for t in self._xy:
            self._xy[t] = grow(self._xy[t], np.full((n, 2), np.nan, np.float32))
            self._conf[t] = grow(self._conf[t], np.full(n, np.nan, np.float32))
        self._start_ready()
        self._advance(final=False)
        return np.arange(first, first + n)

    def push(self, frame: np.ndarray) -> list[StreamedFrame]:
        """Encodes the next frame, runs every window it completes and returns the
        frames that became final (in order; often none)."""
        if self.closed:
            raise InputError("stream: closed; expected frames to be pushed before close()")
        frame = np.asarray(frame)
        h, w = self.size
        if frame.shape != (h, w, 3) or frame.dtype != np.uint8:
            raise InputError(
                f"stream frame {self.count}: expected an ({h}, {w}, 3) uint8 RGB frame like "
                f"the first, found shape {frame.shape} of {frame.dtype}"
            )
        t = self.count
        tracker = self.tracker
        self._held.maps[t] = tracker._encode_batch([frame], self.resolution, tracker.device_count)[
            0
        ]
        if self.keep_frames:
            self._frames[t] = frame
        self._xy[t] = np.full((self.num_points, 2), np.nan, np.float32)
        self._conf[t] = np.full(self.num_points, np.nan, np.float32)
        self.count += 1
        self._start_ready()
        self._advance(final=False)
        return self._pop_final()

    def close(self) -> list[StreamedFrame]:
        """Ends the stream: runs the windows left (as :meth:`Tracker.track` runs a
        video's last ones) and returns every frame not yet returned.

        Raises:
            InputError: a point's query frame was never pushed.
        """
        if self.closed:
            return []
        late = ~self._started
        if np.any(late):
            bad = int(np.argmax(late))
            raise InputError(
                f"query {bad} is on frame {self._queries[bad, 0]:g} but the stream ended after "
                f"{self.count} frames; expected query frames below {self.count}"
            )
        if self.tracker.has_visibility:
            # A point whose last window reached the last frame is finished (as offline).
            s = self.tracker.config.S
            self._done |= (self._last_start >= 0) & (self._last_start + s >= self.count)
        self._advance(final=True)
        self.closed = True
        return self._pop_final()

    # --------------------------------------------------------------- internals
    def _start_ready(self) -> None:
        """Points whose query frame has been pushed get their query feature (and, for
        PIPs++, a pass per query frame)."""
        ready = np.nonzero(~self._started & (self._anchor < self.count))[0]
        if len(ready):
            q_t = self._queries[ready, 0].astype(np.int64)
            self._feats[ready] = self.tracker._query_features(self._held, q_t, self._q_xy[ready])
            self._started[ready] = True
            if not self.tracker.has_visibility:
                for t in np.unique(q_t):
                    self._passes.append(_Pips2Pass(int(t), ready[q_t == t]))

    def _advance(self, final: bool) -> None:
        """Runs every window whose frames have all been pushed (``final``: every
        window left)."""
        if not self.tracker.has_visibility:
            for p in self._passes:
                self._advance_pass(p, final)
            return
        tracker, s, count = self.tracker, self.tracker.config.S, self.count
        while True:
            active = self._started & ~self._done
            if not np.any(active):
                return
            a = int(self._anchor[active].min())
            if not final and a + s > count:
                return
            group = np.nonzero(active & (self._anchor == a))[0]
            fmaps = tracker._put(self._held.window(np.minimum(np.arange(a, a + s), count - 1)), P())
            keep = min(s, count - a)
            for chunk in tracker._chunks(group):
                xy, c = tracker._run_window(fmaps, self._anchor_xy[chunk], self._feats[chunk])
                for k in range(keep):
                    self._xy[a + k][chunk] = xy[k]
                    self._conf[a + k][chunk] = c[k]
                self._last_start[chunk] = a
                if final and a + s >= count:
                    self._done[chunk] = True
                else:
                    self._anchor[chunk], self._anchor_xy[chunk] = next_anchors(a, xy, c)
                interrupts.check()

    def _advance_pass(self, p: _Pips2Pass, final: bool) -> None:
        """Runs a PIPs++ pass's windows whose frames have all been pushed (``final``:
        the rest of :func:`pips2_windows`, the last one shifted back)."""
        if p.done:
            return
        window, length = self.tracker.window, self.count - p.start  # frames so far
        if not final:
            while p.cur + window <= length:
                self._run_pass_window(p, p.cur, p.cur + window)
            return
        if length < 2:  # one frame: the query itself, as offline
            self._xy[p.start][p.points] = self._q_xy[p.points]
        elif p.last_end < length:
            for cur, end in pips2_windows(length, window, p.cur):
                self._run_pass_window(p, cur, end)
        p.done = True

    def _run_pass_window(self, p: _Pips2Pass, cur: int, end: int) -> None:
        """One PIPs++ window ``[cur, end)`` of a pass (frames counted from its query
        frame), started from the trajectory so far and the last position beyond it."""
        tracker, n = self.tracker, len(p.points)
        s_local = end - cur
        if p.templates is None:
            p.templates = first_templates(self._feats[p.points], s_local)
        templates = p.templates[:, :, :s_local]
        init = np.empty((n, s_local, 2), np.float32)
        for k in range(s_local):
            j = min(cur + k, p.last_end - 1)  # beyond the last window: zero velocity
            init[:, k] = self._xy[p.start + j][p.points] if j >= 0 else self._q_xy[p.points]
        frames = np.arange(p.start + cur, p.start + end)
        fmaps = tracker._put(self._held.window(frames), P())
        out = np.empty_like(init)
        new_templates = np.empty_like(templates)
        for chunk in tracker._chunks(np.arange(n)):
            out[chunk], new_templates[chunk] = tracker._run_window(
                fmaps, init[chunk], templates[chunk]
            )
            interrupts.check()
        for k in range(s_local):
            self._xy[p.start + cur + k][p.points] = out[:, k]
        p.templates, p.cur, p.last_end = new_templates, end - 1, end

    def _final_limit(self) -> int:
        """The first frame a window may still rewrite (every frame once closed)."""
        limit = self.count
        if self.closed:
            return limit
        if self.tracker.has_visibility:
            active = self._started & ~self._done
            if np.any(active):
                limit = min(limit, int(self._anchor[active].min()))
            return limit
        window = self.tracker.window
        for p in self._passes:
            if not p.done:  # the next window, and the last one shifted back to the end
                bound = max(0, min(p.cur, self.count - p.start - window))
                limit = min(limit, p.start + bound)
        return limit

    def _pop_final(self) -> list[StreamedFrame]:
        """The frames that no window will rewrite, their maps and frames released."""
        limit = self._final_limit()
        out = []
        q_t = self._queries[:, 0].astype(np.int64)
        for t in range(self.next_final, limit):
            xy = to_input_pixels(self._xy.pop(t), self.size, self.resolution)
            conf = self._conf.pop(t)
            visible = self.tracker.visible(xy, conf, self.size)
            visible[q_t == t] = True  # a query is on a visible point by definition
            self._held.maps.pop(t)
            out.append(StreamedFrame(t, xy, visible, conf, self._frames.pop(t, None)))
        self.next_final = max(self.next_final, limit)
        return out


def _pad_rows(x: np.ndarray, size: int) -> np.ndarray:
    """Pads the first axis to ``size`` by repeating the last row (results are dropped)."""
    x = np.asarray(x, np.float32)
    if len(x) < size:
        x = np.concatenate([x, np.repeat(x[-1:], size - len(x), axis=0)])
    return x


def _fetch(x: Any) -> np.ndarray:
    """A replicated output on the host (one copy: on a mesh of several processes the
    others' devices are not addressable from this one)."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        x = x.addressable_shards[0].data
    return np.asarray(x)


def _progress(enabled: bool, total: int | None, desc: str, unit: str):
    from tqdm.auto import tqdm

    return tqdm(
        total=total, desc=desc, unit=unit, disable=not enabled, leave=False, dynamic_ncols=True
    )
