"""Helpers that rebuild the inputs of the original PyTorch PIPs reference runs.

The fixtures in ``tests/data`` (copied from the reference outputs) were produced by
the original ``Pips`` on synthetic weights given by a documented formula; this module
implements that formula so the full 200-tensor state_dict can be rebuilt from
``manifest.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

DATA = Path(__file__).parent / "data"
DAMPED_KEY = "delta_block.to_delta.0.weight"
DAMPED_COLUMNS = slice(324, 516)  # the sin/cos embedding inputs of the mixer


def synthetic_weight(index: int, key: str, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """The reference formula: a splitmix64 stream per tensor mapped to [-1, 1)."""
    n = int(np.prod(shape))
    with np.errstate(over="ignore"):
        z = (np.arange(n, dtype=np.uint64) + np.uint64((index + 1000 * seed) * 2**32)) * np.uint64(
            0x9E3779B97F4A7C15
        )
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    u = 2.0 * (z >> np.uint64(11)).astype(np.float64) / 2.0**53 - 1.0
    if len(shape) >= 2:
        w = u * np.sqrt(3.0 / np.prod(shape[1:]))
    elif key.endswith(".bias"):
        w = 0.05 * u
    else:
        w = 1.0 + 0.1 * u
    return w.astype(np.float32).reshape(shape)


def manifest() -> list[dict]:
    return json.loads((DATA / "manifest.json").read_text())


def reference_state_dict(seed: int = 0, damped: bool = True) -> dict[str, np.ndarray]:
    """The 200-tensor state_dict of ``Pips(stride=4)`` used for the reference runs."""
    out = {}
    for entry in manifest():
        w = synthetic_weight(entry["index"], entry["key"], tuple(entry["shape"]), seed)
        if damped and entry["key"] == DAMPED_KEY:
            w[:, DAMPED_COLUMNS] *= np.float32(0.01)
        out[entry["key"]] = w
    return out


#: PIPs++ (aharley/pips2): the state_dict manifest of ``Pips(stride=8)`` and the
#: outputs of the original on synthetic weights, in ``tests/data/pips2``.
PIPS2_DATA = DATA / "pips2"
#: The tensors the PIPs++ reference weights scale by 0.05 (whole), so each refinement
#: step moves points by a few pixels.
PIPS2_DAMPED_KEYS = ("delta_block.dense.weight", "delta_block.dense.bias")


def pips2_manifest() -> list[dict]:
    return json.loads((PIPS2_DATA / "manifest.json").read_text())


def pips2_reference_state_dict(seed: int = 0) -> dict[str, np.ndarray]:
    """The 82-tensor state_dict of PIPs++'s ``Pips(stride=8)`` used for its reference
    runs: the same formula as PIPs', then the final dense layer scaled by 0.05."""
    out = {}
    for entry in pips2_manifest():
        w = synthetic_weight(entry["index"], entry["key"], tuple(entry["shape"]), seed)
        if entry["key"] in PIPS2_DAMPED_KEYS:
            w = w * np.float32(0.05)
        out[entry["key"]] = w
    return out


def load_case(name: str) -> dict[str, np.ndarray]:
    with np.load(DATA / name) as f:
        return {k: f[k] for k in f.files}
