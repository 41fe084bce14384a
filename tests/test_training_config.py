"""TrainConfig defaults (both families' recipes), JSON round trip (the family kept; old
configs without one are PIPs), validation before compute, and the schedule."""

import dataclasses
import json
import re

import jax.numpy as jnp
import numpy as np
import pytest

from pips_jax.config import ModelConfig, Pips2Config
from pips_jax.errors import InputError
from pips_jax.training import TrainConfig
from pips_jax.training.config import check_family_flags
from pips_jax.training.trainer import make_optimizer, one_cycle_schedule
from small_model import SMALL
from training_helpers import TINY


def test_defaults_are_the_original_recipe():
    cfg = TrainConfig()
    assert (cfg.batch_size, cfg.model.S, cfg.num_points, cfg.iters) == (4, 8, 768, 4)
    assert cfg.crop == (384, 512) and cfg.feature_size == (96, 128)
    assert (cfg.lr, cfg.weight_decay, cfg.eps, cfg.grad_clip) == (5e-4, 1e-4, 1e-8, 5.0)
    assert (cfg.warmup_fraction, cfg.gamma, cfg.vis_weight) == (0.05, 0.8, 10.0)
    assert cfg.model == ModelConfig()


def test_json_round_trip():
    cfg = dataclasses.replace(TINY, crop=(32, 64), seed=7, augment=False)
    again = TrainConfig.from_json(cfg.to_json())
    assert again == cfg and again.model == SMALL and again.crop == (32, 64)
    assert isinstance(again.model.encoder_dims, tuple)
    assert cfg.differences(again) == []
    other = dataclasses.replace(cfg, lr=1.0, model=dataclasses.replace(SMALL, latent_dim=24))
    assert cfg.differences(other) == ["model.latent_dim", "lr"]


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"crop": (4, 32)}, "crop: expected H and W >= 8 (stride 4 x 2^1"),
        ({"crop": (30, 32)}, "crop: expected H and W multiples of the stride 4, found 30x32"),
        ({"num_points": 842}, "num_points: expected at most 841 points for a 32x32 crop"),
        ({"lr": 0.0}, "lr: expected a number > 0.0, found 0.0"),
        ({"lr": float("nan")}, "lr: expected a number > 0.0, found nan"),
        ({"batch_size": 0}, "batch_size: expected an integer >= 1, found 0"),
        ({"gamma": 1.5}, "gamma: expected a number > 0.0 and <= 1.0, found 1.5"),
        ({"eval_frames": 4}, "eval_frames: expected at least S=8 frames, found 4"),
        ({"crop": "32x32"}, "crop: expected (H, W) integers, found '32x32'"),
    ],
)
def test_bad_configs_raise_one_line_input_errors(changes, message):
    with pytest.raises(InputError, match=r"^TrainConfig\.") as err:
        dataclasses.replace(TINY, **changes)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_batch_must_split_over_the_devices():
    TINY.validate(2)
    with pytest.raises(
        InputError, match="batch_size: expected a multiple of the 3 devices, found 2"
    ):
        TINY.validate(3)


def test_unknown_fields_are_rejected():
    with pytest.raises(InputError, match=r"unknown TrainConfig fields \['learning_rate'\]"):
        TrainConfig.from_dict({"learning_rate": 1.0})
    with pytest.raises(InputError, match="unknown ModelConfig fields"):
        TrainConfig.from_dict({"model": {"width": 3}})


def test_one_cycle_schedule_values():
    cfg = dataclasses.replace(TINY, lr=1e-3, num_steps=100)
    sched = one_cycle_schedule(cfg)
    # warm-up: round(0.05 * 100) = 5 steps from 1e-3 / 25 = 4e-5 up to 1e-3
    assert cfg.warmup_steps == 5
    assert float(sched(0)) == pytest.approx(4e-5, rel=1e-5)
    assert float(sched(5)) == pytest.approx(1e-3, rel=1e-5)
    # halfway up: (4e-5 + 1e-3) / 2 = 5.2e-4 at step 2.5 -> step 2 is 4e-5 + 2/5 * 9.6e-4
    assert float(sched(2)) == pytest.approx(4e-5 + 0.4 * 9.6e-4, rel=1e-5)
    # anneal: 1e-3 at step 5 down to 4e-5 / 1e4 = 4e-9 at step 99 (94 steps), midpoint 52
    assert float(sched(99)) == pytest.approx(4e-9, rel=1e-3)
    assert float(sched(52)) == pytest.approx((1e-3 + 4e-9) / 2, rel=1e-5)


def test_first_adamw_step_by_hand():
    # eps = 1 makes Adam's first step depend on the gradient's size, so clipping shows
    cfg = dataclasses.replace(TINY, lr=1e-3, num_steps=100, weight_decay=0.1, eps=1.0)
    opt = make_optimizer(cfg)
    params = {"w": jnp.array([2.0, -1.0])}
    state = opt.init(params)
    # g = (30, -40) has norm 50 and is clipped to norm 5: (3, -4). First Adam step:
    # m_hat = g, sqrt(v_hat) = |g|: g / (|g| + 1) = (3/4, -4/5). With lr_0 = 1e-3 / 25
    # = 4e-5 and decoupled decay 0.1 * w = (0.2, -0.1):
    # update = -4e-5 * (0.75 + 0.2, -0.8 - 0.1) = (-3.8e-5, 3.6e-5)
    # (unclipped it would be -4e-5 * (30/31 + 0.2, -40/41 - 0.1) = (-4.67e-5, 4.30e-5))
    updates, _ = opt.update({"w": jnp.array([30.0, -40.0])}, state, params)
    np.testing.assert_allclose(np.asarray(updates["w"]), [-3.8e-5, 3.6e-5], rtol=1e-5)


