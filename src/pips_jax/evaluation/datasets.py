"""The TAP-Vid boundary: dataset readers, query sampling for evaluation, and the
export of synthetic clips to the TAP-Vid DAVIS layout.

Formats (``fmt`` of :func:`load_dataset` / :func:`iter_dataset`); ``path`` is a pickle
file or a folder whose ``*.pkl`` files are read in sorted order:

* ``'davis'`` / ``'robotap'``: a dict ``{name: {'video', 'points', 'occluded'}}``.
* ``'rgb_stacking'``: a list of such dicts, named ``video_0000``, ``video_0001``, ...
  (numbering continues across files).
* ``'kinetics'``: shards, each a list of such dicts whose ``'video'`` is a list of
  JPEG-encoded frames (``bytes``), decoded with Pillow; named
  ``<shard file stem>/video_0000``, ... (or by a string ``'video_id'`` field when the
  entry has one).

In the files ``video`` is uint8 ``(T, H, W, 3)``, ``points`` float ``(N, T, 2)``
``(x, y)`` normalised to [0, 1] with (0, 0) the top-left CORNER of the top-left pixel
and (1, 1) the bottom-right corner of the bottom-right pixel, and ``occluded`` bool
``(N, T)``. Every reader yields :class:`VideoSample` with ``points`` in pixels of the
video.

Pixel convention (the one used everywhere in pips_jax): ``(x, y)`` pixels with the
origin at the CENTRE of the top-left pixel, so integer coordinates hit pixel centres
and the image covers ``[-0.5, W - 0.5] x [-0.5, H - 0.5]``. Hence
``x_px = x_norm * W - 0.5`` and ``y_px = y_norm * H - 0.5``
(:func:`normalized_to_pixels`). The official TAP-Vid evaluation scales normalised
points by the resolution without the half-pixel shift (``x * 256``, corner origin,
``origin='corner'`` here). The two differ by the same constant 0.5 px in ``x`` and
``y`` for ground truth, queries and predictions alike, so the metrics (which only use
differences of positions) are identical provided the predictions use the same origin
as the ground truth: pips_jax trackers use the centre origin, as does
:func:`prepare_evaluation`; for a model that works with the corner origin, convert with
``origin='corner'`` instead.

Sizes are always ``(H, W)`` (rows, columns); points are always ``(x, y)``. Queries
are ``(t, x, y)`` rows, the convention of the rest of pips_jax (a tracker takes them
as they are); TAP-Vid and :mod:`~pips_jax.evaluation.metrics` order them
``(t, y, x)``, which :attr:`EvalExample.tapvid_query_points` gives.

Pickles are loaded with a restricted unpickler that only reconstructs numpy arrays,
dtypes and scalars (and plain Python containers); any other global (e.g.
``os.system``) is refused with :class:`~pips_jax.errors.InputError`.

Errors: :func:`load_dataset` raises the first :class:`~pips_jax.errors.InputError`.
:func:`iter_dataset` yields ``(name, VideoSample | InputError)`` pairs, so an
evaluation loop can report a bad video and go on with the others; a file that cannot be
read, or whose top-level layout is wrong, gives one ``(file name, InputError)`` pair.

:func:`to_tapvid` / :func:`write_tapvid_pickle` write synthetic clips in the
``'davis'`` layout, so the same evaluation code runs on synthetic and real data.
"""

from __future__ import annotations

import codecs
import importlib
import io
import os
import pickle
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from pips_jax.errors import InputError
from pips_jax.files import atomic_write_bytes
from pips_jax.ops.frame import to_normalized
from pips_jax.synthetic import Clip

__all__ = [
    "FORMATS",
    "EvalExample",
    "Queries",
    "VideoSample",
    "iter_dataset",
    "load_dataset",
    "load_pickle",
    "normalized_to_pixels",
    "pixels_to_normalized",
    "prepare_evaluation",
    "rescale_points",
    "resize_sample",
    "resize_video",
    "sample_queries_first",
    "sample_queries_strided",
    "to_tapvid",
    "write_tapvid_pickle",
]

