"""Rendering a scene and the exact ground truth of points on its layers.

The renderer inverse-maps every pixel centre into each layer and samples that layer's
texture bilinearly; a pixel belongs to object ``j`` when its inverse-mapped position is
inside ``j``'s shape (``ObjectLayer.contains``). The ground truth uses the very same
maps and the very same shape test, so a point is *visible* at frame ``t`` exactly when
it lies in the image area and no nearer layer's shape covers it, and a visible point's
rendered colour is its texture colour (:func:`surface_colors`).

Frame positions are ``(x, y)`` pixels with the origin at the CENTRE of the top-left
pixel; the image area is ``[-0.5, W - 0.5] x [-0.5, H - 0.5]``.
"""

from __future__ import annotations

import numpy as np

from pips_jax.errors import InputError
from pips_jax.synthetic.geometry import apply_affine, apply_homography, sample_texture
from pips_jax.synthetic.scene import Scene

__all__ = ["first_visible", "ground_truth", "render", "surface_colors"]


def render(scene: Scene) -> np.ndarray:
    """Renders ``scene`` as uint8 ``(T, H, W, 3)``.

    Pixel ``[t, r, c]`` is the colour, at its centre ``(x, y) = (c, r)``, of the
    nearest layer whose shape contains the centre's inverse-mapped position (the
    background contains everything), sampled bilinearly from that layer's texture.
    """
    h, w, t_count = scene.height, scene.width, scene.num_frames
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    # Frame -> background texture: texture_affine @ H_t^{-1}, one projective map per frame
    # (float32 is ample for sampling colours: ~1e-4 px; shape tests below use float64).
    inv = np.linalg.inv(scene.background_homographies)
    tex = np.concatenate([scene.background_texture_affine, [[0.0, 0.0, 1.0]]])
    frame_to_tex = (tex @ inv).astype(np.float32)  # (T, 3, 3)
    xs32, ys32 = xs.astype(np.float32), ys.astype(np.float32)
    u, v = apply_homography(frame_to_tex[:, None, None], xs32[None], ys32[None])
    video = sample_texture(scene.background_texture, u, v)  # (T, H, W, 3) float32

    for obj in scene.objects:
        ext = obj.extent
        corners = np.array([[-1, -1], [1, -1], [-1, 1], [1, 1]]) * ext
        fx, fy = apply_affine(obj.affines[:, None], corners[None, :, 0], corners[None, :, 1])
        x0 = np.maximum(np.ceil(fx.min(axis=1)), 0).astype(int)
        x1 = np.minimum(np.floor(fx.max(axis=1)), w - 1).astype(int)
        y0 = np.maximum(np.ceil(fy.min(axis=1)), 0).astype(int)
        y1 = np.minimum(np.floor(fy.max(axis=1)), h - 1).astype(int)
        for t in range(t_count):
            if x0[t] > x1[t] or y0[t] > y1[t]:
                continue
            sub_x = xs[y0[t] : y1[t] + 1, x0[t] : x1[t] + 1]
            sub_y = ys[y0[t] : y1[t] + 1, x0[t] : x1[t] + 1]
            lx, ly = apply_affine(obj.inverse_affines[t], sub_x, sub_y)
            rows, cols = np.nonzero(obj.contains(lx, ly))
            if rows.size == 0:
                continue
            lx, ly = lx[rows, cols], ly[rows, cols]
            tu, tv = apply_affine(obj.texture_affine, lx, ly)
            video[t, rows + y0[t], cols + x0[t]] = sample_texture(obj.texture, tu, tv)
    return np.clip(np.rint(video), 0, 255).astype(np.uint8)


