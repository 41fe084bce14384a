"""Choosing the weights a command runs with.

In order of preference: an explicit ``checkpoint``; the released PIPs reference
weights converted into the cache by ``pips-jax download``; the weights this project
trained itself on synthetic clips and ships inside the package
(:data:`SHIPPED_NAME`, see ``src/pips_jax/assets/README.md`` for how they were made
and what they reach).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pips_jax.config import ModelConfig, Pips2Config, config_class
from pips_jax.errors import CheckpointError
from pips_jax.model.pips import Params

SHIPPED_NAME = "pips-jax-small-synthetic"
ASSETS = Path(__file__).resolve().parent / "assets"


@dataclasses.dataclass
class Weights:
    """Parameters with their config, a description of where they came from and their card.

    Attributes:
        params: the parameter tree of ``model_for(config)``.
        config: the model configuration the parameters belong to (its family:
            ``config.family``).
        description: where they came from, for messages.
        card: the weights' card: numbers and choices, among them ``iters`` (refinement
            iterations per window) and ``input_resolution`` (``(H, W)`` the model runs at
            on 256x256 clips), which :meth:`pips_jax.inference.InferenceSettings.resolve`
            reads; empty for weights without a card.
    """

    params: Params
    config: ModelConfig
    description: str
    card: Mapping[str, Any] = dataclasses.field(default_factory=dict)


def shipped_path() -> Path:
    """The weights file shipped inside the package (it may be absent in a checkout)."""
    return ASSETS / f"{SHIPPED_NAME}.safetensors"


def shipped_card() -> dict[str, Any]:
    """The shipped weights' card (training command, data seed, evaluation), or {}."""
    card = ASSETS / f"{SHIPPED_NAME}.json"
    if not card.is_file():
        return {}
    return json.loads(card.read_text())


def load_shipped() -> Weights | None:
    """The shipped weights, or None when the package has none."""
    from pips_jax.checkpoint.store import load_params

    path = shipped_path()
    if not path.is_file():
        return None
    params, config, _ = load_params(path)
    return Weights(
        params,
        config,
        f"pips-jax's own weights '{SHIPPED_NAME}' (trained on synthetic clips; {path})",
        shipped_card(),
    )


def load_weights(
    checkpoint: str | Path | None = None, config: ModelConfig | Pips2Config | None = None
) -> Weights:
    """Loads ``checkpoint``, or the default weights.

    ``checkpoint`` is an original ``.pth`` (PIPs or PIPs++, the family read from its
    keys), a converted ``.safetensors`` (the family in its metadata) or a
    ``pips-jax train`` run folder (the parameters of its latest checkpoint, also while
    the run goes on; the run's model config comes with them and ``config`` is unused).

    Without ``checkpoint`` the converted released weights in the cache are used
    (:func:`pips_jax.checkpoint.hub.reference_path`); if they are not there, the
    weights shipped with the package (:func:`shipped_path`), and the description says
    so and how to get the released ones.

    Raises:
        CheckpointError: no weights were found, with the commands that get them.
        InputError: ``checkpoint`` is a folder without training checkpoints.
    """
    from pips_jax.checkpoint import hub
    from pips_jax.checkpoint.store import load_params

    if checkpoint is not None:
        path = Path(checkpoint)
        if not path.exists():
            raise CheckpointError(f"checkpoint {path} does not exist; {hub.HOW_TO_GET_WEIGHTS}")
        if path.is_dir():
            from pips_jax.training.checkpoints import load_run_params

            params, stored, step = load_run_params(path)
            return Weights(params, stored, f"{path} (pips-jax train run, step {step})")
        if path.suffix == ".pth":
            from pips_jax.checkpoint.convert import convert_state_dict, detect_family
            from pips_jax.checkpoint.pth import load_state_dict

            state_dict = load_state_dict(path)
            config = config or config_class(detect_family(state_dict))()
            params = convert_state_dict(state_dict, config)
            return Weights(
                params,
                config,
                f"{path} (original {config.label} checkpoint, converted in memory)",
            )
        params, stored, _ = load_params(path, config)
        return Weights(params, stored, str(path))
    cached = hub.reference_path()
    if cached.is_file():
        params, stored, _ = load_params(cached)
        return Weights(params, stored, f"released PIPs reference weights ({cached})")
    shipped = load_shipped()
    if shipped is not None:
        shipped.description = (
            f"{shipped.description}; the released PIPs weights are not in the cache "
            f"({cached}): `pips-jax download` fetches them"
        )
        return shipped
    raise CheckpointError(
        f"no weights found: the released weights are not in the cache ({cached}); {hub.HOW_TO_GET_WEIGHTS}"
    )
