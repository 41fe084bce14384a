"""Hand-worked cases for the TAP-Vid metrics."""

from __future__ import annotations

import numpy as np
import pytest

from pips_jax.errors import InputError
from pips_jax.evaluation import (
    aggregate_metrics,
    compute_tapvid_metrics,
    trajectory_errors,
    zero_motion_prediction,
)
from pips_jax.evaluation.metrics import THRESHOLDS, evaluation_mask

KEYS = (
    ["occlusion_accuracy", "average_jaccard", "average_pts_within_thresh"]
    + [f"pts_within_{d}" for d in THRESHOLDS]
    + [f"jaccard_{d}" for d in THRESHOLDS]
)


def _query(t: int, tracks: np.ndarray) -> np.ndarray:
    """(1, n, 3) queries (t, y, x) at frame t of (1, n, T, 2) tracks."""
    xy = tracks[:, :, t]
    q = np.stack([np.full(xy.shape[:2], float(t)), xy[..., 1], xy[..., 0]], axis=-1)
    return q


def _metrics(q, gt_occ, gt, pred_occ, pred, mode="first", **kw):
    return compute_tapvid_metrics(
        q,
        np.asarray(gt_occ, bool),
        np.asarray(gt, float),
        np.asarray(pred_occ, bool),
        np.asarray(pred, float),
        mode,
        **kw,
    )


def test_perfect_prediction():
    rng = np.random.default_rng(0)
    b, n, t = 2, 5, 8
    gt = rng.uniform(0, 256, (b, n, t, 2))
    occ = rng.uniform(size=(b, n, t)) < 0.3
    occ[..., 0] = False
    q = np.concatenate([np.zeros((b, n, 1)), gt[:, :, 0, ::-1]], axis=-1)
    for mode in ("first", "strided"):
        m = _metrics(q, occ, gt, occ, gt, mode)
        assert set(m) == set(KEYS)
        for k in KEYS:
            assert m[k].shape == (b,)
            np.testing.assert_array_equal(m[k], 1.0)


def test_all_occluded_and_predicted_occluded():
    gt = np.zeros((1, 2, 4, 2))
    occ = np.ones((1, 2, 4), bool)
    q = np.zeros((1, 2, 3))
    m = _metrics(q, occ, gt, occ, gt + 100.0)
    assert m["occlusion_accuracy"][0] == 1.0
    # no visible evaluation point and no predicted-visible one: undefined -> NaN
    for d in THRESHOLDS:
        assert np.isnan(m[f"pts_within_{d}"][0])
        assert np.isnan(m[f"jaccard_{d}"][0])
    assert np.isnan(m["average_jaccard"][0])


@pytest.mark.parametrize("off", THRESHOLDS)
def test_point_off_by_exactly_a_threshold(off):
    # one track, T = 3, query at t = 0 ('first': frames 1 and 2 evaluated);
    # frame 1 is off by exactly `off` pixels, frame 2 is exact; all visible.
    gt = np.zeros((1, 1, 3, 2))
    pred = gt.copy()
    pred[0, 0, 1] = (0.0, float(off))
    vis = np.zeros((1, 1, 3), bool)
    m = _metrics(_query(0, gt), vis, gt, vis, pred)
    for d in THRESHOLDS:
        # strict <: a distance equal to d is not within d, but within the next one
        within = 0.5 if d <= off else 1.0
        assert m[f"pts_within_{d}"][0] == within
        # TP = 1, |V| = 2, FP = 1 when frame 1 is outside d -> 1/3, else 2/2
        jac = 1.0 / 3.0 if d <= off else 1.0
        np.testing.assert_allclose(m[f"jaccard_{d}"][0], jac)
    n_out = THRESHOLDS.index(off) + 1
    np.testing.assert_allclose(m["average_pts_within_thresh"][0], (0.5 * n_out + 5 - n_out) / 5)
    np.testing.assert_allclose(m["average_jaccard"][0], (n_out / 3 + 5 - n_out) / 5)
    assert m["occlusion_accuracy"][0] == 1.0


def test_false_positive_visible_prediction():
    # T = 4, query t = 0 ('first': frames 1..3). Track A visible and exact.
    # Track B visible at 0, 1, occluded at 2, 3; predicted (at the right place)
    # visible at 2 (false positive) and occluded at 3.
    gt = np.zeros((1, 2, 4, 2))
    gt_occ = np.array([[[0, 0, 0, 0], [0, 0, 1, 1]]], bool)
    pred_occ = np.array([[[0, 0, 0, 0], [0, 0, 0, 1]]], bool)
    m = _metrics(_query(0, gt), gt_occ, gt, pred_occ, gt)
    # TP = 3 + 1, |V & E| = 3 + 1, FP = 1 -> 4/5
    for d in THRESHOLDS:
        np.testing.assert_allclose(m[f"jaccard_{d}"][0], 0.8)
        assert m[f"pts_within_{d}"][0] == 1.0
    np.testing.assert_allclose(m["average_jaccard"][0], 0.8)
    np.testing.assert_allclose(m["occlusion_accuracy"][0], 5 / 6)
    # the same prediction with the right occlusion has jaccard 1: it drops by 0.2
    m_ok = _metrics(_query(0, gt), gt_occ, gt, gt_occ, gt)
    np.testing.assert_allclose(m_ok["average_jaccard"][0] - m["average_jaccard"][0], 0.2)


