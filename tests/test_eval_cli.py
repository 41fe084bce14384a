"""`pips-jax eval` end to end on synthetic sets (small model, few clips)."""

import json
import pickle

import jax
import numpy as np
import pytest

from pips_jax import Pips
from pips_jax.checkpoint.store import save_params
from pips_jax.cli import main
from pips_jax.evaluation.datasets import write_tapvid_pickle
from pips_jax.evaluation.runner import evaluate, synthetic_samples
from pips_jax.synthetic import SyntheticConfig, generate_clip
from small_model import SMALL

TINY = SyntheticConfig(height=64, width=64, num_frames=10, num_objects=2, num_points=24)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("w") / "small.safetensors"
    return save_params(path, Pips(SMALL).init(jax.random.key(0)), SMALL)


def test_eval_generated_synthetic_with_model_and_baseline(ckpt, tmp_path, capsys):
    out = tmp_path / "r.json"
    args = ["eval", "--format", "synthetic", "--num-videos", "2", "--checkpoint", str(ckpt)]
    assert (
        main([*args, "--iters", "1", "--input-resolution", "64x64", "--json", str(out), "--quiet"])
        == 0
    )
    text = capsys.readouterr().out
    assert "model input resolution 64x64, metrics at 256x256" in text
    assert "2 videos evaluated, 0 skipped" in text
    report = json.loads(out.read_text())
    assert set(report["scores"]) == {"pips", "zero_motion"}
    assert report["weights"] == f"{ckpt}; iterations per window: 1"
    for scores in report["scores"].values():
        assert 0 <= scores["average_jaccard"] <= 1 and 0 <= scores["occlusion_accuracy"] <= 1


def test_eval_reads_a_written_synthetic_pickle_and_skips_bad_videos(tmp_path, capsys):
    clips = {"good": generate_clip(TINY, 1), "also_good": generate_clip(TINY, 2)}
    folder = tmp_path / "set"
    folder.mkdir()
    write_tapvid_pickle(folder / "a.pkl", clips)
    with open(folder / "b.pkl", "wb") as f:  # a video whose points do not match its frames
        pickle.dump(
            {
                "broken": {
                    "video": np.zeros((3, 8, 8, 3), np.uint8),
                    "points": np.zeros((2, 5, 2)),
                    "occluded": np.zeros((2, 5), bool),
                }
            },
            f,
        )
    out = tmp_path / "r.json"
    assert (
        main(
            [
                "eval",
                "--format",
                "synthetic",
                "--dataset",
                str(folder),
                "--baseline-only",
                "--json",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    report = json.loads(out.read_text())
    assert sorted(report["per_video"]["zero_motion"]) == ["also_good", "good"]
    assert [s[0] for s in report["skipped"]] == ["broken"]
    assert "1 skipped" in capsys.readouterr().out


def test_zero_motion_is_exact_on_a_static_scene():
    # No background or object motion: staying put is the exact answer for visible points.
    cfg = SyntheticConfig(
        height=64, width=64, num_frames=8, num_objects=1, num_points=16, max_background_shift=0,
        max_background_rotation=0, max_background_zoom=0, max_background_perspective=0,
        max_object_speed=0, max_object_rotation=0, max_object_zoom=0,
    )  # fmt: skip
    report = evaluate(
        synthetic_samples(1, 5, cfg),
        {},
        dataset="t",
        fmt="synthetic",
        input_resolution=(64, 64),
        weights="-",
    )
    s = report.scores["zero_motion"]
    assert s["average_pts_within_thresh"] == 1.0 and s["ate_visible"] == 0.0


def test_eval_errors(tmp_path, capsys):
    assert main(["eval", "--format", "davis", "--baseline-only", "--quiet"]) == 2
    assert "--dataset PATH is required" in capsys.readouterr().err
    assert (
        main(
            [
                "eval",
                "--format",
                "davis",
                "--dataset",
                str(tmp_path / "none.pkl"),
                "--baseline-only",
                "--quiet",
            ]
        )
        == 2
    )
    assert "does not exist" in capsys.readouterr().err
    empty = tmp_path / "empty.pkl"
    with open(empty, "wb") as f:
        pickle.dump({}, f)
    assert (
        main(["eval", "--format", "davis", "--dataset", str(empty), "--baseline-only", "--quiet"])
        == 2
    )
    assert "error" in capsys.readouterr().err
