"""Ctrl-C: deferred to safe points, and a real `pips-jax track` process exits 130 cleanly.

Before the deferral, a SIGINT that landed while JAX waited for an XLA compile broke the
wait but not the compile, which went on in XLA's threads; the interpreter's teardown
then destroyed the XLA client under it and the process died with a segmentation
fault after printing "interrupted" (exit 139).
"""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from pips_jax import Pips, interrupts
from pips_jax.checkpoint.store import save_params
from pips_jax.video import write_video
from small_model import SMALL

SRC = str(Path(__file__).resolve().parents[1] / "src")


def test_first_sigint_waits_for_a_check_and_the_handler_is_restored():
    with interrupts.deferred():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.01)  # the handler has run: only a flag was set
        with pytest.raises(KeyboardInterrupt):
            interrupts.check()
        interrupts.check()  # raised once
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_second_sigint_interrupts_at_once():
    with interrupts.deferred():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.01)
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_pending_sigint_is_dropped_when_the_block_ends():
    with interrupts.deferred():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.01)
    interrupts.check()  # outside the block: never raises


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("in")
    ckpt = save_params(d / "small.safetensors", Pips(SMALL).init(jax.random.key(0)), SMALL)
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, size=(112, 144, 3), dtype=np.uint8)
    video = write_video(d / "clip.mp4", [base[t : t + 64, t : t + 96] for t in range(40)], fps=10)
    return ckpt, video


# Runs the real program (pips_jax.cli.entry, what the `pips-jax` script runs) in a
# fresh process that sends itself SIGINT at one moment of the run: MOMENT N means the
# N-th call of a function of that phase.
HOOK = """
import os, signal, sys, threading
moment, nth = sys.argv[1], int(sys.argv[2])
calls = [0]
def fire():
    calls[0] += 1
    if calls[0] == nth:
        print(f"hook: SIGINT at {moment}", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGINT)
def on_call(module, name):
    original = getattr(module, name)
    def hooked(*args, **kwargs):
        fire()
        return original(*args, **kwargs)
    setattr(module, name, hooked)
if moment == "compile":  # 50 ms into the N-th XLA compile, from another thread
    from jax._src import compiler
    original = compiler.backend_compile_and_load
    def hooked(*args, **kwargs):
        timer = threading.Timer(0.05, fire)
        timer.start()
        try:
            return original(*args, **kwargs)
        except KeyboardInterrupt:
            print("hook: compile abandoned", file=sys.stderr, flush=True)
            raise
        finally:
            timer.cancel()
    compiler.backend_compile_and_load = hooked
else:
    import av, pips_jax.tracker as tracker, pips_jax.viz as viz, pips_jax.interrupts as interrupts
    target = {
        "decode": (av.VideoFrame, "to_ndarray"),  # a frame converted while encoding
        "track": (tracker, "reanchor_offsets"),  # after a window
        "write": (viz, "label_frame"),  # a frame of the visualization being written
        "commit": (interrupts, "held"),  # putting the outputs in place
    }[moment]
    on_call(*target)
from pips_jax.cli import entry
sys.argv = ["pips-jax", *sys.argv[3:]]
entry()
"""

OLD = {"clip_tracks.npz": b"old npz", "clip_tracks.csv": b"old csv", "clip_tracks.mp4": b"old"}


def _track_cmd(files, out):
    ckpt, video = files
    return ["track", str(video), "--checkpoint", str(ckpt), "--out", str(out),
            "--resolution", "64x96", "--iters", "1", "--grid", "4",
            "--overwrite",  # earlier outputs are there: track again
            "--no-compile-cache"]  # every compile is a real one  # fmt: skip


def _env():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")]))
    env["PYTHONFAULTHANDLER"] = "1"
    return env


def _assert_clean_interrupt(p_returncode, stderr, out):
    assert "Fatal Python error" not in stderr and "Exception ignored" not in stderr, stderr
    assert p_returncode == 130, stderr
    assert stderr.strip().splitlines()[-1].endswith("pips-jax track: interrupted"), stderr
    # The earlier outputs are exactly as they were, and nothing temporary is left.
    assert {f.name: f.read_bytes() for f in out.iterdir()} == OLD


