"""TAP-Vid point-tracking metrics, written from their definitions (pure NumPy).

Conventions (shared with the rest of the TAP-Vid tooling):

* ``query_points`` are ``(b, n, 3)`` rows ``(t, y, x)``: the query frame index
  (a float that is rounded to the nearest integer) and the query position in pixels.
  This is TAP-Vid's order; the rest of pips_jax writes queries ``(t, x, y)``, and
  :attr:`~pips_jax.evaluation.datasets.EvalExample.tapvid_query_points` converts.
* Tracks (``gt_tracks``, ``pred_tracks``) are ``(b, n, t, 2)`` rows ``(x, y)`` in
  pixels; the benchmark evaluates at 256x256, so the distance thresholds
  ``(1, 2, 4, 8, 16)`` are pixels at that resolution.
* Occlusion flags are ``(b, n, t)`` booleans, ``True`` meaning occluded.

The metrics only depend on differences of positions, so they are the same whether the
pixel origin is the top-left pixel's corner or its centre, as long as the ground truth,
the queries and the predictions all use the same one.

Per-video values are computed for every batch element (sums over points and frames);
a dataset score is the mean of the per-video values over the videos (see
:func:`aggregate_metrics`), not a sum over all points of all videos.

Undefined ratios (0/0) are NaN, the convention of the field: a video (or, with
``get_trackwise_metrics=True``, a track) with no visible evaluation points has NaN
``pts_within_*``, and NaN ``jaccard_*`` when it also has no predicted-visible
evaluation points. :func:`aggregate_metrics` averages with ``nanmean`` so such entries
are skipped.

:func:`pips2_metrics` is a separate family: the PIPs++ paper's own numbers (``d_avg``,
``survival``, ``median_l2``), computed as the original ``aharley/pips2`` evaluation
script does, with its own conventions (one video, ``(n, t, 2)`` tracks at the input
resolution, a visibility mask rather than occlusion flags); its docstring spells them out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from pips_jax.errors import InputError

__all__ = [
    "THRESHOLDS",
    "aggregate_metrics",
    "compute_tapvid_metrics",
    "evaluation_mask",
    "pips2_metrics",
    "trajectory_errors",
    "zero_motion_prediction",
]

#: Distance thresholds (pixels at 256x256) of the TAP-Vid ``< delta^x`` metrics.
THRESHOLDS: tuple[int, ...] = (1, 2, 4, 8, 16)

_QUERY_MODES = ("first", "strided")

#: ``EPS`` added to the denominator by the original's ``utils.basic.reduce_masked_mean``.
_PIPS2_EPS = 1e-6
#: Distance (pixels at 256x256) beyond which a visible point ends PIPs++'s ``survival``.
_PIPS2_SURVIVAL_THRESHOLD = 16


def _shape_str(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ")"


def _as_bool(name: str, x: object, shape: tuple[int, ...]) -> np.ndarray:
    arr = np.asarray(x)
    if arr.shape != shape:
        raise InputError(
            f"{name}: expected shape {_shape_str(shape)}, found {_shape_str(arr.shape)}"
        )
    if arr.dtype != np.bool_ and not np.issubdtype(arr.dtype, np.integer):
        raise InputError(f"{name}: expected a boolean array, found dtype {arr.dtype}")
    return arr.astype(bool)


def _as_float(name: str, x: object, ndim: int, last: int) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != ndim or arr.shape[-1] != last:
        want = "(" + ", ".join(["?"] * (ndim - 1) + [str(last)]) + ")"
        raise InputError(f"{name}: expected shape {want}, found {_shape_str(arr.shape)}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise InputError(f"{name}: expected a numeric array, found dtype {arr.dtype}")
    return arr.astype(np.float64)


def _as_track_pair(gt_tracks: object, pred_tracks: object) -> tuple[np.ndarray, np.ndarray]:
    """``(b, n, t, 2)`` ground-truth and predicted tracks of the same shape, as float64."""
    gt_tracks = _as_float("gt_tracks", gt_tracks, 4, 2)
    pred_tracks = _as_float("pred_tracks", pred_tracks, 4, 2)
    if pred_tracks.shape != gt_tracks.shape:
        raise InputError(
            f"pred_tracks: expected shape {_shape_str(gt_tracks.shape)} like gt_tracks, "
            f"found {_shape_str(pred_tracks.shape)}"
        )
    return gt_tracks, pred_tracks


def _as_queries(query_points: object, b: int, n: int) -> np.ndarray:
    """``(b, n, 3)`` query rows as float64, one per track of the ground truth."""
    query_points = _as_float("query_points", query_points, 3, 3)
    if query_points.shape != (b, n, 3):
        raise InputError(
            f"query_points: expected shape {_shape_str((b, n, 3))} to match gt_tracks, "
            f"found {_shape_str(query_points.shape)}"
        )
    return query_points


def _divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` with NaN where ``den == 0`` (no warning)."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.full(np.broadcast_shapes(num.shape, den.shape), np.nan)
    np.divide(num, den, out=out, where=den != 0)
    return out


def evaluation_mask(query_points: np.ndarray, num_frames: int, query_mode: str) -> np.ndarray:
    """Frames on which each track is evaluated.

    Args:
        query_points: ``(..., 3)`` rows ``(t, y, x)``; only ``t`` is used (rounded to
            the nearest integer; must lie in ``[0, num_frames - 1]``).
        num_frames: number of frames ``t`` of the tracks.
        query_mode: ``'first'``: the frames strictly after the query frame
            (``frame > t_query``); ``'strided'``: every frame except the query frame.

    Returns:
        ``(..., num_frames)`` boolean mask.
    """
    if query_mode not in _QUERY_MODES:
        raise InputError(f"query_mode: expected 'first' or 'strided', found {query_mode!r}")
    qp = np.asarray(query_points)
    if qp.ndim < 1 or qp.shape[-1] != 3:
        raise InputError(
            f"query_points: expected shape (..., 3) rows (t, y, x), found {_shape_str(qp.shape)}"
        )
    t_query = qp[..., 0].astype(np.float64)
    if not np.all(np.isfinite(t_query)):
        raise InputError("query_points: expected finite query frames in column 0, found NaN or inf")
    frame = np.round(t_query).astype(np.int64)
    if frame.size and (frame.min() < 0 or frame.max() >= num_frames):
        raise InputError(
            f"query_points: expected query frames in [0, {num_frames - 1}], "
            f"found values in [{frame.min()}, {frame.max()}]"
        )
    t = np.arange(num_frames)
    if query_mode == "first":
        return t > frame[..., None]
    return t != frame[..., None]


def compute_tapvid_metrics(
    query_points: np.ndarray,
    gt_occluded: np.ndarray,
    gt_tracks: np.ndarray,
    pred_occluded: np.ndarray,
    pred_tracks: np.ndarray,
    query_mode: str,
    get_trackwise_metrics: bool = False,
) -> dict[str, np.ndarray]:
    """TAP-Vid metrics: occlusion accuracy, ``< delta^x`` and Jaccard.

    Args:
        query_points: ``(b, n, 3)`` rows ``(t, y, x)``: query frame and query position
            in pixels (only ``t`` is used here).
        gt_occluded: ``(b, n, t)`` bool, ``True`` where the ground-truth point is
            occluded.
        gt_tracks: ``(b, n, t, 2)`` ground-truth positions ``(x, y)`` in pixels at the
            evaluation resolution (256x256 in the benchmark).
        pred_occluded: ``(b, n, t)`` bool, predicted occlusion.
        pred_tracks: ``(b, n, t, 2)`` predicted positions ``(x, y)``, same pixels and
            origin as ``gt_tracks``.
        query_mode: ``'first'`` (evaluate the frames strictly after the query frame) or
            ``'strided'`` (every frame except the query frame).
        get_trackwise_metrics: return ``(b, n)`` per-track values (sums over frames
            only) instead of ``(b,)`` per-video values (sums over points and frames).

    Returns:
        Dict of float64 arrays of shape ``(b,)`` (or ``(b, n)``) under the keys
        ``occlusion_accuracy``, ``pts_within_{d}``, ``jaccard_{d}`` for ``d`` in
        ``(1, 2, 4, 8, 16)``, ``average_jaccard`` and ``average_pts_within_thresh``
        (means over the five thresholds). With ``E`` the evaluation frames, ``V`` the
        ground-truth-visible points, ``P`` the predicted-visible points and ``W_d``
        the points with ``||pred - gt||_2 < d`` (strict):

        * ``occlusion_accuracy = |E & (pred_occluded == gt_occluded)| / |E|``;
        * ``pts_within_d = |E & V & W_d| / |E & V|``;
        * ``jaccard_d = TP / (|E & V| + FP)`` with ``TP = |E & V & P & W_d|`` and
          ``FP = |E & P & ~(V & W_d)|``, i.e. ``TP / (TP + FN + FP)``.

        A 0/0 ratio is NaN (e.g. a track with no visible evaluation frames). Average
        per-video values over videos (:func:`aggregate_metrics`) for a dataset score.
    """
    gt_tracks, pred_tracks = _as_track_pair(gt_tracks, pred_tracks)
    b, n, t, _ = gt_tracks.shape
    query_points = _as_queries(query_points, b, n)
    gt_occluded = _as_bool("gt_occluded", gt_occluded, (b, n, t))
    pred_occluded = _as_bool("pred_occluded", pred_occluded, (b, n, t))

    evaluate = evaluation_mask(query_points, t, query_mode)
    axes = (2,) if get_trackwise_metrics else (1, 2)

    gt_visible = ~gt_occluded
    pred_visible = ~pred_occluded

    metrics: dict[str, np.ndarray] = {}
    metrics["occlusion_accuracy"] = _divide(
        np.sum((pred_occluded == gt_occluded) & evaluate, axis=axes),
        np.sum(evaluate, axis=axes),
    )

    # NaN predictions give NaN distances, which are never within a threshold.
    with np.errstate(invalid="ignore"):
        dist = np.sqrt(np.sum(np.square(pred_tracks - gt_tracks), axis=-1))
    visible_eval = gt_visible & evaluate
    num_visible = np.sum(visible_eval, axis=axes)
    pred_visible_eval = pred_visible & evaluate
    within_all, jaccard_all = [], []
    for d in THRESHOLDS:
        with np.errstate(invalid="ignore"):
            within = dist < d
        correct = within & visible_eval
        within_frac = _divide(np.sum(correct, axis=axes), num_visible)
        true_pos = np.sum(correct & pred_visible, axis=axes)
        false_pos = np.sum(pred_visible_eval & ~(gt_visible & within), axis=axes)
        jaccard = _divide(true_pos, num_visible + false_pos)
        metrics[f"pts_within_{d}"] = within_frac
        metrics[f"jaccard_{d}"] = jaccard
        within_all.append(within_frac)
        jaccard_all.append(jaccard)
    metrics["average_jaccard"] = np.mean(np.stack(jaccard_all), axis=0)
    metrics["average_pts_within_thresh"] = np.mean(np.stack(within_all), axis=0)
    return metrics


def aggregate_metrics(per_video: Iterable[Mapping[str, np.ndarray]]) -> dict[str, float]:
    """Dataset score: the mean over videos of per-video metric values.

    Args:
        per_video: dicts returned by :func:`compute_tapvid_metrics` (or
            :func:`trajectory_errors`) with per-video ``(b,)`` arrays (any ``b``, e.g.
            one call per video with ``b = 1``).

    Returns:
        ``{key: float}``: ``nanmean`` over all videos of every key present in all
        dicts; NaN entries (videos where a ratio is undefined) are skipped, and a key
        whose values are all NaN gives NaN.
    """
    dicts = list(per_video)
    if not dicts:
        raise InputError("aggregate_metrics: expected at least one metrics dict, found none")
    keys = [k for k in dicts[0] if all(k in d for d in dicts[1:])]
    out: dict[str, float] = {}
    for k in keys:
        vals = np.concatenate([np.atleast_1d(np.asarray(d[k], dtype=np.float64)) for d in dicts])
        finite = vals[~np.isnan(vals)]
        out[k] = float(np.mean(finite)) if finite.size else float("nan")
    return out


def trajectory_errors(
    gt_tracks: np.ndarray,
    gt_occluded: np.ndarray,
    pred_tracks: np.ndarray,
    query_points: np.ndarray | None = None,
    query_mode: str = "first",
) -> dict[str, np.ndarray]:
    """Average trajectory errors (mean L2 distance) per video.

    Units are pixels of whatever resolution the tracks are given in (pass 256x256
    tracks for numbers comparable with the ``< delta^x`` thresholds).

    Args:
        gt_tracks: ``(b, n, t, 2)`` ground-truth positions ``(x, y)`` in pixels.
        gt_occluded: ``(b, n, t)`` bool, ``True`` where the ground truth is occluded.
        pred_tracks: ``(b, n, t, 2)`` predicted positions ``(x, y)``, same pixels.
        query_points: optional ``(b, n, 3)`` rows ``(t, y, x)``; when given, only the
            frames selected by ``query_mode`` are evaluated (see
            :func:`evaluation_mask`); when ``None``, every frame is evaluated.
        query_mode: ``'first'`` or ``'strided'`` (used only with ``query_points``).

    Returns:
        Dict of ``(b,)`` float64 arrays: ``ate_visible`` (mean error over visible
        evaluation points), ``ate_occluded`` (over occluded ones, where the ground
        truth is the annotated/estimated position of the hidden point),
        ``ate_all`` (over all evaluation points) and ``median_error_visible``
        (median over visible evaluation points). NaN where a video has no such
        points.
    """
    gt_tracks, pred_tracks = _as_track_pair(gt_tracks, pred_tracks)
    b, n, t, _ = gt_tracks.shape
    gt_occluded = _as_bool("gt_occluded", gt_occluded, (b, n, t))
    if query_points is None:
        if query_mode not in _QUERY_MODES:
            raise InputError(f"query_mode: expected 'first' or 'strided', found {query_mode!r}")
        evaluate = np.ones((b, n, t), dtype=bool)
    else:
        query_points = _as_queries(query_points, b, n)
        evaluate = evaluation_mask(query_points, t, query_mode)

    err = np.sqrt(np.sum(np.square(pred_tracks - gt_tracks), axis=-1))
    visible = evaluate & ~gt_occluded
    occluded = evaluate & gt_occluded

    def masked_mean(mask: np.ndarray) -> np.ndarray:
        total = np.sum(np.where(mask, err, 0.0), axis=(1, 2))
        return _divide(total, np.sum(mask, axis=(1, 2)))

    median = np.full((b,), np.nan)
    for i in range(b):
        vals = err[i][visible[i]]
        if vals.size:
            median[i] = np.median(vals)
    return {
        "ate_visible": masked_mean(visible),
        "ate_occluded": masked_mean(occluded),
        "ate_all": masked_mean(evaluate),
        "median_error_visible": median,
    }


def zero_motion_prediction(
    query_points: np.ndarray, num_frames: int
) -> tuple[np.ndarray, np.ndarray]:
    """Baseline that predicts every point stays at its query position, always visible.

    Args:
        query_points: ``(b, n, 3)`` rows ``(t, y, x)`` (pixels).
        num_frames: number of frames ``t`` to predict.

    Returns:
        ``(pred_tracks, pred_occluded)``: ``(b, n, t, 2)`` float64 positions
        ``(x, y)`` equal to the query's ``(x, y)`` at every frame, and ``(b, n, t)``
        all-``False`` occlusion.
    """
    query_points = _as_float("query_points", query_points, 3, 3)
    if int(num_frames) != num_frames or num_frames < 1:
        raise InputError(f"num_frames: expected a positive integer, found {num_frames!r}")
    b, n, _ = query_points.shape
    xy = query_points[..., [2, 1]]
    pred_tracks = np.broadcast_to(xy[:, :, None, :], (b, n, int(num_frames), 2)).copy()
    pred_occluded = np.zeros((b, n, int(num_frames)), dtype=bool)
    return pred_tracks, pred_occluded


def _as_image_size(image_size: object) -> tuple[float, float]:
    """``(H, W)`` as two positive finite floats."""
    arr = np.asarray(image_size)
    if arr.shape != (2,) or not (
        np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
    ):
        raise InputError(f"image_size: expected two numbers (H, W), found {image_size!r}")
    h, w = (float(v) for v in arr)
    if not (np.isfinite(h) and np.isfinite(w) and h > 0 and w > 0):
        raise InputError(f"image_size: expected positive finite (H, W), found {image_size!r}")
    return h, w


def pips2_metrics(
    gt_tracks: np.ndarray,
    gt_visible: np.ndarray,
    pred_tracks: np.ndarray,
    image_size: tuple[int, int],
) -> dict[str, float]:
    """The PIPs++ paper's metrics of one video, as ``aharley/pips2``'s ``test_on_tap.py``.

    The original (``test_on_fullseq``, B = 1) is followed step for step:

    * Both track sets are cast to float32 and divided, each on its own, by
      ``(W / 256, H / 256)`` (the scale itself cast to float32), so distances are
      pixels of a 256x256 frame: ``dist = ||pred / sc - gt / sc||_2`` in float32.
      Only a scale is applied, so the pixel origin does not matter as long as both
      track sets share it.
    * ``d_thr`` for ``thr`` in ``(1, 2, 4, 8, 16)``: over frames ``1:`` only (frame 0
      is excluded), the visible points with ``dist < thr`` (strict), pooled over all
      points and frames, divided by ``EPS + (number of visible points)`` with
      ``EPS = 1e-6`` (``reduce_masked_mean``), times 100. With no visible point in
      frames ``1:`` this is ``0.0``, not NaN. ``d_avg`` is the plain mean of the five.
    * ``survival_16`` (the original's key ``survival``): over *all* frames, frame 0
      included, ``ok = 1 - (dist > 16) * visible`` (strict ``>``, so a distance of
      exactly 16 survives, while it does not count in ``d_16``; invisible frames
      never end a track), the cumulative product of ``ok`` along time for each
      track, then the mean over all ``(n, t)`` entries (invisible ones included),
      times 100.
    * ``median_l2``: for each track, ``np.median`` (the mean of the two middle values
      for an even count) of the float32 distances over its visible frames, frame 0
      included (``reduce_masked_median``); a track with no visible frame gets NaN,
      and the mean over tracks (``torch.mean``) then is NaN too.

    The values agree with the original's up to float32 summation order in the last
    bit; ``d_*`` and ``survival_16`` are ratios of exact integer counts and so match.
    The original's dataset keeps only points visible at frame 0 and starts every track
    there (``pred[:, 0]`` is the query); this function takes the tracks as given.

    Args:
        gt_tracks: ``(n, t, 2)`` ground-truth positions ``(x, y)`` in pixels of the
            ``image_size`` frames (origin at the centre of the top-left pixel).
        gt_visible: ``(n, t)`` bool, ``True`` where the ground-truth point is visible
            (the original's ``valids``, ``1 - occluded``).
        pred_tracks: ``(n, t, 2)`` predicted positions ``(x, y)``, same pixels.
        image_size: ``(H, W)`` of the frames the pixels refer to (height first,
            unlike the ``(x, y)`` rows).

    Returns:
        Python floats under ``d_1``, ``d_2``, ``d_4``, ``d_8``, ``d_16``, ``d_avg`` and
        ``survival_16`` (percent, as the original prints them) and ``median_l2``
        (pixels at 256x256).
    """
    gt = _as_float("gt_tracks", gt_tracks, 3, 2)
    pred = _as_float("pred_tracks", pred_tracks, 3, 2)
    if pred.shape != gt.shape:
        raise InputError(
            f"pred_tracks: expected shape {_shape_str(gt.shape)} like gt_tracks, "
            f"found {_shape_str(pred.shape)}"
        )
    n, t, _ = gt.shape
    if n == 0 or t == 0:
        raise InputError(
            f"gt_tracks: expected at least one track and one frame, found shape {_shape_str(gt.shape)}"
        )
    valid = _as_bool("gt_visible", gt_visible, (n, t)).astype(np.float32)
    h, w = _as_image_size(image_size)

    f32 = np.float32
    scale = np.array([w / 256.0, h / 256.0]).astype(f32)
    # NaN predictions give NaN distances: never within a threshold, never "> 16".
    with np.errstate(invalid="ignore"):
        diff = pred.astype(f32) / scale - gt.astype(f32) / scale
        dist = np.sqrt(np.sum(np.square(diff), axis=-1))  # (n, t) float32

    metrics: dict[str, float] = {}
    valid_later = valid[:, 1:]
    denom = f32(_PIPS2_EPS) + np.sum(valid_later, dtype=f32)
    d_sum = 0.0
    for thr in THRESHOLDS:
        with np.errstate(invalid="ignore"):
            within = (dist[:, 1:] < thr).astype(f32)
        d = float(np.sum(within * valid_later, dtype=f32) / denom) * 100.0
        metrics[f"d_{thr}"] = d
        d_sum += d
    metrics["d_avg"] = d_sum / len(THRESHOLDS)

    with np.errstate(invalid="ignore"):
        lost = (dist > _PIPS2_SURVIVAL_THRESHOLD).astype(f32)
    survival = np.cumprod(f32(1.0) - lost * valid, axis=1, dtype=f32)
    metrics["survival_16"] = float(np.mean(survival, dtype=f32)) * 100.0

    medians = np.full((n,), np.nan, dtype=f32)
    for i in range(n):
        seen = valid[i] > 0
        if np.any(seen):
            medians[i] = np.median(dist[i][seen])
    metrics["median_l2"] = float(np.mean(medians, dtype=f32))
    return metrics
