"""`pips-jax track` on many videos: the list, shares of workers (--shard) and of the
processes of a job, finished videos skipped, failures counted, on a small model and
tiny 10-frame 64x64 videos (three mp4 files and a folder of PNG frames)."""

import io
import os
import re
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from job_helpers import finish, start
from pips_jax.checkpoint.store import save_params
from pips_jax.cli import main
from pips_jax.runtime import free_port
from pips_jax.tracks_io import load_npz
from pips_jax.video import write_video
from small_model import SMALL, damped_params

NAMES = ("a", "b", "c", "d")  # d is a folder of frames
TRACKED = re.compile(r"^tracked (\S+): 9 points through 10 frames .* -> (.*)$")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("videos")
    ckpt = save_params(d / "small.safetensors", damped_params(), SMALL)
    videos = []
    for i, name in enumerate(NAMES):
        base = np.random.default_rng(i).integers(0, 256, size=(96, 96, 3), dtype=np.uint8)
        frames = [base[t : t + 64, 2 * t : 2 * t + 64] for t in range(10)]
        if name == "d":
            (d / name).mkdir()
            for t, f in enumerate(frames):
                Image.fromarray(f).save(d / name / f"{t:03d}.png")
            videos.append(d / name)
        else:
            videos.append(write_video(d / f"{name}.mp4", frames, fps=10))
    return d, ckpt, videos


def _args(inputs, out, *extra, grid=True):
    """The options every run here shares (a 3x3 grid unless ``grid`` is False), then ``extra``."""
    _, ckpt, _ = inputs
    return [
        "--checkpoint", str(ckpt), "--out", str(out), "--resolution", "64x64", "--iters", "1",
        *(["--grid", "3"] if grid else []), "--quiet", "--no-compile-cache", *extra,
    ]  # fmt: skip


def _written(stdout: str) -> Counter:
    """How many times each output is named by a "tracked <video>: ..." line."""
    found = Counter()
    for line in stdout.splitlines():
        m = TRACKED.match(line)
        if m:
            found.update(m.group(2).split(", "))
    return found


def _outputs(out: Path, names=NAMES, kinds=("npz", "csv")) -> set[str]:
    return {str(out / f"{n}_tracks.{k}") for n in names for k in kinds}


def _same_tracks(a: Path, b: Path, names=NAMES) -> None:
    for n in names:
        x, y = load_npz(a / f"{n}_tracks.npz"), load_npz(b / f"{n}_tracks.npz")
        np.testing.assert_allclose(x.tracks, y.tracks, atol=1e-3, err_msg=n)
        np.testing.assert_array_equal(x.visibility, y.visibility, err_msg=n)


@pytest.fixture(scope="module")
def one_process(inputs, tmp_path_factory):
    """The four videos tracked by one process: the reference."""
    out = tmp_path_factory.mktemp("one") / "out"
    assert main(["track", *map(str, inputs[2]), *_args(inputs, out, "--no-viz")]) == 0
    tracks = [load_npz(out / f"{n}_tracks.npz").tracks for n in NAMES]
    # different videos, different tracks: a mixed-up video would show
    assert all(np.abs(tracks[0] - t).max() > 0.5 for t in tracks[1:])
    return out


def _job(inputs, out, videos, processes=2):
    """Runs `pips-jax track` as a job of ``processes`` processes on 127.0.0.1 (one CPU
    device each); returns each process's (exit code, stdout, stderr)."""
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["JAX_PLATFORMS"] = "cpu"
    address = f"127.0.0.1:{free_port()}"
    procs = []
    for i in range(processes):
        command = [sys.executable, "-m", "pips_jax", "track", *map(str, videos)]
        command += _args(inputs, out, "--no-viz", "--coordinator-address", address)
        command += ["--num-processes", str(processes), "--process-id", str(i)]
        procs.append(start(command, env))
    return finish(procs, 600)


def test_two_processes_split_the_videos_and_track_as_one(inputs, one_process, tmp_path):
    out = tmp_path / "out"
    results = _job(inputs, out, inputs[2])
    for code, _, stderr in results:
        assert code == 0, stderr[-3000:]
    # each process tracked and wrote its share (every 2nd video), each output once
    assert _written(results[0][1]) == Counter(_outputs(out, ("a", "c")))
    assert _written(results[1][1]) == Counter(_outputs(out, ("b", "d")))
    summary = results[0][1].strip().splitlines()[-1]
    assert summary.startswith("4 of 4 videos tracked, 0 skipped (finished), 0 failed in ")
    assert "on 2 processes, 2 devices" in summary
    assert "videos tracked" not in results[1][1]  # process 0 prints the job's summary
    _same_tracks(out, one_process)