#: Dataset formats understood by :func:`load_dataset` and :func:`iter_dataset`.
FORMATS: tuple[str, ...] = ("davis", "robotap", "rgb_stacking", "kinetics")

#: Resolution ``(H, W)`` at which the TAP-Vid benchmark is evaluated.
EVAL_RESOLUTION: tuple[int, int] = (256, 256)


# --------------------------------------------------------------------------- samples


@dataclass(frozen=True)
class VideoSample:
    """One annotated video.

    Attributes:
        name: video name.
        video: uint8 ``(T, H, W, 3)`` RGB frames.
        points: float64 ``(N, T, 2)`` track positions ``(x, y)`` in pixels of
            ``video`` (origin at the centre of the top-left pixel).
        occluded: bool ``(N, T)``, ``True`` where the point is occluded.
    """

    name: str
    video: np.ndarray
    points: np.ndarray
    occluded: np.ndarray

    @property
    def num_frames(self) -> int:
        return int(self.video.shape[0])

    @property
    def num_points(self) -> int:
        return int(self.points.shape[0])

    @property
    def size(self) -> tuple[int, int]:
        """``(H, W)`` of the video."""
        return int(self.video.shape[1]), int(self.video.shape[2])


class Queries(NamedTuple):
    """Query points and the ground truth of the tracks they query.

    Attributes:
        query_points: float64 ``(n, 3)`` rows ``(t, x, y)``: query frame and position
            (same pixels as the input points).
        target_points: float64 ``(n, T, 2)`` ground-truth ``(x, y)`` of each query's
            track.
        target_occluded: bool ``(n, T)`` ground-truth occlusion of each query's track.
        track_index: int64 ``(n,)`` index of the queried track in the input.
    """

    query_points: np.ndarray
    target_points: np.ndarray
    target_occluded: np.ndarray
    track_index: np.ndarray


@dataclass(frozen=True)
class EvalExample:
    """One video prepared for :func:`~pips_jax.evaluation.compute_tapvid_metrics`.

    All arrays have a leading batch axis of 1.

    Attributes:
        name: video name.
        query_mode: ``'first'`` or ``'strided'``.
        video: uint8 ``(1, T, H, W, 3)`` at the evaluation resolution.
        query_points: float64 ``(1, n, 3)`` rows ``(t, x, y)`` (pixels, centre origin),
            as a tracker takes them.
        target_points: float64 ``(1, n, T, 2)`` ground truth ``(x, y)``.
        occluded: bool ``(1, n, T)`` ground-truth occlusion.
    """

    name: str
    query_mode: str
    video: np.ndarray
    query_points: np.ndarray
    target_points: np.ndarray
    occluded: np.ndarray

    @property
    def tapvid_query_points(self) -> np.ndarray:
        """``query_points`` in TAP-Vid's column order: float64 ``(1, n, 3)`` rows
        ``(t, y, x)``, what :mod:`~pips_jax.evaluation.metrics` takes."""
        return self.query_points[..., [0, 2, 1]]


# ------------------------------------------------------------------ coordinates


def _check_size(size: Sequence[int], what: str = "size") -> tuple[int, int]:
    try:
        h, w = (int(s) for s in size)
    except (TypeError, ValueError):
        raise InputError(
            f"{what}: expected (H, W) of two positive integers, found {size!r}"
        ) from None
    if h < 1 or w < 1:
        raise InputError(f"{what}: expected (H, W) of two positive integers, found {size!r}")
    return h, w


