"""Training augmentation of synthetic clips: erased patches, colour jitter, blur, noise
and flips, each drawn from a given ``rng`` so a clip's augmentation is reproducible.

Conventions: videos are ``(T, H, W, 3)`` uint8 RGB; tracks are ``(N, T, 2)`` ``(x, y)``
pixels with the origin at the centre of the top-left pixel; occlusion is ``(N, T)``
bool. An augmentation that moves pixels moves the tracks with them.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from pips_jax.synthetic import Clip

__all__ = [
    "augment_clip",
    "color_jitter",
    "erase_patches",
    "flip_clip",
    "flip_tracks",
    "gaussian_blur",
]


def color_jitter(
    clip: Clip,
    rng: np.random.Generator,
    brightness: float = 0.15,
    contrast: float = 0.2,
    saturation: float = 0.2,
    noise_std: float = 2.0,
) -> Clip:
    """Per-clip brightness / contrast / saturation jitter plus per-pixel Gaussian noise.

    Changes only ``video`` (still uint8 ``(T, H, W, 3)``); tracks, occlusion and all
    geometry are untouched. Usable as :class:`~pips_jax.synthetic.SyntheticDataset`'s
    ``augment``.
    """
    video = clip.video.astype(np.float32)
    mean = video.mean()
    grey = video.mean(axis=-1, keepdims=True)
    video = grey + (video - grey) * np.float32(1 + rng.uniform(-saturation, saturation))
    video = mean + (video - mean) * np.float32(1 + rng.uniform(-contrast, contrast))
    video = video * np.float32(1 + rng.uniform(-brightness, brightness))
    if noise_std > 0:
        video += rng.normal(0.0, noise_std, video.shape).astype(np.float32)
    return dataclasses.replace(clip, video=np.clip(np.rint(video), 0, 255).astype(np.uint8))


def flip_tracks(
    tracks: np.ndarray, size: tuple[int, int], horizontal: bool, vertical: bool
) -> np.ndarray:
    """Tracks of a flipped video.

    Args:
        tracks: ``(..., 2)`` ``(x, y)`` pixels, origin at the centre of the top-left pixel.
        size: ``(H, W)`` of the video.
        horizontal: mirror left-right (``x -> W - 1 - x``).
        vertical: mirror top-bottom (``y -> H - 1 - y``).
    """
    out = np.array(tracks, copy=True)
    h, w = size
    if horizontal:
        out[..., 0] = (w - 1) - out[..., 0]
    if vertical:
        out[..., 1] = (h - 1) - out[..., 1]
    return out


def gaussian_blur(video: np.ndarray, sigma: float, radius: int = 5) -> np.ndarray:
    """Separable Gaussian blur of float ``(T, H, W, C)`` frames (edges replicated)."""
    taps = np.arange(-radius, radius + 1, dtype=np.float32)
    kernel = np.exp(-0.5 * (taps / np.float32(sigma)) ** 2)
    kernel /= kernel.sum()
    for axis in (1, 2):
        pad = [(0, 0)] * video.ndim
        pad[axis] = (radius, radius)
        padded = np.pad(video, pad, mode="edge")
        n = video.shape[axis]
        video = sum(
            k * np.take(padded, np.arange(i, i + n), axis=axis) for i, k in enumerate(kernel)
        )
    return video


def erase_patches(
    video: np.ndarray, tracks: np.ndarray, occluded: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Covers random rectangles of frames ``1 .. T-1`` with their mean colour.

    The original's "eraser" augmentation: points under a patch become occluded there.

    Args:
        video: ``(T, H, W, 3)`` uint8.
        tracks: ``(N, T, 2)`` ``(x, y)`` pixels, origin at the centre of the top-left pixel.
        occluded: ``(N, T)`` bool.

    Returns:
        The new video and occlusion.
    """
    video = video.copy()
    occluded = occluded.copy()
    t_count, h, w, _ = video.shape
    longest = max(3, min(h, w) // 4)
    for t in range(1, t_count):
        if rng.random() >= 0.5:
            continue
        for _ in range(int(rng.integers(1, 4))):
            ph, pw = rng.integers(2, longest + 1, 2)
            r0, c0 = int(rng.integers(0, h - ph + 1)), int(rng.integers(0, w - pw + 1))
            patch = video[t, r0 : r0 + ph, c0 : c0 + pw]
            patch[...] = np.round(patch.reshape(-1, 3).mean(axis=0)).astype(np.uint8)
            x, y = tracks[:, t, 0], tracks[:, t, 1]
            under = (x >= c0 - 0.5) & (x <= c0 + pw - 0.5) & (y >= r0 - 0.5) & (y <= r0 + ph - 0.5)
            occluded[under, t] = True
    return video, occluded


def augment_clip(clip: Clip, rng: np.random.Generator) -> Clip:
    """Erased patches, colour jitter, blur, noise and random flips of a
    :class:`~pips_jax.synthetic.Clip` (tracks and occlusion follow)."""
    video, occluded = erase_patches(clip.video, clip.tracks, clip.occluded, rng)
    clip = dataclasses.replace(clip, video=video, occluded=occluded)
    clip = color_jitter(clip, rng, noise_std=0.0)
    frames = clip.video.astype(np.float32)
    if rng.random() < 0.5:
        frames = gaussian_blur(frames, float(rng.uniform(0.1, 2.0)))
    if rng.random() < 0.5:
        frames = frames + rng.normal(0.0, rng.uniform(1.0, 4.0), frames.shape).astype(np.float32)
    clip = dataclasses.replace(clip, video=np.clip(np.rint(frames), 0, 255).astype(np.uint8))
    return flip_clip(clip, bool(rng.random() < 0.5), bool(rng.random() < 0.5))


def flip_clip(clip: Clip, horizontal: bool, vertical: bool) -> Clip:
    """A :class:`~pips_jax.synthetic.Clip` mirrored left-right and/or
    top-bottom: the video, and the tracks with :func:`flip_tracks` (occlusion is
    unchanged; the geometry fields are left as they were)."""
    video = clip.video
    if horizontal:
        video = video[:, :, ::-1]
    if vertical:
        video = video[:, ::-1]
    tracks = flip_tracks(clip.tracks, video.shape[1:3], horizontal, vertical)
    return dataclasses.replace(clip, video=np.ascontiguousarray(video), tracks=tracks)
