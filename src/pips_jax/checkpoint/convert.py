"""Conversion of the original PyTorch state_dicts of PIPs (aharley/pips) and PIPs++
(aharley/pips2) to :class:`~pips_jax.model.pips.Pips` and
:class:`~pips_jax.model.pips2.Pips2` parameters.

The family is read from the keys (:func:`detect_family`): PIPs' update network is an
MLP-Mixer (``delta_block.to_delta.*``), PIPs++'s a 1-D ResNet
(``delta_block.first_block_conv.*``). The mapping is explicit: :func:`key_mapping`
(PIPs, for a :class:`ModelConfig`) and :func:`pips2_key_mapping` (PIPs++, for a
:class:`Pips2Config`) list every original key, the Flax parameter path it becomes and
how its array is rearranged:

* ``conv2d``: ``Conv2d`` weight ``(out, in, kh, kw)`` -> Flax kernel ``(kh, kw, in, out)``
* ``linear``: ``Linear`` weight ``(out, in)`` -> Flax kernel ``(in, out)``
* ``conv1d``: the MLP-Mixer's token-mixing ``Conv1d(kernel_size=1)`` weight
  ``(out, in, 1)`` -> Flax kernel ``(in, out)``
* ``conv_time``: PIPs++'s ``Conv1d`` over time, weight ``(out, in, k)`` -> Flax
  kernel ``(k, in, out)``
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

from pips_jax.config import ModelConfig, Pips2Config, config_class
from pips_jax.errors import CheckpointError
from pips_jax.model.pips import Params


class Entry(NamedTuple):
    """One original tensor: its state_dict key, Flax path, and rearrangement kind."""

    torch_key: str
    flax_path: tuple[str, ...]
    kind: str  # "conv2d" | "linear" | "conv1d" | "conv_time" | "vector"


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


def pips2_key_mapping(config: Pips2Config) -> list[Entry]:
    """Every tensor of the original PIPs++ ``Pips`` state_dict that its forward uses,
    for ``config``, in state_dict order (the unused ``norm.*`` GroupNorm is
    :data:`PIPS2_UNUSED_KEYS`)."""
    out = encoder_key_mapping(config)
    out += _layer("delta_block.first_block_conv.conv", ("delta_block", "first_conv"), "conv_time")
    for i in range(config.delta_blocks):
        for conv in ("conv1", "conv2"):
            out += _layer(
                f"delta_block.basicblock_list.{i}.{conv}.conv",
                ("delta_block", f"block_{i}", conv),
                "conv_time",
            )
    out += _layer("delta_block.dense", ("delta_block", "head"), "linear")
    return out


#: Keys of the PIPs++ state_dict its forward never reads: ``Pips.norm``, a GroupNorm
#: the original constructs and does not call. Conversion accepts and reports them.
PIPS2_UNUSED_KEYS = ("norm.weight", "norm.bias")


#: A key prefix only each family's state_dict has.
FAMILY_MARKERS = {"pips": "delta_block.to_delta.", "pips2": "delta_block.first_block_conv."}


def detect_family(state_dict: Mapping[str, object]) -> str:
    """``"pips"`` or ``"pips2"``, read from a state_dict's keys (:data:`FAMILY_MARKERS`).

    Raises:
        CheckpointError: the keys are of neither family.
    """
    found = [
        f for f, marker in FAMILY_MARKERS.items() if any(k.startswith(marker) for k in state_dict)
    ]
    if len(found) != 1:
        sample = ", ".join(list(state_dict)[:4])
        raise CheckpointError(
            "state_dict is neither a PIPs checkpoint (delta_block.to_delta.*) nor a PIPs++ "
            f"one (delta_block.first_block_conv.*); found {len(state_dict)} keys ({sample}, ...)"
        )
    return found[0]


def ignored_keys(state_dict: Mapping[str, object]) -> list[str]:
    """The keys of ``state_dict`` that conversion accepts but the forward never reads
    (PIPs++'s :data:`PIPS2_UNUSED_KEYS`)."""
    return [k for k in state_dict if k in PIPS2_UNUSED_KEYS]


def to_flax(array: np.ndarray, kind: str) -> np.ndarray:
    """Rearranges one original array into its Flax layout."""
    if kind == "conv2d":
        return np.transpose(array, (2, 3, 1, 0))
    if kind == "linear":
        return np.transpose(array, (1, 0))
    if kind == "conv1d":
        return np.transpose(array[:, :, 0], (1, 0))
    if kind == "conv_time":
        return np.transpose(array, (2, 1, 0))
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
    if kind == "conv_time":
        k, i, o = flax_shape
        return (o, i, k)
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
    state_dict: Mapping[str, np.ndarray], config: ModelConfig | Pips2Config | None = None
) -> Params:
    """Converts an original PIPs or PIPs++ state_dict to a Flax parameter tree.

    Args:
        state_dict: ``{key: array}`` as saved by the original (``model_state_dict``),
            arrays in PyTorch layouts.
        config: the model the checkpoint is for (default: the released model of the
            family :func:`detect_family` reads from the keys). PIPs++'s unused
            ``norm.*`` (:data:`PIPS2_UNUSED_KEYS`) is accepted and left out.

    Returns:
        Nested dict of float32 NumPy arrays matching ``model_for(config).init`` exactly.

    Raises:
        CheckpointError: the state_dict is of the other family than ``config``'s, or
            a list of every unused key, missing key and shape mismatch.
    """
    from pips_jax.model.families import model_for

    family = detect_family(state_dict)
    config = config or config_class(family)()
    if family != config.family:
        found = config_class(family)
        raise CheckpointError(
            f"state_dict is a {found.label} checkpoint ({FAMILY_MARKERS[family]}*), "
            f"expected {config.label} ({FAMILY_MARKERS[config.family]}*); "
            f"convert it as --model {family}"
        )
    shapes = model_for(config).param_shapes()
    mapping = key_mapping(config) if family == "pips" else pips2_key_mapping(config)
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
    if family == "pips2":
        known.update(PIPS2_UNUSED_KEYS)
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
            f"state_dict does not match the {config.label} model {config.to_json()}: "
            + " | ".join(parts)
        )
    return params