def test_false_negative_counts_in_denominator_only():
    # visible in gt, exact position, predicted occluded at frame 1 of frames 1..2
    gt = np.zeros((1, 1, 3, 2))
    gt_occ = np.zeros((1, 1, 3), bool)
    pred_occ = np.array([[[0, 1, 0]]], bool)
    m = _metrics(_query(0, gt), gt_occ, gt, pred_occ, gt)
    np.testing.assert_allclose(m["average_jaccard"][0], 0.5)  # TP 1 / (|V| 2 + FP 0)
    assert m["average_pts_within_thresh"][0] == 1.0
    assert m["occlusion_accuracy"][0] == 0.5


def test_evaluation_mask_first_vs_strided():
    q = np.array([[1.0, 0, 0], [0.0, 0, 0], [2.6, 0, 0]])
    np.testing.assert_array_equal(
        evaluation_mask(q, 4, "first"),
        [[0, 0, 1, 1], [0, 1, 1, 1], [0, 0, 0, 0]],
    )
    np.testing.assert_array_equal(
        evaluation_mask(q, 4, "strided"),
        [[1, 0, 1, 1], [0, 1, 1, 1], [1, 1, 1, 0]],
    )


def test_first_vs_strided_metrics():
    # T = 4, query at t = 1. Frame 0 is off by 100 px; frames 2, 3 exact; the
    # (wrong) occlusion at the query frame itself is never evaluated.
    gt = np.zeros((1, 1, 4, 2))
    pred = gt.copy()
    pred[0, 0, 0] = (100.0, 0.0)
    gt_occ = np.zeros((1, 1, 4), bool)
    pred_occ = np.array([[[0, 1, 0, 0]]], bool)
    q = _query(1, gt)
    first = _metrics(q, gt_occ, gt, pred_occ, pred, "first")  # frames 2, 3
    strided = _metrics(q, gt_occ, gt, pred_occ, pred, "strided")  # frames 0, 2, 3
    assert first["average_pts_within_thresh"][0] == 1.0
    assert first["average_jaccard"][0] == 1.0
    assert first["occlusion_accuracy"][0] == 1.0
    np.testing.assert_allclose(strided["average_pts_within_thresh"][0], 2 / 3)
    np.testing.assert_allclose(strided["average_jaccard"][0], 0.5)  # TP 2 / (3 + FP 1)
    assert strided["occlusion_accuracy"][0] == 1.0


def test_trackwise_shape_and_values():
    b, n, t = 2, 3, 5
    gt = np.zeros((b, n, t, 2))
    pred = gt.copy()
    pred[0, 1, 2:] = (3.0, 0.0)  # track (0, 1): frames 2..4 of 1..4 off by 3
    gt_occ = np.zeros((b, n, t), bool)
    gt_occ[1, 2, 1:] = True  # track (1, 2): no visible evaluation frame
    q = _query(0, gt)
    m = _metrics(q, gt_occ, gt, gt_occ, pred, get_trackwise_metrics=True)
    for k in KEYS:
        assert m[k].shape == (b, n)
    assert m["pts_within_2"][0, 1] == 0.25
    assert m["pts_within_4"][0, 1] == 1.0
    np.testing.assert_allclose(m["jaccard_2"][0, 1], 1 / 7)  # TP 1 / (4 + FP 3)
    assert np.isnan(m["pts_within_1"][1, 2])
    assert np.isnan(m["jaccard_1"][1, 2])  # also nothing predicted visible
    assert m["occlusion_accuracy"][1, 2] == 1.0
    # per-video values sum over the tracks of their own video only
    per_video = _metrics(q, gt_occ, gt, gt_occ, pred)
    assert per_video["pts_within_2"][0] == 9 / 12
    assert per_video["pts_within_2"][1] == 1.0


def test_per_video_independent_of_batch():
    rng = np.random.default_rng(1)
    gt = rng.uniform(0, 64, (3, 4, 6, 2))
    pred = gt + rng.normal(0, 3, gt.shape)
    gt_occ = rng.uniform(size=(3, 4, 6)) < 0.3
    pred_occ = rng.uniform(size=(3, 4, 6)) < 0.3
    q = np.concatenate([rng.integers(0, 6, (3, 4, 1)), gt[:, :, 0, ::-1]], axis=-1)
    m = _metrics(q, gt_occ, gt, pred_occ, pred, "strided")
    for i in range(3):
        s = slice(i, i + 1)
        mi = _metrics(q[s], gt_occ[s], gt[s], pred_occ[s], pred[s], "strided")
        for k in KEYS:
            np.testing.assert_allclose(m[k][i], mi[k][0])


