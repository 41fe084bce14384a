"""The MLP-Mixer that predicts coordinate and feature updates for a trajectory.

Tokens are the S frames of one point's trajectory; channels are the mixer width.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp
from jax import Array

NORM_EPS = 1e-5


def layer_norm(name: str) -> nn.LayerNorm:
    """PyTorch-equivalent LayerNorm (eps 1e-5, two-pass variance)."""
    return nn.LayerNorm(epsilon=NORM_EPS, use_fast_variance=False, name=name)


def gelu(x: Array) -> Array:
    """Exact (erf) GELU, as PyTorch ``nn.GELU()``."""
    return nn.gelu(x, approximate=False)


class MixerBlock(nn.Module):
    """Pre-norm token-mixing MLP then pre-norm channel-mixing MLP, each residual."""

    tokens: int
    dim: int
    expansion: int = 4

    @nn.compact
    def __call__(self, x: Array) -> Array:
        """Args: x ``(B, tokens, dim)``. Returns ``(B, tokens, dim)``."""
        # Token mixing: the original applies Conv1d(kernel_size=1) with the tokens as
        # channels, i.e. a dense layer over the token axis.
        y = jnp.swapaxes(layer_norm("token_norm")(x), -1, -2)  # B, dim, tokens
        y = nn.Dense(self.tokens * self.expansion, name="token_fc1")(y)
        y = nn.Dense(self.tokens, name="token_fc2")(gelu(y))
        x = x + jnp.swapaxes(y, -1, -2)
        y = layer_norm("channel_norm")(x)
        y = nn.Dense(self.dim * self.expansion, name="channel_fc1")(y)
        y = nn.Dense(self.dim, name="channel_fc2")(gelu(y))
        return x + y


class MLPMixer(nn.Module):
    """Input projection, ``depth`` mixer blocks, LayerNorm, mean over tokens, head."""

    tokens: int
    dim: int
    depth: int
    output_dim: int
    expansion: int = 4

    @nn.compact
    def __call__(self, x: Array) -> Array:
        """Args: x ``(B, tokens, input_dim)``. Returns ``(B, output_dim)``."""
        x = nn.Dense(self.dim, name="input")(x)
        for i in range(self.depth):
            x = MixerBlock(self.tokens, self.dim, self.expansion, name=f"block_{i}")(x)
        x = layer_norm("final_norm")(x)
        x = jnp.mean(x, axis=-2)
        return nn.Dense(self.output_dim, name="head")(x)
