"""Saving and loading converted parameters in a safe, framework-neutral file.

Format (``.safetensors``, https://github.com/huggingface/safetensors): one float32
tensor per parameter, named by its Flax path joined with ``/`` (for example
``fnet/conv1/kernel``, ``delta_block/block_0/token_fc1/kernel``), in Flax layouts
(conv kernels ``(kh, kw, in, out)``, dense kernels ``(in, out)``). The header's
metadata holds:

* ``format``: ``"pips-jax"``; ``format_version``: ``"1"``;
* ``config``: the model's config (:class:`~pips_jax.config.ModelConfig` or
  :class:`~pips_jax.config.Pips2Config`) as JSON;
* ``family``: ``"pips"`` or ``"pips2"``, the config's family (files written before
  PIPs++ existed have none and are PIPs);
* any extra string fields given to :func:`save_params` (for example ``source``).

Any safetensors reader (NumPy, PyTorch, ...) can read the file; loading executes no
code. Files are written to a temporary name in the target folder and renamed, so an
interrupted or failed write never leaves a partial file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from pips_jax.config import FAMILIES, ModelConfig, Pips2Config
from pips_jax.errors import CheckpointError, InputError
from pips_jax.files import atomic_write_bytes
from pips_jax.model.families import model_for
from pips_jax.model.pips import Params

FORMAT = "pips-jax"
FORMAT_VERSION = "1"


def flatten(params: Mapping) -> dict[str, Any]:
    """``{"a": {"b": x}}`` -> ``{"a/b": x}`` (leaves unchanged)."""
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    return {"/".join(k.key for k in path): v for path, v in leaves}


def _listing(items: list, limit: int = 8) -> str:
    shown = ", ".join(str(i) for i in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def unflatten(flat: Mapping[str, np.ndarray]) -> dict:
    """Inverse of :func:`flatten`."""
    out: dict = {}
    for key, value in flat.items():
        node = out
        *parents, leaf = key.split("/")
        for name in parents:
            node = node.setdefault(name, {})
        node[leaf] = value
    return out


def save_params(
    path: str | os.PathLike,
    params: Params,
    config: ModelConfig | Pips2Config,
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Saves parameters and their config as a ``.safetensors`` file (atomically).

    Args:
        path: output file.
        params: Flax parameter tree of ``model_for(config)``.
        config: the model configuration, stored in the header.
        metadata: extra string fields for the header.

    Returns:
        The written path.
    """
    flat = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in flatten(params).items()}
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "family": config.family,
        "config": config.to_json(),
    }
    header.update({str(k): str(v) for k, v in (metadata or {}).items()})
    atomic_write_bytes(path, st_save(flat, metadata=header))
    return Path(path)


def read_metadata(data: bytes, path: str | os.PathLike) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors buffer (validated as pips-jax parameters)."""
    if len(data) < 8:
        raise CheckpointError(
            f"{path}: expected a pips-jax .safetensors file, found {len(data)} bytes"
        )
    n = int.from_bytes(data[:8], "little")
    if n <= 0 or 8 + n > len(data):
        raise CheckpointError(
            f"{path}: expected a safetensors header of {n} bytes, file has {len(data) - 8}; "
            "truncated or not a safetensors file"
        )
    try:
        header = json.loads(data[8 : 8 + n])
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: safetensors header is not valid JSON ({e})") from None
    meta = (header.get("__metadata__") or {}) if isinstance(header, dict) else {}
    if meta.get("format") != FORMAT:
        raise CheckpointError(
            f"{path}: expected pips-jax parameters (metadata format={FORMAT!r}), "
            f"found format={meta.get('format')!r}"
        )
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: expected format_version {FORMAT_VERSION}, found {meta.get('format_version')!r}"
        )
    return meta


def load_params(
    path: str | os.PathLike, config: ModelConfig | Pips2Config | None = None
) -> tuple[Params, ModelConfig | Pips2Config, dict[str, str]]:
    """Loads a file written by :func:`save_params` and checks it against the model.

    Args:
        path: a ``.safetensors`` file of pips-jax parameters.
        config: if given, the file's stored config must equal it.

    Returns:
        ``(params, config, metadata)``: the parameter tree (NumPy arrays), the stored
        config and the header metadata.

    Raises:
        CheckpointError: unreadable or truncated file, another format, a config other
            than ``config``, or parameters that do not fit the stored config.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise CheckpointError(f"cannot read parameters {path}: {e.strerror or e}") from None
    meta = read_metadata(data, path)
    family = meta.get("family", "pips")
    if family not in FAMILIES:
        raise CheckpointError(
            f"{path}: unknown model family {family!r} in metadata; expected one of "
            f"{', '.join(FAMILIES)}"
        )
    try:
        stored = FAMILIES[family].from_json(meta["config"])
    except (KeyError, ValueError, TypeError, InputError) as e:
        raise CheckpointError(f"{path}: invalid model config in metadata ({e})") from None
    if config is not None and config != stored:
        if config.family != stored.family:
            raise CheckpointError(
                f"{path}: parameters are {stored.label} weights, expected {config.label} "
                f"weights ({config.family!r})"
            )
        raise CheckpointError(
            f"{path}: parameters are for model {stored.to_json()}, expected {config.to_json()}"
        )
    try:
        flat = st_load(data)
    except (SafetensorError, ValueError) as e:
        raise CheckpointError(f"{path}: corrupt safetensors data ({e})") from None
    expected = {k: tuple(v.shape) for k, v in flatten(model_for(stored).param_shapes()).items()}
    found = {k: tuple(v.shape) for k, v in flat.items()}
    if expected != found:
        missing = sorted(set(expected) - set(found))
        unused = sorted(set(found) - set(expected))
        wrong = sorted(k for k in set(expected) & set(found) if expected[k] != found[k])
        raise CheckpointError(
            f"{path}: parameters do not fit their config: missing [{_listing(missing)}], "
            f"unused [{_listing(unused)}], shape mismatches "
            f"[{_listing([f'{k}: expected {expected[k]}, found {found[k]}' for k in wrong])}]"
        )
    return unflatten(flat), stored, meta