# ------------------------------------------------------------------ PIPs++
TINY2_MODEL = Pips2Config(
    S=4, latent_dim=16, corr_levels=2, corr_radius=1, encoder_dims=(8, 8, 8, 8),
    encoder_stem_dim=8, delta_dim=8, delta_blocks=2, embed_dim=8,
)  # fmt: skip


def test_pips2_recipe_is_the_original_train_py():
    cfg = TrainConfig.recipe("pips2")
    # aharley/pips2 train.py main(): B=2, S=36, N=64, iters=6, crop_size=(384, 512),
    # lr=5e-4, max_iters=200000, weight_decay=1e-6, eps 1e-8, OneCycleLR pct_start=0.1,
    # clip_grad_norm_ 5.0, sequence_loss gamma 0.8, keep_latest=2
    assert (cfg.batch_size, cfg.model.S, cfg.num_points, cfg.iters) == (2, 36, 64, 6)
    assert cfg.crop == (384, 512) and cfg.feature_size == (48, 64)  # stride 8
    assert (cfg.lr, cfg.weight_decay, cfg.eps, cfg.grad_clip) == (5e-4, 1e-6, 1e-8, 5.0)
    assert (cfg.warmup_fraction, cfg.gamma, cfg.num_steps) == (0.1, 0.8, 200_000)
    assert cfg.keep_checkpoints == 2 and cfg.random_init and cfg.family == "pips2"
    assert cfg.model == Pips2Config(S=36)
    assert TrainConfig.recipe("pips") == TrainConfig()
    # fields on top; the model as a config or as fields over the recipe's
    assert TrainConfig.recipe("pips2", iters=3).iters == 3
    assert TrainConfig.recipe("pips2", model={"delta_blocks": 4}).model == Pips2Config(
        S=36, delta_blocks=4
    )
    with pytest.raises(InputError, match="expected a Pips2Config for the pips2 recipe"):
        TrainConfig.recipe("pips2", model=SMALL)


def test_json_round_trip_keeps_the_family():
    cfg = TrainConfig.recipe("pips2", model=TINY2_MODEL, crop=(64, 64), random_init=False)
    d = json.loads(cfg.to_json())
    assert d["model"]["family"] == "pips2" and d["random_init"] is False
    assert "vis_weight" not in d and "remat" not in d  # PIPs' fields are not written
    again = TrainConfig.from_json(cfg.to_json())
    assert again == cfg and isinstance(again.model, Pips2Config) and again.model == TINY2_MODEL
    assert cfg.differences(again) == []
    d_pips = json.loads(TINY.to_json())
    assert d_pips["model"]["family"] == "pips" and "random_init" not in d_pips
    assert cfg.differences(TINY)[0] == "model.family"


def test_old_configs_without_a_family_are_pips():
    old = TINY.to_dict()
    del old["model"]["family"]  # as every run folder made before PIPs++
    assert TrainConfig.from_dict(old) == TINY
    assert TrainConfig.from_dict(json.loads(json.dumps(old))).model == SMALL
    with pytest.raises(InputError, match="model family: expected one of pips, pips2"):
        TrainConfig.from_dict({**old, "model": {**old["model"], "family": "pips3"}})
    with pytest.raises(InputError, match="unknown Pips2Config fields"):
        TrainConfig.from_dict({**old, "model": {**old["model"], "family": "pips2"}})


@pytest.mark.parametrize(
    "family, changes, message",
    [
        ("pips2", {"vis_weight": 5.0}, "vis_weight: applies to PIPs only; this config trains PIPs++"),
        ("pips2", {"remat": False}, "remat: applies to PIPs only; this config trains PIPs++"),
        ("pips", {"random_init": False}, "random_init: applies to PIPs++ only; this config trains PIPs"),
        ("pips2", {"eval_frames": 1}, "eval_frames: expected at least 2 frames, found 1"),
        ("pips2", {"crop": (56, 64)}, "crop: expected H and W >= 64 (stride 8 x 2^3"),
    ],
)  # fmt: skip
def test_fields_of_the_other_family_are_refused(family, changes, message):
    with pytest.raises(InputError, match=r"^TrainConfig\.") as err:
        TrainConfig.recipe(family, **{"crop": (64, 64), **changes})
    assert message in str(err.value) and "\n" not in str(err.value)
    # PIPs++ runs any window: held-out clips may be shorter than its training S
    assert TrainConfig.recipe("pips2", eval_frames=8).model.S == 36


def test_family_flags_are_named_in_the_refusal():
    check_family_flags("pips2", {"lr": 1.0, "random_init": False}, {"S": 4, "delta_dim": 8})
    for family, fields, model, message in [
        ("pips2", {"vis_weight": 1.0}, {}, "--vis-weight applies to PIPs only; this run trains PIPs++"),
        ("pips2", {"remat": False}, {}, "--no-remat applies to PIPs only; this run trains PIPs++"),
        ("pips2", {}, {"mixer_dim": 8}, "--mixer-dim applies to PIPs only; this run trains PIPs++"),
        ("pips", {}, {"delta_blocks": 2}, "--delta-blocks applies to PIPs++ only; this run trains PIPs"),
        ("pips", {"random_init": False}, {}, "--no-random-init applies to PIPs++ only"),
    ]:  # fmt: skip
        with pytest.raises(InputError, match=re.escape(message)):
            check_family_flags(family, fields, model)