def test_fewer_videos_than_processes_track_together(inputs, one_process, tmp_path):
    out = tmp_path / "out"
    results = _job(inputs, out, inputs[2][:1])
    for code, _, stderr in results:
        assert code == 0, stderr[-3000:]
    # one video: today's single line, from the one process that writes it
    line = results[0][1].strip().splitlines()[-1]
    assert line.startswith("tracked 9 points through 10 frames (input 64x64, working resolution")
    assert f"on 2 processes, 2 devices -> {out / 'a_tracks.npz'}, {out / 'a_tracks.csv'}" in line
    assert results[1][1].strip() == ""
    assert sorted(p.name for p in out.iterdir()) == ["a_tracks.csv", "a_tracks.npz"]
    _same_tracks(out, one_process, ("a",))


def test_shards_in_turn_track_as_one_process(inputs, one_process, tmp_path, capsys):
    out = tmp_path / "out"
    videos = list(map(str, inputs[2]))
    assert main(["track", *videos, *_args(inputs, out, "--no-viz", "--shard", "0/2")]) == 0
    first = capsys.readouterr().out
    assert _written(first) == Counter(_outputs(out, ("a", "c")))
    assert (
        first.strip()
        .splitlines()[-1]
        .startswith(
            "share 0/2 of 4 videos: 2 of 2 videos tracked, 0 skipped (finished), 0 failed in "
        )
    )
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert main(["track", *videos, *_args(inputs, out, "--no-viz", "--shard", "1/2")]) == 0
    assert _written(capsys.readouterr().out) == Counter(_outputs(out, ("b", "d")))
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.name in stamps} == stamps
    assert {str(p) for p in out.iterdir()} == _outputs(out)
    _same_tracks(out, one_process)


def test_a_corrupt_video_is_reported_and_skipped(inputs, one_process, tmp_path, capsys):
    d, _, videos = inputs
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(np.random.default_rng(0).bytes(3000))
    lists = tmp_path / "lists"
    lists.mkdir()
    # relative entries are relative to the list's folder; comments and blanks ignored
    rel = [os.path.relpath(v, lists) for v in videos[:2]]
    listing = f"# three videos\n{rel[0]}\n\n  ../bad.mp4  \n# the last one\n{rel[1]}\n"
    (lists / "videos.txt").write_text(listing)
    out = tmp_path / "out"
    args = ["track", "--video-list", str(lists / "videos.txt"), *_args(inputs, out, "--no-viz")]
    assert main(args) == 1
    captured = capsys.readouterr()
    failed = [ln for ln in captured.err.splitlines() if "failed" in ln]
    assert len(failed) == 1 and failed[0].startswith(
        f"pips-jax track: failed: {lists / '../bad.mp4'}: cannot open the video"
    )
    assert (
        captured.out.strip()
        .splitlines()[-1]
        .startswith("2 of 3 videos tracked, 0 skipped (finished), 1 failed (bad.mp4) in ")
    )
    assert sorted(p.name for p in out.iterdir()) == [
        "a_tracks.csv", "a_tracks.npz", "b_tracks.csv", "b_tracks.npz",
    ]  # fmt: skip
    _same_tracks(out, one_process, ("a", "b"))