def convert_checkpoint(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    config: ModelConfig | Pips2Config | None = None,
    family: str | None = None,
) -> Path:
    """Converts an original ``.pth`` checkpoint to a pips-jax ``.safetensors`` file.

    Reads ``src`` with the safe reader (no torch, no code execution), converts its
    ``model_state_dict`` (fails listing every key problem), checks that the converted
    tree loads back identically, and only then writes ``dst`` atomically.

    Args:
        src: the original checkpoint, e.g. ``model-000200000.pth``.
        dst: output file; if an existing folder, ``<dst>/<src stem>.safetensors``.
        config: model configuration of the checkpoint (default: the released model
            of ``family``, for PIPs stride 4). The stride is not stored in the
            weights: give the one the checkpoint was trained with.
        family: ``"pips"`` or ``"pips2"`` to insist on one (default: read from the
            keys, :func:`detect_family`); a checkpoint of the other family fails.

    Returns:
        The written path. Its metadata names the family and the ignored keys.
    """
    from pips_jax.checkpoint.pth import load_state_dict
    from pips_jax.checkpoint.store import load_params, save_params

    src, dst = Path(src), Path(dst)
    if dst.is_dir():
        dst = dst / f"{src.stem}.safetensors"
    digest = hashlib.sha256(src.read_bytes()).hexdigest() if src.is_file() else ""
    state_dict = load_state_dict(src)
    if config is None:
        config = config_class(family or detect_family(state_dict))()
    elif family is not None and family != config.family:
        raise CheckpointError(
            f"model family {family!r} given with a {config.label} config ({config.family!r})"
        )
    params = convert_state_dict(state_dict, config)
    meta = {"source": src.name, "source_sha256": digest}
    if ignored_keys(state_dict):
        meta["ignored_keys"] = ",".join(ignored_keys(state_dict))
    save_params(dst, params, config, meta)
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
