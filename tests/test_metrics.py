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
from pips_jax.evaluation.metrics import THRESHOLDS, evaluation_mask, pips2_metrics

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


# --- PIPs++ (aharley/pips2 test_on_tap.py) metrics -------------------------------------

PIPS2_KEYS = ("d_1", "d_2", "d_4", "d_8", "d_16", "d_avg", "survival_16", "median_l2")


def _pips2_d(k: int, m: int) -> float:
    """The original's d_thr by hand: 100 * k / (EPS + m), k of m visible points within."""
    return 100.0 * k / (m + 1e-6)


def _pips2(gt, vis, pred, image_size=(256, 256)):
    return pips2_metrics(
        np.asarray(gt, float), np.asarray(vis, bool), np.asarray(pred, float), image_size
    )


def test_pips2_hand_worked_512():
    # 512x512 input: every distance halves at 256x256.
    # A: visible everywhere; offsets (0,0) (3,0) (0,6) (6,8) -> 0, 1.5, 3, 5 at 256.
    # B: offsets (0,0) (100,0) (40,0) (0,-2) -> 0, 50, 20, 1; invisible at frame 1.
    t = np.arange(4.0)
    gt = np.zeros((2, 4, 2))
    gt[0] = np.stack([100 + 8 * t, np.full(4, 40.0)], axis=-1)
    gt[1] = np.stack([np.full(4, 200.0), 300 - 4 * t], axis=-1)
    pred = gt.copy()
    pred[0] += [[0, 0], [3, 0], [0, 6], [6, 8]]
    pred[1] += [[0, 0], [100, 0], [40, 0], [0, -2]]
    vis = np.array([[1, 1, 1, 1], [1, 0, 1, 1]], bool)
    m = pips2_metrics(gt, vis, pred, (512, 512))
    assert tuple(m) == PIPS2_KEYS
    assert all(type(v) is float for v in m.values())
    # frames 1..3, visible: A 1.5, 3, 5; B 20, 1 -> m = 5 (B's 50 is invisible)
    assert m["d_1"] == 0.0  # strict <: B's 1.0 is not within 1
    expect = {2: 2, 4: 3, 8: 4, 16: 4}  # {1.5, 1}, + 3, + 5, 20 is not within 16
    for thr, k in expect.items():
        # rel 1e-7 tells the EPS (2e-7 relative here) from float32 rounding (< 5e-8)
        assert m[f"d_{thr}"] == pytest.approx(_pips2_d(k, 5), rel=1e-7)
    assert m["d_avg"] == pytest.approx(_pips2_d(0 + 2 + 3 + 4 + 4, 5) / 5, rel=1e-7)  # ~52
    # survival: A never > 16 -> 1 1 1 1; B: frame 1 is invisible so its 50 is "ok",
    # frame 2 is 20 > 16 and visible -> 1 1 0 0 (the 1.0 at frame 3 does not revive it)
    assert m["survival_16"] == 6 / 8 * 100  # 75.0, exact in float32
    # median over visible frames, frame 0 included:
    # A {0, 1.5, 3, 5} (even: (1.5 + 3) / 2 = 2.25); B {0, 20, 1} (odd: 1); mean 1.625
    assert m["median_l2"] == 1.625


def test_pips2_scales_x_by_width_and_y_by_height():
    # H = 128, W = 1024: x divides by W / 256 = 4, y by H / 256 = 0.5.
    # offsets (8, 0) and (0, 1) are both 2 px at 256; with (H, W) swapped they would
    # be 16 and 4.
    gt = np.array([[[500, 60], [500, 60], [500, 60]]], float)
    pred = gt + [[0, 0], [8, 0], [0, 1]]
    m = _pips2(gt, np.ones((1, 3)), pred, (128, 1024))
    assert m["d_1"] == 0.0 and m["d_2"] == 0.0  # 2 is not < 2
    for thr in (4, 8, 16):
        assert m[f"d_{thr}"] == pytest.approx(_pips2_d(2, 2), rel=1e-7)
    assert m["survival_16"] == 100.0
    assert m["median_l2"] == 2.0  # {0, 2, 2}