def test_a_rerun_skips_finished_videos(inputs, tmp_path, capsys):
    out = tmp_path / "out"
    videos = list(map(str, inputs[2][:2]))

    def stat(name):
        s = (out / name).stat()
        return s.st_ino, s.st_mtime_ns, (out / name).read_bytes()

    assert main(["track", *videos, *_args(inputs, out)]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(f"{n}_tracks.{k}" for n in "ab" for k in ("npz", "csv", "mp4"))
    before = {n: stat(n) for n in names}
    capsys.readouterr()

    assert main(["track", *videos, *_args(inputs, out)]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip().startswith("0 of 2 videos tracked, 2 skipped (finished), 0 failed")
    assert "weights:" not in captured.err  # nothing to track: no weights loaded
    assert {n: stat(n) for n in names} == before

    # a video with an output missing is not finished: only it is tracked again
    (out / "b_tracks.csv").unlink()
    assert main(["track", *videos, *_args(inputs, out)]) == 0
    assert _written(capsys.readouterr().out) == Counter(
        str(out / f"b_tracks.{k}") for k in ("npz", "csv", "mp4")
    )
    for n in ("a_tracks.npz", "a_tracks.csv", "a_tracks.mp4"):
        assert stat(n) == before[n]

    # another visualization format is another output: tracked again, the mp4 replaced
    assert main(["track", *videos[:1], *_args(inputs, out, "--viz-format", "gif")]) == 0
    assert (out / "a_tracks.gif").is_file() and not (out / "a_tracks.mp4").exists()
    capsys.readouterr()

    for n in ("a_tracks.npz", "a_tracks.csv"):  # marked, to tell a new file from the old
        os.utime(out / n, ns=(0, 0))
    assert main(["track", *videos, *_args(inputs, out, "--overwrite")]) == 0
    assert _written(capsys.readouterr().out) == Counter(
        str(out / f"{n}_tracks.{k}") for n in "ab" for k in ("npz", "csv", "mp4")
    )
    for n in ("a_tracks.npz", "a_tracks.csv"):
        assert (out / n).stat().st_mtime_ns != 0  # a new file put in place
    with np.load(io.BytesIO(before["a_tracks.npz"][2])) as first:  # the same tracks again
        np.testing.assert_array_equal(load_npz(out / "a_tracks.npz").tracks, first["tracks"])


def test_a_single_finished_video_says_it_is_skipped(inputs, tmp_path, capsys):
    out = tmp_path / "out"
    video = str(inputs[2][0])
    assert main(["track", video, *_args(inputs, out, "--no-viz")]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert re.fullmatch(
        r"tracked 9 points through 10 frames \(input 64x64, working resolution 64x64, HxW\) "
        rf"in [0-9.]+ s on 1 device -> {re.escape(str(out / 'a_tracks.npz'))}, .*",
        line,
    )
    assert main(["track", video, *_args(inputs, out, "--no-viz")]) == 0
    assert capsys.readouterr().out.strip() == (
        f"skipped {video}: its outputs are all in {out} (--overwrite tracks it again)"
    )


def test_points_file_applies_to_every_video(inputs, tmp_path):
    pts = tmp_path / "pts.csv"
    pts.write_text("t,x,y\n0,10,10\n4,20.5,15\n")
    out = tmp_path / "out"
    args = _args(inputs, out, "--no-viz", "--points", str(pts), grid=False)
    assert main(["track", *map(str, inputs[2][1:3]), *args]) == 0
    for n in ("b", "c"):
        res = load_npz(out / f"{n}_tracks.npz")
        np.testing.assert_allclose(res.queries, [[0, 10, 10], [4, 20.5, 15]])
        np.testing.assert_allclose(res.tracks[1, 4], [20.5, 15], atol=1e-3)


def test_ctrl_c_stops_the_run_leaving_nothing_half_written(inputs, tmp_path, monkeypatch, capsys):
    from pips_jax import tracks_io

    real = tracks_io.save_csv

    def save_csv(path, result):
        if "b_tracks" in str(path):
            raise KeyboardInterrupt  # as interrupts.check() does at a safe point
        return real(path, result)

    monkeypatch.setattr(tracks_io, "save_csv", save_csv)  # what save_track_file calls
    out = tmp_path / "out"
    assert main(["track", *map(str, inputs[2][:3]), *_args(inputs, out, "--no-viz")]) == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == "pips-jax track: interrupted"
    # a is whole, b (in progress: its npz was staged) left nothing, c was not started
    assert sorted(p.name for p in out.iterdir()) == ["a_tracks.csv", "a_tracks.npz"]


@pytest.mark.parametrize(
    ("second", "names"),
    [("clip", "folder"), ("Clip.avi", "file")],
)
def test_clashing_names_are_refused_before_any_work(inputs, tmp_path, capsys, second, names):
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    first = tmp_path / "x" / "clip.mp4"
    first.write_bytes(inputs[2][0].read_bytes())
    other = tmp_path / "y" / second
    if names == "folder":
        other.mkdir()
        Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(other / "0.png")
    else:
        other.write_bytes(first.read_bytes())
    out = tmp_path / "out"
    assert main(["track", str(inputs[2][1]), str(first), str(other), *_args(inputs, out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pips-jax track: error: ")
    clash = "clip" if names == "folder" else "clip_tracks.* and Clip"
    assert f"{first} and {other} would both write {clash}_tracks.*" in err[0]
    assert not out.exists()


@pytest.mark.parametrize("shard", ["2/2", "a/b", "1", "-1/2", "0/0", "0/2/4"])
def test_bad_shard_is_refused(inputs, tmp_path, capsys, shard):
    out = tmp_path / "out"
    assert main(["track", str(inputs[2][0]), *_args(inputs, out, f"--shard={shard}")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"pips-jax track: error: --shard: expected I/N, worker I of N with 0 <= I < N "
        f"(such as 0/4), found {shard!r}"
    ]
    assert not out.exists()


def test_missing_video_in_a_list_is_refused(inputs, tmp_path, capsys):
    listing = tmp_path / "videos.txt"
    listing.write_text(f"{inputs[2][0]}\nmissing.mp4\n")
    out = tmp_path / "out"
    assert main(["track", "--video-list", str(listing), *_args(inputs, out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"pips-jax track: error: {tmp_path / 'missing.mp4'} (listed in {listing}): no such "
        "file or folder; expected a video file or a folder of frames"
    ]
    assert not out.exists()
