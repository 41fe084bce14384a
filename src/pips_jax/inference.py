"""The settings a tracking run uses, resolved once from the weights' card and the user.

``track``, ``demo`` and ``eval`` (and Python callers) build one
:class:`InferenceSettings` with :meth:`InferenceSettings.resolve`: each setting is the
user's value when given, else the choice in the weights' card (see
``src/pips_jax/assets/README.md`` for how the shipped weights' choices were made), else
the package default. The result is passed to :meth:`pips_jax.tracker.Tracker.from_settings`,
to :func:`pips_jax.demo.run_demo` and stored in evaluation reports as structured fields.

Resolutions are ``(H, W)`` in pixels.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pips_jax.config import DEFAULT_ITERS, is_int
from pips_jax.errors import InputError

if TYPE_CHECKING:
    from pips_jax.weights import Weights

#: ``(H, W)`` frames of 256x256 clips (``demo``, ``eval``) are resized to for the model
#: when neither the user nor the weights' card says otherwise (TAP-Vid's size).
DEFAULT_CLIP_RESOLUTION = (256, 256)
#: Each family's defaults where neither the user nor the weights' card chooses: PIPs'
#: the original demo's; PIPs++'s the original evaluation's (``test_on_tap.py``: 16
#: iterations, frames resized to 512x896; the tracker's window defaults to its 128).
FAMILY_DEFAULTS: dict[str, dict[str, Any]] = {
    "pips": {"iters": DEFAULT_ITERS, "clip_resolution": DEFAULT_CLIP_RESOLUTION},
    "pips2": {"iters": 16, "clip_resolution": (512, 896)},
}
#: The compute precisions the tracker runs in (float32 is exact).
PRECISIONS = ("float32", "bfloat16")


@dataclasses.dataclass(frozen=True)
class InferenceSettings:
    """How the model runs.

    Attributes:
        iters: refinement iterations per window.
        clip_resolution: ``(H, W)`` the model runs at on 256x256 benchmark clips
            (``demo``, ``eval``): frames are resized to it and tracks mapped back.
        video_resolution: ``(H, W)`` every video is resized to by ``track``, or None:
            each video's own aspect ratio at about 360x640's pixel count
            (:func:`pips_jax.tracker.working_resolution`).
        precision: ``"float32"`` (exact) or ``"bfloat16"``.
        window: frames per window, or None for the model's own ``S`` (PIPs runs
            S-frame windows only; the field is there for model families that vary it).
    """

    iters: int = DEFAULT_ITERS
    clip_resolution: tuple[int, int] = DEFAULT_CLIP_RESOLUTION
    video_resolution: tuple[int, int] | None = None
    precision: str = "float32"
    window: int | None = None

    def __post_init__(self) -> None:
        if not _is_count(self.iters):
            raise InputError(f"iters: expected an integer >= 1, found {self.iters!r}")
        if self.window is not None and not _is_count(self.window):
            raise InputError(f"window: expected an integer >= 1 or None, found {self.window!r}")
        if self.precision not in PRECISIONS:
            raise InputError(
                f"precision: expected one of {', '.join(PRECISIONS)}, found {self.precision!r}"
            )
        object.__setattr__(self, "clip_resolution", _hw("clip_resolution", self.clip_resolution))
        if self.video_resolution is not None:
            object.__setattr__(
                self, "video_resolution", _hw("video_resolution", self.video_resolution)
            )

    @classmethod
    def resolve(
        cls,
        card: Mapping[str, Any],
        *,
        iters: int | None = None,
        clip_resolution: tuple[int, int] | None = None,
        video_resolution: tuple[int, int] | None = None,
        precision: str | None = None,
        window: int | None = None,
        family: str = "pips",
    ) -> InferenceSettings:
        """The settings of one run: each argument given wins, else the card's choice
        (its ``iters`` and ``input_resolution``), else the family's default
        (:data:`FAMILY_DEFAULTS`).

        Args:
            card: the weights' card (:attr:`pips_jax.weights.Weights.card`; empty for
                weights without one).
            iters, clip_resolution, video_resolution, precision, window: the user's
                values, or None.
            family: the weights' model family, ``"pips"`` or ``"pips2"``.
        """
        if family not in FAMILY_DEFAULTS:
            raise InputError(
                f"model family: expected one of {', '.join(FAMILY_DEFAULTS)}, found {family!r}"
            )
        defaults = FAMILY_DEFAULTS[family]
        card_resolution = card.get("input_resolution")
        return cls(
            iters=_first(iters, card.get("iters"), defaults["iters"]),
            clip_resolution=_first(
                clip_resolution,
                tuple(card_resolution) if card_resolution else None,
                defaults["clip_resolution"],
            ),
            video_resolution=video_resolution,
            precision=_first(precision, cls.precision),
            window=window,
        )

    def describe(self, weights: str) -> str:
        """A one-line label of weights run with these settings, for messages and
        reports: ``"<weights>; iterations per window: N"`` (and the window length
        where one is set)."""
        window = f"; window: {self.window} frames" if self.window is not None else ""
        return f"{weights}; iterations per window: {self.iters}{window}"


def settings_for(
    weights: Weights,
    *,
    iters: int | None = None,
    clip_resolution: tuple[int, int] | None = None,
    video_resolution: tuple[int, int] | None = None,
    precision: str | None = None,
    window: int | None = None,
    window_flag: str = "window",
) -> InferenceSettings:
    """The settings ``weights`` run with: :meth:`InferenceSettings.resolve` on their
    card and family, under the user's values (None: not given). Resolutions are
    ``(H, W)`` pixels.

    Raises:
        InputError: a ``window`` for weights of a family with fixed windows (PIPs),
            naming the setting as ``window_flag`` (``"--window"`` on the command line).
    """
    family = weights.config.family
    if window is not None and family != "pips2":
        raise InputError(
            f"{window_flag} {window}: the window length is a PIPs++ setting; "
            f"{weights.description} are {weights.config.label} weights, which run windows "
            f"of S={weights.config.S} frames"
        )
    return InferenceSettings.resolve(
        weights.card,
        iters=iters,
        clip_resolution=clip_resolution,
        video_resolution=video_resolution,
        precision=precision,
        window=window,
        family=family,
    )


def _first(*values: Any) -> Any:
    return next(v for v in values if v is not None)


def _is_count(value: object) -> bool:
    return is_int(value, numpy=False) and value >= 1


def _hw(name: str, value: Any) -> tuple[int, int]:
    if (
        not isinstance(value, (tuple, list))
        or len(value) != 2
        or not all(_is_count(v) for v in value)
    ):
        raise InputError(f"{name}: expected (H, W) positive integers, found {value!r}")
    return (int(value[0]), int(value[1]))
