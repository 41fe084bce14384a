"""Training PIPs or PIPs++ on synthetic clips: config, losses, data, train step,
checkpoints, loop.

Entry points: :func:`train` (also ``pips-jax train``) and :func:`export_params`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pips_jax.training.config import TrainConfig

if TYPE_CHECKING:
    from pips_jax.training.checkpoints import export_params
    from pips_jax.training.loop import train

__all__ = ["TrainConfig", "export_params", "train"]


def __getattr__(name: str) -> Any:
    # train and export_params are imported on first use: they import JAX, and the
    # command line reads TrainConfig's fields (the train flags) before it may.
    if name == "train":
        from pips_jax.training.loop import train

        return train
    if name == "export_params":
        from pips_jax.training.checkpoints import export_params

        return export_params
    raise AttributeError(f"module 'pips_jax.training' has no attribute {name!r}")
