"""`pips-jax track` end to end on a small model and a real video file."""

import jax
import numpy as np
import pytest

from pips_jax import Pips
from pips_jax.checkpoint.store import save_params
from pips_jax.cli import main
from pips_jax.tracker import load_npz
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
    assert summary.startswith("tracked 9 points through 12 frames in ")
    res = load_npz(tmp_path / "out" / "clip_tracks.npz")
    assert res.tracks.shape == (9, 12, 2) and res.fps == pytest.approx(12)
    assert res.size == (32, 48)
    lines = (tmp_path / "out" / "clip_tracks.csv").read_text().splitlines()
    assert len(lines) == 1 + 9 * 12
    viz = list(read_frames(tmp_path / "out" / "clip_tracks.mp4"))
    assert len(viz) == 12
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
