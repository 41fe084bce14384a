"""Reading and writing videos: files decoded with PyAV (FFmpeg), image folders with Pillow.

Frames are always ``(H, W, 3)`` uint8 RGB and a whole video ``(T, H, W, 3)``.

Conversions applied to every input (arrays, video files and images alike):

* grayscale (and 1-bit) -> the gray value repeated in R, G and B;
* palette -> the colours of the palette;
* 16-bit (and 32-bit integer) images -> scaled to 8 bits (``v * 255 / 65535``,
  rounded); float images (Pillow mode ``F``) are taken as 0..1 when their maximum is
  at most 1, else as 0..255, and clipped;
* RGBA / LA / PA -> the alpha channel is **dropped**: the colour channels are kept as
  stored, not composited on a background (transparent pixels show whatever colour they
  hold, for most encoders black);
* JPEG EXIF orientation is applied (the frame is what an image viewer shows). The
  rotation metadata of phone videos is **not** applied: frames are returned as stored,
  so track coordinates always refer to the stored pixels.

Decoding trusts the frames, not the header: a video has the frames that decode, in the
order the decoder presents them, and frame ``i`` is the ``i``-th of them. Containers routinely announce
a frame or two more (or fewer) than decode (edit lists of phone videos, trimmed files,
B-frame delays), so the header's count is only an estimate
(:attr:`VideoInfo.num_frames`). A packet the decoder refuses (corrupt data) is
skipped, and a file that becomes unreadable part-way (truncated) ends there; when a
file has been read to its end, every such departure (announced vs decoded count,
skipped packets and where, an early end) is reported once as a
:class:`~pips_jax.errors.PipsWarning` naming the file, so no frame index shifts
silently.

Image folders: every file whose extension is one of :data:`IMAGE_EXTENSIONS` (any
case; names starting with ``.`` are skipped), in natural order (``frame2`` before
``frame10``). They have no frame rate: :attr:`VideoInfo.fps` is ``0.0`` (unknown), as
it is for arrays.

Writing (:func:`write_video`) picks the format from the extension: ``.mp4`` / ``.m4v``
/ ``.mov`` / ``.mkv`` are H.264 (``libx264``, or ``mpeg4`` where this FFmpeg build has
no ``libx264``) in ``yuv420p``, which needs an even width and height: an odd size is
padded by repeating the last column / row (the top-left origin is unchanged, the
written video is one pixel wider / taller). ``.gif`` is written with Pillow: an
adaptive 256-colour palette per frame, looping forever, each frame shown for
``1000 / fps`` ms (GIF stores 10 ms steps; identical consecutive frames are merged into
one longer frame by Pillow, so a GIF may decode to fewer frames with the same total
duration). The file is written under a temporary name in the same folder and renamed
at the end, so a failed or interrupted write never leaves a partial file.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from pips_jax import interrupts
from pips_jax.errors import InputError, PipsWarning
from pips_jax.files import create_temporary, replaced_on_success

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
"""Extensions of the images read from a folder of frames (compared case-insensitively)."""

VIDEO_WRITE_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}
"""Extensions :func:`write_video` writes with PyAV, and their FFmpeg container names."""

DEFAULT_FPS = 30.0
"""Frame rate used by the visualization helpers when the input's is unknown (0)."""


@dataclass(frozen=True)
class VideoInfo:
    """What is known about a video before (or after) decoding it.

    Attributes:
        num_frames: for a video file, the number of frames its container header
            announces, or ``None`` where it does not say (Matroska/WebM, some streams);
            only an estimate: what decodes is the truth (see :func:`read_frames`). For
            a folder or an array (and after :func:`load_video`), the exact count.
        height, width: frame size in pixels.
        fps: frames per second; ``0.0`` when unknown (image folders, arrays).
        path: the file or folder, ``None`` for an array.
        estimated_frames: ``num_frames``, or where the header has no count the one the
            container's duration and frame rate suggest (``None`` if neither is known);
            for progress bars and early checks only.
    """

    num_frames: int | None
    height: int
    width: int
    fps: float
    path: Path | None = None
    estimated_frames: int | None = None


