"""Conversion of the original PyTorch PIPs state_dict to :class:`~pips_jax.model.pips.Pips` parameters.

The mapping is explicit: :func:`key_mapping` lists, for a :class:`ModelConfig`, every
original key, the Flax parameter path it becomes and how its array is rearranged:

* ``conv2d``: ``Conv2d`` weight ``(out, in, kh, kw)`` -> Flax kernel ``(kh, kw, in, out)``
* ``linear``: ``Linear`` weight ``(out, in)`` -> Flax kernel ``(in, out)``
* ``conv1d``: the MLP-Mixer's token-mixing ``Conv1d(kernel_size=1)`` weight
  ``(out, in, 1)`` -> Flax kernel ``(in, out)``
* ``vector``: biases and norm scales, unchanged (norm ``weight`` becomes ``scale``).

Conversion fails with one :class:`CheckpointError` that lists every unused key,
missing key and shape mismatch, so a checkpoint of another configuration is never
half-loaded.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

import jax
import numpy as np

from pips_jax.config import ModelConfig
from pips_jax.errors import CheckpointError
from pips_jax.model.pips import Params, Pips


class Entry(NamedTuple):
    """One original tensor: its state_dict key, Flax path, and rearrangement kind."""

    torch_key: str
    flax_path: tuple[str, ...]
    kind: str  # "conv2d" | "linear" | "conv1d" | "vector"


def _layer(torch_prefix: str, flax_path: tuple[str, ...], weight_kind: str) -> list[Entry]:
    weight_name = "scale" if weight_kind == "norm" else "kernel"
    kind = "vector" if weight_kind == "norm" else weight_kind
    return [
        Entry(f"{torch_prefix}.weight", (*flax_path, weight_name), kind),
        Entry(f"{torch_prefix}.bias", (*flax_path, "bias"), "vector"),
    ]


def encoder_key_mapping(config: ModelConfig) -> list[Entry]:
    """The tensors of the original ``fnet`` (the BasicEncoder, which PIPs++ shares
    with PIPs) for ``config``'s encoder sizes, in state_dict order."""
    out: list[Entry] = []
    out += _layer("fnet.conv1", ("fnet", "conv1"), "conv2d")
    in_dim = config.encoder_stem_dim
    for i, dim in enumerate(config.encoder_dims, start=1):
        for j in range(2):
            block = ("fnet", f"layer{i}_{j}")
            out += _layer(f"fnet.layer{i}.{j}.conv1", (*block, "conv1"), "conv2d")
            out += _layer(f"fnet.layer{i}.{j}.conv2", (*block, "conv2"), "conv2d")
            stride = 1 if (i == 1 or j == 1) else 2
            if j == 0 and (stride != 1 or in_dim != dim):
                out += _layer(f"fnet.layer{i}.{j}.downsample.0", (*block, "downsample"), "conv2d")
        in_dim = dim
    out += _layer("fnet.conv2", ("fnet", "conv2"), "conv2d")
    out += _layer("fnet.conv3", ("fnet", "conv3"), "conv2d")
    return out


def key_mapping(config: ModelConfig) -> list[Entry]:
    """Every tensor of the original ``Pips`` state_dict for ``config``, in its order."""
    out = encoder_key_mapping(config)
    mixer = "delta_block.to_delta"
    out += _layer(f"{mixer}.0", ("delta_block", "input"), "linear")
    for k in range(config.mixer_depth):
        block = ("delta_block", f"block_{k}")
        t = f"{mixer}.{k + 1}.0"
        c = f"{mixer}.{k + 1}.1"
        out += _layer(f"{t}.fn.0", (*block, "token_fc1"), "conv1d")
        out += _layer(f"{t}.fn.3", (*block, "token_fc2"), "conv1d")
        out += _layer(f"{t}.norm", (*block, "token_norm"), "norm")
        out += _layer(f"{c}.fn.0", (*block, "channel_fc1"), "linear")
        out += _layer(f"{c}.fn.3", (*block, "channel_fc2"), "linear")
        out += _layer(f"{c}.norm", (*block, "channel_norm"), "norm")
    out += _layer(f"{mixer}.{config.mixer_depth + 1}", ("delta_block", "final_norm"), "norm")
    out += _layer(f"{mixer}.{config.mixer_depth + 3}", ("delta_block", "head"), "linear")
    out += _layer("norm", ("ffeat_norm",), "norm")
    out += _layer("ffeat_updater.0", ("ffeat_updater",), "linear")
    out += _layer("vis_predictor.0", ("vis_predictor",), "linear")
    return out


def to_flax(array: np.ndarray, kind: str) -> np.ndarray:
    """Rearranges one original array into its Flax layout."""
    if kind == "conv2d":
        return np.transpose(array, (2, 3, 1, 0))
    if kind == "linear":
        return np.transpose(array, (1, 0))
    if kind == "conv1d":
        return np.transpose(array[:, :, 0], (1, 0))
    return array


