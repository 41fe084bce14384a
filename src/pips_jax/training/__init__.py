"""Training PIPs on synthetic clips: config, losses, data, train step, checkpoints, loop.

Entry points: :func:`train` (also ``pips-jax train``) and :func:`export_params`.
"""

from pips_jax.training.checkpoints import export_params
from pips_jax.training.config import TrainConfig
from pips_jax.training.loop import train

__all__ = ["TrainConfig", "export_params", "train"]