# ------------------------------------------------------------------- helpers
def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text or type(err).__name__


def _natural_key(name: str) -> tuple:
    parts = re.split(r"(\d+)", name.lower())
    return tuple(int(p) if i % 2 else p for i, p in enumerate(parts)), name


def _check_path(path: str | os.PathLike) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise InputError(f"expected a video file or folder path, got {type(path).__name__}")
    p = Path(path)
    if not p.exists():
        raise InputError(
            f"{p}: no such file or folder; expected a video file or a folder of images"
        )
    return p


def list_images(folder: str | os.PathLike) -> list[Path]:
    """The image files of a folder of frames, in natural order (``frame2`` before ``frame10``).

    Raises:
        InputError: the folder does not exist or holds no image.
    """
    folder = Path(folder)
    try:
        entries = list(os.scandir(folder))
    except OSError as err:
        raise InputError(
            f"{folder}: cannot list the folder ({_one_line(err)}); expected a readable folder of images"
        ) from err
    names = [
        e.name
        for e in entries
        if not e.name.startswith(".") and e.name.lower().endswith(IMAGE_EXTENSIONS) and e.is_file()
    ]
    if not names:
        exts = "/".join(e[1:] for e in IMAGE_EXTENSIONS)
        raise InputError(
            f"{folder}: the folder has no images; expected frames with extension {exts}"
        )
    return [folder / n for n in sorted(names, key=_natural_key)]


def _image_to_rgb(img: Any) -> np.ndarray:
    """A Pillow image as ``(H, W, 3)`` uint8 RGB (see the module docstring for the rules)."""
    from PIL import ImageOps

    img = ImageOps.exif_transpose(img)
    mode = img.mode
    if mode == "RGB":
        return np.asarray(img, dtype=np.uint8).copy()
    if mode.startswith("I") or mode == "F":
        a = np.asarray(img).astype(np.float64)
        if mode == "F":
            a = np.nan_to_num(a * (255.0 if np.nanmax(a, initial=0.0) <= 1.0 else 1.0))
        else:  # I;16, I;16B, I;16L, I (16-bit values kept in 32-bit ints)
            a = a * (255.0 / 65535.0)
        g = np.clip(np.rint(a), 0, 255).astype(np.uint8)
        return np.repeat(g[..., None], 3, axis=-1)
    if mode in ("P", "PA"):
        img = img.convert("RGBA")  # the palette's colours; alpha dropped below
    if img.mode in ("RGBA", "RGBX"):
        return np.asarray(img, dtype=np.uint8)[..., :3].copy()  # alpha dropped
    return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()  # L, 1, LA, CMYK, YCbCr, ...


