"""The sin/cos embedding of (flow x, flow y, time) fed to the PIPs mixer."""

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
