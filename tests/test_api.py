"""The one-call Python API (``pips_jax.track``, ``pips_jax.load_tracker``),
``TrackResult.save`` by extension and the TAP-Vid-style prediction pickle."""

import pickle

import numpy as np
import pytest

import pips_jax
from pips_jax.checkpoint.store import save_params
from pips_jax.cli import main
from pips_jax.errors import InputError
from pips_jax.evaluation.datasets import load_pickle
from pips_jax.tracker import Tracker
from pips_jax.tracks_io import TrackResult, load_npz
from pips_jax.weights import shipped_card
from small_model import SMALL, damped_params


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("api")
    params = damped_params(SMALL)
    ckpt = save_params(d / "small.safetensors", params, SMALL)
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, size=(80, 100, 3), dtype=np.uint8)
    video = np.stack([base[t : t + 32, t : t + 48] for t in range(10)])
    return params, ckpt, video


def test_one_call_equals_the_tracker_built_by_hand(setup):
    params, ckpt, video = setup
    queries = np.array([[0, 10, 12], [3, 20.5, 8], [9, 30, 20]], np.float32)
    got = pips_jax.track(video, queries, weights=ckpt, iters=2, resolution=(32, 48))
    want = Tracker(params, SMALL, resolution=(32, 48), iters=2).track(video, queries)
    np.testing.assert_array_equal(got.tracks, want.tracks)
    np.testing.assert_array_equal(got.visibility, want.visibility)
    np.testing.assert_array_equal(got.confidence, want.confidence)
    assert got.num_frames == 10 and got.num_points == 3


def test_track_without_queries_tracks_the_clis_default_grid(setup):
    _, ckpt, video = setup
    result = pips_jax.track(video, weights=ckpt, iters=1, resolution=(32, 48), stop=8)
    assert result.tracks.shape == (100, 8, 2)  # 10 x 10 grid on frame 0, frames 0..7
    assert np.all(result.queries[:, 0] == 0)


def test_load_tracker_defaults_to_the_shipped_weights_and_their_card():
    card = shipped_card()
    if not card:
        pytest.fail("the package ships weights with a card; it is missing")
    tracker = pips_jax.load_tracker()
    assert tracker.iters == card["iters"]  # the card's choice, not the package default
    assert pips_jax.load_tracker(iters=3).iters == 3  # a keyword wins over the card


def test_window_for_pips_weights_is_one_line_error(setup):
    _, ckpt, _ = setup
    with pytest.raises(InputError, match=r"^window 16: the window length is a PIPs\+\+ setting"):
        pips_jax.load_tracker(ckpt, window=16)


def _hand_result() -> TrackResult:
    # Two points, three frames of a 4x8 (H x W) video, hand-chosen positions.
    tracks = np.array(
        [[[-0.5, -0.5], [7.5, 3.5], [3.5, 1.5]], [[0.0, 0.0], [9.0, 1.0], [1.5, -2.5]]],
        np.float32,
    )
    visibility = np.array([[True, True, False], [True, False, False]])
    return TrackResult(
        tracks=tracks,
        visibility=visibility,
        confidence=np.array([[0.9, 0.8, 0.1], [1.0, 0.2, 0.3]], np.float32),
        queries=np.array([[0, -0.5, -0.5], [0, 0, 0]], np.float32),
        fps=10.0,
        size=(4, 8),
        resolution=(4, 8),
        frame_indices=np.array([2, 4, 6]),
    )


def test_save_writes_the_tapvid_pickle_normalised_from_the_top_left_corner(tmp_path):
    result = _hand_result()
    path = result.save(tmp_path / "clip.pkl")
    with open(path, "rb") as f:
        data = pickle.load(f)
    assert list(data) == ["clip"] and set(data["clip"]) == {"points", "occluded"}
    # (x + 0.5) / W, (y + 0.5) / H: the corner of the top-left pixel is (0, 0), the
    # corner of the bottom-right pixel (1, 1); off-frame positions stay outside.
    want = np.array(
        [[[0.0, 0.0], [1.0, 1.0], [0.5, 0.5]], [[0.0625, 0.125], [1.1875, 0.375], [0.25, -0.5]]]
    )
    np.testing.assert_allclose(data["clip"]["points"], want, atol=1e-7)
    assert data["clip"]["points"].dtype == np.float32
    np.testing.assert_array_equal(data["clip"]["occluded"], ~result.visibility)
    # The package's own restricted reader takes it (what `pips-jax eval` reads).
    again = load_pickle(path)
    np.testing.assert_array_equal(again["clip"]["occluded"], ~result.visibility)
    named = result.save(tmp_path / "other.pkl", name="bear")
    assert list(load_pickle(named)) == ["bear"]


def test_save_by_extension_and_bad_extension(tmp_path):
    result = _hand_result()
    back = load_npz(result.save(tmp_path / "t.npz"))
    np.testing.assert_array_equal(back.tracks, result.tracks)
    np.testing.assert_array_equal(back.frame_indices, [2, 4, 6])
    lines = result.save(tmp_path / "t.csv").read_text().splitlines()
    assert lines[0] == "point,frame,x,y,visible,confidence"
    assert lines[2] == "0,4,7.5000,3.5000,1,0.80000"
    with pytest.raises(InputError, match=r"^.*t\.json: expected a file name ending in \.npz"):
        result.save(tmp_path / "t.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.csv", "t.npz"]


def test_track_cli_format_writes_the_chosen_files(setup, tmp_path):
    params, ckpt, video = setup
    folder = tmp_path / "frames"
    folder.mkdir()
    from PIL import Image

    for t, frame in enumerate(video):
        Image.fromarray(frame).save(folder / f"{t:03d}.png")
    out = tmp_path / "out"
    args = ["track", str(folder), "--checkpoint", str(ckpt), "--out", str(out)]
    args += ["--resolution", "32x48", "--iters", "1", "--grid", "2", "--quiet", "--no-viz"]
    assert main([*args, "--format", "npz,tapvid"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["frames_tapvid.pkl", "frames_tracks.npz"]
    npz = load_npz(out / "frames_tracks.npz")
    pred = load_pickle(out / "frames_tapvid.pkl")["frames"]
    np.testing.assert_allclose(pred["points"][..., 0], (npz.tracks[..., 0] + 0.5) / 48, atol=1e-6)
    np.testing.assert_allclose(pred["points"][..., 1], (npz.tracks[..., 1] + 0.5) / 32, atol=1e-6)
    np.testing.assert_array_equal(pred["occluded"], ~npz.visibility)


def test_track_cli_bad_format_is_a_usage_error(setup, tmp_path, capsys):
    _, ckpt, _ = setup
    with pytest.raises(SystemExit) as e:
        main(["track", "x.mp4", "--checkpoint", str(ckpt), "--format", "npz,json"])
    assert e.value.code == 2
    assert "expected a comma-separated list of npz, csv, tapvid, found 'npz,json'" in (
        capsys.readouterr().err
    )
