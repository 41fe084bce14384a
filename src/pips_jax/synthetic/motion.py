"""Motions over a clip: the background's smooth homographies, each object's similarities.

Both start from ``config``'s limits (:class:`~pips_jax.synthetic.config.SyntheticConfig`)
and map a layer's reference ``(x, y)`` to frame-``t`` pixels (origin at the centre of
the top-left pixel).
"""

from __future__ import annotations

import math

import numpy as np

from pips_jax.synthetic.config import SyntheticConfig

__all__ = ["background_motion", "object_motion"]


def background_motion(config: SyntheticConfig, rng: np.random.Generator) -> np.ndarray:
    """``(T, 3, 3)`` smooth homographies, identity at frame 0 (see :class:`SyntheticConfig`)."""
    t_count, h, w = config.num_frames, config.height, config.width
    s = np.linspace(0.0, 1.0, t_count) if t_count > 1 else np.zeros(1)

    def path(end: float) -> np.ndarray:
        # |end * (s + a s (1 - s))| <= |end| for |a| <= 1: smooth, bounded, zero at s = 0.
        return end * (s + rng.uniform(-1.0, 1.0) * s * (1.0 - s))

    radius = config.max_background_shift * math.sqrt(rng.random())
    direction = rng.uniform(0.0, 2.0 * np.pi)
    tx = path(radius * math.cos(direction))
    ty = path(radius * math.sin(direction))
    angle = path(np.deg2rad(rng.uniform(-1, 1) * config.max_background_rotation))
    zoom = np.exp(path(rng.uniform(-1, 1) * config.max_background_zoom))
    px = path(rng.uniform(-1, 1) * config.max_background_perspective)
    py = path(rng.uniform(-1, 1) * config.max_background_perspective)

    cx, cy, r = (w - 1) / 2.0, (h - 1) / 2.0, max(h, w) / 2.0
    homs = np.zeros((t_count, 3, 3))
    cos, sin = zoom * np.cos(angle), zoom * np.sin(angle)
    # H = Translate(c + t) @ RotateScale @ Perspective @ Translate(-c)
    lin = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], -2)  # (T, 2, 2)
    persp = np.stack([px / r, py / r], -1)  # (T, 2)
    homs[:, :2, :2] = lin
    homs[:, 2, :2] = persp
    homs[:, 2, 2] = 1.0
    centre_in = np.array([[1, 0, -cx], [0, 1, -cy], [0, 0, 1.0]])
    out = np.zeros((t_count, 3, 3))
    out[:, 0, 0] = out[:, 1, 1] = out[:, 2, 2] = 1.0
    out[:, 0, 2] = cx + tx
    out[:, 1, 2] = cy + ty
    out = out @ homs @ centre_in
    return out / out[:, 2:3, 2:3]


def object_motion(config: SyntheticConfig, rng: np.random.Generator) -> np.ndarray:
    """``(T, 2, 3)`` similarities (rotation + isotropic scale + translation) from an
    object's local ``(x, y)`` to frame-``t`` pixels (see :class:`SyntheticConfig`)."""
    t_count, h, w = config.num_frames, config.height, config.width
    # The object is at a random point of the central frame area at a random frame and
    # moves through it along a gently bent path, so it enters and/or leaves the frame.
    t = np.arange(t_count, dtype=np.float64)
    t_mid = rng.uniform(0, t_count - 1)
    via = np.array([rng.uniform(0.15, 0.85) * (w - 1), rng.uniform(0.15, 0.85) * (h - 1)])
    speed = rng.uniform(0.3, 1.0) * config.max_object_speed
    heading = rng.uniform(0, 2 * np.pi)
    velocity = speed * np.array([math.cos(heading), math.sin(heading)])
    bend = rng.uniform(-1, 1) * config.max_object_speed / max(t_count, 2)
    accel = bend * np.array([-math.sin(heading), math.cos(heading)])
    dt = (t - t_mid)[:, None]
    centre = via + velocity * dt + 0.5 * accel * dt**2
    span = max(t_count - 1, 1)
    angle0 = rng.uniform(0, 2 * np.pi)
    spin = np.deg2rad(rng.uniform(-1, 1) * config.max_object_rotation) / span
    growth = rng.uniform(-1, 1) * config.max_object_zoom / span
    angle = angle0 + spin * (t - t_mid)
    scale = np.exp(growth * (t - t_mid))
    affines = np.zeros((t_count, 2, 3))
    affines[:, 0, 0] = scale * np.cos(angle)
    affines[:, 0, 1] = -scale * np.sin(angle)
    affines[:, 1, 0] = scale * np.sin(angle)
    affines[:, 1, 1] = scale * np.cos(angle)
    affines[:, :, 2] = centre
    return affines
