"""pips-jax: the PIPs point trackers (PIPs, Harley et al., ECCV 2022; PIPs++, Zheng et
al., ICCV 2023) in JAX/Flax.

One call tracks a video (:func:`track`); :func:`load_tracker` builds a tracker once
for many videos; :meth:`Tracker.stream` and :class:`TrackStream` track frames as they
come, at constant memory. Coordinates are ``(x, y)`` in input pixels, origin at the centre of the top-left
pixel, unless a function says otherwise.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pips_jax.config import ModelConfig
from pips_jax.errors import CheckpointError, InputError, PipsError

if TYPE_CHECKING:
    from pips_jax.api import load_tracker, track
    from pips_jax.model.pips import Pips, PipsOutput
    from pips_jax.tracker import StreamedFrame, Tracker, TrackStream
    from pips_jax.tracks_io import TrackResult
    from pips_jax.weights import Weights, load_weights

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "InputError",
    "ModelConfig",
    "Pips",
    "PipsError",
    "PipsOutput",
    "StreamedFrame",
    "TrackResult",
    "TrackStream",
    "Tracker",
    "Weights",
    "load_tracker",
    "load_weights",
    "track",
]

# Where each name imported on first use lives.
_LAZY = {
    "Pips": "pips_jax.model.pips",
    "PipsOutput": "pips_jax.model.pips",
    "StreamedFrame": "pips_jax.tracker",
    "TrackResult": "pips_jax.tracks_io",
    "TrackStream": "pips_jax.tracker",
    "Tracker": "pips_jax.tracker",
    "Weights": "pips_jax.weights",
    "load_tracker": "pips_jax.api",
    "load_weights": "pips_jax.weights",
    "track": "pips_jax.api",
}


def __getattr__(name: str) -> Any:
    # The names of _LAZY are imported on first use: importing JAX and Flax takes a
    # second or more, and the command line (``pips_jax.cli``, which imports this
    # package first) must be able to take Ctrl-C before that.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'pips_jax' has no attribute {name!r}")
