"""pips-jax: the PIPs point tracker (Harley et al., ECCV 2022) in JAX/Flax.

Coordinates are ``(x, y)`` in input pixels, origin at the centre of the top-left
pixel, unless a function says otherwise.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pips_jax.config import ModelConfig
from pips_jax.errors import CheckpointError, InputError, PipsError

if TYPE_CHECKING:
    from pips_jax.model.pips import Pips, PipsOutput

__version__ = "0.1.0"

__all__ = ["CheckpointError", "InputError", "ModelConfig", "Pips", "PipsError", "PipsOutput"]


def __getattr__(name: str) -> Any:
    # Pips and PipsOutput are imported on first use: importing JAX and Flax takes a
    # second or more, and the command line (``pips_jax.cli``, which imports this
    # package first) must be able to take Ctrl-C before that.
    if name in ("Pips", "PipsOutput"):
        from pips_jax.model import pips

        return getattr(pips, name)
    raise AttributeError(f"module 'pips_jax' has no attribute {name!r}")
