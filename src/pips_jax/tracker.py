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
"""

from __future__ import annotations

import dataclasses
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from pips_jax.config import DEFAULT_ITERS, ModelConfig
from pips_jax.errors import InputError
from pips_jax.model.pips import Params, Pips

DEFAULT_RESOLUTION = (360, 640)
FEATURE_MEMORY_BYTES = 4 << 30  # above this the feature maps go to a memory-mapped file
VISIBILITY_THRESHOLD = 0.5


# ----------------------------------------------------------------------- results
@dataclasses.dataclass
class TrackResult:
    """Tracks of N points through a T-frame video.

    Attributes:
        tracks: ``(N, T, 2)`` float32, ``(x, y)`` in input pixels (origin at the
            centre of the top-left pixel).
        visibility: ``(N, T)`` bool, True where the point is predicted visible.
        confidence: ``(N, T)`` float32 in [0, 1], the model's visibility probability.
        queries: ``(N, 3)`` float32 ``(t, x, y)`` query rows.
        fps: frames per second of the input (0 if unknown).
        size: ``(H, W)`` of the input video.
        resolution: ``(H, W)`` the model worked at.
    """

    tracks: np.ndarray
    visibility: np.ndarray
    confidence: np.ndarray
    queries: np.ndarray
    fps: float
    size: tuple[int, int]
    resolution: tuple[int, int]

    @property
    def num_points(self) -> int:
        return int(self.tracks.shape[0])

    @property
    def num_frames(self) -> int:
        return int(self.tracks.shape[1])


# ------------------------------------------------------------------ coordinates
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


def check_queries(queries: np.ndarray, num_frames: int, size: tuple[int, int]) -> np.ndarray:
    """Validates ``(N, 3)`` ``(t, x, y)`` queries against a ``T x H x W`` video."""
    q = np.asarray(queries, dtype=np.float64)
    if q.ndim != 2 or q.shape[1] != 3:
        raise InputError(
            f"queries: expected an (N, 3) array of (t, x, y) rows, got shape {q.shape}"
        )
    if len(q) == 0:
        raise InputError("queries: expected at least one (t, x, y) row, got none")
    if not np.all(np.isfinite(q)):
        bad = int(np.argmax(~np.all(np.isfinite(q), axis=1)))
        raise InputError(f"queries: row {bad} has NaN or infinite values {q[bad].tolist()}")
    t = q[:, 0]
    if np.any(t != np.round(t)) or np.any(t < 0) or np.any(t > num_frames - 1):
        bad = int(np.argmax((t != np.round(t)) | (t < 0) | (t > num_frames - 1)))
        raise InputError(
            f"queries: row {bad} has frame index {q[bad, 0]:g}; expected an integer in 0..{num_frames - 1}"
        )
    h, w = size
    out = (q[:, 1] < -0.5) | (q[:, 1] > w - 0.5) | (q[:, 2] < -0.5) | (q[:, 2] > h - 0.5)
    if np.any(out):
        bad = int(np.argmax(out))
        raise InputError(
            f"queries: row {bad} (x={q[bad, 1]:g}, y={q[bad, 2]:g}) lies outside the {w}x{h} (W x H) "
            "frame; expected -0.5 <= x <= W-0.5 and -0.5 <= y <= H-0.5 in pixels"
        )
    return q.astype(np.float32)


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


# ------------------------------------------------------------------------ video
@dataclasses.dataclass
class VideoSource:
    """A video to track: its size and a way to stream its frames (any number of times).

    Attributes:
        num_frames: T.
        height, width: input size in pixels.
        fps: frames per second (0 if unknown).
    """

    num_frames: int
    height: int
    width: int
    fps: float
    array: np.ndarray | None = None
    path: Path | None = None

    def frames(self) -> Iterator[np.ndarray]:
        """Yields ``(H, W, 3)`` uint8 RGB frames in order, decoding as it goes."""
        if self.array is not None:
            yield from self.array
            return
        from pips_jax.video import read_frames

        yield from read_frames(self.path)


def open_video(video: Any) -> VideoSource:
    """Wraps a ``(T, H, W, 3)`` uint8 array, a video file or a folder of frames."""
    from pips_jax.video import load_video, probe_video, read_frames

    if isinstance(video, VideoSource):
        return video
    if isinstance(video, (str, os.PathLike)):
        info = probe_video(video)
        t_count = info.num_frames
        if t_count is None:  # the container does not say: count by decoding once
            t_count = sum(1 for _ in read_frames(video))
        if t_count == 0:
            raise InputError(f"video {video}: no frames; expected at least one")
        return VideoSource(
            t_count, info.height, info.width, float(info.fps or 0.0), path=Path(video)
        )
    frames, info = load_video(video)
    return VideoSource(
        len(frames), frames.shape[1], frames.shape[2], float(info.fps or 0.0), array=frames
    )


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


# --------------------------------------------------------------- feature store
class FeatureStore:
    """Feature maps of every frame, each computed once.

    Small videos keep them in memory; above ``memory_bytes`` they live in a
    memory-mapped temporary file that is deleted on :meth:`close`.
    """

    def __init__(self, num_frames: int, shape: tuple[int, int, int], memory_bytes: int):
        nbytes = num_frames * math.prod(shape) * 4
        self._tmp: tempfile.TemporaryDirectory | None = None
        if nbytes > memory_bytes:
            self._tmp = tempfile.TemporaryDirectory(prefix="pips-jax-features-")
            path = os.path.join(self._tmp.name, "fmaps.f32")
            self.data = np.lib.format.open_memmap(
                path, mode="w+", dtype=np.float32, shape=(num_frames, *shape)
            )
        else:
            self.data = np.empty((num_frames, *shape), np.float32)

    def window(self, frame_ids: np.ndarray) -> np.ndarray:
        return np.asarray(self.data[frame_ids])

    def close(self) -> None:
        if self._tmp is not None:
            del self.data
            self._tmp.cleanup()
            self._tmp = None


# ----------------------------------------------------------------------- tracker
def _bucket(n: int, cap: int) -> int:
    """Pads chunk sizes to a few fixed sizes (powers of two, at least 16, at most cap)."""
    return min(cap, max(16, 1 << (n - 1).bit_length()))


class Tracker:
    """PIPs on whole videos: model + parameters + compiled functions.

    Example::

        tracker = Tracker(params, config)
        result = tracker.track("video.mp4", grid_size=20)
        result.tracks      # (N, T, 2) (x, y) input pixels

    Args:
        params: parameters of ``Pips(config)``.
        config: the model configuration.
        resolution: ``(H, W)`` frames are resized to before encoding (default 360x640,
            as the original demo); each side a multiple of the stride.
        iters: refinement iterations per window.
        max_points_per_batch: points per compiled chunk (memory bound).
        progress: show progress bars (tqdm) on stderr.
        feature_memory_bytes: above this, frame features go to a memory-mapped file.
        encode_batch: frames encoded per compiled call.
        compute_dtype: ``"float32"`` (exact) or ``"bfloat16"`` (faster where the
            hardware has bfloat16 matrix units; see the benchmark for its accuracy).
    """

    def __init__(
        self,
        params: Params,
        config: ModelConfig | None = None,
        resolution: tuple[int, int] = DEFAULT_RESOLUTION,
        iters: int = DEFAULT_ITERS,
        max_points_per_batch: int = 1024,
        progress: bool = False,
        feature_memory_bytes: int = FEATURE_MEMORY_BYTES,
        encode_batch: int = 8,
        compute_dtype: Any = "float32",
    ):
        self.config = config or ModelConfig()
        self.model = Pips(self.config, compute_dtype=compute_dtype)
        self.params = jax.tree_util.tree_map(jnp.asarray, params)
        self.resolution = check_resolution(resolution, self.config)
        if iters < 1:
            raise InputError(f"iters must be >= 1, got {iters}")
        if max_points_per_batch < 1:
            raise InputError(f"max_points_per_batch must be >= 1, got {max_points_per_batch}")
        self.iters = int(iters)
        self.max_points_per_batch = int(max_points_per_batch)
        self.progress = progress
        self.feature_memory_bytes = feature_memory_bytes
        self.encode_batch = max(1, int(encode_batch))
        self._encode = jax.jit(self._encode_impl)
        self._window = jax.jit(self._window_impl)
        self._sample = jax.jit(self._sample_impl)

    # ------------------------------------------------------------ jitted pieces
    def _encode_impl(self, params: Params, frames: jax.Array) -> jax.Array:
        h, w = self.resolution
        x = frames.astype(jnp.float32)
        if x.shape[1:3] != (h, w):
            x = jax.image.resize(x, (x.shape[0], h, w, 3), method="bilinear")
        images = 2.0 * (x / 255.0) - 1.0
        return self.model.encode_images(params, images)

    def _sample_impl(self, fmap: jax.Array, xys: jax.Array) -> jax.Array:
        return self.model.point_features(fmap[None], xys[None])[0]

    def _window_impl(
        self, params: Params, fmaps: jax.Array, xys: jax.Array, feats: jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        out = self.model.forward_features(
            params, fmaps[None], xys[None], self.iters, feat_init=feats[None]
        )
        return out.coords[-1, 0], jax.nn.sigmoid(out.vis_logits[0])

    # ------------------------------------------------------------------ public
    def encode_video(self, frames: Iterable[np.ndarray], num_frames: int) -> FeatureStore:
        """Encodes every frame once at the working resolution.

        Args:
            frames: iterable of ``(H, W, 3)`` uint8 frames (streamed).
            num_frames: T.
        """
        h, w = self.resolution
        s = self.config.stride
        store = FeatureStore(
            num_frames, (h // s, w // s, self.config.latent_dim), self.feature_memory_bytes
        )
        bar = _progress(self.progress, num_frames, "encode", "frame")
        batch: list[np.ndarray] = []
        t = 0
        try:
            for frame in frames:
                batch.append(frame)
                if len(batch) == self.encode_batch:
                    store.data[t : t + len(batch)] = self._encode_batch(batch)
                    t += len(batch)
                    bar.update(len(batch))
                    batch = []
            if batch:
                store.data[t : t + len(batch)] = self._encode_batch(batch)
                t += len(batch)
                bar.update(len(batch))
        except BaseException:
            store.close()
            raise
        finally:
            bar.close()
        if t != num_frames:
            store.close()
            raise InputError(f"video: expected {num_frames} frames, decoded {t}")
        return store

    def _encode_batch(self, batch: list[np.ndarray]) -> np.ndarray:
        n = len(batch)
        arr = np.stack(batch)
        if n < self.encode_batch:  # keep one compiled shape
            arr = np.concatenate([arr, np.repeat(arr[-1:], self.encode_batch - n, axis=0)])
        return np.asarray(self._encode(self.params, arr))[:n]

    def track(
        self,
        video: Any,
        queries: np.ndarray | None = None,
        grid_size: int | None = None,
        grid_query_frame: int = 0,
        grid_mask: np.ndarray | None = None,
        backward: bool = True,
    ) -> TrackResult:
        """Tracks query points through a whole video.

        Args:
            video: ``(T, H, W, 3)`` uint8 RGB array, a video file path, a folder of
                frames, or a :class:`VideoSource`.
            queries: ``(N, 3)`` rows ``(t, x, y)``: frame index and input pixels.
            grid_size: instead of ``queries``, a ``K x K`` grid on ``grid_query_frame``
                (optionally only where ``grid_mask``, ``(H, W)`` bool, is True).
            backward: also track frames before each query frame (time-reversed).

        Returns:
            :class:`TrackResult` with ``(N, T)`` tracks, visibility and confidence.
        """
        source = open_video(video)
        t_count, size = source.num_frames, (source.height, source.width)
        if (queries is None) == (grid_size is None):
            raise InputError("track: give exactly one of queries (N, 3) or grid_size")
        if queries is None:
            if not 0 <= grid_query_frame < t_count:
                raise InputError(f"grid query frame {grid_query_frame} is outside 0..{t_count - 1}")
            queries = grid_queries(size, int(grid_size), grid_query_frame, grid_mask)
        q = check_queries(queries, t_count, size)
        store = self.encode_video(source.frames(), t_count)
        try:
            return self.track_features(store, q, size, source.fps, backward)
        finally:
            store.close()

    def track_features(
        self,
        store: FeatureStore,
        queries: np.ndarray,
        size: tuple[int, int],
        fps: float = 0.0,
        backward: bool = True,
    ) -> TrackResult:
        """Tracks validated ``(t, x, y)`` queries on already encoded frames."""
        t_count = store.data.shape[0]
        n = len(queries)
        q_t = queries[:, 0].astype(np.int64)
        q_xy = to_model_pixels(queries[:, 1:], size, self.resolution)
        feats = self._query_features(store, q_t, q_xy)
        tracks = np.zeros((n, t_count, 2), np.float32)
        conf = np.zeros((n, t_count), np.float32)
        self._chain(store, np.arange(t_count), q_t, q_xy, feats, tracks, conf)
        if backward and np.any(q_t > 0):
            sel = np.nonzero(q_t > 0)[0]
            rev = np.arange(t_count)[::-1].copy()
            b_tracks = np.zeros((len(sel), t_count, 2), np.float32)
            b_conf = np.zeros((len(sel), t_count), np.float32)
            self._chain(store, rev, t_count - 1 - q_t[sel], q_xy[sel], feats[sel], b_tracks, b_conf)
            before = np.arange(t_count)[None, :] < q_t[sel][:, None]  # (n_sel, T) in real time
            tracks[sel] = np.where(before[..., None], b_tracks[:, ::-1], tracks[sel])
            conf[sel] = np.where(before, b_conf[:, ::-1], conf[sel])
        visible = conf > VISIBILITY_THRESHOLD
        visible[np.arange(n), q_t] = True  # a query is on a visible point by definition
        return TrackResult(
            tracks=to_input_pixels(tracks, size, self.resolution),
            visibility=visible,
            confidence=conf,
            queries=queries.astype(np.float32),
            fps=float(fps),
            size=(int(size[0]), int(size[1])),
            resolution=self.resolution,
        )

    # --------------------------------------------------------------- internals
    def _query_features(self, store: FeatureStore, q_t: np.ndarray, q_xy: np.ndarray) -> np.ndarray:
        feats = np.zeros((len(q_t), self.config.latent_dim), np.float32)
        for t in np.unique(q_t):
            idx = np.nonzero(q_t == t)[0]
            for chunk in self._chunks(idx):
                xy = _pad_rows(q_xy[chunk], _bucket(len(chunk), self.max_points_per_batch))
                fmap = jnp.asarray(store.window(np.array([t]))[0])
                feats[chunk] = np.asarray(self._sample(fmap, xy))[: len(chunk)]
        return feats

    def _chunks(self, idx: np.ndarray) -> Iterator[np.ndarray]:
        for i in range(0, len(idx), self.max_points_per_batch):
            yield idx[i : i + self.max_points_per_batch]

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
                fmaps = jnp.asarray(store.window(ids))
                keep = min(s, t_count - a)
                for chunk in self._chunks(group):
                    size = _bucket(len(chunk), self.max_points_per_batch)
                    xy, c = self._window(
                        self.params,
                        fmaps,
                        _pad_rows(anchor_xy[chunk], size),
                        _pad_rows(feats[chunk], size),
                    )
                    xy = np.asarray(xy)[:, : len(chunk)]  # S, n, 2
                    c = np.asarray(c)[:, : len(chunk)]  # S, n
                    tracks[chunk, a : a + keep] = xy[:keep].transpose(1, 0, 2)
                    conf[chunk, a : a + keep] = c[:keep].T
                    if a + s >= t_count:
                        active[chunk] = False
                    else:
                        step = reanchor_offsets(c)
                        anchor[chunk] = a + step
                        anchor_xy[chunk] = xy[step, np.arange(len(chunk))]
                    bar.update(1)
        finally:
            bar.close()


def _pad_rows(x: np.ndarray, size: int) -> jax.Array:
    """Pads the first axis to ``size`` by repeating the last row (results are dropped)."""
    x = np.asarray(x, np.float32)
    if len(x) < size:
        x = np.concatenate([x, np.repeat(x[-1:], size - len(x), axis=0)])
    return jnp.asarray(x)


def _progress(enabled: bool, total: int | None, desc: str, unit: str):
    from tqdm.auto import tqdm

    return tqdm(
        total=total, desc=desc, unit=unit, disable=not enabled, leave=False, dynamic_ncols=True
    )


# ----------------------------------------------------------------------- saving
def save_npz(path: str | os.PathLike, result: TrackResult) -> Path:
    """Writes tracks as ``.npz`` (atomically).

    Keys: ``tracks`` (N, T, 2) ``(x, y)`` input pixels; ``visibility`` (N, T) bool;
    ``confidence`` (N, T) float32; ``queries`` (N, 3) ``(t, x, y)``; ``fps``;
    ``size`` ``(H, W)`` of the input; ``resolution`` ``(H, W)`` the model ran at.
    """
    import io

    from pips_jax.checkpoint.store import atomic_write_bytes

    buf = io.BytesIO()
    np.savez(
        buf,
        tracks=result.tracks,
        visibility=result.visibility,
        confidence=result.confidence,
        queries=result.queries,
        fps=np.float64(result.fps),
        size=np.asarray(result.size, np.int64),
        resolution=np.asarray(result.resolution, np.int64),
    )
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def load_npz(path: str | os.PathLike) -> TrackResult:
    """Reads a file written by :func:`save_npz`."""
    with np.load(path) as f:
        return TrackResult(
            tracks=f["tracks"],
            visibility=f["visibility"],
            confidence=f["confidence"],
            queries=f["queries"],
            fps=float(f["fps"]),
            size=tuple(int(v) for v in f["size"]),
            resolution=tuple(int(v) for v in f["resolution"]),
        )


def save_csv(path: str | os.PathLike, result: TrackResult) -> Path:
    """Writes one row per point per frame: ``point,frame,x,y,visible,confidence`` (atomically).

    ``x, y`` are input pixels (origin at the centre of the top-left pixel), ``visible``
    is 0/1.
    """
    from pips_jax.checkpoint.store import atomic_write_bytes

    n, t = result.visibility.shape
    point = np.repeat(np.arange(n), t)
    frame = np.tile(np.arange(t), n)
    xy = result.tracks.reshape(-1, 2)
    lines = ["point,frame,x,y,visible,confidence"]
    vis = result.visibility.reshape(-1).astype(int)
    c = result.confidence.reshape(-1)
    lines += [
        f"{p},{f},{x:.4f},{y:.4f},{v},{cc:.5f}"
        for p, f, (x, y), v, cc in zip(point, frame, xy.tolist(), vis, c.tolist(), strict=True)
    ]
    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode())
    return Path(path)


def load_points_csv(path: str | os.PathLike) -> np.ndarray:
    """Reads a ``t,x,y`` points file (header required) into ``(N, 3)`` float32 rows."""
    import csv

    try:
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
    except OSError as e:
        raise InputError(f"points file {path}: cannot read ({e.strerror or e})") from None
    rows = [r for r in rows if any(cell.strip() for cell in r)]
    if not rows:
        raise InputError(
            f"points file {path}: empty; expected a header t,x,y and one row per point"
        )
    header = [c.strip().lower() for c in rows[0]]
    if header != ["t", "x", "y"]:
        raise InputError(
            f"points file {path}: expected the header t,x,y, found {','.join(rows[0])}"
        )
    if len(rows) == 1:
        raise InputError(f"points file {path}: no points after the header t,x,y")
    out = []
    for i, r in enumerate(rows[1:], start=2):
        if len(r) != 3:
            raise InputError(
                f"points file {path}: line {i} has {len(r)} columns, expected 3 (t,x,y)"
            )
        try:
            out.append([float(v) for v in r])
        except ValueError:
            raise InputError(
                f"points file {path}: line {i} is not numeric: {','.join(r)}"
            ) from None
    return np.asarray(out, np.float32)


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    return fn(), time.perf_counter() - t0