def test_zero_motion_baseline():
    q = np.array([[[1.0, 2.0, 3.0]]])  # t = 1, y = 2, x = 3
    pred, pred_occ = zero_motion_prediction(q, 4)
    assert pred.shape == (1, 1, 4, 2) and pred_occ.shape == (1, 1, 4)
    np.testing.assert_array_equal(pred[0, 0], [[3.0, 2.0]] * 4)
    assert pred_occ.dtype == bool and not pred_occ.any()
    # gt moves down: 0, 0, 3, 10 px from the query position; 'first' evaluates 2, 3
    gt = np.array([[[[3, 2], [3, 2], [3, 5], [3, 12]]]], float)
    gt_occ = np.zeros((1, 1, 4), bool)
    m = _metrics(q, gt_occ, gt, pred_occ, pred)
    expect_within = {1: 0.0, 2: 0.0, 4: 0.5, 8: 0.5, 16: 1.0}
    expect_jac = {1: 0.0, 2: 0.0, 4: 1 / 3, 8: 1 / 3, 16: 1.0}
    for d in THRESHOLDS:
        np.testing.assert_allclose(m[f"pts_within_{d}"][0], expect_within[d])
        np.testing.assert_allclose(m[f"jaccard_{d}"][0], expect_jac[d])
    np.testing.assert_allclose(m["average_pts_within_thresh"][0], 0.4)
    np.testing.assert_allclose(m["average_jaccard"][0], 1 / 3)
    assert m["occlusion_accuracy"][0] == 1.0


def test_trajectory_errors_hand_worked():
    gt = np.zeros((1, 1, 3, 2))
    pred = np.array([[[[3, 4], [0, 0], [6, 8]]]], float)  # errors 5, 0, 10
    gt_occ = np.array([[[0, 0, 1]]], bool)
    e = trajectory_errors(gt, gt_occ, pred)  # all frames
    assert e["ate_visible"][0] == 2.5
    assert e["ate_occluded"][0] == 10.0
    assert e["ate_all"][0] == 5.0
    assert e["median_error_visible"][0] == 2.5
    e = trajectory_errors(gt, gt_occ, pred, query_points=np.zeros((1, 1, 3)))
    assert e["ate_visible"][0] == 0.0  # frame 1 only
    assert e["ate_occluded"][0] == 10.0
    assert e["ate_all"][0] == 5.0
    assert e["median_error_visible"][0] == 0.0
    e = trajectory_errors(gt, np.ones((1, 1, 3), bool), pred)
    assert np.isnan(e["ate_visible"][0]) and np.isnan(e["median_error_visible"][0])
    for v in e.values():
        assert v.shape == (1,)


def test_aggregate_metrics_is_mean_over_videos_skipping_nan():
    agg = aggregate_metrics(
        [
            {"a": np.array([1.0, 0.0]), "b": np.array([np.nan, np.nan])},
            {"a": np.array([np.nan]), "b": np.array([np.nan])},
            {"a": np.array([0.5]), "b": np.array([np.nan])},
        ]
    )
    assert agg["a"] == 0.5
    assert np.isnan(agg["b"])
    with pytest.raises(InputError):
        aggregate_metrics([])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"query_mode": "last"}, "query_mode"),
        ({"pred_tracks": np.zeros((1, 2, 4, 3))}, "pred_tracks"),
        ({"pred_tracks": np.zeros((1, 2, 3, 2))}, "pred_tracks"),
        ({"gt_occluded": np.zeros((1, 2, 3), bool)}, "gt_occluded"),
        ({"pred_occluded": np.zeros((1, 2, 4))}, "pred_occluded"),
        ({"query_points": np.zeros((1, 3, 3))}, "query_points"),
        ({"query_points": np.full((1, 2, 3), 4.0)}, r"query frames in \[0, 3\]"),
        ({"query_points": np.full((1, 2, 3), np.nan)}, "finite"),
    ],
)
def test_bad_input_raises(kwargs, match):
    args = {
        "query_points": np.zeros((1, 2, 3)),
        "gt_occluded": np.zeros((1, 2, 4), bool),
        "gt_tracks": np.zeros((1, 2, 4, 2)),
        "pred_occluded": np.zeros((1, 2, 4), bool),
        "pred_tracks": np.zeros((1, 2, 4, 2)),
        "query_mode": "first",
    }
    args.update(kwargs)
    with pytest.raises(InputError, match=match):
        compute_tapvid_metrics(**args)
