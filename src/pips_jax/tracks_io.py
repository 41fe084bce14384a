"""The tracker's results and their files: tracks ``.npz``, ``.csv`` and TAP-Vid-style
prediction pickles, points files.

Conventions (every format here): queries are ``(t, x, y)`` rows, ``t`` an input frame
index; positions are ``(x, y)`` input pixels with the origin at the centre of the
top-left pixel; sizes are ``(H, W)``. Files are written atomically (through
:func:`pips_jax.files.atomic_write_bytes`).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
from pathlib import Path

import numpy as np

from pips_jax.errors import InputError
from pips_jax.files import atomic_write_bytes
from pips_jax.ops.frame import to_normalized


@dataclasses.dataclass
class TrackResult:
    """Tracks of N points through a T-frame video.

    Attributes:
        tracks: ``(N, T, 2)`` float32, ``(x, y)`` in input pixels (origin at the
            centre of the top-left pixel), as predicted: positions off the frame are
            kept, not clamped.
        visibility: ``(N, T)`` bool, True where the point is predicted visible: the
            model's confidence exceeds 0.5 and the position lies on the frame (for a
            model without visibility, ``has_visibility`` False: wherever the position
            lies on the frame).
        confidence: ``(N, T)`` float32 in [0, 1], the model's visibility probability
            (NaN for a model without visibility).
        queries: ``(N, 3)`` float32 ``(t, x, y)`` query rows, ``t`` an input frame index.
        fps: frames per second of the input (0 if unknown).
        size: ``(H, W)`` of the input video.
        resolution: ``(H, W)`` the model worked at.
        frame_indices: ``(T,)`` int64, the input frame index of each tracked frame
            (``0 .. T-1`` unless a part of the video was selected).
        has_visibility: whether the model predicted visibility (PIPs does; PIPs++
            does not, and then ``visibility`` only says where the point is on the frame).
    """

    tracks: np.ndarray
    visibility: np.ndarray
    confidence: np.ndarray
    queries: np.ndarray
    fps: float
    size: tuple[int, int]
    resolution: tuple[int, int]
    frame_indices: np.ndarray | None = None
    has_visibility: bool = True

    def __post_init__(self) -> None:
        if self.frame_indices is None:
            self.frame_indices = np.arange(self.tracks.shape[1], dtype=np.int64)

    @property
    def num_points(self) -> int:
        return int(self.tracks.shape[0])

    @property
    def num_frames(self) -> int:
        return int(self.tracks.shape[1])

    def save(self, path: str | os.PathLike, name: str | None = None) -> Path:
        """Writes the result in the format its extension names (atomically): ``.npz``
        (:func:`save_npz`), ``.csv`` (:func:`save_csv`) or ``.pkl``, a TAP-Vid-style
        prediction pickle (:func:`save_tapvid_pickle`, whose video is named ``name``,
        default the file's stem).

        Raises:
            InputError: another extension.
        """
        suffix = Path(path).suffix.lower()
        kinds = {Path(name).suffix: kind for kind, name in TRACK_FORMATS.items()}
        if suffix not in kinds:
            raise InputError(
                f"{path}: expected a file name ending in {', '.join(kinds)}, found "
                f"{suffix or 'no extension'}"
            )
        return save_track_file(kinds[suffix], path, self, name or Path(path).stem)


#: The track file formats ``pips-jax track --format`` writes, and each one's file
#: name for a video named ``<stem>``.
TRACK_FORMATS = {
    "npz": "{stem}_tracks.npz",
    "csv": "{stem}_tracks.csv",
    "tapvid": "{stem}_tapvid.pkl",
}


def output_names(stem: str) -> dict[str, str]:
    """The files ``pips-jax track`` can write for a video named ``stem``, by kind: the
    track formats of :data:`TRACK_FORMATS` (``npz``, ``csv``, ``tapvid``) and the
    visualization, ``mp4`` or ``gif`` (one of the two per run), and ``interrupted``,
    the note a streamed run stopped by Ctrl-C leaves beside the outputs of the frames
    it finished (``track --stream``)."""
    names = {kind: name.format(stem=stem) for kind, name in TRACK_FORMATS.items()}
    viz = {kind: f"{stem}_tracks.{kind}" for kind in ("mp4", "gif")}
    return names | viz | {"interrupted": f"{stem}_interrupted.txt"}


def save_npz(path: str | os.PathLike, result: TrackResult) -> Path:
    """Writes tracks as ``.npz`` (atomically).

    Keys: ``tracks`` (N, T, 2) ``(x, y)`` input pixels (origin at the centre of the
    top-left pixel; positions off the frame kept as predicted); ``visibility`` (N, T)
    bool (False wherever the position is off the frame); ``confidence`` (N, T)
    float32, the model's visibility probability; ``queries`` (N, 3) ``(t, x, y)``;
    ``frames`` (T,) int64 input frame index of each tracked frame; ``fps`` of the
    input; ``size`` ``(H, W)`` of the input; ``resolution`` ``(H, W)`` the model ran at;
    ``has_visibility`` bool, False for a model without visibility (PIPs++: then
    ``visibility`` is True wherever the position is on the frame and ``confidence`` NaN).
    """
    buf = io.BytesIO()
    np.savez(
        buf,
        tracks=result.tracks,
        visibility=result.visibility,
        confidence=result.confidence,
        queries=result.queries,
        frames=np.asarray(result.frame_indices, np.int64),
        fps=np.float64(result.fps),
        size=np.asarray(result.size, np.int64),
        resolution=np.asarray(result.resolution, np.int64),
        has_visibility=np.bool_(result.has_visibility),
    )
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def load_npz(path: str | os.PathLike) -> TrackResult:
    """Reads a file written by :func:`save_npz` (files without ``frames``, from before
    frame selection existed, track frames ``0 .. T-1``)."""
    with np.load(path) as f:
        return TrackResult(
            tracks=f["tracks"],
            visibility=f["visibility"],
            confidence=f["confidence"],
            queries=f["queries"],
            fps=float(f["fps"]),
            size=tuple(int(v) for v in f["size"]),
            resolution=tuple(int(v) for v in f["resolution"]),
            frame_indices=f["frames"] if "frames" in f else None,
            has_visibility=bool(f["has_visibility"]) if "has_visibility" in f else True,
        )


def save_csv(path: str | os.PathLike, result: TrackResult) -> Path:
    """Writes one row per point per frame: ``point,frame,x,y,visible,confidence`` (atomically).

    ``frame`` is the input frame index, ``x, y`` are input pixels (origin at the centre
    of the top-left pixel, off the frame where the point left it), ``visible`` is 0/1
    (0 wherever the position is off the frame), ``confidence`` empty for a model
    without visibility (PIPs++).
    """
    n, t = result.visibility.shape
    point = np.repeat(np.arange(n), t)
    frame = np.tile(np.asarray(result.frame_indices, np.int64), n)
    xy = result.tracks.reshape(-1, 2)
    lines = ["point,frame,x,y,visible,confidence"]
    vis = result.visibility.reshape(-1).astype(int)
    c = result.confidence.reshape(-1)
    lines += [
        f"{p},{f},{x:.4f},{y:.4f},{v},{'' if cc != cc else f'{cc:.5f}'}"
        for p, f, (x, y), v, cc in zip(point, frame, xy.tolist(), vis, c.tolist(), strict=True)
    ]
    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode())
    return Path(path)


def save_tapvid_pickle(path: str | os.PathLike, result: TrackResult, name: str) -> Path:
    """Writes the TAP-Vid-style prediction pickle ``{name: {'points', 'occluded'}}``
    (atomically), the layout of TAP-Vid's ground truth without the video, which
    ``pips-jax eval`` and tapnet's evaluation code read.

    ``points`` float32 ``(N, T, 2)`` ``(x, y)`` normalised to [0, 1] with (0, 0) the
    top-left CORNER of the top-left pixel and (1, 1) the bottom-right corner of the
    bottom-right pixel (``x_norm = (x_px + 0.5) / W`` for the package's pixels, whose
    origin is the centre of the top-left pixel); positions off the frame stay outside
    [0, 1] as predicted. ``occluded`` bool ``(N, T)`` is ``~visibility`` (for a model
    without visibility, PIPs++: True exactly where the position is off the frame).
    The ``T`` frames are the tracked ones (``result.frame_indices``).
    """
    import pickle

    entry = {
        "points": to_normalized(result.tracks, result.size).astype(np.float32),
        "occluded": ~np.asarray(result.visibility, bool),
    }
    atomic_write_bytes(path, pickle.dumps({str(name): entry}, protocol=pickle.HIGHEST_PROTOCOL))
    return Path(path)


def load_points_csv(path: str | os.PathLike) -> np.ndarray:
    """Reads a ``t,x,y`` points file (header required) into ``(N, 3)`` float32 rows:
    ``t`` an input frame index, ``(x, y)`` input pixels (origin at the centre of the
    top-left pixel)."""
    return read_points_csv(path)[0]


def read_points_csv(path: str | os.PathLike) -> tuple[np.ndarray, list[str]]:
    """:func:`load_points_csv` and a name per row, ``"<path> line <k>"`` (lines counted
    from 1, the header being line 1), for the messages of :func:`pips_jax.tracker.check_queries`."""
    try:
        with open(path, newline="") as f:
            reader = csv.reader(f)
            rows = [(reader.line_num, r) for r in reader if any(cell.strip() for cell in r)]
    except OSError as e:
        raise InputError(f"points file {path}: cannot read ({e.strerror or e})") from None
    if not rows:
        raise InputError(
            f"points file {path}: empty; expected a header t,x,y and one row per point"
        )
    header = [c.strip().lower() for c in rows[0][1]]
    if header != ["t", "x", "y"]:
        raise InputError(
            f"points file {path}: expected the header t,x,y, found {','.join(rows[0][1])}"
        )
    if len(rows) == 1:
        raise InputError(f"points file {path}: no points after the header t,x,y")
    out, labels = [], []
    for line, r in rows[1:]:
        if len(r) != 3:
            raise InputError(
                f"points file {path}: line {line} has {len(r)} columns, expected 3 (t,x,y)"
            )
        try:
            out.append([float(v) for v in r])
        except ValueError:
            raise InputError(
                f"points file {path}: line {line} is not numeric: {','.join(r)}"
            ) from None
        labels.append(f"points file {path}: line {line}")
    return np.asarray(out, np.float32), labels


def save_track_file(kind: str, path: str | os.PathLike, result: TrackResult, name: str) -> Path:
    """Writes ``result`` to ``path`` as the track format ``kind`` of
    :data:`TRACK_FORMATS` (atomically); ``name`` names the video in a TAP-Vid pickle."""
    if kind == "tapvid":
        return save_tapvid_pickle(path, result, name)
    return {"npz": save_npz, "csv": save_csv}[kind](path, result)
