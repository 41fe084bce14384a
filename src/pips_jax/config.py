"""Frozen configurations of the two model families, PIPs and PIPs++.

:class:`ModelConfig` is PIPs; its defaults are the released reference model
(`model-000200000.pth`, 12/15/22, of aharley/pips): S = 8 frames, stride 4, latent
128, a 4-level correlation pyramid of radius 3, and an MLP-Mixer of width 512 and
depth 12. :class:`Pips2Config` is PIPs++ (aharley/pips2); its defaults are that
project's reference model. Every size can be changed so smaller models can be built
and trained. Each config class names its family (:attr:`ModelConfig.family`,
``"pips"`` or ``"pips2"``); :func:`config_class` maps the name back, and converted
weights store it beside the config.

:func:`is_int` is the integer test the package's configurations share and
:func:`check_fields` their check of a dict read back; :class:`Flag`,
in a field's metadata, is the field's ``pips-jax train`` flag.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any, ClassVar

from pips_jax.errors import InputError

#: Refinement iterations per window at inference, as in the original's demo and
#: evaluation (weights may recommend another count: :class:`pips_jax.weights.Weights`).
DEFAULT_ITERS = 6


@dataclasses.dataclass(frozen=True)
class Flag:
    """The command-line flag of a config field (``pips-jax train``; ``convert`` takes
    two of the model's), kept in the field's ``metadata`` so the flags are made from
    the dataclass (plain data: the command line parses and formats; see
    :mod:`pips_jax.cli.train`).

    Attributes:
        name: the flag, e.g. ``"--steps"``.
        help: its help text; the command line appends the field's default.
        group: the help section, ``"recipe"``, ``"checkpoints"`` or ``"model"``.
        order: position within the group's help.
        kind: how the value is written: ``"int"``, ``"float"``, ``"resolution"``
            (``HxW``, stored as ``(H, W)``), ``"channels"`` (``D1,D2,...``) or
            ``"off"`` (a boolean field's switch ``--no-...``, which sets it false).
        metavar: the value's name in the help (None: the flag's name, upper case).
    """

    name: str
    help: str
    group: str
    order: int
    kind: str = "int"
    metavar: str | None = None


def flag(
    name: str, help: str, group: str, order: int, kind: str = "int", metavar: str | None = None
) -> dict[str, Flag]:
    """The ``metadata`` of a config field with a :class:`Flag`:
    ``dataclasses.field(default=..., metadata=flag("--steps", ...))``."""
    return {"flag": Flag(name, help, group, order, kind, metavar)}


def field_flags(cls: type) -> list[tuple[dataclasses.Field, Flag]]:
    """The fields of the config dataclass ``cls`` that have a :class:`Flag`, with it,
    in field order."""
    return [(f, f.metadata["flag"]) for f in dataclasses.fields(cls) if "flag" in f.metadata]


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


class _ConfigMethods:
    """What both families' configs share: the correlation sizes and JSON round trips."""

    corr_radius: int
    corr_levels: int

    @property
    def corr_window(self) -> int:
        """Side of the square correlation window, 2r + 1."""
        return 2 * self.corr_radius + 1

    @property
    def corr_dim(self) -> int:
        """Correlation features per point, frame and template: levels x (2r+1)^2."""
        return self.corr_levels * self.corr_window**2

    @property
    def min_feature_size(self) -> int:
        """Smallest feature-map side for which every pyramid level has >= 1 pixel."""
        return 2 ** (self.corr_levels - 1)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of the fields."""
        d = dataclasses.asdict(self)  # type: ignore[call-overload]
        d["encoder_dims"] = list(self.encoder_dims)  # type: ignore[attr-defined]
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Any:
        """Builds a config from :meth:`to_dict` output; unknown keys are an error."""
        check_fields(cls, d)
        kwargs = dict(d)
        if "encoder_dims" in kwargs:
            kwargs["encoder_dims"] = tuple(kwargs["encoder_dims"])
        return cls(**kwargs)

    @classmethod
    def from_json(cls, text: str) -> Any:
        return cls.from_dict(json.loads(text))


def _check_encoder(config: Any) -> None:
    name = type(config).__name__
    object.__setattr__(config, "encoder_dims", tuple(int(d) for d in config.encoder_dims))
    if not config.encoder_dims or min(config.encoder_dims) < 1:
        raise InputError(f"{name}.encoder_dims must be positive ints, got {config.encoder_dims}")


def _check_positive(config: Any, names: tuple[str, ...]) -> None:
    for name in names:
        value = getattr(config, name)
        if not is_int(value, numpy=False) or value < 1:
            raise InputError(
                f"{type(config).__name__}.{name} must be a positive int, got {value!r}"
            )


@dataclasses.dataclass(frozen=True)
class ModelConfig(_ConfigMethods):
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

    family: ClassVar[str] = "pips"
    label: ClassVar[str] = "PIPs"

    S: int = dataclasses.field(default=8, metadata=flag("--S", "frames per clip", "model", 0))
    stride: int = dataclasses.field(
        default=4, metadata=flag("--stride", "feature stride", "model", 1)
    )
    latent_dim: int = dataclasses.field(
        default=128, metadata=flag("--latent-dim", "feature channels", "model", 2, metavar="C")
    )
    corr_levels: int = dataclasses.field(
        default=4,
        metadata=flag("--corr-levels", "correlation pyramid levels", "model", 7, metavar="L"),
    )
    corr_radius: int = dataclasses.field(
        default=3,
        metadata=flag("--corr-radius", "correlation window radius", "model", 8, metavar="R"),
    )
    mixer_dim: int = dataclasses.field(
        default=512, metadata=flag("--mixer-dim", "MLP-Mixer width", "model", 5, metavar="C")
    )
    mixer_depth: int = dataclasses.field(
        default=12, metadata=flag("--mixer-depth", "MLP-Mixer blocks", "model", 6, metavar="N")
    )
    mixer_expansion: int = 4
    encoder_dims: tuple[int, ...] = dataclasses.field(
        default=(64, 96, 128, 128),
        metadata=flag(
            "--encoder-dims",
            "encoder stage channels",
            "model",
            3,
            kind="channels",
            metavar="D1,D2,...",
        ),
    )
    encoder_stem_dim: int = dataclasses.field(
        default=64,
        metadata=flag("--stem-dim", "encoder stem channels", "model", 4, metavar="C"),
    )
    embed_dim: int = dataclasses.field(
        default=64,
        metadata=flag("--embed-dim", "sin/cos embedding channels", "model", 9, metavar="E"),
    )

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
        _check_positive(self, positive)
        if self.S < 2:
            raise InputError(f"ModelConfig.S must be at least 2 frames, got {self.S}")
        if self.corr_radius < 0:
            raise InputError(f"ModelConfig.corr_radius must be >= 0, got {self.corr_radius}")
        if self.embed_dim % 2:
            raise InputError(f"ModelConfig.embed_dim must be even, got {self.embed_dim}")
        _check_encoder(self)

    @property
    def mixer_input_dim(self) -> int:
        """Mixer input: [point feature | correlations | sin/cos embedding | flow x, y, t]."""
        return self.latent_dim + self.corr_dim + 3 * self.embed_dim + 3


@dataclasses.dataclass(frozen=True)
class Pips2Config(_ConfigMethods):
    """Hyper-parameters of the PIPs++ architecture (aharley/pips2, ``Pips(stride=8)``).

    PIPs++ refines windows of any length: the convolutions of its ``delta_block`` run
    over time and its instance norms over the window's frames, so no size here fixes
    the window. ``S`` is the window length that training and the one-window benchmark
    use by default (the tracker's window is a setting of its own).

    Attributes:
        S: frames per training clip and one-window benchmark (any S >= 2 runs).
        stride: ratio of input pixels to feature-map pixels (8 in the reference).
        latent_dim: channels of the feature maps and of the three templates.
        corr_levels: levels of the average-pooled correlation pyramid.
        corr_radius: the correlation window on each level is (2r+1) x (2r+1).
        encoder_dims, encoder_stem_dim: the BasicEncoder's sizes (as in PIPs).
        delta_dim: channels of the ``delta_block``'s first convolution and first
            blocks (``base_filters``, 128); the width doubles at every second block
            after the first (128, 128, 256, 256, 512, 512, 1024, 1024 for 8 blocks).
        delta_blocks: residual blocks of the ``delta_block``.
        delta_kernel: kernel size of its 1-D convolutions over time (odd).
        embed_dim: channels of the 2-D sin/cos flow embedding (a multiple of 4).
    """

    family: ClassVar[str] = "pips2"
    label: ClassVar[str] = "PIPs++"

    S: int = dataclasses.field(default=8, metadata=flag("--S", "frames per clip", "model", 0))
    stride: int = dataclasses.field(
        default=8, metadata=flag("--stride", "feature stride", "model", 1)
    )
    latent_dim: int = dataclasses.field(
        default=128, metadata=flag("--latent-dim", "feature channels", "model", 2, metavar="C")
    )
    corr_levels: int = dataclasses.field(
        default=4,
        metadata=flag("--corr-levels", "correlation pyramid levels", "model", 7, metavar="L"),
    )
    corr_radius: int = dataclasses.field(
        default=3,
        metadata=flag("--corr-radius", "correlation window radius", "model", 8, metavar="R"),
    )
    encoder_dims: tuple[int, ...] = dataclasses.field(
        default=(64, 96, 128, 128),
        metadata=flag(
            "--encoder-dims",
            "encoder stage channels",
            "model",
            3,
            kind="channels",
            metavar="D1,D2,...",
        ),
    )
    encoder_stem_dim: int = dataclasses.field(
        default=64,
        metadata=flag("--stem-dim", "encoder stem channels", "model", 4, metavar="C"),
    )
    delta_dim: int = dataclasses.field(
        default=128,
        metadata=flag("--delta-dim", "delta_block base channels", "model", 5, metavar="C"),
    )
    delta_blocks: int = dataclasses.field(
        default=8,
        metadata=flag("--delta-blocks", "delta_block residual blocks", "model", 6, metavar="N"),
    )
    delta_kernel: int = 3
    embed_dim: int = dataclasses.field(
        default=128,
        metadata=flag("--embed-dim", "sin/cos flow embedding channels", "model", 9, metavar="E"),
    )

    def __post_init__(self) -> None:
        positive = (
            "S",
            "stride",
            "latent_dim",
            "corr_levels",
            "encoder_stem_dim",
            "delta_dim",
            "delta_blocks",
            "delta_kernel",
            "embed_dim",
        )
        _check_positive(self, positive)
        if self.S < 2:
            raise InputError(f"Pips2Config.S must be at least 2 frames, got {self.S}")
        if self.corr_radius < 0:
            raise InputError(f"Pips2Config.corr_radius must be >= 0, got {self.corr_radius}")
        if self.embed_dim % 4 or self.embed_dim < 8:
            raise InputError(
                f"Pips2Config.embed_dim must be a multiple of 4 and at least 8, got {self.embed_dim}"
            )
        if self.delta_kernel % 2 == 0:
            raise InputError(f"Pips2Config.delta_kernel must be odd, got {self.delta_kernel}")
        _check_encoder(self)

    @property
    def templates(self) -> int:
        """Feature templates correlated per frame: frame 0's, and those at t-2 and t-4."""
        return 3

    @property
    def delta_input_dim(self) -> int:
        """``delta_block`` input: [3 templates' correlations | flow embedding | flow x, y]."""
        return self.templates * self.corr_dim + self.embed_dim + 2

    def block_widths(self) -> list[tuple[int, int]]:
        """``(in, out)`` channels of each residual block of the ``delta_block``, as the
        original builds them: block 0 keeps ``delta_dim``; block i >= 1 takes
        ``delta_dim * 2^((i-1)//2)`` and doubles it when i is even."""
        widths = []
        for i in range(self.delta_blocks):
            if i == 0:
                widths.append((self.delta_dim, self.delta_dim))
                continue
            c_in = self.delta_dim * 2 ** ((i - 1) // 2)
            widths.append((c_in, 2 * c_in if i % 2 == 0 else c_in))
        return widths


#: The model families by name, as stored in converted weights' metadata.
FAMILIES: dict[str, type] = {"pips": ModelConfig, "pips2": Pips2Config}

AnyConfig = ModelConfig | Pips2Config


def config_class(family: str) -> type:
    """The config class of a family name (``"pips"`` or ``"pips2"``).

    Raises:
        InputError: an unknown family.
    """
    try:
        return FAMILIES[family]
    except KeyError:
        raise InputError(
            f"model family: expected one of {', '.join(FAMILIES)}, found {family!r}"
        ) from None
