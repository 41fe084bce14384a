"""The model of each family: :func:`model_for` builds :class:`~pips_jax.model.pips.Pips`
for a :class:`~pips_jax.config.ModelConfig` and :class:`~pips_jax.model.pips2.Pips2`
for a :class:`~pips_jax.config.Pips2Config`."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from pips_jax.config import ModelConfig, Pips2Config
from pips_jax.errors import InputError
from pips_jax.model.pips import Pips
from pips_jax.model.pips2 import Pips2


def model_for(config: Any, compute_dtype: Any = jnp.float32) -> Pips | Pips2:
    """The pure-function model of ``config``'s family.

    Raises:
        InputError: ``config`` is neither family's config.
    """
    if isinstance(config, ModelConfig):
        return Pips(config, compute_dtype)
    if isinstance(config, Pips2Config):
        return Pips2(config, compute_dtype)
    raise InputError(
        f"model config: expected a ModelConfig (PIPs) or a Pips2Config (PIPs++), found "
        f"{type(config).__name__}"
    )
