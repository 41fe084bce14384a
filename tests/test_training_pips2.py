"""Training PIPs++ (``--model pips2``): the train step (sequence loss only, the
original's noisy starting trajectories), a fixed batch that overfits, resume, init from
a converted PIPs++ file, the refusals of the other family's weights and flags, and the
command line end to end with the held-out evaluation.

Every run shares TINY2's compiled train step (the same step fields, see
``trainer.STEP_FIELDS``), so it is compiled once per test process."""

import dataclasses
import json

import jax
import numpy as np
import pytest

from pips_jax import InputError, Pips
from pips_jax.checkpoint.store import load_params, save_params
from pips_jax.cli import main
from pips_jax.config import Pips2Config
from pips_jax.training import TrainConfig, train
from pips_jax.training.data import ClipSpec, make_batch
from pips_jax.training.trainer import (
    METRICS,
    init_params,
    init_state,
    make_mesh,
    make_train_step,
    random_trajectories,
    replicate,
    shard_batch,
)
from small_model import SMALL
from training_helpers import TINY, train_records

TINY2_MODEL = Pips2Config(
    S=4, latent_dim=16, corr_levels=2, corr_radius=1, encoder_dims=(8, 8, 8, 8),
    encoder_stem_dim=8, delta_dim=8, delta_blocks=2, embed_dim=8,
)  # fmt: skip
# 2 clips of 4 frames at 64x64, 8 points, 2 iterations, 8 steps; lr raised so that a
# fixed batch overfits within them. The rest is PIPs++'s recipe (weight decay 1e-6,
# 10% warm-up, noisy starting trajectories).
TINY2 = TrainConfig.recipe(
    "pips2", model=TINY2_MODEL, batch_size=2, num_points=8, iters=2, crop=(64, 64),
    num_steps=8, lr=2e-3, log_every=1, checkpoint_every=100, eval_every=0, eval_clips=1,
    eval_size=(64, 64), eval_frames=8,
)  # fmt: skip
#: The metrics of a PIPs++ run's log (no vis or score: it has neither loss).
COMPARED = ("loss", "seq", "lr", "grad_norm", "ate_vis")
TINY2_FLAGS = [
    "--model", "pips2", "--steps", "8", "--batch-size", "2", "--num-points", "8",
    "--crop", "64x64", "--iters", "2", "--lr", "2e-3", "--S", "4", "--latent-dim", "16",
    "--corr-levels", "2", "--corr-radius", "1", "--encoder-dims", "8,8,8,8",
    "--stem-dim", "8", "--delta-dim", "8", "--delta-blocks", "2", "--embed-dim", "8",
    "--log-every", "1", "--workers", "0", "--quiet",
]  # fmt: skip


def write_tiny2_params(path):
    """TINY2's initial parameters (seed 0) as a converted PIPs++ file."""
    return save_params(path, jax.device_get(init_params(TINY2_MODEL, 0)), TINY2_MODEL)


@pytest.fixture(scope="module")
def init_file(tmp_path_factory):
    return write_tiny2_params(tmp_path_factory.mktemp("init2") / "init.safetensors")


@pytest.fixture(scope="module")
def straight(tmp_path_factory, init_file):
    """An uninterrupted run of TINY2's 8 steps from the init file: the reference."""
    run = tmp_path_factory.mktemp("straight2")
    summary = train(TINY2, run, init=init_file, workers=0, progress=False)
    assert summary["step"] == 8 and summary["params"] is not None
    return run, train_records(run)


def _same_steps(records, reference):
    assert [r["step"] for r in records] == [r["step"] for r in reference[: len(records)]]
    for r, ref in zip(records, reference, strict=False):
        for k in COMPARED:
            assert r[k] == pytest.approx(ref[k], rel=1e-6, abs=1e-9), (r["step"], k)