def _check_points(scene: Scene, layer: np.ndarray, ref_xy: np.ndarray) -> tuple[np.ndarray, ...]:
    layer = np.asarray(layer)
    ref_xy = np.asarray(ref_xy, dtype=np.float64)
    if layer.ndim != 1 or not np.issubdtype(layer.dtype, np.integer):
        raise InputError(f"layer: expected an integer (N,) array, got {layer.dtype} {layer.shape}")
    if ref_xy.shape != (len(layer), 2) or not np.isfinite(ref_xy).all():
        raise InputError(f"ref_xy: expected finite ({len(layer)}, 2), got shape {ref_xy.shape}")
    if len(layer) and (layer.min() < 0 or layer.max() > len(scene.objects)):
        raise InputError(
            f"layer: expected ids in [0, {len(scene.objects)}], got range [{layer.min()}, {layer.max()}]"
        )
    return layer.astype(np.int64), ref_xy


def ground_truth(
    scene: Scene, layer: np.ndarray, ref_xy: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Exact tracks and occlusion of points given on their layers' reference planes.

    Args:
        layer: ``(N,)`` int layer ids (0 = background, ``k`` = ``scene.objects[k-1]``).
        ref_xy: ``(N, 2)`` ``(x, y)`` in each point's layer reference coordinates.

    Returns:
        ``tracks`` float64 ``(N, T, 2)`` ``(x, y)`` frame pixels (origin at the centre of
        the top-left pixel) and ``occluded`` bool ``(N, T)``: True where the point is
        outside the image area ``[-0.5, W - 0.5] x [-0.5, H - 0.5]`` or inside the shape
        of a nearer object (the renderer's shape test).
    """
    layer, ref_xy = _check_points(scene, layer, ref_xy)
    n, t_count = len(layer), scene.num_frames
    tracks = np.empty((n, t_count, 2))
    x, y = ref_xy[:, 0:1], ref_xy[:, 1:2]  # (N, 1)
    on_bg = layer == 0
    tracks[on_bg, :, 0], tracks[on_bg, :, 1] = apply_homography(
        scene.background_homographies[None], x[on_bg], y[on_bg]
    )
    for k, obj in enumerate(scene.objects, start=1):
        on_k = layer == k
        tracks[on_k, :, 0], tracks[on_k, :, 1] = apply_affine(obj.affines[None], x[on_k], y[on_k])
    px, py = tracks[..., 0], tracks[..., 1]
    occluded = (px < -0.5) | (px > scene.width - 0.5) | (py < -0.5) | (py > scene.height - 0.5)
    occluded |= ~np.isfinite(px) | ~np.isfinite(py)
    for j, obj in enumerate(scene.objects, start=1):
        behind = layer < j
        if not behind.any():
            continue
        lx, ly = apply_affine(obj.inverse_affines[None], px[behind], py[behind])
        occluded[behind] |= obj.contains(lx, ly)
    return tracks, occluded


def surface_colors(scene: Scene, layer: np.ndarray, ref_xy: np.ndarray) -> np.ndarray:
    """Texture colour (float32 ``(N, 3)``, 0..255, before uint8 rounding) of each point.

    A visible point's rendered colour at a pixel centre equals this colour (up to the
    uint8 rounding); ``layer`` / ``ref_xy`` as in :func:`ground_truth`.
    """
    layer, ref_xy = _check_points(scene, layer, ref_xy)
    out = np.zeros((len(layer), 3), np.float32)
    textures = [(scene.background_texture, scene.background_texture_affine)] + [
        (o.texture, o.texture_affine) for o in scene.objects
    ]
    for k, (texture, affine) in enumerate(textures):
        sel = layer == k
        if sel.any():
            u, v = apply_affine(affine, ref_xy[sel, 0], ref_xy[sel, 1])
            out[sel] = sample_texture(texture, u, v)
    return out


def first_visible(occluded: np.ndarray) -> np.ndarray:
    """Each point's first visible frame: the index of the first False of ``occluded``
    ``(..., T)`` along its last axis (``-1`` where all are True)."""
    first = np.argmax(~occluded, axis=-1)
    return np.where(occluded.all(axis=-1), -1, first)
