"""The MLP-Mixer that predicts coordinate and feature updates for a trajectory.

Tokens are the S frames of one point's trajectory; channels are the mixer width.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp
from jax import Array

from pips_jax.model.encoder import dot_f32_accumulate

NORM_EPS = 1e-5


def layer_norm(name: str) -> nn.LayerNorm:
    """PyTorch-equivalent LayerNorm (eps 1e-5, two-pass variance)."""
    return nn.LayerNorm(epsilon=NORM_EPS, use_fast_variance=False, name=name)


def dense(features: int, name: str, dtype: Any = jnp.float32) -> nn.Dense:
    """A dense layer; with ``dtype=bfloat16`` it rounds inputs and weights to bfloat16
    and accumulates in float32."""
    reduced = jnp.dtype(dtype) != jnp.float32
    return nn.Dense(
        features, name=name, dtype=dtype, dot_general=dot_f32_accumulate if reduced else None
    )


def gelu(x: Array) -> Array:
    """Exact (erf) GELU, as PyTorch ``nn.GELU()``."""
    return nn.gelu(x, approximate=False)


class MixerBlock(nn.Module):
    """Pre-norm token-mixing MLP then pre-norm channel-mixing MLP, each residual."""

    tokens: int
    dim: int
    expansion: int = 4
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        """Args: x ``(B, tokens, dim)``. Returns ``(B, tokens, dim)``."""
        d = self.dtype
        # Token mixing: the original applies Conv1d(kernel_size=1) with the tokens as
        # channels, i.e. a dense layer over the token axis.
        y = jnp.swapaxes(layer_norm("token_norm")(x), -1, -2)  # B, dim, tokens
        y = dense(self.tokens * self.expansion, "token_fc1", d)(y)
        y = dense(self.tokens, "token_fc2", d)(gelu(y))
        x = x + jnp.swapaxes(y, -1, -2).astype(x.dtype)
        y = layer_norm("channel_norm")(x)
        y = dense(self.dim * self.expansion, "channel_fc1", d)(y)
        y = dense(self.dim, "channel_fc2", d)(gelu(y))
        return x + y.astype(x.dtype)


class MLPMixer(nn.Module):
    """Input projection, ``depth`` mixer blocks, LayerNorm, mean over tokens, head."""

    tokens: int
    dim: int
    depth: int
    output_dim: int
    expansion: int = 4
    dtype: Any = jnp.float32  # compute dtype of the dense layers (norms stay float32)

    @nn.compact
    def __call__(self, x: Array) -> Array:
        """Args: x ``(B, tokens, input_dim)``. Returns ``(B, output_dim)`` float32."""
        x = dense(self.dim, "input", self.dtype)(x).astype(jnp.float32)
        for i in range(self.depth):
            x = MixerBlock(self.tokens, self.dim, self.expansion, self.dtype, name=f"block_{i}")(x)
        x = layer_norm("final_norm")(x)
        x = jnp.mean(x, axis=-2)
        return dense(self.output_dim, "head", self.dtype)(x).astype(jnp.float32)
