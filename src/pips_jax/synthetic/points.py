"""Sampling the tracked points of a scene: unambiguously visible where first seen."""

from __future__ import annotations

import numpy as np

from pips_jax.config import is_int
from pips_jax.errors import InputError
from pips_jax.synthetic.geometry import apply_affine, apply_homography, min_singular_values
from pips_jax.synthetic.render import first_visible, ground_truth
from pips_jax.synthetic.scene import Scene

__all__ = ["sample_points"]


def sample_points(
    scene: Scene,
    num_points: int,
    rng: np.random.Generator,
    fraction_on_objects: float = 0.5,
    margin: float = 1.5,
) -> tuple[np.ndarray, np.ndarray]:
    """Samples points that are unambiguously visible at their first visible frame.

    ``round(fraction_on_objects * num_points)`` points go on objects (split evenly; an
    object that yields no usable point hands its share to the background), the rest on
    the background. Candidates are drawn at a uniformly random frame (background:
    uniform over the image area; objects: uniform inside the shape and at least
    ``margin`` pixels from the outline in every frame) and kept when the point's first
    visible frame has it at least ``margin`` pixels from the image border and from
    every nearer object's outline. Returns shuffled ``layer`` int32 ``(N,)`` and
    ``ref_xy`` float64 ``(N, 2)`` (layer reference coordinates).
    """
    if not is_int(num_points) or num_points < 1:
        raise InputError(f"num_points: expected an integer >= 1, got {num_points!r}")
    h, w, t_count = scene.height, scene.width, scene.num_frames
    k_count = len(scene.objects)
    quota = np.zeros(k_count + 1, dtype=np.int64)
    if k_count:
        on_objects = int(round(fraction_on_objects * num_points))
        quota[1:] = on_objects // k_count
        extra = rng.permutation(k_count)[: on_objects - quota[1:].sum()]
        quota[1 + extra] += 1
    quota[0] = num_points - quota[1:].sum()
    inv_homs = np.linalg.inv(scene.background_homographies)
    inner = [
        margin / max(float(min_singular_values(o.affines).min()), 1e-12) for o in scene.objects
    ]
    sv = [min_singular_values(o.affines) for o in scene.objects]  # (T,) each

    got_layer: list[np.ndarray] = []
    got_ref: list[np.ndarray] = []
    failures = np.zeros(k_count + 1, dtype=np.int64)
    for _ in range(40):
        if quota.sum() == 0:
            break
        cand_layer, cand_ref = [], []
        for k in np.nonzero(quota)[0]:
            m = int(3 * quota[k] + 16)
            if k == 0:
                ts = rng.integers(0, t_count, m)
                fx = rng.uniform(margin - 0.5, w - 0.5 - margin, m)
                fy = rng.uniform(margin - 0.5, h - 0.5 - margin, m)
                rx, ry = apply_homography(inv_homs[ts], fx, fy)
                ref = np.stack([rx, ry], axis=1)
            else:
                obj = scene.objects[k - 1]
                ext = obj.extent
                ref = rng.uniform(-ext, ext, (m, 2))
                ref = ref[obj.signed_distance(ref[:, 0], ref[:, 1]) <= -inner[k - 1]]
            cand_layer.append(np.full(len(ref), k, dtype=np.int64))
            cand_ref.append(ref)
        layer = np.concatenate(cand_layer)
        ref = np.concatenate(cand_ref)
        tracks, occluded = ground_truth(scene, layer, ref)
        first = first_visible(occluded)
        ok = first >= 0
        idx = np.arange(len(layer))
        pos = tracks[idx, np.maximum(first, 0)]
        border = np.minimum.reduce(
            [pos[:, 0] + 0.5, w - 0.5 - pos[:, 0], pos[:, 1] + 0.5, h - 0.5 - pos[:, 1]]
        )
        ok &= border >= margin
        for j, obj in enumerate(scene.objects, start=1):
            sel = np.nonzero(ok & (layer < j))[0]
            if sel.size:
                f = first[sel]
                lx, ly = apply_affine(obj.inverse_affines[f], pos[sel, 0], pos[sel, 1])
                ok[sel] &= obj.signed_distance(lx, ly) * sv[j - 1][f] >= margin
        for k in np.nonzero(quota)[0]:
            valid = np.nonzero(ok & (layer == k))[0][: quota[k]]
            got_layer.append(layer[valid])
            got_ref.append(ref[valid])
            quota[k] -= len(valid)
            failures[k] = failures[k] + 1 if len(valid) == 0 else 0
        # Objects that keep failing (tiny, or always hidden) give their share away.
        for k in range(1, k_count + 1):
            if quota[k] and failures[k] >= 3:
                quota[0] += quota[k]
                quota[k] = 0
    if quota.sum():
        raise InputError(
            f"sample_points: expected to find {num_points} unambiguously visible points, found {num_points - quota.sum()}"
        )
    layer = np.concatenate(got_layer)
    ref = np.concatenate(got_ref)
    order = rng.permutation(len(layer))
    return layer[order].astype(np.int32), ref[order]
