"""Training losses against hand-worked values, and the memory-efficient score-map loss
against the full-maps form."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pips_jax import Pips
from pips_jax.model.correlation import build_pyramid
from pips_jax.training.losses import (
    EPS,
    PIPS2_EPS,
    balanced_ce_loss,
    logistic_loss,
    one_hot_maps,
    score_map_loss,
    score_map_loss_from_terms,
    score_map_targets,
    score_map_terms,
    score_maps,
    sequence_loss,
)
from small_model import SMALL
from training_helpers import tiny_params

# log(1 + e^-x) written out (x = 2, 0.5, 1, -3):
#   log(1 + e^-2)   = log(1.1353352832) = 0.1269280110
#   log(1 + e^-0.5) = log(1.6065306597) = 0.4740769842
#   log(1 + e^-1)   = log(1.3678794412) = 0.3132616875
#   log(1 + e^3)    = log(21.085536923) = 3.0485873860
#   log(1 + e^0)    = log 2             = 0.6931471806
#   log(1 + e^1)    = log(3.7182818285) = 1.3132616875
L_POS_2, L_POS_05, L_NEG_M1, L_NEG_3 = 0.1269280110, 0.4740769842, 0.3132616875, 3.0485873860
L_ZERO, L_NEG_1 = 0.6931471806, 1.3132616875


def test_logistic_loss_is_stable_and_exact():
    x = jnp.array([2.0, 0.5, -100.0, 100.0])
    assert np.allclose(logistic_loss(x, 1.0)[:2], [L_POS_2, L_POS_05], rtol=1e-6)
    # huge logits: no overflow; log(1 + e^100) = 100 (+ e^-100), log(1 + e^-100) = e^-100
    assert np.allclose(logistic_loss(x[2:], 1.0), [100.0, 0.0], atol=1e-6)
    assert np.allclose(logistic_loss(x[2:], -1.0), [0.0, 100.0], atol=1e-6)


def test_balanced_ce_sums_the_positive_and_negative_means():
    pred = jnp.array([2.0, -1.0, 0.5, 3.0])
    gt = jnp.array([1.0, 0.0, 1.0, 0.0])
    # positives (2, 0.5): mean (0.1269280110 + 0.4740769842) / 2 = 0.3005024976
    # negatives (-1, 3):  loss log(1 + e^pred): (0.3132616875 + 3.0485873860) / 2 = 1.6809245368
    # SUM as in the original (pos_loss + neg_loss): 1.9814270344
    assert float(balanced_ce_loss(pred, gt)) == pytest.approx(1.9814270344, rel=1e-6)
    # valid masks out the second positive: 0.1269280110 + 1.6809245368 = 1.8078525478
    valid = jnp.array([1.0, 1.0, 0.0, 1.0])
    assert float(balanced_ce_loss(pred, gt, valid)) == pytest.approx(1.8078525478, rel=1e-6)
    # a target of 0.5 is neither positive nor negative: only the first positive and
    # the negative at 3 count: 0.1269280110 + 3.0485873860 = 3.1755153970
    gt_mid = jnp.array([1.0, 0.5, 0.5, 0.0])
    assert float(balanced_ce_loss(pred, gt_mid)) == pytest.approx(3.1755153970, rel=1e-6)


def test_sequence_loss_two_iterations_with_a_masked_point():
    gt = jnp.array([[10.0, 20.0], [30.0, 40.0], [50.0, 60.0]])[None, None]  # B=S=1, N=3
    valids = jnp.array([1.0, 1.0, 0.0])[None, None]
    # iteration 0 offsets (1, 3), (-2, 0), (100, 100): mean |dx|,|dy| = 2, 1, (100 masked)
    # iteration 1 offsets (0.5, -0.5), (1, 1), (7, 7):   0.5, 1, (7 masked)
    off0 = jnp.array([[1.0, 3.0], [-2.0, 0.0], [100.0, 100.0]])
    off1 = jnp.array([[0.5, -0.5], [1.0, 1.0], [7.0, 7.0]])
    preds = jnp.stack([gt + off0, gt + off1])  # I=2
    # masked means 1.5 and 0.75; weights 0.8^1 and 0.8^0: (0.8 * 1.5 + 0.75) / 2 = 0.975
    assert float(sequence_loss(preds, gt, valids, 0.8)) == pytest.approx(0.975, rel=1e-6)
    # gamma 0.5: (0.5 * 1.5 + 0.75) / 2 = 0.75
    assert float(sequence_loss(preds, gt, valids, 0.5)) == pytest.approx(0.75, rel=1e-6)


def test_sequence_loss_of_pips2_divides_by_the_iterations_and_takes_its_eps():
    # PIPs++'s sequence_loss is PIPs' formula with EPS = 1e-6 (aharley/pips2
    # utils/basic.py) instead of 1e-8. B = N = 1, S = 2: ground truth (0, 0), (10, 10).
    gt = jnp.array([[0.0, 0.0], [10.0, 10.0]])[None, :, None]  # B, S, N, 2
    # per-frame mean |dx|,|dy| of the three iterations: (1, 4), (1, 1), (0, 0.5)
    offsets = jnp.array(
        [[[2.0, 0.0], [4.0, -4.0]], [[1.0, 1.0], [-2.0, 0.0]], [[0.0, 0.0], [0.5, -0.5]]]
    )
    preds = gt[None] + offsets[:, None, :, None]  # I=3, B, S, N, 2
    valid = jnp.ones((1, 2, 1))
    # masked means 2.5, 1, 0.25; weights 0.8^2, 0.8, 1: (1.6 + 0.8 + 0.25) / 3 = 0.883333
    for eps in (EPS, PIPS2_EPS):
        assert float(sequence_loss(preds, gt, valid, 0.8, eps)) == pytest.approx(2.65 / 3, rel=2e-6)
    # A soft mask of total 1e-6 on frame 0 (errors 1, 1, 0) shows the eps:
    # (0.64 * 1 + 0.8 * 1 + 0) / 3 = 0.48, times 1e-6 / (1e-6 + eps)
    soft = jnp.array([1e-6, 0.0])[None, :, None]
    assert float(sequence_loss(preds, gt, soft, 0.8, PIPS2_EPS)) == pytest.approx(0.24, rel=1e-5)
    assert float(sequence_loss(preds, gt, soft, 0.8, EPS)) == pytest.approx(0.48 / 1.01, rel=1e-5)
    # nothing valid: 0, not NaN
    assert float(sequence_loss(preds, gt, 0 * valid, 0.8, PIPS2_EPS)) == 0.0


def test_one_hot_target_is_at_rounded_row_y_and_column_x():
    # stride 4, feature map H'=4 rows x W'=5 columns; (x, y) input pixels
    trajs = jnp.array(
        [
            [9.0, 2.0],  # x/4 = 2.25 -> col 2; y/4 = 0.5 -> row 0 (half to even)
            [6.0, 10.0],  # x/4 = 1.5 -> col 2 (half to even); y/4 = 2.5 -> row 2
            [17.9, 12.0],  # x/4 = 4.475 -> col 4 (the last); y/4 = 3 -> row 3
            [18.1, 0.0],  # x/4 = 4.525 -> col 5, outside the 5 columns: not selected
            [-3.0, 4.0],  # x/4 = -0.75 -> col -1: not selected
            [4.0, 4.0],  # inside, but invisible below: not selected
        ]
    )[None, None]  # B=S=1
    vis = jnp.array([1.0, 1.0, 1.0, 1.0, 1.0, 0.0])[None, None]
    valids = jnp.ones_like(vis)
    cells, select = score_map_targets(trajs, vis, valids, 4, (4, 5))
    assert np.array_equal(np.asarray(select[0, 0]), [1, 1, 1, 0, 0, 0])
    assert np.array_equal(np.asarray(cells[0, 0, :3]), [[0, 2], [2, 2], [3, 4]])  # (row, col)
    maps = np.asarray(one_hot_maps(cells, (4, 5)))[0, 0]
    assert maps.shape == (6, 4, 5) and np.all(maps.sum(axis=(1, 2)) == 1)
    assert maps[0, 0, 2] == 1 and maps[1, 2, 2] == 1 and maps[2, 3, 4] == 1


def _one_map_case():
    # one point, one frame; a 3x3 map whose target cell is (row 1, col 1):
    #   x = 4.2 -> 4.2 / 4 = 1.05 -> col 1; y = 3.0 -> 0.75 -> row 1
    grid = jnp.array([[0.0, 1.0, 0.0], [-1.0, 2.0, 0.0], [0.0, 0.0, 0.0]])
    trajs = jnp.array([4.2, 3.0]).reshape(1, 1, 1, 2)
    ones = jnp.ones((1, 1, 1))
    return grid, trajs, ones


# positive: log(1 + e^-2) = 0.1269280110
# negatives, the 8 other cells: six 0s, one 1, one -1: (6 * 0.6931471806 + 1.3132616875
#   + 0.3132616875) / 8 = 5.7854064586 / 8 = 0.7231758073
SCORE_3X3 = L_POS_2 + (6 * L_ZERO + L_NEG_1 + L_NEG_M1) / 8


def test_score_map_loss_on_a_3x3_map_with_one_point():
    assert SCORE_3X3 == pytest.approx(0.8501038183, rel=1e-9)
    grid, trajs, ones = _one_map_case()
    maps = grid.reshape(1, 1, 1, 1, 3, 3)  # I, B, S, N, H', W'
    assert float(score_map_loss(maps, trajs, ones, ones, 4)) == pytest.approx(SCORE_3X3, rel=1e-6)
    # the same map from a one-level pyramid with C = 1 and a point feature of 1
    pyramid = [grid.reshape(1, 1, 3, 3, 1)]
    terms = score_map_terms(pyramid, jnp.ones((1, 1, 1, 1)), trajs, ones, ones, 4)
    assert float(terms.pos_count) == 1 and float(terms.neg_count) == 8
    assert float(terms.pos_sum) == pytest.approx(L_POS_2, rel=1e-6)
    assert float(score_map_loss_from_terms(terms)) == pytest.approx(SCORE_3X3, rel=1e-6)
    # a hidden point adds nothing
    zeros = jnp.zeros((1, 1, 1))
    hidden = score_map_terms(pyramid, jnp.ones((1, 1, 1, 1)), trajs, zeros, ones, 4)
    assert float(hidden.pos_count) == 0 and float(hidden.neg_sum) == 0


def _random_case(seed=0, b=2, s=3, n=4, h=6, w=5, c=4, levels=2):
    rng = np.random.default_rng(seed)
    fmaps = jnp.asarray(rng.normal(size=(b, s, h, w, c)), jnp.float32)
    pyramid = build_pyramid(fmaps, levels)
    feats = [jnp.asarray(rng.normal(size=(b, s, n, c)), jnp.float32) for _ in range(2)]
    trajs = jnp.asarray(rng.uniform(-6, 4 * w + 4, (b, s, n, 2)), jnp.float32)  # some outside
    vis = jnp.asarray(rng.random((b, s, n)) > 0.3, jnp.float32)
    valids = jnp.asarray(rng.random((b, s, n)) > 0.2, jnp.float32)
    return pyramid, feats, trajs, vis, valids


def test_memory_efficient_score_map_loss_equals_full_maps():
    pyramid, feats, trajs, vis, valids = _random_case()

    def full(feats):
        maps = jnp.stack([score_maps(pyramid, f) for f in feats])  # I, B, S, N, H', W'
        return score_map_loss(maps, trajs, vis, valids, 4)

    def efficient(feats):
        terms = [score_map_terms(pyramid, f, trajs, vis, valids, 4) for f in feats]
        return score_map_loss_from_terms(jax.tree_util.tree_map(lambda *t: jnp.stack(t), *terms))

    _, select = score_map_targets(trajs, vis, valids, 4, (6, 5))
    assert 0 < float(select.sum()) < select.size  # both selected and unselected points
    (l_full, g_full), (l_eff, g_eff) = jax.jit(
        lambda f: (jax.value_and_grad(full)(f), jax.value_and_grad(efficient)(f))
    )(feats)
    assert float(l_eff) == pytest.approx(float(l_full), rel=1e-6)
    for a, b in zip(g_full, g_eff, strict=True):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-5, atol=1e-7)


def test_score_maps_upsample_every_level_with_aligned_corners():
    # level 1 of a 4x4 map is 2x2; aligned corners put its 4 values on the 4 corners
    # of the 4x4 map, and (1/3, 2/3) blends in between.
    fmap = jnp.zeros((1, 1, 4, 4, 1)).at[0, 0, :2, :2, 0].set(4.0)  # level-1 top-left = 4
    maps = score_maps(build_pyramid(fmap, 2), jnp.ones((1, 1, 1, 1)))[0, 0, 0]
    # level 0 contributes the 4s; level 1 is 4 at (0, 0), 0 at the other corners
    assert float(maps[0, 0]) == pytest.approx(8.0)
    assert float(maps[0, 3]) == pytest.approx(0.0)
    assert float(maps[0, 1]) == pytest.approx(4.0 + 4.0 * 2 / 3, rel=1e-6)
    assert float(maps[1, 1]) == pytest.approx(4.0 + 4.0 * (2 / 3) ** 2, rel=1e-6)


def test_forward_train_score_terms_equal_the_full_maps_loss():
    """Through the model: the per-iteration sums inside the refinement scan give the
    loss of the stacked full maps (and recomputing the iterations changes nothing)."""
    rng = np.random.default_rng(3)
    frames = jnp.asarray(rng.integers(0, 256, (1, 8, 32, 32, 3)), jnp.uint8)
    trajs = jnp.asarray(rng.uniform(0, 31, (1, 8, 5, 2)), jnp.float32)
    vis = jnp.asarray(rng.random((1, 8, 5)) > 0.3, jnp.float32)
    valids = jnp.ones_like(vis)
    model, params = Pips(SMALL), tiny_params()

    @jax.jit
    def both(params):
        full = model.forward_train(params, frames, trajs[:, 0], 2, score_fn=score_maps)
        fn = functools.partial(score_map_terms, trajs_gt=trajs, vis=vis, valids=valids, stride=4)
        eff = model.forward_train(params, frames, trajs[:, 0], 2, score_fn=fn, remat=True)
        return (
            score_map_loss(full.scores, trajs, vis, valids, 4),
            score_map_loss_from_terms(eff.scores),
            full.coords,
            eff.coords,
        )

    full, eff, c_full, c_eff = both(params)
    assert math.isfinite(float(full))
    assert float(eff) == pytest.approx(float(full), rel=1e-5)
    np.testing.assert_array_equal(np.asarray(c_full), np.asarray(c_eff))
