"""The MLP-Mixer that predicts coordinate and feature updates for a trajectory.

Tokens are the S frames of one point's trajectory; channels are the mixer width.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp
from jax import Array, lax

NORM_EPS = 1e-5


def layer_norm(name: str) -> nn.LayerNorm:
    """PyTorch-equivalent LayerNorm (eps 1e-5, two-pass variance)."""
    return nn.LayerNorm(epsilon=NORM_EPS, use_fast_variance=False, name=name)


def flat_dot(
    lhs: Array, rhs: Array, dimension_numbers: Any, precision: Any = None, **kwargs: Any
) -> Array:
    """``lax.dot_general`` of a dense layer, ``(..., K) x (K, F) -> (..., F)``, with
    the input's leading axes flattened into one first; other contractions pass through.

    The products are the same. What changes is the backward pass: the kernel's gradient
    of an N-D input contracts over several axes, which XLA:CPU runs through a slow
    generic loop instead of one matrix product (measured in ``benchmarks/README.md``).
    A bfloat16 layer accumulates in float32 (``preferred_element_type`` in ``kwargs``).
    """
    (lhs_contract, rhs_contract), batch = dimension_numbers
    if lhs.ndim <= 2 or batch != ((), ()) or tuple(lhs_contract) != (lhs.ndim - 1,):
        return lax.dot_general(lhs, rhs, dimension_numbers, precision=precision, **kwargs)
    flat = lhs.reshape(-1, lhs.shape[-1])
    out = lax.dot_general(
        flat, rhs, (((1,), rhs_contract), ((), ())), precision=precision, **kwargs
    )
    return out.reshape(*lhs.shape[:-1], *out.shape[1:])


def flat_dot_f32_accumulate(*args: Any, **kwargs: Any) -> Array:
    """:func:`flat_dot` accumulating (and returning) float32."""
    return flat_dot(*args, **kwargs, preferred_element_type=jnp.float32)


def dense(features: int, name: str | None = None, dtype: Any = jnp.float32) -> nn.Dense:
    """A dense layer on the last axis of an N-D input (:func:`flat_dot`); with
    ``dtype=bfloat16`` it rounds inputs and weights to bfloat16 and accumulates in
    float32."""
    reduced = jnp.dtype(dtype) != jnp.float32
    return nn.Dense(
        features,
        name=name,
        dtype=dtype,
        dot_general=flat_dot_f32_accumulate if reduced else flat_dot,
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
