"""Tests of pips_jax.video: reading video files and image folders, writing MP4/GIF."""

import inspect
import os
import re
import struct
import warnings
from collections.abc import Iterator
from fractions import Fraction

import av
import numpy as np
import pytest
from PIL import Image

from pips_jax import video
from pips_jax.errors import InputError, PipsWarning
from pips_jax.video import VideoInfo, load_video, probe_video, read_frames, write_video


def blocks(t: int, h: int = 64, w: int = 96) -> np.ndarray:
    """Frames of four flat colour blocks whose colours change with the frame index."""
    out = np.zeros((t, h, w, 3), np.uint8)
    for i in range(t):
        v = 20 + (i * 37) % 200
        out[i, : h // 2, : w // 2] = (v, 40, 200)
        out[i, : h // 2, w // 2 :] = (230, v, 30)
        out[i, h // 2 :, : w // 2] = (30, 200, v)
        out[i, h // 2 :, w // 2 :] = (255 - v, 255 - v, 255 - v)
    return out


def mae(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int32) - b.astype(np.int32)).mean())


def assert_close_frames(got: np.ndarray, want: np.ndarray, tol: float = 6.0) -> None:
    assert got.shape == want.shape
    for i in range(len(want)):
        assert mae(got[i], want[i]) < tol, f"frame {i}"


def one_line_with(err: pytest.ExceptionInfo, path) -> None:
    msg = str(err.value)
    assert "\n" not in msg
    assert str(path) in msg


def write_pyav(
    path, frames: np.ndarray, fps, codec: str, fmt: str | None = None, **options
) -> None:
    with av.open(str(path), "w", format=fmt, options=options) as c:
        s = c.add_stream(codec, rate=fps)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def save_folder(folder, frames: np.ndarray, ext: str = "png", name: str = "frame{}") -> None:
    folder.mkdir(exist_ok=True)
    for i, f in enumerate(frames):
        Image.fromarray(f).save(folder / f"{name.format(i + 1)}.{ext}")


# ------------------------------------------------------------------ video files
def test_mp4_roundtrip(tmp_path):
    frames = blocks(12)
    out = write_video(tmp_path / "a.mp4", frames, fps=24)
    assert out == tmp_path / "a.mp4" and out.stat().st_size > 0
    info = probe_video(out)
    assert info == VideoInfo(12, 64, 96, 24.0, out, 12)
    got, info2 = load_video(out)
    assert info2.num_frames == 12 and info2.fps == 24.0
    assert_close_frames(got, frames)
    with av.open(str(out)) as c:
        assert c.streams.video[0].codec_context.name in ("libx264", "h264")
        assert c.streams.video[0].codec_context.pix_fmt == "yuv420p"


def test_mp4_odd_size_is_padded_to_even(tmp_path):
    frames = blocks(3, 33, 47)
    write_video(tmp_path / "odd.mp4", iter(list(frames)), fps=10)
    got, info = load_video(tmp_path / "odd.mp4")
    assert (info.height, info.width) == (34, 48)
    assert_close_frames(got[:, :33, :47], frames)


def test_mp4_mpeg4_fallback(tmp_path, monkeypatch):
    monkeypatch.setattr(video, "_pick_mp4_codec", lambda: "mpeg4")
    frames = blocks(6)
    write_video(tmp_path / "m.mp4", frames, fps=29.97)
    with av.open(str(tmp_path / "m.mp4")) as c:
        assert c.streams.video[0].codec_context.name == "mpeg4"
    got, info = load_video(tmp_path / "m.mp4")
    assert info.fps == pytest.approx(29.97, abs=0.01)
    assert_close_frames(got, frames)


@pytest.mark.parametrize(
    ("name", "codec", "fmt"),
    [
        ("x.avi", "mpeg4", None),
        ("x.mkv", "libx264", None),
        ("x.mov", "mpeg4", None),
        ("x.webm", "libvpx", None),
    ],
)
def test_read_pyav_containers(tmp_path, name, codec, fmt):
    if codec not in av.codecs_available:
        pytest.skip(f"{codec} not in this FFmpeg build")
    frames = blocks(10)
    write_pyav(tmp_path / name, frames, Fraction(25), codec, fmt)
    info = probe_video(tmp_path / name)
    assert (info.height, info.width) == (64, 96)
    assert info.fps == pytest.approx(25.0)
    assert info.num_frames in (None, 10)  # Matroska/WebM do not store a count
    got, info2 = load_video(str(tmp_path / name))
    assert info2.num_frames == 10
    assert_close_frames(got, frames, tol=8.0)


def test_read_frames_start_stop(tmp_path):
    frames = blocks(10)
    write_video(tmp_path / "a.mp4", frames, fps=10)
    got = np.stack(list(read_frames(tmp_path / "a.mp4", start=3, stop=7)))
    assert_close_frames(got, frames[3:7])
    assert len(list(read_frames(tmp_path / "a.mp4", start=8))) == 2
    assert list(read_frames(tmp_path / "a.mp4", start=4, stop=4)) == []
    assert list(read_frames(tmp_path / "a.mp4", start=50)) == []
    for bad in ({"start": -1}, {"start": 5, "stop": 2}, {"stop": 1.5}):
        with pytest.raises(InputError) as err:
            read_frames(tmp_path / "a.mp4", **bad)
        one_line_with(err, tmp_path / "a.mp4")


def test_read_frames_streams(tmp_path, monkeypatch):
    """Taking the first frame of a long video demuxes only the first few packets."""
    n = 300
    rng = np.random.default_rng(0)
    write_pyav(
        tmp_path / "long.mp4", rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), 30, "libx264"
    )
    packets = []
    real_open = av.open

    class Counting:
        def __init__(self, container):
            self._c = container

        def __getattr__(self, name):
            return getattr(self._c, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self._c.__exit__(*exc)

        def demux(self, *args, **kwargs):
            for p in self._c.demux(*args, **kwargs):
                packets.append(p.size)
                yield p

    monkeypatch.setattr(av, "open", lambda *a, **k: Counting(real_open(*a, **k)))
    gen = read_frames(tmp_path / "long.mp4")
    assert inspect.isgenerator(gen)
    first = next(gen)
    assert first.shape == (32, 32, 3) and first.dtype == np.uint8
    assert 0 < len(packets) < n // 4
    gen.close()
    packets.clear()
    assert sum(1 for _ in read_frames(tmp_path / "long.mp4")) == n
    assert len(packets) >= n


def test_gif_roundtrip(tmp_path):
    frames = blocks(5)
    write_video(tmp_path / "a.gif", frames, fps=10)
    with Image.open(tmp_path / "a.gif") as im:
        assert im.n_frames == 5
        assert im.info["loop"] == 0
        assert im.info["duration"] == 100
    info = probe_video(tmp_path / "a.gif")
    assert (info.height, info.width) == (64, 96)
    assert info.fps == pytest.approx(10.0)
    got, _ = load_video(tmp_path / "a.gif")
    assert_close_frames(got, frames, tol=3.0)


# ----------------------------------------------------------------- image folders
def test_png_folder_exact_and_natural_order(tmp_path):
    frames = blocks(12, 20, 30)
    save_folder(tmp_path / "f", frames)  # frame1.png .. frame12.png
    (tmp_path / "f" / "notes.txt").write_text("not an image")
    (tmp_path / "f" / ".hidden.png").write_bytes(b"junk")
    (tmp_path / "f" / "sub.png").mkdir()
    info = probe_video(tmp_path / "f")
    assert info == VideoInfo(12, 20, 30, 0.0, tmp_path / "f", 12)
    got, info2 = load_video(tmp_path / "f")
    assert info2.num_frames == 12
    np.testing.assert_array_equal(got, frames)  # frame2 before frame10
    np.testing.assert_array_equal(np.stack(list(read_frames(tmp_path / "f", 9, 11))), frames[9:11])
    assert inspect.isgenerator(read_frames(tmp_path / "f"))


def test_jpg_folder_uppercase_ext(tmp_path):
    frames = blocks(4, 48, 64)
    save_folder(tmp_path / "j", frames, ext="JPG", name="img_{}")
    got, info = load_video(tmp_path / "j")
    assert info.num_frames == 4
    assert_close_frames(got, frames, tol=4.0)


def test_folder_mode_conversions(tmp_path):
    d = tmp_path / "modes"
    d.mkdir()
    gray = (np.arange(12 * 16).reshape(12, 16) % 256).astype(np.uint8)
    rgba = np.zeros((12, 16, 4), np.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 2], rgba[..., 3] = 200, 100, 50, 0  # transparent
    rgba[:6, ..., 3] = 255
    g16 = (gray.astype(np.uint16) * 257).astype(np.uint16)
    Image.fromarray(gray, "L").save(d / "0.png")
    Image.fromarray(rgba, "RGBA").save(d / "1.png")
    Image.fromarray(g16).save(d / "2.png")  # 16-bit grayscale
    Image.fromarray(blocks(1, 12, 16)[0]).quantize(8).save(d / "3.png")  # palette
    Image.fromarray(gray, "L").save(d / "4.tif")
    Image.fromarray(rgba, "RGBA").save(d / "5.webp", lossless=True, exact=True)
    got, _ = load_video(d)
    assert got.shape == (6, 12, 16, 3) and got.dtype == np.uint8
    np.testing.assert_array_equal(got[0], np.repeat(gray[..., None], 3, -1))
    np.testing.assert_array_equal(got[1], rgba[..., :3])  # alpha dropped, colours kept
    np.testing.assert_array_equal(got[2], got[0])  # 16-bit scaled to 8 bits
    np.testing.assert_array_equal(got[3], blocks(1, 12, 16)[0])  # few colours: exact palette
    np.testing.assert_array_equal(got[4], got[0])
    np.testing.assert_array_equal(got[5], rgba[..., :3])


# ---------------------------------------------------------------------- arrays
def test_load_video_arrays():
    frames = blocks(3, 8, 10)
    got, info = load_video(frames)
    np.testing.assert_array_equal(got, frames)
    assert info == VideoInfo(3, 8, 10, 0.0, None, 3)
    got, _ = load_video(frames[..., 0])
    np.testing.assert_array_equal(got, np.repeat(frames[..., :1], 3, -1))
    rgba = np.concatenate([frames, np.full((3, 8, 10, 1), 7, np.uint8)], -1)
    np.testing.assert_array_equal(load_video(rgba)[0], frames)
    for bad in (
        frames.astype(np.float32),
        frames[0, 0],
        frames[..., :2],
        frames[:0],
        np.zeros((2, 3, 4, 5, 3), np.uint8),
        [[1, 2]],
    ):
        with pytest.raises(InputError) as err:
            load_video(bad)
        assert "\n" not in str(err.value)


# ---------------------------------------------------------------------- errors
def test_missing_path(tmp_path):
    p = tmp_path / "nope.mp4"
    for fn in (probe_video, read_frames, load_video):
        with pytest.raises(InputError) as err:
            fn(p)
        one_line_with(err, p)


def test_random_bytes_and_truncated(tmp_path):
    (tmp_path / "r.mp4").write_bytes(
        np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes()
    )
    write_video(tmp_path / "a.mp4", blocks(30), fps=30)
    data = (tmp_path / "a.mp4").read_bytes()
    (tmp_path / "t.mp4").write_bytes(data[: len(data) // 2])  # index at the end: lost
    rng = np.random.default_rng(1)
    noisy = rng.integers(0, 256, (40, 32, 32, 3), dtype=np.uint8)
    write_pyav(tmp_path / "fs.mp4", noisy, 30, "libx264", movflags="+faststart")  # index first
    data = (tmp_path / "fs.mp4").read_bytes()
    (tmp_path / "fst.mp4").write_bytes(data[: len(data) // 2])
    (tmp_path / "empty.mp4").write_bytes(b"")
    for name in ("r.mp4", "t.mp4", "empty.mp4"):
        p = tmp_path / name
        with pytest.raises(InputError) as err:
            load_video(p)
        one_line_with(err, p)
    # With its index first, a truncated file is decoded up to where it ends, and says so.
    # (How many frames half the file holds depends on x264's output, which is not the
    # same from run to run here: 15 or 16 seen; the warning must give what came.)
    with pytest.warns(PipsWarning, match="announces 40 frames but") as w:
        got, info = load_video(tmp_path / "fst.mp4")
    n = len(got)
    assert 12 <= n < 30 and info.num_frames == n
    assert str(w[0].message) == (
        f"{tmp_path / 'fst.mp4'}: the container announces 40 frames but {n} decode; "
        f"using the {n} decoded frames"
    )
    np.testing.assert_array_equal(got[:12], load_video(tmp_path / "fs.mp4")[0][:12])


def test_zero_frame_video(tmp_path):
    p = tmp_path / "zero.mp4"
    with av.open(str(p), "w") as c:
        s = c.add_stream("mpeg4", rate=30)
        s.width, s.height, s.pix_fmt = 32, 32, "yuv420p"
        c.start_encoding()
    assert p.stat().st_size > 0
    for fn in (probe_video, load_video, lambda q: list(read_frames(q))):
        with pytest.raises(InputError) as err:
            fn(p)
        one_line_with(err, p)


def test_bad_folders(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("x")
    mixed = tmp_path / "mixed"
    save_folder(mixed, blocks(3, 10, 12))
    Image.fromarray(blocks(1, 10, 14)[0]).save(mixed / "frame4.png")
    corrupt = tmp_path / "corrupt"
    save_folder(corrupt, blocks(2, 10, 12))
    (corrupt / "frame3.png").write_bytes(b"not a png")
    cases = [(empty, empty), (mixed, mixed / "frame4.png"), (corrupt, corrupt / "frame3.png")]
    for folder, named in cases:
        with pytest.raises(InputError) as err:
            load_video(folder)
        one_line_with(err, named)
    with pytest.raises(InputError):
        probe_video(empty)
    # The first frames stream before the bad one is reached.
    assert len(list(read_frames(mixed, stop=3))) == 3


# --------------------------------------------------------------------- writing
def test_write_failure_leaves_nothing(tmp_path):
    def broken():
        yield from blocks(3)
        raise RuntimeError("boom")

    for name in ("a.mp4", "a.gif"):
        with pytest.raises(RuntimeError):
            write_video(tmp_path / name, broken(), fps=10)
    assert os.listdir(tmp_path) == []
    bad_inputs = [
        ([blocks(1)[0], blocks(1, 32, 32)[0]], 10),  # sizes differ
        ([blocks(1)[0].astype(np.float32)], 10),  # dtype
        ([], 10),  # no frames
        (blocks(2), 0),  # fps
        (blocks(2), float("nan")),
    ]
    for frames, fps in bad_inputs:
        for name in ("b.mp4", "b.gif"):
            with pytest.raises(InputError) as err:
                write_video(tmp_path / name, frames, fps=fps)
            one_line_with(err, tmp_path / name)
    assert os.listdir(tmp_path) == []
    # A failed write keeps an existing file as it was.
    write_video(tmp_path / "keep.mp4", blocks(2), fps=10)
    before = (tmp_path / "keep.mp4").read_bytes()
    with pytest.raises(RuntimeError):
        write_video(tmp_path / "keep.mp4", broken(), fps=10)
    assert (tmp_path / "keep.mp4").read_bytes() == before
    assert os.listdir(tmp_path) == ["keep.mp4"]


def test_write_bad_destinations(tmp_path):
    (tmp_path / "file").write_text("x")
    (tmp_path / "dir.mp4").mkdir()
    for p in (
        tmp_path / "file" / "out.mp4",
        tmp_path / "file" / "sub" / "out.gif",
        tmp_path / "dir.mp4",
        tmp_path / "out.xyz",
    ):
        with pytest.raises(InputError) as err:
            write_video(p, blocks(1), fps=10)
        one_line_with(err, p)
    # Missing folders are created.
    out = write_video(tmp_path / "new" / "deeper" / "v.mp4", blocks(2), fps=10)
    assert out.is_file()


def test_write_unwritable_folder(tmp_path, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    if os.geteuid() == 0:  # root writes anywhere: make creating the file fail instead

        def refuse(*args, **kwargs):
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr(os, "open", refuse)
    ro.chmod(0o500)
    try:
        with pytest.raises(InputError) as err:
            write_video(ro / "v.mp4", blocks(1), fps=10)
        one_line_with(err, ro / "v.mp4")
    finally:
        ro.chmod(0o700)
    monkeypatch.undo()
    assert os.listdir(ro) == []


def test_write_accepts_gray_and_rgba_frames(tmp_path):
    frames = blocks(2)
    write_video(
        tmp_path / "g.gif", [frames[0, ..., 0], np.dstack([frames[1], frames[1, ..., :1]])], fps=5
    )
    got, _ = load_video(tmp_path / "g.gif")
    assert got.shape == (2, 64, 96, 3)
    assert_close_frames(got[1:], frames[1:], tol=3.0)


# ------------------------------------------- files that do not decode as announced
def texture(t: int = 40, h: int = 48, w: int = 64) -> np.ndarray:
    """Random 8x8-pixel blocks panning 1 px per frame: every frame is distinct, and
    smooth enough that H.264 in yuv420p keeps it within a few levels."""
    blocks = np.random.default_rng(0).integers(0, 256, ((h + t) // 8 + 1, (w + t) // 8 + 1, 3))
    base = np.kron(blocks, np.ones((8, 8, 1))).astype(np.uint8)
    return np.stack([base[i : i + h, i : i + w] for i in range(t)])


def assert_same_order(got: np.ndarray, frames: np.ndarray) -> None:
    """Each decoded frame is, of all the frames encoded, closest to the one at its index."""
    assert len(got) == len(frames)
    nearest = [int(np.argmin([mae(g, f) for f in frames])) for g in got]
    np.testing.assert_array_equal(nearest, np.arange(len(frames)))


def mp4_boxes(data: bytes, start: int = 0, end: int | None = None) -> Iterator[tuple]:
    """``(type, offset, size, header size)`` of every box of an MP4 file, depth first."""
    end = len(data) if end is None else end
    while start + 8 <= end:
        size, kind = struct.unpack(">I4s", data[start : start + 8])
        header = 8
        if size == 1:
            size, header = struct.unpack(">Q", data[start + 8 : start + 16])[0], 16
        yield kind, start, size, header
        if kind in (b"moov", b"trak", b"edts", b"mdia", b"minf", b"stbl"):
            yield from mp4_boxes(data, start + header, start + size)
        start += size


def edit_list(path, out, skip_start: int = 0, cut_end_ms: int = 0) -> None:
    """Rewrites the edit list of a one-track MP4 so that the container still announces
    every sample but presents ``skip_start`` frames fewer at the start (media time moved
    on by that many 512-tick frames) or a ``cut_end_ms`` shorter duration: what phone
    videos and trimmed files look like."""
    data = bytearray(path.read_bytes())
    _, off, _, header = next(b for b in mp4_boxes(bytes(data)) if b[0] == b"elst")
    entry = off + header + 8  # version/flags, entry count
    duration, media_time = struct.unpack(">Ii", data[entry : entry + 8])
    struct.pack_into(">Ii", data, entry, duration - cut_end_ms, media_time + 512 * skip_start)
    out.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def h264(tmp_path_factory):
    d = tmp_path_factory.mktemp("h264")
    frames = texture()
    write_pyav(d / "clip.mp4", frames, 30, "libx264")  # 15360 ticks/s: 512 per frame
    write_pyav(d / "faststart.mp4", frames, 30, "libx264", movflags="+faststart")
    return d, frames


@pytest.mark.parametrize(("skip_start", "cut_end_ms", "first"), [(1, 0, 1), (2, 0, 2), (0, 34, 0)])
def test_container_announcing_more_frames_than_decode(
    h264, tmp_path, skip_start, cut_end_ms, first
):
    d, frames = h264
    p = tmp_path / "edited.mp4"
    edit_list(d / "clip.mp4", p, skip_start, cut_end_ms)
    info = probe_video(p)
    assert info.num_frames == 40  # the header still announces every sample
    decoded = 40 - max(skip_start, cut_end_ms // 33)
    with pytest.warns(PipsWarning, match=f"announces 40 frames but {decoded} decode") as w:
        got = np.stack(list(read_frames(p)))
    assert len(w) == 1 and str(p) in str(w[0].message)
    # Frame i is the i-th frame presented: no index shift, every frame as decoded from
    # the intact file.
    np.testing.assert_array_equal(got, load_video(d / "clip.mp4")[0][first : first + decoded])
    assert_same_order(got, frames[first : first + decoded])


def test_file_cut_in_its_last_packet(h264, tmp_path):
    d, frames = h264
    src = d / "faststart.mp4"  # index first: cutting the end loses packets, not the index
    with av.open(str(src)) as c:
        last = max(p.pos for p in c.demux(c.streams.video[0]) if p.size)
    p = tmp_path / "cut.mp4"
    p.write_bytes(src.read_bytes()[:last])
    with pytest.warns(PipsWarning, match="announces 40 frames but 39 decode"):
        got = np.stack(list(read_frames(p)))
    assert len(got) == 39
    np.testing.assert_array_equal(got[:38], load_video(src)[0][:38])


@pytest.mark.parametrize("name", ["clip.mp4", "clip.mov"])
def test_corrupt_packet_in_the_middle_is_skipped_and_reported(h264, tmp_path, name):
    d, frames = h264
    src = d / name
    if name == "clip.mov":
        write_pyav(src, frames, 30, "mpeg4")
    with av.open(str(src)) as c:
        packets = sorted((p.pos, p.size, float(p.pts * p.time_base)) for p in c.demux() if p.size)
    pos, size, when = packets[25]
    data = bytearray(src.read_bytes())
    data[pos : pos + size] = b"\0" * size  # what a bad sector or a broken copy leaves
    p = tmp_path / name
    p.write_bytes(bytes(data))
    with pytest.warns(PipsWarning) as w:
        got = np.stack(list(read_frames(p)))
    messages = [str(m.message) for m in w]
    assert len(got) == 39
    skipped = [m for m in messages if "skipped 1 corrupt packet" in m and "39 decoded frames" in m]
    assert len(skipped) == 1, messages
    # The refused packet is the damaged one or one that refers to it (B-frames).
    at = float(re.search(r"\(at ([0-9.]+) s\)", skipped[0]).group(1))
    assert abs(at - when) <= 0.2
    assert any("announces 40 frames but 39 decode" in m for m in messages)
    # The frames before the damage decode exactly as from the intact file.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        intact = load_video(src)[0]
    before = [i for i in range(40) if i / 30 < when - 0.1]
    np.testing.assert_array_equal(got[before], intact[before])


def test_matroska_without_a_frame_count(h264, tmp_path):
    _, frames = h264
    p = tmp_path / "clip.webm"
    write_pyav(p, frames, 30, "libvpx-vp9")
    info = probe_video(p)
    assert info.num_frames is None and info.estimated_frames == 40  # duration x rate
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a file that decodes as announced: no warning
        got = np.stack(list(read_frames(p)))
    assert_same_order(got, frames)
    # Cut short, it says so: the duration promised about 40 frames.
    data = p.read_bytes()
    cut = tmp_path / "cut.webm"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.warns(PipsWarning, match="duration suggests about 40 frames but"):
        got = list(read_frames(cut))
    assert 5 < len(got) < 35


def test_variable_frame_rate(tmp_path):
    frames = texture(24)
    gaps = np.array([1, 1, 2, 1, 3, 1, 1, 2] * 3)  # in 1/60 s
    pts = np.concatenate([[0], np.cumsum(gaps[:-1])])
    p = tmp_path / "vfr.mp4"
    with av.open(str(p), "w") as c:
        s = c.add_stream("libx264", rate=60)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        s.codec_context.time_base = Fraction(1, 60)
        for f, t in zip(frames, pts, strict=True):
            vf = av.VideoFrame.from_ndarray(f, format="rgb24")
            vf.pts, vf.time_base = int(t), Fraction(1, 60)
            for packet in s.encode(vf):
                c.mux(packet)
        for packet in s.encode():
            c.mux(packet)
    with av.open(str(p)) as c:  # it really is variable: the stored timestamps
        stamps = sorted(fr.pts for fr in c.decode(video=0))
    steps = np.diff(stamps)
    assert len(set(steps.tolist())) == 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = np.stack(list(read_frames(p)))
    assert probe_video(p).num_frames == 24
    assert_same_order(got, frames)


def test_read_frames_step(tmp_path):
    frames = blocks(20)
    write_video(tmp_path / "a.mp4", frames, fps=20)
    save_folder(tmp_path / "f", frames)
    for src, tol in ((tmp_path / "a.mp4", 6.0), (tmp_path / "f", 0.0)):
        got = np.stack(list(read_frames(src, start=3, stop=17, step=4)))
        assert len(got) == 4  # 3, 7, 11, 15
        assert_close_frames(got, frames[3:17:4], tol=max(tol, 1e-9))
    with pytest.raises(InputError, match="step=0; expected a positive integer"):
        read_frames(tmp_path / "a.mp4", step=0)
