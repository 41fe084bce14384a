"""`pips-jax track` end to end on a small model and a real video file."""

import av
import jax
import numpy as np
import pytest
from PIL import Image

from pips_jax import Pips
from pips_jax.checkpoint.store import save_params
from pips_jax.cli import main
from pips_jax.tracks_io import load_npz
from pips_jax.video import read_frames, write_video
from small_model import SMALL


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("in")
    ckpt = save_params(d / "small.safetensors", Pips(SMALL).init(jax.random.key(0)), SMALL)
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, size=(80, 100, 3), dtype=np.uint8)
    frames = [base[t : t + 32, t : t + 48] for t in range(12)]
    video = write_video(d / "clip.mp4", frames, fps=12)
    return d, ckpt, video


def _track(files, out, *extra):
    d, ckpt, video = files
    return main(
        [
            "track",
            str(video),
            "--checkpoint",
            str(ckpt),
            "--out",
            str(out),
            "--resolution",
            "32x48",
            "--iters",
            "1",
            "--quiet",
            *extra,
        ]
    )


def test_track_grid_writes_tracks_and_video(files, tmp_path, capsys):
    assert _track(files, tmp_path / "out", "--grid", "3") == 0
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    assert summary.startswith(
        "tracked 9 points through 12 frames (input 32x48, working resolution 32x48, HxW) in "
    )
    out = tmp_path / "out"
    assert summary.endswith(
        f" s on 1 device -> {out / 'clip_tracks.npz'}, {out / 'clip_tracks.csv'}, "
        f"{out / 'clip_tracks.mp4'}"
    )
    res = load_npz(tmp_path / "out" / "clip_tracks.npz")
    assert res.tracks.shape == (9, 12, 2) and res.fps == pytest.approx(12)
    assert res.size == (32, 48)
    np.testing.assert_array_equal(res.frame_indices, np.arange(12))
    lines = (tmp_path / "out" / "clip_tracks.csv").read_text().splitlines()
    assert len(lines) == 1 + 9 * 12
    viz = list(read_frames(tmp_path / "out" / "clip_tracks.mp4"))
    assert len(viz) == 12
    # CSV and npz say the same, visibility included.
    rows = np.array([[float(v) for v in ln.split(",")] for ln in lines[1:]])
    np.testing.assert_array_equal(rows[:, 4].reshape(9, 12).astype(bool), res.visibility)
    # Nothing temporary is left behind.
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "clip_tracks.csv",
        "clip_tracks.mp4",
        "clip_tracks.npz",
    ]


def test_track_points_file(files, tmp_path):
    pts = tmp_path / "pts.csv"
    pts.write_text("t,x,y\n0,10,10\n5,20.5,15\n11,40,30\n")
    assert _track(files, tmp_path / "out", "--points", str(pts), "--no-viz") == 0
    res = load_npz(tmp_path / "out" / "clip_tracks.npz")
    np.testing.assert_allclose(res.queries, [[0, 10, 10], [5, 20.5, 15], [11, 40, 30]])
    np.testing.assert_allclose(res.tracks[1, 5], [20.5, 15], atol=1e-3)
    np.testing.assert_allclose(res.tracks[2, 11], [40, 30], atol=1e-3)


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (
            lambda d: ["--points", str(_write(d / "p.csv", "x,y\n1,2\n"))],
            "expected the header t,x,y",
        ),
        (lambda d: ["--points", str(_write(d / "p.csv", ""))], "empty"),
        (lambda d: ["--points", str(_write(d / "p.csv", "t,x,y\n0,100,5\n"))], "outside the 48x32"),
        (
            lambda d: ["--points", str(_write(d / "p.csv", "t,x,y\n12,1,5\n"))],
            "frame index 12; expected an integer in 0..11",
        ),
        (lambda d: ["--points", str(_write(d / "p.csv", "t,x,y\n0,nan,5\n"))], "NaN"),
        (lambda d: ["--resolution", "30x48"], "multiple of the stride"),
    ],
)
def test_bad_track_input(files, tmp_path, capsys, setup, message):
    args = setup(tmp_path)
    assert _track(files, tmp_path / "out", *args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("pips-jax track: error:") and message in err[-1]
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_missing_or_corrupt_video(files, tmp_path, capsys):
    d, ckpt, _ = files
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 1000)
    for video in (tmp_path / "missing.mp4", bad):
        assert (
            main(
                [
                    "track",
                    str(video),
                    "--checkpoint",
                    str(ckpt),
                    "--out",
                    str(tmp_path / "o"),
                    "--quiet",
                ]
            )
            == 2
        )
        assert video.name in capsys.readouterr().err