@pytest.mark.parametrize(
    ("off", "within_16", "survival"),
    [
        (15.5, 1, 100.0),
        (16.0, 0, 100.0),  # d_16 is strict (<) and survival is strict (>): 16 is neither
        (16.5, 0, 50.0),  # lost at frame 1: cumprod 1, 0 over 2 entries
    ],
)
def test_pips2_threshold_16_boundaries(off, within_16, survival):
    gt = np.zeros((1, 2, 2))
    pred = gt.copy()
    pred[0, 1] = (0.0, off)
    m = _pips2(gt, np.ones((1, 2)), pred)
    assert m["d_16"] == pytest.approx(_pips2_d(within_16, 1), rel=1e-7)
    assert m["survival_16"] == survival
    assert m["median_l2"] == off / 2  # median of {0, off}


def test_pips2_frame_0_excluded_from_d_only():
    # one track, 256x256, x errors 30, 2, 4
    gt = np.zeros((1, 3, 2))
    pred = gt + [[30, 0], [2, 0], [4, 0]]
    m = _pips2(gt, np.ones((1, 3)), pred)
    # d over frames 1, 2 only: {2, 4}
    assert m["d_1"] == 0.0 and m["d_2"] == 0.0
    assert m["d_4"] == pytest.approx(_pips2_d(1, 2), rel=1e-7)  # ~50
    assert m["d_8"] == pytest.approx(_pips2_d(2, 2), rel=1e-7)  # ~100
    # frame 0 counts for survival: 30 > 16 and visible -> 0 0 0
    assert m["survival_16"] == 0.0
    assert m["median_l2"] == 4.0  # median {30, 2, 4}; without frame 0 it would be 3
    # the same errors with frame 0 invisible: d unchanged, the track survives and the
    # median is over {2, 4}
    m0 = _pips2(gt, [[0, 1, 1]], pred)
    for thr in THRESHOLDS:
        assert m0[f"d_{thr}"] == m[f"d_{thr}"]
    assert m0["survival_16"] == 100.0
    assert m0["median_l2"] == 3.0


def test_pips2_tracks_without_visible_frames():
    # A visible and exact; B never visible, 100 px off
    gt = np.zeros((2, 3, 2))
    pred = gt.copy()
    pred[1] += 100.0
    m = _pips2(gt, [[1, 1, 1], [0, 0, 0]], pred)
    for thr in THRESHOLDS:
        assert m[f"d_{thr}"] == pytest.approx(_pips2_d(2, 2), rel=1e-7)  # A's 2 frames
    assert m["survival_16"] == 100.0  # invisible frames never end a track
    # reduce_masked_median gives B NaN, and the mean over tracks propagates it
    assert np.isnan(m["median_l2"])
    # nothing visible: reduce_masked_mean's 0 / (0 + EPS) is 0, not NaN
    m = _pips2(gt, np.zeros((2, 3)), pred)
    for thr in THRESHOLDS:
        assert m[f"d_{thr}"] == 0.0
    assert m["d_avg"] == 0.0
    assert m["survival_16"] == 100.0
    assert np.isnan(m["median_l2"])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"gt_tracks": np.zeros((1, 2, 4, 2))}, r"gt_tracks: expected shape \(\?, \?, 2\)"),
        ({"gt_tracks": np.zeros((2, 4, 3))}, "gt_tracks"),
        ({"pred_tracks": np.zeros((2, 3, 2))}, r"pred_tracks: expected shape \(2, 4, 2\)"),
        ({"gt_visible": np.ones((4, 2), bool)}, r"gt_visible: expected shape \(2, 4\)"),
        ({"gt_visible": np.ones((2, 4))}, "boolean"),
        ({"gt_tracks": np.zeros((0, 4, 2)), "pred_tracks": np.zeros((0, 4, 2))}, "at least one"),
        ({"image_size": (256, 256, 3)}, "image_size"),
        ({"image_size": (0, 256)}, "positive"),
    ],
)
def test_pips2_bad_input_raises(kwargs, match):
    args = {
        "gt_tracks": np.zeros((2, 4, 2)),
        "gt_visible": np.ones((2, 4), bool),
        "pred_tracks": np.zeros((2, 4, 2)),
        "image_size": (256, 256),
    }
    args.update(kwargs)
    with pytest.raises(InputError, match=match):
        pips2_metrics(**args)
