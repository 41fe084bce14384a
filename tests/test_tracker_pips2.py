"""The tracker with PIPs++ weights: the original's chaining (``test_on_tap.py``),
queries on any frame, what it reports without a visibility head, and the commands
(convert, track) on PIPs++ weights. The weights are the synthetic reference weights
of ``tests/data/pips2`` (see ``tests/reference.py``)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pips_jax import ModelConfig
from pips_jax.checkpoint.convert import convert_state_dict
from pips_jax.checkpoint.store import load_params
from pips_jax.cli import main
from pips_jax.config import Pips2Config
from pips_jax.errors import InputError
from pips_jax.model.pips2 import Pips2
from pips_jax.ops.frame import inside_frame
from pips_jax.tracker import Tracker, pips2_windows
from pips_jax.tracks_io import load_npz
from pth_writer import write_pth
from reference import PIPS2_DATA, pips2_reference_state_dict


@functools.cache
def _params():
    return convert_state_dict(pips2_reference_state_dict())


@functools.cache
def _case_b():
    with np.load(PIPS2_DATA / "case_b_chain.npz") as f:
        return dict(f)


@functools.cache
def _tracker(window: int = 16, iters: int = 3) -> Tracker:
    return Tracker(_params(), Pips2Config(), resolution=(128, 160), iters=iters, window=window)


def _queries(t: int, xys: np.ndarray) -> np.ndarray:
    return np.concatenate([np.full((len(xys), 1), t), xys], axis=1).astype(np.float32)


def test_windows_follow_the_original_chaining_rule():
    case = _case_b()
    assert pips2_windows(39, 16) == [tuple(r) for r in case["window_ranges"].tolist()]
    # hand-worked: a pass no longer than a window is one window of its length
    assert pips2_windows(10, 16) == [(0, 10)]
    assert pips2_windows(16, 16) == [(0, 16)]
    # one frame past a window: the second window is shifted back to end at the end
    assert pips2_windows(17, 16) == [(0, 16), (1, 17)]
    assert pips2_windows(31, 16) == [(0, 16), (15, 31)]
    assert pips2_windows(5, 2) == [(0, 2), (1, 3), (2, 4), (3, 5)]
    with pytest.raises(InputError, match="at least 2 frames"):
        pips2_windows(10, 1)


def test_the_tracker_chains_case_b_as_the_original():
    """39 frames, windows of 16 overlapping by one, the last shifted back, feat_init
    carried: the whole chained trajectory within 3e-3 px of the original's."""
    case = _case_b()
    result = _tracker().track(case["rgbs"], _queries(0, case["xys"]), backward=False)
    expected = np.transpose(case["trajs"], (1, 0, 2))  # (N, T, 2)
    np.testing.assert_allclose(result.tracks, expected, atol=3e-3, rtol=0)
    assert np.abs(expected[:, -1] - expected[:, 0]).max() > 3.0  # points move
    # no visibility head: visible = on the frame, confidence NaN
    assert result.has_visibility is False
    assert np.all(np.isnan(result.confidence))
    np.testing.assert_array_equal(result.visibility, inside_frame(result.tracks, (128, 160)))


def test_a_window_longer_than_the_video_is_one_forward_of_the_whole_video():
    case = _case_b()
    frames, xys = case["rgbs"][:12], case["xys"]
    result = _tracker(window=32).track(frames, _queries(0, xys), backward=False)
    out = Pips2(Pips2Config()).forward(
        _params(), jnp.asarray(frames)[None], jnp.asarray(xys)[None], iters=3
    )
    # two differently compiled float32 paths (the tracker's point chunks and frame
    # blocks against one forward): rounding differs by ~1e-4 px after 3 iterations,
    # so the per-iteration tolerance of 1e-3 px applies
    expected = np.transpose(out.coords[-1, 0], (1, 0, 2))
    np.testing.assert_allclose(result.tracks, expected, atol=1e-3, rtol=0)


def test_queries_on_a_later_frame_track_both_ways():
    """A query on frame 20: frames 20.. are a forward pass from it (windows from frame
    20: the same as tracking the clip that starts there), frames ..20 the same on the
    time-reversed video."""
    case = _case_b()
    frames, xys = case["rgbs"], case["xys"][:4]
    tracker = _tracker()
    both = tracker.track(frames, _queries(20, xys))
    later = tracker.track(frames[20:], _queries(0, xys), backward=False)
    earlier = tracker.track(frames[::-1][18:], _queries(0, xys), backward=False)
    np.testing.assert_allclose(both.tracks[:, 20:], later.tracks, atol=1e-3, rtol=0)
    np.testing.assert_allclose(both.tracks[:, :21], earlier.tracks[:, ::-1], atol=1e-3, rtol=0)
    np.testing.assert_array_equal(both.tracks[:, 20], xys)
    assert np.abs(both.tracks[:, 0] - xys).max() > 1.0  # the backward pass moved


def test_pips_runs_only_its_own_window_and_pips2_at_least_two_frames():
    with pytest.raises(InputError, match="PIPs runs windows of its S=8 frames, found 16"):
        Tracker(None, ModelConfig(), window=16)
    with pytest.raises(InputError, match="at least 2 frames, found 1"):
        Tracker(_params(), Pips2Config(), window=1)


