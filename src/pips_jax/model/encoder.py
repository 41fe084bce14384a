"""RAFT-style ``BasicEncoder`` with instance normalisation, as used by PIPs.

Layout is channels last: images ``(B, H, W, 3)`` in, feature maps
``(B, H // stride, W // stride, latent_dim)`` out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
from jax import Array, lax

from pips_jax.ops.resize import resize_bilinear_align_corners

INSTANCE_NORM_EPS = 1e-5


def instance_norm(x: Array, eps: float = INSTANCE_NORM_EPS) -> Array:
    """Normalises each channel of each image over its spatial axes (no affine part).

    Args:
        x: ``(B, H, W, C)``.

    Returns:
        ``(B, H, W, C)`` with zero mean and unit (biased) variance per image and
        channel, as PyTorch ``InstanceNorm2d(affine=False)``.
    """
    mean = jnp.mean(x, axis=(1, 2), keepdims=True)
    centred = x - mean
    var = jnp.mean(jnp.square(centred), axis=(1, 2), keepdims=True)
    return centred * jax_rsqrt(var + eps)


def jax_rsqrt(x: Array) -> Array:
    # 1 / sqrt, written out: lax.rsqrt may differ from PyTorch's 1/sqrt in the last bit.
    return 1.0 / jnp.sqrt(x)


def conv_f32_accumulate(*args: Any, **kwargs: Any) -> Array:
    """``lax.conv_general_dilated`` that accumulates (and returns) float32."""
    return lax.conv_general_dilated(*args, **kwargs, preferred_element_type=jnp.float32)


def conv(
    features: int, kernel: int, stride: int = 1, name: str | None = None, dtype: Any = jnp.float32
) -> nn.Conv:
    """A PyTorch-equivalent ``Conv2d`` with symmetric zero padding ``kernel // 2``.

    With ``dtype=bfloat16`` inputs and weights are rounded to bfloat16 and products
    accumulate in float32; the output is float32.
    """
    pad = kernel // 2
    reduced = jnp.dtype(dtype) != jnp.float32
    return nn.Conv(
        features,
        kernel_size=(kernel, kernel),
        strides=(stride, stride),
        padding=((pad, pad), (pad, pad)),
        name=name,
        dtype=dtype,
        conv_general_dilated=conv_f32_accumulate if reduced else None,
    )


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with instance norm and ReLU, plus a (strided) skip."""

    features: int
    stride: int = 1
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        d = self.dtype
        y = nn.relu(instance_norm(conv(self.features, 3, self.stride, name="conv1", dtype=d)(x)))
        y = nn.relu(instance_norm(conv(self.features, 3, 1, name="conv2", dtype=d)(y)))
        if self.stride != 1 or x.shape[-1] != self.features:
            x = instance_norm(conv(self.features, 1, self.stride, name="downsample", dtype=d)(x))
        return nn.relu(x + y)


class BasicEncoder(nn.Module):
    """Multi-scale CNN encoder of PIPs.

    A 7x7 stride-2 stem, then residual stages (two blocks each; the first stage at
    stride 1, every later one at stride 2). Each stage's output is resized with
    align-corners bilinear interpolation to ``(H // stride, W // stride)``; the
    concatenation goes through a 3x3 conv to ``2 * output_dim`` channels, instance
    norm, ReLU and a 1x1 conv to ``output_dim``.
    """

    output_dim: int = 128
    stride: int = 4
    stem_dim: int = 64
    stage_dims: Sequence[int] = (64, 96, 128, 128)
    dtype: Any = jnp.float32  # compute dtype of the convolutions (norms stay float32)

    @nn.compact
    def __call__(self, x: Array) -> Array:
        """Encodes normalised images.

        Args:
            x: ``(B, H, W, 3)`` images scaled to ``[-1, 1]``.

        Returns:
            ``(B, H // stride, W // stride, output_dim)`` feature maps.
        """
        _, h, w, _ = x.shape
        size = (h // self.stride, w // self.stride)
        d = self.dtype
        x = nn.relu(instance_norm(conv(self.stem_dim, 7, 2, name="conv1", dtype=d)(x)))
        outputs = []
        for i, dim in enumerate(self.stage_dims):
            x = ResidualBlock(dim, 1 if i == 0 else 2, dtype=d, name=f"layer{i + 1}_0")(x)
            x = ResidualBlock(dim, 1, dtype=d, name=f"layer{i + 1}_1")(x)
            outputs.append(resize_bilinear_align_corners(x, size))
        x = jnp.concatenate(outputs, axis=-1)
        x = nn.relu(instance_norm(conv(2 * self.output_dim, 3, 1, name="conv2", dtype=d)(x)))
        return conv(self.output_dim, 1, 1, name="conv3", dtype=d)(x).astype(jnp.float32)
