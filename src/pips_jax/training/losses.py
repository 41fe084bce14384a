"""The training losses of PIPs, as in the original ``nets/pips.py``, and of PIPs++
(pure JAX).

Conventions: trajectories are ``(x, y)`` in input pixels with the origin at the centre
of the top-left pixel (``x`` along the width); ``(B, S, N)`` arrays are per clip,
frame and point; ``vis`` and ``valids`` are float 0/1 masks. Masked means divide by
``EPS + sum(mask)`` as the original's ``reduce_masked_mean`` does, so an empty mask
gives 0, not NaN.

PIPs' total is ``sequence_loss + 10 * balanced_ce_loss(visibility) + score-map loss``.
PIPs++'s (aharley/pips2 ``nets/pips2.py``) is :func:`sequence_loss` alone, the same
formula over its iterations' predictions, with that project's ``EPS``
(:data:`PIPS2_EPS`, 1e-6).
The score-map loss compares, for every refinement iteration, each point's full
correlation map (all pyramid levels upsampled to the level-0 feature resolution and
summed) with a one-hot map at its rounded ground-truth feature pixel. Those maps are
``(iters, B, S, N, H', W')``, gigabytes at the training recipe's sizes; because the
balanced loss is ``(sum over positives) / (#positives) + (sum over negatives) /
(#negatives)``, :func:`score_map_terms` reduces each iteration's maps, one frame at a
time, to those four numbers, and :func:`score_map_loss_from_terms` combines them.
:func:`score_map_loss` is the plain full-maps form (the reference in the tests).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import Array

from pips_jax.ops.resize import align_corners_matrix

#: Added to the denominators of masked means (the original's ``EPS``).
EPS = 1e-8
#: PIPs++'s ``EPS`` (aharley/pips2 ``utils/basic.py``), in its sequence loss.
PIPS2_EPS = 1e-6


def masked_mean(x: Array, mask: Array) -> Array:
    """``sum(x * mask) / (EPS + sum(mask))`` over all elements (the original's
    ``reduce_masked_mean``); ``x`` and ``mask`` broadcast together."""
    return jnp.sum(x * mask) / (EPS + jnp.sum(mask))


def logistic_loss(pred: Array, label: Array | float) -> Array:
    """Elementwise ``log(1 + exp(-label * pred))`` for labels ``+1`` / ``-1``.

    Written as the original does, ``b + log(exp(-b) + exp(a - b))`` with
    ``a = -label * pred`` and ``b = relu(a)``, which never overflows.
    """
    a = -label * pred
    b = jax.nn.relu(a)
    return b + jnp.log(jnp.exp(-b) + jnp.exp(a - b))


def balanced_ce_loss(pred_logits: Array, gt: Array, valid: Array | None = None) -> Array:
    """The original's balanced binary cross-entropy on logits.

    Positives are ``gt > 0.95``, negatives ``gt < 0.05`` (anything between is neither).
    The result is ``masked_mean(loss, pos * valid) + masked_mean(loss, neg * valid)``
    with ``loss = log(1 + exp(-label * pred))`` and ``label = 2 * pos - 1``: the SUM of
    the positive and the negative mean, exactly as ``balanced_loss = pos_loss +
    neg_loss`` in aharley/pips ``nets/pips.py``. (Described in words as "the mean of
    the positive and negative means" it would be half of this; the code is followed.)

    Args:
        pred_logits: logits of any shape.
        gt: targets in [0, 1], same shape.
        valid: optional 0/1 mask, same shape (default: all valid).

    Returns:
        Scalar loss.
    """
    if gt.shape != pred_logits.shape:
        raise ValueError(f"gt: expected shape {pred_logits.shape}, found {gt.shape}")
    valid = jnp.ones_like(pred_logits) if valid is None else valid
    pos = (gt > 0.95).astype(jnp.float32)
    neg = (gt < 0.05).astype(jnp.float32)
    loss = logistic_loss(pred_logits, 2.0 * pos - 1.0)
    return masked_mean(loss, pos * valid) + masked_mean(loss, neg * valid)


def sequence_loss(
    coord_preds: Array, trajs_gt: Array, valids: Array, gamma: float = 0.8, eps: float = EPS
) -> Array:
    """Exponentially weighted L1 error of every iteration's trajectories.

    For iteration ``i`` of ``I``: weight ``gamma ** (I - i - 1)`` times the masked mean
    over ``(B, S, N)`` of ``mean(|pred - gt|)`` over the two coordinates (``sum /
    (eps + sum(valids))``); the weighted terms are summed and divided by ``I``. PIPs
    and PIPs++ write the same ``sequence_loss``; they differ only in ``eps``
    (:data:`EPS`, :data:`PIPS2_EPS`).

    Args:
        coord_preds: ``(I, B, S, N, 2)`` trajectories after every iteration, ``(x, y)``
            input pixels.
        trajs_gt: ``(B, S, N, 2)`` ground truth, ``(x, y)`` input pixels.
        valids: ``(B, S, N)`` 0/1 mask of supervised positions.
        gamma: decay per iteration from the last one back.
        eps: added to the masked means' denominators.

    Returns:
        Scalar loss in pixels.
    """
    n_iters = coord_preds.shape[0]
    if coord_preds.shape[1:] != trajs_gt.shape or trajs_gt.shape[:-1] != valids.shape:
        raise ValueError(
            f"expected coord_preds (I, B, S, N, 2), trajs_gt (B, S, N, 2), valids (B, S, N); "
            f"found {coord_preds.shape}, {trajs_gt.shape}, {valids.shape}"
        )
    errors = jnp.mean(jnp.abs(coord_preds - trajs_gt), axis=-1)  # I, B, S, N
    per_iter = jnp.sum(errors * valids, axis=(1, 2, 3)) / (eps + jnp.sum(valids))
    weights = gamma ** (n_iters - 1 - jnp.arange(n_iters, dtype=jnp.float32))
    return jnp.sum(weights * per_iter) / n_iters


# ------------------------------------------------------------------ score maps
def score_map_targets(
    trajs_gt: Array, vis: Array, valids: Array, stride: int, size: tuple[int, int]
) -> tuple[Array, Array]:
    """Target cells of the score-map loss.

    Args:
        trajs_gt: ``(B, S, N, 2)`` ground truth ``(x, y)`` in input pixels.
        vis: ``(B, S, N)`` visibility (1 visible).
        valids: ``(B, S, N)`` 0/1 mask.
        stride: input pixels per feature pixel.
        size: ``(H', W')`` of the feature maps.

    Returns:
        ``(cells, select)``: ``(B, S, N, 2)`` int32 ``(row, col)`` =
        ``(round(y / stride), round(x / stride))`` (round half to even, as
        ``torch.round``) clipped into the map, and ``(B, S, N)`` float 0/1: the cell
        lies in ``[0, W'-1] x [0, H'-1]`` before clipping and the point is valid and
        visible. Only selected points have a score map in the loss.
    """
    h, w = size
    xy = jnp.round(trajs_gt / float(stride))
    x, y = xy[..., 0], xy[..., 1]
    inside = (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)
    select = inside & (valids > 0) & (vis > 0)
    row = jnp.clip(y, 0, h - 1).astype(jnp.int32)
    col = jnp.clip(x, 0, w - 1).astype(jnp.int32)
    return jnp.stack([row, col], axis=-1), select.astype(jnp.float32)


def one_hot_maps(cells: Array, size: tuple[int, int]) -> Array:
    """``(..., H', W')`` float maps with a single 1 at each ``(row, col)`` of ``cells``
    (``(..., 2)`` int)."""
    h, w = size
    rows = jnp.arange(h)[:, None] == cells[..., 0, None, None]
    cols = jnp.arange(w)[None, :] == cells[..., 1, None, None]
    return (rows & cols).astype(jnp.float32)


def score_maps(pyramid: list[Array], ffeats: Array) -> Array:
    """Full-resolution correlation maps of every point on every frame.

    Args:
        pyramid: levels ``(B, S, H_l, W_l, C)``, level 0 at ``H' x W'``.
        ffeats: ``(B, S, N, C)`` per-frame point features.

    Returns:
        ``(B, S, N, H', W')``: the sum over levels of ``<fmap, feature> / sqrt(C)``
        upsampled to ``H' x W'`` with align-corners bilinear interpolation (the
        original's ``fcp``).
    """
    return _summed_maps(pyramid, ffeats, pyramid[0].shape[2:4])


def _summed_maps(levels: list[Array], feats: Array, size: tuple[int, int]) -> Array:
    """``(..., N, H', W')``: per level ``<fmap, feature> / sqrt(C)`` of levels
    ``(..., H_l, W_l, C)`` and features ``(..., N, C)``, upsampled to ``size`` with
    align-corners bilinear interpolation and summed over levels.

    Correlation and upsampling are linear in the feature map, so the levels are
    upsampled and summed first (``C`` channels instead of ``N`` maps each) and
    correlated once. The sum is channels-first and the maps points-first, so that in
    the backward pass XLA:CPU transposes the small operands rather than every map.
    """
    c = feats.shape[-1]
    summed = 0.0
    for fmap in levels:
        fmap = jnp.moveaxis(fmap, -1, -3)  # ..., C, H_l, W_l
        h, w = fmap.shape[-2:]
        if (h, w) != tuple(size):
            cols = jnp.asarray(align_corners_matrix(w, size[1]))  # W', W_l
            rows = jnp.asarray(align_corners_matrix(h, size[0]))  # H', H_l
            fmap = jnp.einsum("...hw,Ww->...hW", fmap, cols)
            fmap = jnp.einsum("Hh,...hW->...HW", rows, fmap)
        summed = summed + fmap
    return jnp.einsum("...nc,...chw->...nhw", feats / jnp.sqrt(jnp.float32(c)), summed)


def score_map_loss(maps: Array, trajs_gt: Array, vis: Array, valids: Array, stride: int) -> Array:
    """The score-map loss from the full maps (straightforward, memory hungry).

    Args:
        maps: ``(I, B, S, N, H', W')`` per-iteration maps (:func:`score_maps`).
        trajs_gt, vis, valids: ``(B, S, N, 2)`` ``(x, y)`` input pixels, ``(B, S, N)``,
            ``(B, S, N)``.
        stride: input pixels per feature pixel.

    Returns:
        :func:`balanced_ce_loss` over every element of every selected map of every
        iteration (see :func:`score_map_targets`), each map one-hot at its own point's
        cell. (The original writes ``gt_[:, :, ys, xs] = 1``, which puts every
        selected point's 1 into every map; the one-hot-per-map meaning is used here.)
    """
    size = maps.shape[-2:]
    cells, select = score_map_targets(trajs_gt, vis, valids, stride, size)
    gt = jnp.broadcast_to(one_hot_maps(cells, size), maps.shape)
    valid = jnp.broadcast_to(select[..., None, None], maps.shape)
    return balanced_ce_loss(maps, gt, valid)


class ScoreTerms(NamedTuple):
    """Sums and counts of the balanced score-map loss (scalars, or stacked per iteration).

    Attributes:
        pos_sum: summed logistic loss at the target cells of the selected maps.
        pos_count: number of those cells.
        neg_sum: summed logistic loss at every other cell of the selected maps.
        neg_count: number of those cells.
    """

    pos_sum: Array
    pos_count: Array
    neg_sum: Array
    neg_count: Array


def score_map_terms(
    pyramid: list[Array],
    ffeats: Array,
    trajs_gt: Array,
    vis: Array,
    valids: Array,
    stride: int,
) -> ScoreTerms:
    """One iteration's contribution to the score-map loss, without the maps' stack.

    The maps are built one frame at a time (``(B, N, H', W')`` at once) under
    ``jax.checkpoint``, so the backward pass recomputes them instead of storing them.

    Args:
        pyramid: levels ``(B, S, H_l, W_l, C)``, level 0 at ``H' x W'``.
        ffeats: ``(B, S, N, C)`` the point features the iteration starts from.
        trajs_gt, vis, valids: ``(B, S, N, 2)`` ``(x, y)`` input pixels, ``(B, S, N)``,
            ``(B, S, N)``.
        stride: input pixels per feature pixel.

    Returns:
        :class:`ScoreTerms` of scalars.
    """
    b, s, n, c = ffeats.shape
    h, w = pyramid[0].shape[2:4]
    cells, select = score_map_targets(trajs_gt, vis, valids, stride, (h, w))
    flat = cells[..., 0] * w + cells[..., 1]  # B, S, N

    @jax.checkpoint
    def frame(args: tuple[list[Array], Array, Array, Array]) -> tuple[Array, Array]:
        levels, feats, target, sel = args  # (B, H_l, W_l, C) each, (B, N, C), (B, N), (B, N)
        maps = _summed_maps(levels, feats, (h, w)).reshape(b, n, h * w)
        hot = jnp.arange(h * w) == target[:, :, None]  # B, N, H'W'
        at_target = jnp.sum(jnp.where(hot, maps, 0.0), axis=-1)  # B, N
        pos = logistic_loss(at_target, 1.0)
        neg = jnp.sum(jnp.where(hot, 0.0, logistic_loss(maps, -1.0)), axis=-1)
        return jnp.sum(pos * sel), jnp.sum(neg * sel)

    per_frame = (
        [jnp.moveaxis(level, 1, 0) for level in pyramid],
        jnp.moveaxis(ffeats, 1, 0),
        jnp.moveaxis(flat, 1, 0),
        jnp.moveaxis(select, 1, 0),
    )
    pos, neg = jax.lax.map(frame, per_frame)
    count = jnp.sum(select)
    return ScoreTerms(jnp.sum(pos), count, jnp.sum(neg), count * (h * w - 1))


def score_map_loss_from_terms(terms: ScoreTerms) -> Array:
    """The balanced loss from :class:`ScoreTerms` (any leading axes are summed first):
    ``pos_sum / (EPS + pos_count) + neg_sum / (EPS + neg_count)``, equal to
    :func:`score_map_loss` on the stacked maps."""
    t = ScoreTerms(*(jnp.sum(v) for v in terms))
    return t.pos_sum / (EPS + t.pos_count) + t.neg_sum / (EPS + t.neg_count)
