"""Which weights a command runs with: explicit, released (cached), or shipped."""

import json

import jax
import numpy as np
import pytest

from pips_jax import Pips
from pips_jax.checkpoint.store import save_params
from pips_jax.cli import main
from pips_jax.errors import CheckpointError
from pips_jax.inference import InferenceSettings
from pips_jax.weights import (
    SHIPPED_NAME,
    load_shipped,
    load_weights,
    shipped_card,
    shipped_path,
)
from small_model import SMALL


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PIPS_JAX_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def assets(tmp_path, monkeypatch):
    """A stand-in for the package's assets folder holding small shipped weights."""
    folder = tmp_path / "assets"
    folder.mkdir()
    monkeypatch.setattr("pips_jax.weights.ASSETS", folder)
    params = Pips(SMALL).init(jax.random.key(3))
    save_params(folder / f"{SHIPPED_NAME}.safetensors", params, SMALL)
    (folder / f"{SHIPPED_NAME}.json").write_text(json.dumps({"resolution": [64, 96]}))
    return folder, params


def test_nothing_available_says_how_to_get_weights(empty_cache, tmp_path, monkeypatch):
    monkeypatch.setattr("pips_jax.weights.ASSETS", tmp_path / "none")
    assert load_shipped() is None
    with pytest.raises(CheckpointError, match="pips-jax download"):
        load_weights()


def test_shipped_weights_are_the_fallback_and_say_so(empty_cache, assets):
    _, params = assets
    w = load_weights()
    assert w.config == SMALL and w.card == {"resolution": [64, 96]}
    assert SHIPPED_NAME in w.description and "pips-jax download" in w.description
    np.testing.assert_array_equal(
        w.params["vis_predictor"]["kernel"], np.asarray(params["vis_predictor"]["kernel"])
    )


def test_released_weights_in_the_cache_come_first(empty_cache, assets):
    from pips_jax.checkpoint.hub import reference_path

    released = Pips(SMALL).init(jax.random.key(9))
    empty_cache.mkdir(parents=True)
    save_params(reference_path(), released, SMALL)
    w = load_weights()
    assert "released PIPs reference weights" in w.description
    np.testing.assert_array_equal(
        w.params["vis_predictor"]["kernel"], np.asarray(released["vis_predictor"]["kernel"])
    )


def test_explicit_checkpoint_wins(empty_cache, assets, tmp_path):
    other = save_params(tmp_path / "other.safetensors", Pips(SMALL).init(jax.random.key(5)), SMALL)
    assert load_weights(other).description == str(other)


def test_demo_runs_on_shipped_weights_and_names_them(empty_cache, assets, tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--iters", "1", "--quiet"]) == 0
    captured = capsys.readouterr()
    assert f"weights: pips-jax's own weights '{SHIPPED_NAME}'" in captured.err
    assert "released PIPs weights are not in the cache" in captured.err
    assert (out / "demo_tracks.npz").is_file()


def test_the_cards_iteration_count_is_the_default_and_iters_overrides_it(
    empty_cache, assets, tmp_path, capsys
):
    folder, _ = assets
    (folder / f"{SHIPPED_NAME}.json").write_text(json.dumps({"resolution": [64, 96], "iters": 2}))
    card = load_weights().card
    assert InferenceSettings.resolve(card).iters == 2
    assert InferenceSettings.resolve(card, iters=5).iters == 5
    other = save_params(tmp_path / "other.safetensors", Pips(SMALL).init(jax.random.key(5)), SMALL)
    assert InferenceSettings.resolve(load_weights(other).card).iters == 6  # the original's
    assert main(["demo", "--out", str(tmp_path / "a"), "--quiet"]) == 0
    assert "; iterations per window: 2" in capsys.readouterr().err
    assert main(["demo", "--out", str(tmp_path / "b"), "--iters", "1", "--quiet"]) == 0
    assert "; iterations per window: 1" in capsys.readouterr().err


def test_the_cards_input_resolution_is_the_default_of_demo_and_eval(
    empty_cache, assets, tmp_path, capsys
):
    from pips_jax.tracks_io import load_npz

    folder, _ = assets
    card = {"resolution": [64, 96], "iters": 1, "input_resolution": [48, 40]}
    (folder / f"{SHIPPED_NAME}.json").write_text(json.dumps(card))
    card = load_weights().card
    assert InferenceSettings.resolve(card).clip_resolution == (48, 40)
    assert InferenceSettings.resolve(card, clip_resolution=(72, 72)).clip_resolution == (72, 72)
    other = save_params(tmp_path / "other.safetensors", Pips(SMALL).init(jax.random.key(5)), SMALL)
    no_card = InferenceSettings.resolve(load_weights(other).card)
    assert no_card.clip_resolution == (256, 256)  # no card: TAP-Vid's

    assert main(["demo", "--out", str(tmp_path / "a"), "--quiet"]) == 0
    assert "through 24 frames at 48x40 in " in capsys.readouterr().out
    assert load_npz(tmp_path / "a" / "demo_tracks.npz").resolution == (48, 40)
    assert main(["demo", "--out", str(tmp_path / "b"), "--input-resolution", "32x64"]) == 0
    assert "through 24 frames at 32x64 in " in capsys.readouterr().out
    assert load_npz(tmp_path / "b" / "demo_tracks.npz").resolution == (32, 64)

    report = tmp_path / "r.json"
    args = ["eval", "--format", "synthetic", "--num-videos", "1", "--quiet", "--json"]
    assert main([*args, str(report)]) == 0
    assert "model input resolution 48x40, metrics at 256x256" in capsys.readouterr().out
    assert json.loads(report.read_text())["input_resolution"] == [48, 40]
    assert main([*args, str(report), "--input-resolution", "64x64"]) == 0
    assert json.loads(report.read_text())["input_resolution"] == [64, 64]
    assert main([*args, str(report), "--baseline-only"]) == 0
    assert json.loads(report.read_text())["input_resolution"] == [256, 256]


def test_the_shipped_weights_load_and_fit_the_size_limit():
    w = load_shipped()
    assert w is not None, f"the package must ship {shipped_path()}"
    assert shipped_path().stat().st_size <= 25 * 2**20
    assert Pips(w.config).param_shapes().keys() == w.params.keys()
    card = shipped_card()
    for key in ("training_command", "data_seed", "config", "evaluation", "iters"):
        assert key in card, f"the shipped weights' card lacks {key!r}"
    settings = InferenceSettings.resolve(w.card)
    assert settings.iters == card["iters"] >= 1
    assert settings.clip_resolution == tuple(card.get("input_resolution", (256, 256)))


def test_the_shipped_weights_track_better_than_standing_still(tmp_path):
    """Trained weights follow the demo clip's known motion: on visible points their
    median error is well below, and their share within 4 px well above, those of points
    that never leave their query position (the zero-motion baseline)."""
    from pips_jax.demo import DEMO_CLIP, DEMO_SEED, run_demo
    from pips_jax.synthetic import generate_clip

    clip = generate_clip(DEMO_CLIP, DEMO_SEED)
    visible = ~clip.occluded
    query_xy = clip.query_points[:, None, 1:]  # (t, x, y) -> (x, y), kept on every frame
    still = np.linalg.norm(clip.tracks - query_xy, axis=-1)[visible]
    weights = load_shipped()
    summary = run_demo(tmp_path, weights, InferenceSettings.resolve(weights.card, iters=6))
    assert summary["median_error_px"] < 0.6 * np.median(still)
    assert summary["within_4px"] > 2 * np.mean(still < 4)
