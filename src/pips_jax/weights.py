"""Choosing the weights a command runs with."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from pips_jax.config import ModelConfig
from pips_jax.errors import CheckpointError
from pips_jax.model.pips import Params


@dataclasses.dataclass
class Weights:
    """Parameters with their config and a one-line description of where they came from."""

    params: Params
    config: ModelConfig
    description: str


def load_weights(
    checkpoint: str | Path | None = None, config: ModelConfig | None = None
) -> Weights:
    """Loads ``checkpoint`` (an original ``.pth`` or a converted ``.safetensors``), or the default.

    Without ``checkpoint`` the converted released weights in the cache are used
    (:func:`pips_jax.checkpoint.hub.reference_path`).

    Raises:
        CheckpointError: no weights were found, with the commands that get them.
    """
    from pips_jax.checkpoint import hub
    from pips_jax.checkpoint.store import load_params

    if checkpoint is not None:
        path = Path(checkpoint)
        if not path.exists():
            raise CheckpointError(f"checkpoint {path} does not exist; {hub.HOW_TO_GET_WEIGHTS}")
        if path.suffix == ".pth":
            from pips_jax.checkpoint.convert import convert_state_dict
            from pips_jax.checkpoint.pth import load_state_dict

            config = config or ModelConfig()
            params = convert_state_dict(load_state_dict(path), config)
            return Weights(params, config, f"{path} (original checkpoint, converted in memory)")
        params, stored, _ = load_params(path, config)
        return Weights(params, stored, str(path))
    cached = hub.reference_path()
    if cached.is_file():
        params, stored, _ = load_params(cached)
        return Weights(params, stored, f"released PIPs reference weights ({cached})")
    raise CheckpointError(
        f"no weights found: the released weights are not in the cache ({cached}); {hub.HOW_TO_GET_WEIGHTS}"
    )
