"""pips-jax: the PIPs point tracker (Harley et al., ECCV 2022) in JAX/Flax.

Coordinates are ``(x, y)`` in input pixels, origin at the centre of the top-left
pixel, unless a function says otherwise.
"""

from pips_jax.config import ModelConfig
from pips_jax.errors import CheckpointError, InputError, PipsError
from pips_jax.model.pips import Pips, PipsOutput

__version__ = "0.1.0"

__all__ = ["CheckpointError", "InputError", "ModelConfig", "Pips", "PipsError", "PipsOutput"]