def test_output_dir_is_a_file(files, tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    assert _track(files, f) == 2
    assert "is a file" in capsys.readouterr().err


def test_no_weights_says_how_to_get_them(files, tmp_path, monkeypatch, capsys):
    _, _, video = files
    monkeypatch.setenv("PIPS_JAX_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr("pips_jax.weights.ASSETS", tmp_path / "no-shipped-weights")
    assert main(["track", str(video), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "pips-jax download" in err and "--checkpoint" in err


def _write(path, text):
    path.write_text(text)
    return path


def test_demo_runs_offline_and_reports_accuracy(files, tmp_path, capsys):
    _, ckpt, _ = files
    out = tmp_path / "demo"
    assert (
        main(["demo", "--checkpoint", str(ckpt), "--out", str(out), "--iters", "1", "--quiet"]) == 0
    )
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("demo: tracked 64 points through 24 frames at 256x256 in ")
    assert "median error" in line and "occlusion accuracy" in line
    assert sorted(p.name for p in out.iterdir()) == [
        "demo_tracks.csv",
        "demo_tracks.gif",
        "demo_tracks.npz",
    ]
    res = load_npz(out / "demo_tracks.npz")
    assert res.tracks.shape == (64, 24, 2) and res.size == (256, 256)
    assert res.resolution == (256, 256)  # a checkpoint without a card: the default


def test_demo_runs_at_the_requested_precision(files, tmp_path, monkeypatch):
    from pips_jax import demo

    seen = []

    class Recording(demo.Tracker):
        def __init__(self, *args, **kwargs):
            seen.append(kwargs.get("compute_dtype"))
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(demo, "Tracker", Recording)
    _, ckpt, _ = files
    args = ["demo", "--checkpoint", str(ckpt), "--iters", "1", "--quiet", "--precision"]
    assert main([*args, "bfloat16", "--out", str(tmp_path / "a")]) == 0
    assert main([*args, "float32", "--out", str(tmp_path / "b")]) == 0
    assert seen == ["bfloat16", "float32"]


def test_demo_without_weights_says_how_to_get_them(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PIPS_JAX_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr("pips_jax.weights.ASSETS", tmp_path / "no-shipped-weights")
    assert main(["demo", "--out", str(tmp_path / "d"), "--quiet"]) == 2
    assert "pips-jax download" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()  # nothing written when nothing can run


# ----------------------------------------------------------------- real footage
def _run(video, ckpt, out, *extra):
    return main(
        ["track", str(video), "--checkpoint", str(ckpt), "--out", str(out), "--iters", "1",
         "--quiet", *extra]
    )  # fmt: skip


def _warnings(err: str) -> list[str]:
    return [ln for ln in err.splitlines() if ln.startswith("pips-jax track: warning: ")]


@pytest.mark.parametrize("kind", ["edit-list", "webm"])
def test_video_that_decodes_fewer_frames_than_announced(files, tmp_path, capsys, kind):
    from test_video import edit_list, texture, write_pyav

    d, ckpt, _ = files
    frames = texture(20, 32, 48)
    if kind == "edit-list":  # the header announces 20 frames, 19 are presented
        write_pyav(tmp_path / "full.mp4", frames, 30, "libx264")
        video = tmp_path / "phone.mp4"
        edit_list(tmp_path / "full.mp4", video, skip_start=1)
        expected = 19
    else:  # no count in the header at all
        video = tmp_path / "clip.webm"
        write_pyav(video, frames, 30, "libvpx-vp9")
        expected = 20
    assert _run(video, ckpt, tmp_path / "out", "--grid", "2", "--resolution", "32x48") == 0
    captured = capsys.readouterr()
    assert f"through {expected} frames" in captured.out
    res = load_npz(tmp_path / "out" / f"{video.stem}_tracks.npz")
    assert res.tracks.shape == (4, expected, 2) and res.num_frames == expected
    assert len(list(read_frames(tmp_path / "out" / f"{video.stem}_tracks.mp4"))) == expected
    said = _warnings(captured.err)
    if kind == "edit-list":  # said once, although the video was decoded twice
        assert said == [
            f"pips-jax track: warning: {video}: the container announces 20 frames but 19 "
            "decode; using the 19 decoded frames"
        ]
    else:
        assert said == []


def test_part_of_a_video_keeps_input_frame_indices(files, tmp_path, capsys):
    d, ckpt, video = files  # 12 frames at 12 fps
    pts = tmp_path / "pts.csv"
    pts.write_text("t,x,y\n2,10,10\n\n8,20.5,15\n")
    args = ["--start", "2", "--stop", "11", "--step", "3", "--resolution", "32x48"]
    assert _run(video, ckpt, tmp_path / "out", "--points", str(pts), *args) == 0
    assert "through 3 frames" in capsys.readouterr().out
    res = load_npz(tmp_path / "out" / "clip_tracks.npz")
    np.testing.assert_array_equal(res.frame_indices, [2, 5, 8])
    np.testing.assert_allclose(res.queries[:, 0], [2, 8])
    np.testing.assert_allclose(res.tracks[1, 2], [20.5, 15], atol=1e-3)  # frame 8 is the 3rd
    lines = (tmp_path / "out" / "clip_tracks.csv").read_text().splitlines()[1:]
    assert [int(ln.split(",")[1]) for ln in lines[:3]] == [2, 5, 8]
    with av.open(str(tmp_path / "out" / "clip_tracks.mp4")) as c:  # 12 fps / step 3
        assert c.streams.video[0].frames == 3 and float(c.streams.video[0].average_rate) == 4
    # The same frames as tracking them cut out of the video: the model saw frames 2, 5, 8.
    cut = tmp_path / "cut"
    cut.mkdir()
    for i, f in enumerate(list(read_frames(video))[2:11:3]):
        Image.fromarray(f).save(cut / f"{i}.png")
    pts2 = tmp_path / "pts2.csv"
    pts2.write_text("t,x,y\n0,10,10\n2,20.5,15\n")
    assert _run(cut, ckpt, tmp_path / "out2", "--points", str(pts2), "--resolution", "32x48") == 0
    np.testing.assert_allclose(load_npz(tmp_path / "out2" / "cut_tracks.npz").tracks, res.tracks)


_PART = ["--start", "2", "--stop", "11", "--step", "3"]


@pytest.mark.parametrize(
    ("points", "part", "message"),
    [
        (
            "t,x,y\n2,10,10\n\n4,20,15\n",
            _PART,
            "line 4 has frame index 4; expected a tracked frame (every 3rd frame from 2 before 11)",
        ),
        ("t,x,y\n0,10,10\n", _PART, "line 2 has frame index 0; expected a tracked frame"),
        ("t,x,y\n12,10,10\n", ["--start", "12"], "the video ends before frame 12"),
        ("t,x,y\n12,10,10\n", [], "line 2 has frame index 12; expected an integer in 0..11"),
        ("t,x,y\n2,40,40\n", [], "line 2 (x=40, y=40) lies outside the 48x32 (W x H) frame;"),
        (
            "t,x,y\n2,20,40\n",
            [],
            "(x=20, y=40) lies outside the 48x32 (W x H) frame (were x and y swapped? rows are t,x,y)",
        ),
        ("t,x,y\n2,20,20\n", ["--start", "5", "--stop", "5"], "expected 0 <= start < stop"),
    ],
)
def test_bad_part_or_points(files, tmp_path, capsys, points, part, message):
    d, ckpt, video = files
    pts = tmp_path / "p.csv"
    pts.write_text(points)
    args = ["--points", str(pts), "--resolution", "32x48", *part]
    assert _run(video, ckpt, tmp_path / "out", *args) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("pips-jax track: error:") and message in err, err
    assert not (tmp_path / "out").exists()  # nothing created by a failed run


def test_folder_of_frames_with_fps(files, tmp_path):
    d, ckpt, video = files
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, f in enumerate(read_frames(video)):
        Image.fromarray(f).save(folder / f"f{i}.png")
    assert _run(folder, ckpt, tmp_path / "a", "--resolution", "32x48", "--no-viz") == 0
    assert load_npz(tmp_path / "a" / "frames_tracks.npz").fps == 0.0  # unknown
    assert _run(folder, ckpt, tmp_path / "b", "--resolution", "32x48", "--fps", "25") == 0
    assert load_npz(tmp_path / "b" / "frames_tracks.npz").fps == 25.0
    with av.open(str(tmp_path / "b" / "frames_tracks.mp4")) as c:
        assert float(c.streams.video[0].average_rate) == 25


def test_portrait_video_runs_in_portrait(files, tmp_path, capsys):
    _, ckpt, _ = files
    rng = np.random.default_rng(3)
    base = rng.integers(0, 256, size=(60, 50, 3), dtype=np.uint8)
    video = write_video(
        tmp_path / "portrait.mp4", [base[t : t + 48, t : t + 36] for t in range(9)], 9
    )
    assert _run(video, ckpt, tmp_path / "out", "--grid", "2", "--no-viz") == 0
    captured = capsys.readouterr()
    res = load_npz(tmp_path / "out" / "portrait_tracks.npz")
    assert res.size == (48, 36)
    # 48x36 scaled by sqrt(360 * 640 / (48 * 36)) = 11.547: 554.3 x 415.7, to multiples of 4
    assert res.resolution == (556, 416)
    assert "(input 48x36, working resolution 556x416, HxW)" in captured.out
    assert _warnings(captured.err) == []
    # Forcing the landscape default of the original stretches it, and says so once.
    assert (
        _run(video, ckpt, tmp_path / "o2", "--grid", "2", "--no-viz", "--resolution", "48x64") == 0
    )
    captured = capsys.readouterr()
    assert _warnings(captured.err) == [
        "pips-jax track: warning: working resolution 48x64 (HxW) stretches the 48x36 input's "
        "aspect ratio by 78%; without a forced resolution the tracker keeps it (556x416)"
    ]
    assert load_npz(tmp_path / "o2" / "portrait_tracks.npz").resolution == (48, 64)


def test_outputs_of_an_earlier_run_are_replaced_not_mixed(files, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    assert _track(files, out, "--grid", "2") == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "clip_tracks.csv",
        "clip_tracks.mp4",
        "clip_tracks.npz",
    ]
    (out / "other_tracks.npz").write_bytes(b"another video's")  # not ours to remove
    assert _track(files, out, "--grid", "3", "--viz-format", "gif") == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "clip_tracks.csv", "clip_tracks.gif", "clip_tracks.npz", "other_tracks.npz"
    ]  # fmt: skip
    assert _track(files, out, "--grid", "2", "--no-viz") == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "clip_tracks.csv", "clip_tracks.npz", "other_tracks.npz"
    ]  # fmt: skip
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    # A run that fails while writing leaves the earlier outputs exactly as they were.
    import pips_jax.viz

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pips_jax.viz, "save_visualization", broken)
    with pytest.raises(OSError, match="disk full"):
        _track(files, out, "--grid", "3")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    # ... and removes a folder it created for them.
    with pytest.raises(OSError, match="disk full"):
        _track(files, tmp_path / "new" / "nested", "--grid", "3")
    assert not (tmp_path / "new").exists()