@pytest.fixture(scope="module")
def pips2_pth(tmp_path_factory):
    path = tmp_path_factory.mktemp("pips2") / "model-000200000.pth"
    write_pth(path, {"model_state_dict": pips2_reference_state_dict()})
    return path


def test_convert_detects_pips2_and_track_picks_it_from_the_file(pips2_pth, tmp_path, capsys):
    dst = tmp_path / "pips2.safetensors"
    assert main(["convert", str(pips2_pth), str(dst)]) == 0
    said = capsys.readouterr().out
    assert "converted PIPs++" in said and "norm.weight, norm.bias" in said
    params, config, meta = load_params(dst)
    assert meta["family"] == "pips2" and config == Pips2Config()
    np.testing.assert_array_equal(
        params["delta_block"]["head"]["bias"],
        pips2_reference_state_dict()["delta_block.dense.bias"],
    )
    # track the first 12 frames of case B from frame 5 (both ways), windows of 8
    video = tmp_path / "clip"
    video.mkdir()
    from PIL import Image

    for t, frame in enumerate(_case_b()["rgbs"][:12]):
        Image.fromarray(frame).save(video / f"{t:03d}.png")
    points = tmp_path / "points.csv"
    points.write_text("t,x,y\n5,40.5,30\n5,100,70.25\n")
    out = tmp_path / "out"
    args = ["track", str(video), "--checkpoint", str(dst), "--points", str(points)]
    args += ["--out", str(out), "--resolution", "128x160", "--iters", "2", "--window", "8"]
    assert main([*args, "--quiet", "--no-viz"]) == 0
    result = load_npz(out / "clip_tracks.npz")
    assert result.has_visibility is False and result.tracks.shape == (2, 12, 2)
    np.testing.assert_allclose(result.tracks[:, 5], [[40.5, 30], [100, 70.25]])
    direct = Tracker(params, config, resolution=(128, 160), iters=2, window=8).track(
        _case_b()["rgbs"][:12], np.array([[5, 40.5, 30], [5, 100, 70.25]], np.float32)
    )
    np.testing.assert_allclose(result.tracks, direct.tracks, atol=1e-3, rtol=0)
    rows = (out / "clip_tracks.csv").read_text().splitlines()
    assert rows[0] == "point,frame,x,y,visible,confidence"
    assert rows[1].endswith(",1,")  # visible on the frame, no confidence


def test_forcing_the_wrong_family_or_a_pips_window_fails_with_one_line(pips2_pth, tmp_path, capsys):
    dst = tmp_path / "x.safetensors"
    assert main(["convert", str(pips2_pth), str(dst), "--model", "pips"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is a PIPs++ checkpoint" in err[0] and "--model pips2" in err[0]
    assert not dst.exists()


def test_the_window_flag_with_pips_weights_is_refused(tmp_path, capsys):
    from pips_jax import Pips
    from pips_jax.checkpoint.store import save_params
    from small_model import SMALL

    ckpt = save_params(tmp_path / "small.safetensors", Pips(SMALL).init(jax.random.key(0)), SMALL)
    video = tmp_path / "clip"
    video.mkdir()
    from PIL import Image

    for t in range(4):
        Image.fromarray(np.zeros((32, 48, 3), np.uint8)).save(video / f"{t}.png")
    code = main(
        ["track", str(video), "--checkpoint", str(ckpt), "--window", "16", "--out", str(tmp_path)]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "--window 16: the window length is a PIPs++ setting" in err


SMALL2 = Pips2Config(
    S=4, latent_dim=16, encoder_dims=(8, 8, 8, 8), encoder_stem_dim=8, delta_dim=8,
    delta_blocks=2, embed_dim=8,
)  # fmt: skip


def test_eval_runs_pips2_weights_and_reports_both_metric_families(tmp_path, capsys):
    import json

    from pips_jax.checkpoint.store import save_params

    ckpt = save_params(
        tmp_path / "small2.safetensors", Pips2(SMALL2).init(jax.random.key(0)), SMALL2
    )
    out = tmp_path / "report.json"
    args = ["eval", "--checkpoint", str(ckpt), "--num-videos", "1", "--iters", "1"]
    args += ["--input-resolution", "64x64", "--window", "8", "--quiet", "--json", str(out)]
    assert main(args) == 0
    table = capsys.readouterr().out
    assert "PIPs++ paper metrics" in table and "visibility: none predicted (PIPs++)" in table
    report = json.loads(out.read_text())
    assert set(report["scores"]) == {"pips2", "zero_motion"}
    assert "window: 8 frames" in report["weights"]
    for method in ("pips2", "zero_motion"):
        scores = report["scores"][method]
        assert 0 <= scores["d_avg"] <= 100 and 0 <= scores["survival_16"] <= 100
        assert scores["median_l2"] >= 0
    # the zero-motion baseline's d_avg is its own: frame 0 excluded, no EPS surprise
    assert report["scores"]["zero_motion"]["d_avg"] < 100