def test_random_trajectories_are_the_originals_noisy_starts():
    b, s, n, h, w = 2, 5, 400, 48, 64
    rng = np.random.default_rng(0)
    trajs = rng.uniform(-10, 80, (b, s, n, 2)).astype(np.float32)
    start = np.asarray(random_trajectories(jax.random.key(3), trajs, (h, w)))
    again = np.asarray(random_trajectories(jax.random.key(3), trajs, (h, w)))
    np.testing.assert_array_equal(start, again)  # a function of the key
    np.testing.assert_array_equal(start[:, 0], trajs[:, 0])  # frame 0 at the query
    still = np.all(start == start[:, :1], axis=(1, 3))  # (B, N): zero velocity
    assert 0.4 < still.mean() < 0.6  # a fair coin per point
    # the others: c * uniform + (1 - c) * gt with c in [0, 1), uniform x in [0, W-1]
    # and y in [0, H-1]: between the ground truth and that box
    moving = np.broadcast_to(~still[:, None, :, None], start.shape)[:, 1:]
    gt, got = trajs[:, 1:][moving].reshape(-1, 2), start[:, 1:][moving].reshape(-1, 2)
    box = np.array([w - 1.0, h - 1.0])
    assert np.all(got >= np.minimum(gt, 0) - 1e-4) and np.all(got <= np.maximum(gt, box) + 1e-4)
    assert np.abs(got - gt).mean() > 1.0  # and really moved


def _step_inputs(params):
    mesh = make_mesh()
    state = replicate(init_state(TINY2, params), mesh)
    batch = shard_batch(make_batch(ClipSpec.from_config(TINY2), 0, 0, TINY2.batch_size), mesh)
    return mesh, state, batch


def test_one_pips2_step_is_finite_and_changes_every_parameter(init_file):
    params, _, _ = load_params(init_file)
    mesh, state, batch = _step_inputs(params)
    state, m = make_train_step(TINY2, mesh)(state, batch, jax.random.key(0))
    m = {k: float(v) for k, v in m.items()}
    assert sorted(m) == sorted(METRICS["pips2"]) and "vis" not in m and "score" not in m
    assert all(np.isfinite(m[k]) for k in ("loss", "grad_norm", "ate_vis"))
    assert m["loss"] == m["seq"] > 0
    assert m["lr"] == pytest.approx(TINY2.lr / 25, rel=1e-5)
    assert int(state.step) == 1
    leaves = jax.tree_util.tree_leaves_with_path(params)
    unchanged = [
        jax.tree_util.keystr(p)
        for (p, a), b in zip(leaves, jax.tree_util.tree_leaves(state.params), strict=True)
        if np.array_equal(a, np.asarray(b))
    ]
    assert unchanged == []


def test_pips2_fixed_batch_overfits(init_file):
    # The same batch and key every step: the same starting trajectories, so the loss
    # measures how well the parameters fit them.
    params, _, _ = load_params(init_file)
    mesh, state, batch = _step_inputs(params)
    step = make_train_step(TINY2, mesh)
    losses = []
    for _ in range(TINY2.num_steps):
        state, m = step(state, batch, jax.random.key(0))
        losses.append(float(m["loss"]))
    assert np.all(np.isfinite(losses))
    print(losses)
    assert min(losses[-3:]) < 0.8 * losses[0], losses


def test_pips2_resume_continues_exactly(tmp_path, init_file, straight):
    run, reference = straight
    cfg = dataclasses.replace(TINY2, checkpoint_every=3)
    first = train(cfg, tmp_path, init=init_file, until_step=4, workers=0, progress=False)
    assert first["step"] == 4 and first["checkpoint_step"] == 4
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model"]["family"] == "pips2"
    second = train(None, tmp_path, resume=True, workers=0, progress=False)
    assert second["step"] == 8
    records = train_records(tmp_path)
    assert len(records) == 8
    _same_steps(records, reference)
    # the same final state as the uninterrupted run
    a, config_a, _ = load_params(run / "params.safetensors")
    b, config_b, _ = load_params(tmp_path / "params.safetensors")
    assert config_a == config_b == TINY2_MODEL
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)