def torch_shape(flax_shape: tuple[int, ...], kind: str) -> tuple[int, ...]:
    """The original tensor shape that becomes ``flax_shape`` under ``kind``."""
    if kind == "conv2d":
        kh, kw, i, o = flax_shape
        return (o, i, kh, kw)
    if kind == "linear":
        i, o = flax_shape
        return (o, i)
    if kind == "conv1d":
        i, o = flax_shape
        return (o, i, 1)
    return tuple(flax_shape)


def _get(tree: Mapping, path: tuple[str, ...]):
    for name in path:
        tree = tree[name]
    return tree


def _set(tree: dict, path: tuple[str, ...], value: np.ndarray) -> None:
    for name in path[:-1]:
        tree = tree.setdefault(name, {})
    tree[path[-1]] = value


def convert_state_dict(
    state_dict: Mapping[str, np.ndarray], config: ModelConfig | None = None
) -> Params:
    """Converts an original PIPs state_dict to a Flax parameter tree.

    Args:
        state_dict: ``{key: array}`` as saved by the original (``model_state_dict``),
            arrays in PyTorch layouts.
        config: the model the checkpoint is for (default: the released model).

    Returns:
        Nested dict of float32 NumPy arrays matching ``Pips(config).init`` exactly.

    Raises:
        CheckpointError: listing every unused key, missing key and shape mismatch.
    """
    config = config or ModelConfig()
    shapes = Pips(config).param_shapes()
    mapping = key_mapping(config)
    mapped_paths = {e.flax_path for e in mapping}
    all_paths = {
        tuple(k.key for k in path) for path, _ in jax.tree_util.tree_flatten_with_path(shapes)[0]
    }
    if mapped_paths != all_paths:  # a bug in key_mapping, not in the checkpoint
        raise AssertionError(
            f"key mapping does not cover the model: {sorted(all_paths ^ mapped_paths)}"
        )

    missing, mismatched = [], []
    params: dict = {}
    for entry in mapping:
        if entry.torch_key not in state_dict:
            missing.append(entry.torch_key)
            continue
        array = np.asarray(state_dict[entry.torch_key])
        expected = torch_shape(tuple(_get(shapes, entry.flax_path).shape), entry.kind)
        if tuple(array.shape) != expected:
            mismatched.append(f"{entry.torch_key}: expected {expected}, found {tuple(array.shape)}")
            continue
        if not np.issubdtype(array.dtype, np.floating):
            mismatched.append(f"{entry.torch_key}: expected a float tensor, found {array.dtype}")
            continue
        _set(
            params,
            entry.flax_path,
            np.ascontiguousarray(to_flax(array, entry.kind), dtype=np.float32),
        )
    known = {e.torch_key for e in mapping}
    unused = [k for k in state_dict if k not in known]
    if missing or mismatched or unused:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys: {', '.join(missing)}")
        if unused:
            parts.append(f"{len(unused)} unused keys: {', '.join(unused)}")
        if mismatched:
            parts.append(f"{len(mismatched)} shape mismatches: {'; '.join(mismatched)}")
        raise CheckpointError(
            f"state_dict does not match the PIPs model {config.to_json()}: " + " | ".join(parts)
        )
    return params


def convert_checkpoint(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    config: ModelConfig | None = None,
) -> Path:
    """Converts an original ``.pth`` checkpoint to a pips-jax ``.safetensors`` file.

    Reads ``src`` with the safe reader (no torch, no code execution), converts its
    ``model_state_dict`` (fails listing every key problem), checks that the converted
    tree loads back identically, and only then writes ``dst`` atomically.

    Args:
        src: the original checkpoint, e.g. ``model-000200000.pth``.
        dst: output file; if an existing folder, ``<dst>/<src stem>.safetensors``.
        config: model configuration of the checkpoint (default: the released model,
            stride 4). The stride is not stored in the weights: give the one the
            checkpoint was trained with.

    Returns:
        The written path.
    """
    from pips_jax.checkpoint.pth import load_state_dict
    from pips_jax.checkpoint.store import load_params, save_params

    config = config or ModelConfig()
    src, dst = Path(src), Path(dst)
    if dst.is_dir():
        dst = dst / f"{src.stem}.safetensors"
    digest = hashlib.sha256(src.read_bytes()).hexdigest() if src.is_file() else ""
    params = convert_state_dict(load_state_dict(src), config)
    save_params(dst, params, config, {"source": src.name, "source_sha256": digest})
    loaded, _, _ = load_params(dst, config)
    for key, value in flatten_pairs(params):
        if not np.array_equal(value, _get(loaded, key)):  # pragma: no cover - disk corruption
            dst.unlink(missing_ok=True)
            raise CheckpointError(
                f"{dst}: verification failed, {'/'.join(key)} differs after reload"
            )
    return dst


def flatten_pairs(tree: Mapping, prefix: tuple[str, ...] = ()):
    """Yields ``(path, leaf)`` for a nested dict."""
    for k, v in tree.items():
        if isinstance(v, Mapping):
            yield from flatten_pairs(v, (*prefix, k))
        else:
            yield (*prefix, k), v