def _check_points(points: Any, what: str = "points") -> np.ndarray:
    arr = np.asarray(points)
    if arr.ndim < 1 or arr.shape[-1] != 2:
        raise InputError(f"{what}: expected shape (..., 2) rows (x, y), found {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise InputError(f"{what}: expected a numeric array, found dtype {arr.dtype}")
    return arr.astype(np.float64)


def _offset(origin: str) -> float:
    if origin == "centre":
        return 0.5
    if origin == "corner":
        return 0.0
    raise InputError(f"origin: expected 'centre' or 'corner', found {origin!r}")


def normalized_to_pixels(
    points: np.ndarray, size: Sequence[int], origin: str = "centre"
) -> np.ndarray:
    """TAP-Vid normalised ``(x, y)`` to pixels.

    Args:
        points: ``(..., 2)`` rows ``(x, y)`` in [0, 1], (0, 0) the top-left corner of
            the top-left pixel.
        size: ``(H, W)`` of the image.
        origin: ``'centre'`` (pips_jax convention, default): pixel origin at the centre
            of the top-left pixel, ``x_px = x * W - 0.5``; ``'corner'`` (the official
            TAP-Vid scaling): ``x_px = x * W``.

    Returns:
        float64 ``(..., 2)`` pixels ``(x, y)``.
    """
    h, w = _check_size(size)
    return _check_points(points) * np.array([w, h], dtype=np.float64) - _offset(origin)


def pixels_to_normalized(
    points: np.ndarray, size: Sequence[int], origin: str = "centre"
) -> np.ndarray:
    """Pixels ``(x, y)`` to TAP-Vid normalised coordinates; inverse of
    :func:`normalized_to_pixels`.

    Args:
        points: ``(..., 2)`` pixel rows ``(x, y)``.
        size: ``(H, W)`` of the image.
        origin: ``'centre'`` (default, ``x_norm = (x_px + 0.5) / W``) or ``'corner'``
            (``x_norm = x_px / W``).

    Returns:
        float64 ``(..., 2)`` normalised ``(x, y)``.
    """
    # to_normalized takes centre-origin pixels: a corner-origin x is x - 0.5 of those
    return to_normalized(_check_points(points) + _offset(origin) - 0.5, _check_size(size))


def rescale_points(
    points: np.ndarray, from_size: Sequence[int], to_size: Sequence[int]
) -> np.ndarray:
    """Map pixel ``(x, y)`` between two resolutions of the same image.

    The image area (``[-0.5, W - 0.5]`` with the centre origin) maps onto the image
    area, i.e. ``x' = (x + 0.5) * W' / W - 0.5`` and the same with ``H`` for ``y``;
    this is the geometry of :func:`resize_video` (half-pixel-centre resampling).
    Rescaling there and back returns the input (up to float64 rounding; bit-exact
    when the scale factors are powers of two).

    Args:
        points: ``(..., 2)`` pixel rows ``(x, y)`` at ``from_size``.
        from_size: ``(H, W)`` of the source resolution.
        to_size: ``(H, W)`` of the target resolution.

    Returns:
        float64 ``(..., 2)`` pixel rows ``(x, y)`` at ``to_size``.
    """
    h0, w0 = _check_size(from_size, "from_size")
    h1, w1 = _check_size(to_size, "to_size")
    pts = _check_points(points)
    scale = np.array([w1 / w0, h1 / h0], dtype=np.float64)
    return (pts + 0.5) * scale - 0.5


# --------------------------------------------------------------------- resizing


def _check_video(video: Any, what: str = "video") -> np.ndarray:
    arr = np.asarray(video)
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise InputError(f"{what}: expected uint8 frames (T, H, W, 3), found shape {arr.shape}")
    if arr.dtype != np.uint8:
        raise InputError(f"{what}: expected dtype uint8, found {arr.dtype}")
    return arr


def resize_video(video: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """Resize RGB frames with Pillow's bilinear filter.

    Pillow samples at pixel centres (the geometry of :func:`rescale_points`) and, when
    shrinking, widens the bilinear (triangle) kernel by the scale factor, i.e. it
    antialiases. A video already at ``size`` is returned as a copy.

    Args:
        video: uint8 ``(T, H, W, 3)``.
        size: output ``(H_out, W_out)``.

    Returns:
        uint8 ``(T, H_out, W_out, 3)``.
    """
    from PIL import Image

    video = _check_video(video)
    h, w = _check_size(size)
    if video.shape[1:3] == (h, w):
        return video.copy()
    out = np.empty((video.shape[0], h, w, 3), dtype=np.uint8)
    for i, frame in enumerate(video):
        img = Image.fromarray(np.ascontiguousarray(frame))
        out[i] = np.asarray(img.resize((w, h), resample=Image.Resampling.BILINEAR))
    return out


def resize_sample(sample: VideoSample, size: Sequence[int]) -> VideoSample:
    """A sample with its video resized to ``(H, W)`` and its points rescaled to match."""
    size = _check_size(size)
    return VideoSample(
        name=sample.name,
        video=resize_video(sample.video, size),
        points=rescale_points(sample.points, sample.size, size),
        occluded=sample.occluded.copy(),
    )


# ---------------------------------------------------------------- query sampling


def _check_tracks(points: Any, occluded: Any) -> tuple[np.ndarray, np.ndarray]:
    pts = _check_points(points)
    occ = np.asarray(occluded)
    if pts.ndim != 3:
        raise InputError(f"points: expected shape (N, T, 2), found {pts.shape}")
    if occ.shape != pts.shape[:2]:
        raise InputError(
            f"occluded: expected shape {pts.shape[:2]} (N, T) like points, found {occ.shape}"
        )
    if occ.dtype != np.bool_ and not np.issubdtype(occ.dtype, np.integer):
        raise InputError(f"occluded: expected a boolean array, found dtype {occ.dtype}")
    return pts, occ.astype(bool)


def _queries(pts: np.ndarray, occ: np.ndarray, track: np.ndarray, frame: np.ndarray) -> Queries:
    xy = pts[track, frame]
    query_points = np.stack([frame.astype(np.float64), xy[:, 0], xy[:, 1]], axis=-1)
    return Queries(
        query_points=query_points.reshape(-1, 3),
        target_points=pts[track],
        target_occluded=occ[track],
        track_index=track.astype(np.int64),
    )


def sample_queries_first(points: np.ndarray, occluded: np.ndarray) -> Queries:
    """TAP-Vid 'first' queries: each track queried at its first visible frame.

    Tracks that are never visible are dropped.

    Args:
        points: ``(N, T, 2)`` ``(x, y)`` pixels.
        occluded: bool ``(N, T)``.

    Returns:
        :class:`Queries` with ``query_points`` ``(n, 3)`` rows ``(t, x, y)`` and the
        rows of ``points`` / ``occluded`` of the kept tracks, in track order.
    """
    pts, occ = _check_tracks(points, occluded)
    visible = ~occ
    track = np.flatnonzero(visible.any(axis=1))
    frame = np.argmax(visible[track], axis=1) if track.size else np.zeros(0, dtype=np.int64)
    return _queries(pts, occ, track, frame)


def sample_queries_strided(points: np.ndarray, occluded: np.ndarray, stride: int = 5) -> Queries:
    """TAP-Vid 'strided' queries: at frames ``0, stride, 2 * stride, ...`` every track
    visible at that frame becomes a query (a track can be queried several times).

    Args:
        points: ``(N, T, 2)`` ``(x, y)`` pixels.
        occluded: bool ``(N, T)``.
        stride: frame stride (5 in the benchmark).

    Returns:
        :class:`Queries` ordered by query frame, then track index.
    """
    pts, occ = _check_tracks(points, occluded)
    if int(stride) != stride or stride < 1:
        raise InputError(f"stride: expected a positive integer, found {stride!r}")
    frames = np.arange(0, pts.shape[1], int(stride))
    vis = ~occ[:, frames]  # (N, F)
    f_idx, track = np.nonzero(vis.T)
    return _queries(pts, occ, track, frames[f_idx])


def prepare_evaluation(
    sample: VideoSample,
    query_mode: str,
    resolution: Sequence[int] = EVAL_RESOLUTION,
    stride: int = 5,
) -> EvalExample:
    """Resize a sample to the evaluation resolution and sample its queries.

    The video is resized with :func:`resize_video` and the points rescaled with
    :func:`rescale_points` (pixels, centre origin; see the module docstring for how
    this relates to the official ``x * 256`` scaling).

    Args:
        sample: a loaded video.
        query_mode: ``'first'`` (:func:`sample_queries_first`) or ``'strided'``
            (:func:`sample_queries_strided` with ``stride``).
        resolution: ``(H, W)``, 256x256 for the benchmark.
        stride: query stride of the 'strided' mode.

    Returns:
        :class:`EvalExample` with batch axis 1.
    """
    if query_mode not in ("first", "strided"):
        raise InputError(f"query_mode: expected 'first' or 'strided', found {query_mode!r}")
    size = _check_size(resolution, "resolution")
    resized = resize_sample(sample, size)
    if query_mode == "first":
        q = sample_queries_first(resized.points, resized.occluded)
    else:
        q = sample_queries_strided(resized.points, resized.occluded, stride)
    if q.query_points.shape[0] == 0:
        raise InputError(
            f"video {sample.name!r}: expected at least one visible point to query, found none"
        )
    return EvalExample(
        name=sample.name,
        query_mode=query_mode,
        video=resized.video[None],
        query_points=q.query_points[None],
        target_points=q.target_points[None],
        occluded=q.target_occluded[None],
    )


# -------------------------------------------------------------------- unpickling


def _numpy_core(submodule: str, name: str) -> Callable[[], Any]:
    def resolve() -> Any:
        for pkg in ("numpy._core", "numpy.core"):
            try:
                return getattr(importlib.import_module(f"{pkg}.{submodule}"), name)
            except (ImportError, AttributeError):
                continue
        raise InputError(f"numpy has no {submodule}.{name} to rebuild arrays with")

    return resolve


def _builtin(obj: Any) -> Callable[[], Any]:
    return lambda: obj


_ALLOWED_GLOBALS: dict[tuple[str, str], Callable[[], Any]] = {
    ("numpy", "ndarray"): _builtin(np.ndarray),
    ("numpy", "dtype"): _builtin(np.dtype),
    ("_codecs", "encode"): _builtin(codecs.encode),  # bytes in protocols 0-2
    ("builtins", "bytearray"): _builtin(bytearray),
}
for _pkg in ("numpy.core", "numpy._core"):
    _ALLOWED_GLOBALS[(f"{_pkg}.multiarray", "_reconstruct")] = _numpy_core(
        "multiarray", "_reconstruct"
    )
    _ALLOWED_GLOBALS[(f"{_pkg}.multiarray", "scalar")] = _numpy_core("multiarray", "scalar")
    # protocol 5 rebuilds arrays from a buffer:
    _ALLOWED_GLOBALS[(f"{_pkg}.numeric", "_frombuffer")] = _numpy_core("numeric", "_frombuffer")
del _pkg


class _TapVidUnpickler(pickle.Unpickler):
    def __init__(self, file: Any, source: str) -> None:
        super().__init__(file)
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        resolve = _ALLOWED_GLOBALS.get((module, name))
        if resolve is None:
            raise InputError(
                f"{self._source}: refusing to unpickle global {module}.{name}; "
                "expected only numpy array reconstruction"
            )
        return resolve()


def load_pickle(path: str | os.PathLike[str]) -> Any:
    """Load a pickle that may only contain numpy arrays and plain Python data.

    Allowed globals: ``numpy.ndarray``, ``numpy.dtype``, numpy's
    ``multiarray._reconstruct``, ``multiarray.scalar`` and ``numeric._frombuffer``
    (under ``numpy.core`` or ``numpy._core``), ``_codecs.encode`` and
    ``builtins.bytearray``.

    Raises:
        InputError: the file is missing or unreadable, not a pickle, or references
            another global (the message names it).
    """
    p = Path(path)
    try:
        with p.open("rb") as fh:
            return _TapVidUnpickler(fh, p.name).load()
    except InputError:
        raise
    except OSError as e:
        raise InputError(
            f"{p}: expected a readable pickle file, found {type(e).__name__}: {e}"
        ) from None
    except Exception as e:  # truncated / corrupt pickles raise many types
        raise InputError(
            f"{p.name}: expected a valid pickle, found {type(e).__name__}: {e}"
        ) from None


# ------------------------------------------------------------------ dataset reading


def _decode_jpegs(name: str, frames: Any) -> np.ndarray:
    from PIL import Image

    if isinstance(frames, np.ndarray) and frames.dtype == np.uint8 and frames.ndim == 4:
        return frames
    if not isinstance(frames, (list, tuple)) or not frames:
        raise InputError(
            f"video {name!r}: expected 'video' to be a non-empty list of JPEG-encoded frames, "
            f"found {type(frames).__name__}"
        )
    decoded = []
    for i, data in enumerate(frames):
        if not isinstance(data, (bytes, bytearray, np.bytes_)):
            raise InputError(
                f"video {name!r}: expected frame {i} to be JPEG bytes, found {type(data).__name__}"
            )
        try:
            with Image.open(io.BytesIO(bytes(data))) as img:
                decoded.append(np.asarray(img.convert("RGB")))
        except Exception as e:
            raise InputError(
                f"video {name!r}: expected frame {i} to be a decodable JPEG, found {type(e).__name__}: {e}"
            ) from None
        if decoded[i].shape != decoded[0].shape:
            raise InputError(
                f"video {name!r}: expected all frames of size {decoded[0].shape[:2]}, "
                f"found {decoded[i].shape[:2]} at frame {i}"
            )
    return np.stack(decoded)


def _make_sample(name: str, entry: Any, jpeg: bool) -> VideoSample:
    if not isinstance(entry, dict):
        raise InputError(
            f"video {name!r}: expected a dict with keys 'video', 'points', 'occluded', found {type(entry).__name__}"
        )
    missing = [k for k in ("video", "points", "occluded") if k not in entry]
    if missing:
        raise InputError(
            f"video {name!r}: expected keys 'video', 'points', 'occluded', missing {', '.join(map(repr, missing))}"
        )

    if jpeg:
        video = _decode_jpegs(name, entry["video"])
    else:
        video = entry["video"]
        if not isinstance(video, np.ndarray):
            raise InputError(
                f"video {name!r}: expected 'video' to be a uint8 array (T, H, W, 3), found {type(video).__name__}"
            )
    if video.ndim != 4 or video.shape[-1] != 3 or video.dtype != np.uint8:
        raise InputError(
            f"video {name!r}: expected 'video' uint8 (T, H, W, 3), found {video.dtype} {video.shape}"
        )

    points = np.asarray(entry["points"])
    if (
        points.ndim != 3
        or points.shape[-1] != 2
        or not (np.issubdtype(points.dtype, np.floating) or np.issubdtype(points.dtype, np.integer))
    ):
        raise InputError(
            f"video {name!r}: expected 'points' float (N, T, 2), found {points.dtype} {points.shape}"
        )
    occluded = np.asarray(entry["occluded"])
    if occluded.shape != points.shape[:2]:
        raise InputError(
            f"video {name!r}: expected 'occluded' of shape {points.shape[:2]} (N, T) like 'points' "
            f"{points.shape}, found {occluded.shape}"
        )
    if occluded.dtype != np.bool_ and not np.issubdtype(occluded.dtype, np.integer):
        raise InputError(f"video {name!r}: expected 'occluded' bool, found dtype {occluded.dtype}")
    t_points, t_video = points.shape[1], video.shape[0]
    if t_video != t_points:
        raise InputError(
            f"video {name!r}: expected {t_points} frames (the points' T), found {t_video}"
        )

    h, w = video.shape[1:3]
    return VideoSample(
        name=name,
        video=video,
        points=normalized_to_pixels(points, (h, w)),
        occluded=occluded.astype(bool),
    )


def _dataset_files(path: str | os.PathLike[str]) -> list[Path]:
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.suffix == ".pkl" and f.is_file())
        if not files:
            raise InputError(f"{p}: expected a folder with *.pkl files, found none")
        return files
    if not p.exists():
        raise InputError(f"{p}: expected a pickle file or a folder of them, found nothing")
    return [p]


def _entries(fmt: str, data: Any, file: Path, counter: list[int]) -> Iterator[tuple[str, Any]]:
    if fmt in ("davis", "robotap"):
        if not isinstance(data, dict):
            raise InputError(
                f"{file.name}: expected a dict {{video name: {{'video', 'points', 'occluded'}}}} for "
                f"format {fmt!r}, found {type(data).__name__}"
            )
        for key, entry in data.items():
            yield str(key), entry
        return
    if not isinstance(data, list):
        raise InputError(
            f"{file.name}: expected a list of video dicts for format {fmt!r}, found {type(data).__name__}"
        )
    for i, entry in enumerate(data):
        if fmt == "rgb_stacking":
            name = f"video_{counter[0]:04d}"
            counter[0] += 1
        else:
            vid = entry.get("video_id") if isinstance(entry, dict) else None
            name = vid if isinstance(vid, str) else f"{file.stem}/video_{i:04d}"
        yield name, entry


def iter_dataset(
    path: str | os.PathLike[str], fmt: str
) -> Iterator[tuple[str, VideoSample | InputError]]:
    """Read a TAP-Vid dataset one video at a time, without stopping at bad videos.

    Files are loaded one at a time (a Kinetics shard is only in memory while its
    videos are yielded).

    Args:
        path: a pickle file or a folder of ``*.pkl`` files.
        fmt: ``'davis'``, ``'robotap'``, ``'rgb_stacking'`` or ``'kinetics'``.

    Yields:
        ``(name, sample)`` for a good video, ``(name, InputError)`` for a bad one (the
        message names the video and the problem); a file that cannot be read or has
        the wrong top-level layout gives ``(file name, InputError)``. Typical use::

            for name, item in iter_dataset(path, "davis"):
                if isinstance(item, InputError):
                    print(f"skipping {name}: {item}")
                    continue
                ...

    Raises:
        InputError: unknown ``fmt``, missing path, a folder without pickles
            (immediately) or a dataset without any video (after reading it).
    """
    if fmt not in FORMATS:
        raise InputError(f"fmt: expected one of {', '.join(FORMATS)}, found {fmt!r}")
    files = _dataset_files(path)
    return _iter_files(path, files, fmt)


def _iter_files(
    path: str | os.PathLike[str], files: list[Path], fmt: str
) -> Iterator[tuple[str, VideoSample | InputError]]:
    count = 0
    counter = [0]
    for file in files:
        try:
            data = load_pickle(file)
            entries = list(_entries(fmt, data, file, counter))
        except InputError as e:
            count += 1
            yield file.name, e
            continue
        for name, entry in entries:
            count += 1
            try:
                sample = _make_sample(name, entry, jpeg=fmt == "kinetics")
            except InputError as e:
                yield name, e
                continue
            yield name, sample
        del data, entries
    if count == 0:
        raise InputError(f"{path}: expected at least one video, found an empty dataset")


def load_dataset(path: str | os.PathLike[str], fmt: str) -> list[VideoSample]:
    """Read a whole TAP-Vid dataset into memory.

    Args:
        path: a pickle file or a folder of ``*.pkl`` files.
        fmt: ``'davis'``, ``'robotap'``, ``'rgb_stacking'`` or ``'kinetics'``.

    Returns:
        The :class:`VideoSample` list, in file order (points in pixels, centre origin).

    Raises:
        InputError: the first bad file or video (use :func:`iter_dataset` to skip bad
            videos instead), or an empty dataset.
    """
    samples = []
    for _, item in iter_dataset(path, fmt):
        if isinstance(item, InputError):
            raise item
        samples.append(item)
    return samples


# ------------------------------------------------------------------- TAP-Vid export


def to_tapvid(clips: Mapping[str, Clip] | Iterable[Clip]) -> dict[str, dict[str, np.ndarray]]:
    """Synthetic clips (:class:`~pips_jax.synthetic.Clip`) as the TAP-Vid DAVIS dict
    ``{name: {'video', 'points', 'occluded'}}`` (what format ``'davis'`` reads).

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
        out[str(name)] = {
            "video": clip.video,
            "points": pixels_to_normalized(clip.tracks, (h, w)),
            "occluded": clip.occluded.astype(bool),
        }
    return out


def write_tapvid_pickle(
    path: str | os.PathLike[str], clips: Mapping[str, Clip] | Iterable[Clip]
) -> str:
    """Writes :func:`to_tapvid` ``(clips)`` as a pickle, atomically (temp file, then
    ``os.replace``); returns the path written."""
    path = os.fspath(path)
    atomic_write_bytes(path, pickle.dumps(to_tapvid(clips), protocol=pickle.HIGHEST_PROTOCOL))
    return path