def test_the_other_familys_weights_are_refused_before_compute(tmp_path, straight):
    run, _ = straight
    shapes = Pips(SMALL).param_shapes()  # PIPs weights, made without compiling
    zeros = jax.tree_util.tree_map(lambda s: np.zeros(s.shape, s.dtype), shapes)
    pips_file = save_params(tmp_path / "pips.safetensors", zeros, SMALL)
    with pytest.raises(
        InputError,
        match=r"init .*pips.safetensors holds a PIPs model \(pips\); this run trains PIPs\+\+",
    ):
        train(TINY2, tmp_path / "a", init=pips_file, workers=0, progress=False)
    with pytest.raises(
        InputError, match=r"holds a PIPs\+\+ model \(pips2\); this run trains PIPs "
    ):
        train(TINY, tmp_path / "b", init=run, workers=0, progress=False)
    with pytest.raises(InputError, match=r"resume: the checkpoint in .* holds a PIPs\+\+ model"):
        train(TINY, run, resume=True, workers=0, progress=False)
    other = dataclasses.replace(TINY2_MODEL, delta_dim=16)
    with pytest.raises(InputError, match=r"init .* does not fit the model .*delta_block"):
        train(dataclasses.replace(TINY2, model=other), tmp_path / "c", init=run, workers=0)
    for name in ("a", "b", "c"):
        assert not (tmp_path / name / "checkpoints").exists()


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory, init_file):
    run = tmp_path_factory.mktemp("cli2")
    args = ["train", "--out", str(run), "--init", str(init_file), *TINY2_FLAGS]
    args += ["--eval-every", "8", "--eval-clips", "1", "--eval-size", "64x64", "--eval-frames", "8"]
    assert main(args) == 0
    return run


def test_cli_trains_pips2_from_an_init_file_end_to_end(cli_run, straight, capsys):
    _, reference = straight
    cfg = json.loads((cli_run / "config.json").read_text())
    assert cfg["model"] == {"family": "pips2", **TINY2_MODEL.to_dict()}
    assert TrainConfig.from_dict(cfg) == dataclasses.replace(
        TINY2, eval_every=8, checkpoint_every=1000
    )
    records = train_records(cli_run)
    assert all("vis" not in r and "score" not in r for r in records)
    _same_steps(records, reference)  # the flags made TINY2 and --init its init file
    (held_out,) = [
        r for r in map(json.loads, (cli_run / "metrics.jsonl").open()) if r["type"] == "eval"
    ]
    assert held_out["step"] == 8 and 0 <= held_out["average_jaccard"] <= 1
    assert "d_avg" in held_out and "zero_motion_survival_16" in held_out
    assert (cli_run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    _, config, meta = load_params(cli_run / "params.safetensors")
    assert config == TINY2_MODEL and "step 8" in meta["source"]
    # the run is complete: resuming it (its family read from the run) does nothing more
    assert main(["train", "--out", str(cli_run), "--resume", "--quiet", "--workers", "0"]) == 0
    assert "trained to step 8 of 8" in capsys.readouterr().out


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--model", "pips2", "--mixer-dim", "32"], "--mixer-dim applies to PIPs only; this run trains PIPs++"),
        (["--model", "pips2", "--no-remat"], "--no-remat applies to PIPs only; this run trains PIPs++"),
        (["--model", "pips2", "--vis-weight", "5"], "--vis-weight applies to PIPs only; this run trains PIPs++"),
        (["--delta-dim", "8"], "--delta-dim applies to PIPs++ only; this run trains PIPs"),
        (["--model", "pips", "--no-random-init"], "--no-random-init applies to PIPs++ only; this run trains PIPs"),
    ],
)  # fmt: skip
def test_cli_refuses_the_other_familys_flags(tmp_path, capsys, flags, message):
    assert main(["train", "--out", str(tmp_path / "run"), "--quiet", *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("pips-jax train: error: ") and "\n" not in err
    assert message in err
    assert not (tmp_path / "run").exists()  # refused before anything was made


def test_cli_family_of_a_config_file_or_a_run(tmp_path, cli_run, capsys):
    config = tmp_path / "pips2.json"
    config.write_text(TINY2.to_json())
    out = str(tmp_path / "run")
    assert main(["train", "--out", out, "--config", str(config), "--mixer-depth", "2"]) == 2
    assert "--mixer-depth applies to PIPs only; this run trains PIPs++" in capsys.readouterr().err
    assert main(["train", "--out", out, "--config", str(config), "--model", "pips"]) == 2
    err = capsys.readouterr().err
    assert f"--model pips: --config {config} trains PIPs++ (pips2)" in err
    assert main(["train", "--out", str(cli_run), "--resume", "--model", "pips", "--quiet"]) == 2
    assert f"--model pips: the run in {cli_run} trains PIPs++ (pips2)" in capsys.readouterr().err
