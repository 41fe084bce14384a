"""The sin/cos embeddings of trajectories' motion: PIPs' of (flow x, flow y, time)
fed to its mixer, and PIPs++'s of the per-frame flow (x, y) fed to its delta_block."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax import Array


def sincos_frequencies(channels: int) -> np.ndarray:
    """Frequencies of the original ``get_3d_embedding``: ``arange(0, C, 2) * 1000 / C``.

    For ``C = 64`` these are ``0, 31.25, 62.5, ..., 968.75`` radians per unit.
    """
    return np.arange(0, channels, 2, dtype=np.float32) * np.float32(1000.0 / channels)


def sincos_embedding_3d(xyz: Array, channels: int) -> Array:
    """Embeds each of three coordinates with interleaved sin/cos and appends the raw values.

    Args:
        xyz: ``(..., 3)`` values, in PIPs ``(flow x, flow y, time)`` with flows in
            feature-map pixels (input pixels / stride).
        channels: sin/cos channels per coordinate (even).

    Returns:
        ``(..., 3 * channels + 3)``: for each coordinate in order x, y, z a block whose
        even channels are ``sin(v * f_k)`` and odd channels ``cos(v * f_k)``, then the
        three raw values.
    """
    freqs = jnp.asarray(sincos_frequencies(channels))
    blocks = []
    for axis in range(3):
        angle = xyz[..., axis : axis + 1] * freqs
        # Interleave: sin in even channels, cos in odd channels.
        pe = jnp.stack([jnp.sin(angle), jnp.cos(angle)], axis=-1)
        blocks.append(pe.reshape(*angle.shape[:-1], channels))
    blocks.append(xyz)
    return jnp.concatenate(blocks, axis=-1)


def torch_linspace(start: float, end: float, steps: int) -> np.ndarray:
    """float32 ``linspace`` computed the way PyTorch's CPU kernel does.

    The first half counts up from ``start`` and the second half down from ``end``,
    which differs from NumPy's rounding in the last bit; PIPs feeds these times
    through frequencies near 1000, so the last bit matters.
    """
    if steps == 1:
        return np.array([start], dtype=np.float32)
    start32, end32 = np.float32(start), np.float32(end)
    step = (end32 - start32) / np.float32(steps - 1)
    half = steps // 2
    out = np.empty(steps, dtype=np.float32)
    for i in range(steps):
        if i < half:
            out[i] = start32 + step * np.float32(i)
        else:
            out[i] = end32 - step * np.float32(steps - i - 1)
    return out


def sincos_frequencies_2d(channels: int, temperature: float = 10000.0) -> np.ndarray:
    """Frequencies of the original PIPs++ ``posemb_sincos_2d_xy``:
    ``1 / temperature ** (k / (C/4 - 1))`` for ``k = 0 .. C/4 - 1`` (float32), from 1
    down to ``1 / temperature``."""
    quarter = channels // 4
    omega = np.arange(quarter, dtype=np.float32) / np.float32(quarter - 1)
    return (np.float32(1.0) / (np.float32(temperature) ** omega)).astype(np.float32)


def sincos_embedding_2d(xy: Array, channels: int, temperature: float = 10000.0) -> Array:
    """Embeds ``(x, y)`` with blocked sin/cos and appends the raw values (PIPs++).

    Args:
        xy: ``(..., 2)`` values, in PIPs++ the flow ``coords[t+1] - coords[t]`` in
            feature-map pixels (input pixels / stride).
        channels: embedding channels, a multiple of 4.
        temperature: the frequencies run from 1 to ``1 / temperature``.

    Returns:
        ``(..., channels + 2)``: ``[sin(x w) | cos(x w) | sin(y w) | cos(y w) | x, y]``,
        each block ``channels / 4`` wide over the frequencies ``w`` in order.
    """
    freqs = jnp.asarray(sincos_frequencies_2d(channels, temperature))
    x = xy[..., 0:1] * freqs
    y = xy[..., 1:2] * freqs
    return jnp.concatenate([jnp.sin(x), jnp.cos(x), jnp.sin(y), jnp.cos(y), xy], axis=-1)