@pytest.mark.parametrize("attempt", [0, 1])
@pytest.mark.parametrize(
    ("moment", "nth"),
    [("decode", 3), ("compile", 1), ("compile", 2), ("track", 2), ("write", 5)],
)
def test_ctrl_c_at_any_moment_exits_130_and_keeps_old_outputs(
    files, tmp_path, moment, nth, attempt
):
    out = tmp_path / "out"
    out.mkdir()
    for name, data in OLD.items():
        (out / name).write_bytes(data)
    cmd = [sys.executable, "-c", HOOK, moment, str(nth), *_track_cmd(files, out), "--quiet"]
    p = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert f"hook: SIGINT at {moment}" in p.stderr, p.stderr  # the moment was reached
    assert "hook: compile abandoned" not in p.stderr  # a compile is never cut short
    _assert_clean_interrupt(p.returncode, p.stderr, out)


def test_ctrl_c_while_outputs_are_put_in_place_completes_the_run(files, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "clip_tracks.gif").write_bytes(b"stale")
    cmd = [sys.executable, "-c", HOOK, "commit", "1", *_track_cmd(files, out), "--quiet"]
    p = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert "hook: SIGINT at commit" in p.stderr and p.returncode == 0, p.stderr
    assert sorted(f.name for f in out.iterdir()) == [
        "clip_tracks.csv", "clip_tracks.mp4", "clip_tracks.npz"
    ]  # fmt: skip


@pytest.mark.parametrize("attempt", [0, 1])
def test_ctrl_c_from_the_terminal_while_tracking(files, tmp_path, attempt):
    """The plain `python -m pips_jax track`, SIGINT sent from outside once the
    tracking progress bar shows, as a terminal's Ctrl-C would."""
    out = tmp_path / "out"
    out.mkdir()
    for name, data in OLD.items():
        (out / name).write_bytes(data)
    cmd = [sys.executable, "-m", "pips_jax", *_track_cmd(files, out), "--grid", "12"]
    p = subprocess.Popen(cmd, env=_env(), stderr=subprocess.PIPE, stdout=subprocess.PIPE)
    seen = bytearray()
    tracking = threading.Event()

    def read():
        while chunk := p.stderr.read1(4096):
            seen.extend(chunk)
            if b"track:" in seen:
                tracking.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert tracking.wait(timeout=300), seen.decode()
    p.send_signal(signal.SIGINT)
    p.wait(timeout=120)
    reader.join(timeout=10)
    stderr = seen.decode(errors="replace")
    if p.returncode == 0:  # finished before the signal arrived: not an interrupt test
        pytest.fail(f"the run ended before Ctrl-C reached it: {stderr}")
    _assert_clean_interrupt(p.returncode, stderr.replace("\r", "\n"), out)


def test_ctrl_c_in_a_stream_keeps_the_frames_final_so_far(files, tmp_path):
    """`track --stream` stopped after its 3rd window (each window finalises frames):
    exit 130, the outputs of the frames final by then are whole and valid, and a note
    says the video is not finished, so a rerun tracks it again."""
    from pips_jax.collection import TrackOptions, is_finished
    from pips_jax.tracks_io import load_npz
    from pips_jax.video import read_frames

    out = tmp_path / "out"
    out.mkdir()
    for name, data in OLD.items():
        (out / name).write_bytes(data)
    cmd = [sys.executable, "-c", HOOK, "track", "3", *_track_cmd(files, out), "--stream"]
    p = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert "hook: SIGINT at track" in p.stderr, p.stderr
    assert p.returncode == 130 and p.stderr.strip().splitlines()[-1].endswith("interrupted")
    names = sorted(f.name for f in out.iterdir())
    assert names == sorted([*OLD, "clip_interrupted.txt"])
    res = load_npz(out / "clip_tracks.npz")
    # 16 points on frame 0, one group: windows at 0, then at anchors >= 2 apart; after
    # the 3rd window the frames before the 3rd anchor (at least 4) are final, and
    # never the whole 40.
    assert 4 <= res.num_frames < 40 and res.tracks.shape == (16, res.num_frames, 2)
    np.testing.assert_array_equal(res.frame_indices, np.arange(res.num_frames))
    assert np.all(np.isfinite(res.tracks))
    csv = (out / "clip_tracks.csv").read_text().splitlines()
    assert len(csv) == 1 + 16 * res.num_frames
    assert len(list(read_frames(out / "clip_tracks.mp4"))) == res.num_frames
    note = (out / "clip_interrupted.txt").read_text()
    assert f"hold the {res.num_frames} frames final by then" in note
    options = TrackOptions(grid_size=4, backward=False, stream=True)
    assert not is_finished(out, "clip", options)