def _read_image(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            return _image_to_rgb(img)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        raise InputError(
            f"{path}: cannot read the image ({_one_line(err)}); expected a valid {'/'.join(e[1:] for e in IMAGE_EXTENSIONS)} file"
        ) from err


def _image_size(path: Path) -> tuple[int, int]:
    """``(height, width)`` of an image as read (after EXIF orientation), without decoding it."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            w, h = img.size
            orientation = img.getexif().get(0x0112, 1)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        raise InputError(
            f"{path}: cannot read the image ({_one_line(err)}); expected a valid image file"
        ) from err
    return (w, h) if orientation in (5, 6, 7, 8) else (h, w)


def _open_container(path: Path) -> Any:
    import av

    try:
        container = av.open(str(path), mode="r")
    except (av.FFmpegError, OSError, UnicodeDecodeError, ValueError) as err:
        raise InputError(
            f"{path}: cannot open the video ({_one_line(err)}); expected a video file FFmpeg can decode (mp4, avi, mkv, webm, mov, gif, ...)"
        ) from err
    if not container.streams.video:
        container.close()
        raise InputError(f"{path}: the file has no video stream; expected a video file")
    return container


def _stream_fps(stream: Any) -> float:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        try:
            value = float(rate) if rate else 0.0
        except (TypeError, ZeroDivisionError):
            value = 0.0
        if np.isfinite(value) and 0.0 < value < 1000.0:
            return value
    return 0.0


def announced_frames(container: Any) -> int | None:
    """The frame count the container's header announces, or None where it has none.

    Only an estimate: edit lists, trimmed files and B-frame delays make containers
    routinely announce a frame or two more (or fewer) than decode.
    """
    n = int(container.streams.video[0].frames or 0)
    return n or None


def _duration_frames(container: Any) -> int | None:
    """The frame count the container's duration and frame rate suggest (no header count)."""
    stream = container.streams.video[0]
    seconds = None
    if stream.duration and stream.time_base:
        seconds = float(stream.duration * stream.time_base)
    elif container.duration:
        seconds = container.duration / 1_000_000  # AV_TIME_BASE
    fps = _stream_fps(stream)
    if not seconds or not fps:
        return None
    return max(1, round(seconds * fps))


def _decode_frames(path: Path, container: Any) -> Iterator[Any]:
    """Decoded PyAV frames of the first video stream: every frame the file yields.

    The number of frames is what decodes, not what the header announces. A packet the
    decoder refuses (corrupt data) is skipped and counted; a file that stops being
    readable part-way (truncated, a broken index) ends there. When the stream has been
    read to its end, each departure from the header is reported once as a
    :class:`~pips_jax.errors.PipsWarning` naming the file: a decoded count that differs
    from the announced one, skipped packets (and their presentation times), an early
    end. Frame indices always count the decoded frames.

    Raises:
        InputError: no frame decodes at all.
    """
    import av

    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    frames = 0
    skipped: list[float | None] = []  # the presentation time (s) of each skipped packet
    first_error = stopped = None
    demux = container.demux(stream)
    while True:
        try:
            packet = next(demux)
        except StopIteration:
            break
        except (av.FFmpegError, OSError) as err:
            if frames == 0:
                raise InputError(
                    f"{path}: the video is corrupt ({_one_line(err)}); expected a video file FFmpeg can decode"
                ) from err
            stopped = _one_line(err)
            break
        try:
            decoded = packet.decode()
        except av.FFmpegError as err:
            if packet.size:
                has_time = packet.pts is not None and packet.time_base
                skipped.append(float(packet.pts * packet.time_base) if has_time else None)
                first_error = first_error or _one_line(err)
            continue
        for frame in decoded:
            frames += 1
            yield frame
    if frames == 0:
        why = f" ({len(skipped)} packets refused: {first_error})" if skipped else ""
        raise InputError(
            f"{path}: the video has no decodable frames{why}; expected at least one frame"
        )
    for message in _decode_notes(path, container, frames, skipped, stopped):
        warnings.warn(message, PipsWarning, stacklevel=2)


def _decode_notes(
    path: Path,
    container: Any,
    frames: int,
    skipped: list[float | None],
    stopped: str | None,
) -> list[str]:
    """One-line reports of a fully read stream that did not decode as announced."""
    notes = []
    if skipped:
        times = [f"{t:.3f} s" for t in skipped[:5] if t is not None]
        where = f" (at {', '.join(times)}{', ...' if len(skipped) > 5 else ''})" if times else ""
        notes.append(
            f"{path}: skipped {len(skipped)} corrupt packet{'s' * (len(skipped) > 1)} the decoder "
            f"refused{where}; frame indices count the {frames} decoded frames"
        )
    if stopped:
        notes.append(
            f"{path}: the file is unreadable after {frames} decoded frames ({stopped}); "
            f"using those {frames}"
        )
    announced = announced_frames(container)
    if announced is not None and announced != frames:
        notes.append(
            f"{path}: the container announces {announced} frames but {frames} decode; "
            f"using the {frames} decoded frames"
        )
    elif announced is None:
        guess = _duration_frames(container)
        if guess is not None and abs(guess - frames) > max(1, round(0.02 * guess)):
            notes.append(
                f"{path}: the container's duration suggests about {guess} frames but {frames} "
                f"decode (truncated or corrupt?); using the {frames} decoded frames"
            )
    return notes


# ---------------------------------------------------------------------- API
def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Size, frame count and frame rate of a video file or a folder of images.

    A video file's first frame is decoded (to check that it is readable and get the
    true frame size); ``num_frames`` comes from the container header (``None`` where
    the container does not store it) and is an estimate: the frames that decode are the
    truth. A folder's size is that of its first image.

    Raises:
        InputError: missing path, unreadable or corrupt file, no frames, no images.
    """
    p = _check_path(path)
    if p.is_dir():
        files = list_images(p)
        h, w = _image_size(files[0])
        return VideoInfo(len(files), h, w, 0.0, p, len(files))
    with _open_container(p) as container:
        n = announced_frames(container)
        fps = _stream_fps(container.streams.video[0])
        first = next(_decode_frames(p, container))
        estimate = n or _duration_frames(container)
        return VideoInfo(n, int(first.height), int(first.width), fps, p, estimate)


def read_frames(
    path: str | os.PathLike, start: int = 0, stop: int | None = None, step: int = 1
) -> Iterator[np.ndarray]:
    """Streams frames ``start, start+step, ... < stop`` of a video file or folder as
    ``(H, W, 3)`` uint8 RGB.

    Frames are decoded one at a time (a video is never held in memory whole). Frame
    indices count the frames that decode (see the module docstring: a header's count
    is not trusted, corrupt packets are skipped and reported); frames outside the
    selection are decoded (no seeking, so the indices are exact) but never converted to
    RGB, and a folder's unselected images are not read. Reading a file to its end
    reports, as a :class:`~pips_jax.errors.PipsWarning`, how its decoding departed
    from its header. The path is checked at once; decoding errors are raised while
    iterating.

    Raises:
        InputError: missing path, bad ``start``/``stop``/``step``, unreadable or
            corrupt file, a video with no frames, a folder without images or with
            images of different sizes.
    """
    p = _check_path(path)
    for name, value in (("start", start), ("stop", stop), ("step", step)):
        if (value is not None or name != "stop") and (
            isinstance(value, bool)
            or not isinstance(value, (int, np.integer))
            or value < (1 if name == "step" else 0)
        ):
            kind = "positive integer" if name == "step" else "non-negative integer frame index"
            raise InputError(f"{p}: {name}={value!r}; expected a {kind}")
    if stop is not None and stop < start:
        raise InputError(f"{p}: stop={stop} is before start={start}; expected start <= stop")
    if p.is_dir():
        return _read_folder(p, list_images(p), int(start), stop, int(step))
    # Open once now so that an unreadable file fails here, not at the first next().
    _open_container(p).close()
    return _read_video_file(p, int(start), stop, int(step))


def _read_folder(
    folder: Path, files: list[Path], start: int, stop: int | None, step: int = 1
) -> Iterator[np.ndarray]:
    first_shape = None
    end = len(files) if stop is None else min(stop, len(files))
    for i in range(start, end, step):
        interrupts.check()
        frame = _read_image(files[i])
        if first_shape is None:
            first_shape = frame.shape
            first_name = files[i].name
        elif frame.shape != first_shape:
            raise InputError(
                f"{files[i]}: image is {frame.shape[1]}x{frame.shape[0]} (WxH) but {first_name} is {first_shape[1]}x{first_shape[0]}; expected all images in {folder} to have the same size"
            )
        yield frame


def _read_video_file(
    path: Path, start: int, stop: int | None, step: int = 1
) -> Iterator[np.ndarray]:
    if stop is not None and stop <= start:
        return
    with _open_container(path) as container:
        for i, frame in enumerate(_decode_frames(path, container)):
            interrupts.check()
            if i >= start and (i - start) % step == 0:
                yield frame.to_ndarray(format="rgb24")
            if stop is not None and i + 1 >= stop:
                break


def as_rgb_video(frames: Any, what: str = "frames") -> np.ndarray:
    """A uint8 video array as ``(T, H, W, 3)`` RGB (C-contiguous).

    Args:
        frames: ``(T, H, W, 3)`` uint8 RGB; ``(T, H, W)`` and ``(T, H, W, 1)`` gray are
            repeated in R, G and B, ``(T, H, W, 4)`` RGBA loses its alpha channel.
        what: how messages name the array.

    Raises:
        InputError: not an array, not uint8, another shape, or an empty one.
    """
    if not isinstance(frames, np.ndarray):
        raise InputError(
            f"{what}: expected a (T, H, W, 3) uint8 array, a video file or a folder path, got {type(frames).__name__}"
        )
    if frames.dtype != np.uint8:
        raise InputError(
            f"{what}: expected dtype uint8 (0..255), got {frames.dtype}; convert with np.clip(x, 0, 255).astype(np.uint8)"
        )
    if frames.ndim == 3:
        frames = frames[..., None]
    if frames.ndim != 4 or frames.shape[-1] not in (1, 3, 4):
        raise InputError(
            f"{what}: expected shape (T, H, W, 3) (or (T, H, W) gray, (T, H, W, 4) RGBA), got {frames.shape}"
        )
    if min(frames.shape[:3]) == 0:
        raise InputError(
            f"{what}: expected at least one frame of at least 1x1 pixels, got shape {frames.shape}"
        )
    if frames.shape[-1] == 1:
        frames = np.repeat(frames, 3, axis=-1)
    elif frames.shape[-1] == 4:
        frames = frames[..., :3]  # alpha dropped
    return np.ascontiguousarray(frames)


def load_video(source: Any) -> tuple[np.ndarray, VideoInfo]:
    """All frames of an array, a video file or a folder of images.

    Args:
        source: a ``(T, H, W, 3)`` uint8 array (``(T, H, W)`` gray and ``(T, H, W, 4)``
            RGBA are converted), a video file path or a folder of images.

    Returns:
        ``(frames, info)``: ``(T, H, W, 3)`` uint8 RGB and a :class:`VideoInfo` whose
        ``num_frames`` is the number of frames decoded.

    Raises:
        InputError: bad array shape/dtype, or see :func:`read_frames`.
    """
    if isinstance(source, (str, os.PathLike)):
        p = _check_path(source)
        fps = probe_video(p).fps
        frames = list(read_frames(p))
        if not frames:  # pragma: no cover - read_frames raises first
            raise InputError(f"{p}: no frames; expected at least one")
        video = np.stack(frames)
        del frames
        return video, VideoInfo(len(video), video.shape[1], video.shape[2], fps, p, len(video))
    video = as_rgb_video(source)
    return video, VideoInfo(len(video), video.shape[1], video.shape[2], 0.0, None, len(video))


# ------------------------------------------------------------------- writing
def _pick_mp4_codec() -> str:
    """``libx264`` where this FFmpeg build has the encoder, else ``mpeg4``."""
    import av

    try:
        av.codec.Codec("libx264", "w")
        return "libx264"
    except Exception:
        return "mpeg4"


def as_rgb_frame(frame: Any, index: int, where: str | os.PathLike) -> np.ndarray:
    """One uint8 frame as ``(H, W, 3)`` RGB (the conversions of :func:`as_rgb_video`).

    Args:
        frame: ``(H, W, 3)`` uint8 RGB, ``(H, W)`` / ``(H, W, 1)`` gray or ``(H, W, 4)``
            RGBA.
        index: the frame's index, and ``where`` the file or function it is for: messages
            start with ``"<where>: frame <index>"``.

    Raises:
        InputError: not an array, not uint8, another shape, or an empty one.
    """
    if not isinstance(frame, np.ndarray):
        raise InputError(
            f"{where}: frame {index} is a {type(frame).__name__}; expected an (H, W, 3) uint8 array"
        )
    if frame.ndim not in (2, 3):
        raise InputError(
            f"{where}: frame {index} has shape {frame.shape}; expected (H, W, 3) uint8"
        )
    return as_rgb_video(frame[None], what=f"{where}: frame {index}")[0]


def _check_output(path: str | os.PathLike) -> tuple[Path, str]:
    if not isinstance(path, (str, os.PathLike)):
        raise InputError(f"expected an output file path, got {type(path).__name__}")
    p = Path(path)
    ext = p.suffix.lower()
    if ext != ".gif" and ext not in VIDEO_WRITE_FORMATS:
        raise InputError(
            f"{p}: cannot write '{ext or 'no extension'}'; expected one of .gif, {', '.join(VIDEO_WRITE_FORMATS)}"
        )
    if p.is_dir():
        raise InputError(f"{p}: is a folder; expected an output file path")
    parent = p.parent
    if parent.exists() and not parent.is_dir():
        raise InputError(f"{p}: the output folder {parent} is a file; expected a folder")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(
            f"{p}: cannot create the output folder {parent} ({_one_line(err)}); expected a writable folder"
        ) from err
    return p, ext


def write_video(path: str | os.PathLike, frames: Iterable[np.ndarray], fps: float) -> Path:
    """Writes ``(H, W, 3)`` uint8 RGB frames to an MP4 (H.264) or GIF file, atomically.

    Frames are consumed one at a time (an iterator is never held whole, except by
    Pillow for GIF). See the module docstring for formats, odd sizes and GIF timing.

    Args:
        path: output file; the extension picks the format (``.mp4``, ``.m4v``,
            ``.mov``, ``.mkv``, ``.gif``). Missing folders are created.
        frames: an iterable of ``(H, W, 3)`` uint8 frames of one size (or a
            ``(T, H, W, 3)`` array); gray ``(H, W)`` and RGBA frames are converted.
        fps: frames per second, > 0.

    Returns:
        The written path.

    Raises:
        InputError: bad extension, fps, frames (none, wrong dtype/shape, sizes that
            differ), or an output folder that is a file or not writable. Nothing is
            left at ``path`` (nor a temporary file) when writing fails.
    """
    p, ext = _check_output(path)
    if (
        isinstance(fps, bool)
        or not isinstance(fps, (int, float, np.integer, np.floating))
        or not (np.isfinite(fps) and fps > 0)
    ):
        raise InputError(f"{p}: fps={fps!r}; expected a positive frame rate")
    try:
        tmp = create_temporary(p)
    except OSError as err:
        raise InputError(
            f"{p}: cannot write in {p.parent} ({_one_line(err)}); expected a writable folder"
        ) from err
    with replaced_on_success(tmp, p):
        if ext == ".gif":
            _write_gif(tmp, p, frames, float(fps))
        else:
            _write_av(tmp, p, VIDEO_WRITE_FORMATS[ext], frames, float(fps))
    return p


def _checked_frames(frames: Iterable[np.ndarray], p: Path) -> Iterator[np.ndarray]:
    shape = None
    n = 0
    for i, frame in enumerate(frames):
        interrupts.check()
        f = as_rgb_frame(frame, i, p)
        if shape is None:
            shape = f.shape
        elif f.shape != shape:
            raise InputError(
                f"{p}: frame {i} is {f.shape[1]}x{f.shape[0]} (WxH) but frame 0 is {shape[1]}x{shape[0]}; expected frames of one size"
            )
        n += 1
        yield f
    if n == 0:
        raise InputError(f"{p}: no frames to write; expected at least one frame")


def _write_av(tmp: Path, p: Path, fmt: str, frames: Iterable[np.ndarray], fps: float) -> None:
    import av

    codec = _pick_mp4_codec()
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(tmp), mode="w", format=fmt) as container:
        stream = None
        for f in _checked_frames(frames, p):
            if stream is None:
                h, w = f.shape[:2]
                h2, w2 = h + h % 2, w + w % 2
                stream = container.add_stream(codec, rate=rate)
                stream.width, stream.height, stream.pix_fmt = w2, h2, "yuv420p"
                if codec == "libx264":
                    stream.options = {"crf": "18", "preset": "medium"}
                else:
                    stream.bit_rate = int(max(1_000_000, w2 * h2 * fps * 0.5))
            if f.shape[0] % 2 or f.shape[1] % 2:
                f = np.pad(f, ((0, f.shape[0] % 2), (0, f.shape[1] % 2), (0, 0)), mode="edge")
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _write_gif(tmp: Path, p: Path, frames: Iterable[np.ndarray], fps: float) -> None:
    from PIL import Image

    it = _checked_frames(frames, p)
    first = Image.fromarray(next(it))
    first.save(
        tmp,
        format="GIF",
        save_all=True,
        append_images=(Image.fromarray(f) for f in it),
        duration=max(10, round(1000.0 / fps)),
        loop=0,
    )
