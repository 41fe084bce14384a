"""Frozen configuration of the PIPs model.

The defaults are the released reference model (`model-000200000.pth`, 12/15/22, of
aharley/pips): S = 8 frames, stride 4, latent 128, a 4-level correlation pyramid of
radius 3, and an MLP-Mixer of width 512 and depth 12. Every size can be changed so
smaller models can be built and trained.

:func:`is_int` is the integer test the package's configurations share and
:func:`check_fields` their check of a dict read back.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from pips_jax.errors import InputError

#: Refinement iterations per window at inference, as in the original's demo and
#: evaluation (weights may recommend another count: :class:`pips_jax.weights.Weights`).
DEFAULT_ITERS = 6


def check_fields(cls: type, d: Mapping[str, Any]) -> None:
    """Raises :class:`~pips_jax.errors.InputError` naming the keys of ``d`` that are not
    fields of the dataclass ``cls`` (a config read back from JSON)."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise InputError(
            f"unknown {cls.__name__} fields {unknown}; expected some of {sorted(names)}"
        )


def is_int(value: object, numpy: bool = True) -> bool:
    """Whether ``value`` is an integer and not a bool: a Python ``int`` or, unless
    ``numpy=False``, a NumPy integer."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    if not numpy:
        return False
    import numpy as np  # only here: importing pips_jax does not load NumPy

    return isinstance(value, np.integer)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Hyper-parameters of the PIPs architecture.

    Attributes:
        S: frames per clip the model refines jointly.
        stride: ratio of input pixels to feature-map pixels (4 for the reference
            checkpoint, 8 for the original code's default).
        latent_dim: channels of the feature maps and of the per-point features.
        corr_levels: levels of the average-pooled correlation pyramid.
        corr_radius: the correlation window on each level is (2r+1) x (2r+1).
        mixer_dim: width of the MLP-Mixer.
        mixer_depth: number of (token-mixing, channel-mixing) block pairs.
        mixer_expansion: hidden-layer expansion factor in both mixer MLPs.
        encoder_dims: output channels of the encoder's residual stages; the first
            stage keeps the resolution of the 7x7 stem, every later stage halves it.
        encoder_stem_dim: output channels of the 7x7 stride-2 stem convolution.
        embed_dim: sin/cos channels per axis in the (flow x, flow y, time) embedding.
    """

    S: int = 8
    stride: int = 4
    latent_dim: int = 128
    corr_levels: int = 4
    corr_radius: int = 3
    mixer_dim: int = 512
    mixer_depth: int = 12
    mixer_expansion: int = 4
    encoder_dims: tuple[int, ...] = (64, 96, 128, 128)
    encoder_stem_dim: int = 64
    embed_dim: int = 64

    def __post_init__(self) -> None:
        positive = (
            "S",
            "stride",
            "latent_dim",
            "corr_levels",
            "mixer_dim",
            "mixer_depth",
            "mixer_expansion",
            "encoder_stem_dim",
            "embed_dim",
        )
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise InputError(f"ModelConfig.{name} must be a positive int, got {value!r}")
        if self.S < 2:
            raise InputError(f"ModelConfig.S must be at least 2 frames, got {self.S}")
        if self.corr_radius < 0:
            raise InputError(f"ModelConfig.corr_radius must be >= 0, got {self.corr_radius}")
        if self.embed_dim % 2:
            raise InputError(f"ModelConfig.embed_dim must be even, got {self.embed_dim}")
        object.__setattr__(self, "encoder_dims", tuple(int(d) for d in self.encoder_dims))
        if not self.encoder_dims or min(self.encoder_dims) < 1:
            raise InputError(
                f"ModelConfig.encoder_dims must be positive ints, got {self.encoder_dims}"
            )

    @property
    def corr_window(self) -> int:
        """Side of the square correlation window, 2r + 1."""
        return 2 * self.corr_radius + 1

    @property
    def corr_dim(self) -> int:
        """Correlation features per point and frame: levels x (2r+1)^2."""
        return self.corr_levels * self.corr_window**2

    @property
    def mixer_input_dim(self) -> int:
        """Mixer input: [point feature | correlations | sin/cos embedding | flow x, y, t]."""
        return self.latent_dim + self.corr_dim + 3 * self.embed_dim + 3

    @property
    def min_feature_size(self) -> int:
        """Smallest feature-map side for which every pyramid level has >= 1 pixel."""
        return 2 ** (self.corr_levels - 1)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of the fields."""
        d = dataclasses.asdict(self)
        d["encoder_dims"] = list(self.encoder_dims)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        """Builds a config from :meth:`to_dict` output; unknown keys are an error."""
        check_fields(cls, d)
        kwargs = dict(d)
        if "encoder_dims" in kwargs:
            kwargs["encoder_dims"] = tuple(kwargs["encoder_dims"])
        return cls(**kwargs)

    @classmethod
    def from_json(cls, text: str) -> ModelConfig:
        return cls.from_dict(json.loads(text))
