"""Frozen configuration of a training run.

The defaults are the recipe of the released PIPs model (aharley/pips ``train.py`` as
used for ``model-000200000.pth``): batches of 4 clips of S = 8 frames cropped to
384 x 512, 768 points per clip, 4 refinement iterations, AdamW (lr 5e-4, weight decay
1e-4, eps 1e-8) under a linear one-cycle schedule with 5% warm-up, gradient norms
clipped to 5, 200k steps. The clips come from the synthetic generator
(:mod:`pips_jax.synthetic`) instead of FlyingThings++.

Every check that can fail is done here, before any compute, and raises
:class:`~pips_jax.errors.InputError` with a one-line message.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

from pips_jax.config import ModelConfig, check_fields, flag, is_int
from pips_jax.errors import InputError

#: Points closer than this to the image border are not sampled (pixels); the same
#: margin as the synthetic generator's default.
POINT_MARGIN = 1.5


def _is_number(value: object) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of a training run.

    Attributes:
        model: the architecture (its ``S`` is the clip length).
        batch_size: clips per step (global, over all devices).
        num_points: tracked points per clip.
        iters: refinement iterations of the training forward.
        crop: ``(H, W)`` of the training clips in pixels; multiples of the stride.
        num_steps: optimizer steps of the whole run (the schedule spans them).
        lr: peak learning rate of the one-cycle schedule.
        weight_decay: AdamW decoupled weight decay.
        eps: AdamW epsilon.
        warmup_fraction: share of ``num_steps`` spent warming up linearly from
            ``lr / 25``; the rest anneals linearly to ``lr / 25 / 1e4`` (PyTorch's
            ``OneCycleLR`` with ``anneal_strategy='linear'``).
        grad_clip: gradients are rescaled to this global norm when above it.
        gamma: per-iteration decay of the sequence loss weights.
        vis_weight: weight of the visibility loss in the total.
        remat: recompute every refinement iteration in the backward pass instead of
            storing its activations (``jax.checkpoint``): about ``iters`` times less
            activation memory for the refinement loop, for about a third more compute.
            The results are the same up to float rounding.
        seed: seeds the initial parameters and the training data.
        num_objects: moving foreground objects per synthetic clip.
        augment: random flips, colour jitter, blur, noise and erased patches.
        checkpoint_every: steps between checkpoints (one is also written at exit).
        keep_checkpoints: how many of the latest checkpoints are kept.
        log_every: steps between lines of the JSONL log.
        eval_every: steps between evaluations on the held-out set (0: never).
        eval_clips: clips of the held-out synthetic set.
        eval_size: ``(H, W)`` of the held-out clips and of the tracker running on them.
        eval_frames: frames per held-out clip.
    """

    # The flags of ``pips-jax train`` are made from the fields' metadata (its help
    # appends the default); fields without a flag are set by --config only.
    model: ModelConfig = ModelConfig()
    batch_size: int = dataclasses.field(
        default=4,
        metadata=flag("--batch-size", "clips per step, over all devices", "recipe", 1, metavar="B"),
    )
    num_points: int = dataclasses.field(
        default=768, metadata=flag("--num-points", "points per clip", "recipe", 2, metavar="N")
    )
    iters: int = dataclasses.field(
        default=4, metadata=flag("--iters", "refinement iterations", "recipe", 4)
    )
    crop: tuple[int, int] = dataclasses.field(
        default=(384, 512),
        metadata=flag("--crop", "clip size", "recipe", 3, kind="resolution", metavar="HxW"),
    )
    num_steps: int = dataclasses.field(
        default=200_000, metadata=flag("--steps", "optimizer steps", "recipe", 0, metavar="N")
    )
    lr: float = dataclasses.field(
        default=5e-4, metadata=flag("--lr", "peak learning rate", "recipe", 5, kind="float")
    )
    weight_decay: float = dataclasses.field(
        default=1e-4,
        metadata=flag("--weight-decay", "AdamW weight decay", "recipe", 6, kind="float"),
    )
    eps: float = 1e-8
    warmup_fraction: float = 0.05
    grad_clip: float = 5.0
    gamma: float = 0.8
    vis_weight: float = 10.0
    remat: bool = dataclasses.field(
        default=True,
        metadata=flag(
            "--no-remat",
            "keep every refinement iteration's activations for the backward pass (faster, "
            "about iters times more memory) instead of recomputing them",
            "recipe",
            10,
            kind="off",
        ),
    )
    seed: int = dataclasses.field(
        default=0,
        metadata=flag("--seed", "seed of the initial parameters and the data", "recipe", 7),
    )
    num_objects: int = dataclasses.field(
        default=8,
        metadata=flag("--num-objects", "moving objects per clip", "recipe", 8, metavar="K"),
    )
    augment: bool = dataclasses.field(
        default=True,
        metadata=flag(
            "--no-augment", "no flips, colour jitter, blur, noise, erasing", "recipe", 9, kind="off"
        ),
    )
    checkpoint_every: int = dataclasses.field(
        default=1000,
        metadata=flag(
            "--checkpoint-every", "steps between checkpoints", "checkpoints", 0, metavar="N"
        ),
    )
    keep_checkpoints: int = dataclasses.field(
        default=3,
        metadata=flag("--keep-checkpoints", "checkpoints kept", "checkpoints", 1, metavar="K"),
    )
    log_every: int = dataclasses.field(
        default=10,
        metadata=flag("--log-every", "steps between log lines", "checkpoints", 2, metavar="N"),
    )
    eval_every: int = dataclasses.field(
        default=5000,
        metadata=flag(
            "--eval-every",
            "steps between held-out evaluations, 0 for none",
            "checkpoints",
            3,
            metavar="N",
        ),
    )
    eval_clips: int = dataclasses.field(
        default=4, metadata=flag("--eval-clips", "held-out clips", "checkpoints", 4, metavar="N")
    )
    eval_size: tuple[int, int] = dataclasses.field(
        default=(256, 256),
        metadata=flag(
            "--eval-size", "held-out clip size", "checkpoints", 5, kind="resolution", metavar="HxW"
        ),
    )
    eval_frames: int = dataclasses.field(
        default=24,
        metadata=flag("--eval-frames", "frames per held-out clip", "checkpoints", 6, metavar="T"),
    )

    def __post_init__(self) -> None:
        if not isinstance(self.model, ModelConfig):
            raise InputError(
                f"TrainConfig.model: expected a ModelConfig, found {type(self.model).__name__}"
            )
        for name in ("crop", "eval_size"):
            value = getattr(self, name)
            if (
                not isinstance(value, (tuple, list))
                or len(value) != 2
                or not all(is_int(v, numpy=False) for v in value)
            ):
                raise InputError(f"TrainConfig.{name}: expected (H, W) integers, found {value!r}")
            object.__setattr__(self, name, (int(value[0]), int(value[1])))
        for name, low in (
            ("batch_size", 1),
            ("num_points", 1),
            ("iters", 1),
            ("num_steps", 1),
            ("seed", 0),
            ("num_objects", 0),
            ("checkpoint_every", 1),
            ("keep_checkpoints", 1),
            ("log_every", 1),
            ("eval_every", 0),
            ("eval_clips", 1),
            ("eval_frames", 1),
        ):
            value = getattr(self, name)
            if not is_int(value, numpy=False) or value < low:
                raise InputError(
                    f"TrainConfig.{name}: expected an integer >= {low}, found {value!r}"
                )
        for name, low, high, low_open in (
            ("lr", 0.0, math.inf, True),
            ("weight_decay", 0.0, math.inf, False),
            ("eps", 0.0, math.inf, True),
            ("warmup_fraction", 0.0, 1.0, False),
            ("grad_clip", 0.0, math.inf, True),
            ("gamma", 0.0, 1.0, True),
            ("vis_weight", 0.0, math.inf, False),
        ):
            value = getattr(self, name)
            ok = _is_number(value) and (value > low if low_open else value >= low) and value <= high
            if not ok:
                bound = f"> {low}" if low_open else f">= {low}"
                upper = "" if high == math.inf else f" and <= {high}"
                raise InputError(
                    f"TrainConfig.{name}: expected a number {bound}{upper}, found {value!r}"
                )
        for name in ("augment", "remat"):
            if not isinstance(getattr(self, name), bool):
                raise InputError(
                    f"TrainConfig.{name}: expected true or false, found {getattr(self, name)!r}"
                )
        self._check_size("crop", self.crop)
        self._check_size("eval_size", self.eval_size)
        if self.eval_frames < self.model.S:
            raise InputError(
                f"TrainConfig.eval_frames: expected at least S={self.model.S} frames, found {self.eval_frames}"
            )
        most = self.max_points
        if self.num_points > most:
            h, w = self.crop
            raise InputError(
                f"TrainConfig.num_points: expected at most {most} points for a {h}x{w} crop "
                f"(one per pixel at least {POINT_MARGIN} px inside the border), found {self.num_points}"
            )

    def _check_size(self, name: str, size: tuple[int, int]) -> None:
        m = self.model
        least = m.stride * m.min_feature_size
        h, w = size
        if h % m.stride or w % m.stride:
            raise InputError(
                f"TrainConfig.{name}: expected H and W multiples of the stride {m.stride}, found {h}x{w}"
            )
        if h < least or w < least:
            raise InputError(
                f"TrainConfig.{name}: expected H and W >= {least} (stride {m.stride} x "
                f"2^{m.corr_levels - 1} for the {m.corr_levels}-level pyramid), found {h}x{w}"
            )

    # ------------------------------------------------------------------ derived
    @property
    def feature_size(self) -> tuple[int, int]:
        """``(H', W')`` of the training feature maps: the crop divided by the stride."""
        return self.crop[0] // self.model.stride, self.crop[1] // self.model.stride

    @property
    def max_points(self) -> int:
        """Most points a crop can provide: one per pixel at least the margin inside."""
        inner = math.ceil(2 * POINT_MARGIN)
        return max(self.crop[0] - inner, 0) * max(self.crop[1] - inner, 0)

    @property
    def warmup_steps(self) -> int:
        """Steps of the linear warm-up (at least 1)."""
        return max(1, round(self.warmup_fraction * self.num_steps))

    def validate(self, num_devices: int, num_processes: int = 1) -> None:
        """Checks what depends on the machine: the batch must split over the devices.

        Args:
            num_devices: devices of every process of the job (``jax.device_count()``).
            num_processes: processes of the job (named in the message when > 1).
        """
        if self.batch_size % num_devices:
            where = f" of {num_processes} processes" if num_processes > 1 else ""
            raise InputError(
                f"TrainConfig.batch_size: expected a multiple of the {num_devices} devices"
                f"{where}, found {self.batch_size}"
            )

    # ----------------------------------------------------------- serialisation
    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (the model config nested under ``model``)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["model"] = self.model.to_dict()
        d["crop"] = list(self.crop)
        d["eval_size"] = list(self.eval_size)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Builds a config from :meth:`to_dict` output; unknown keys are an error."""
        if not isinstance(d, dict):
            raise InputError(f"TrainConfig: expected a JSON object, found {type(d).__name__}")
        check_fields(cls, d)
        kwargs = dict(d)
        if "model" in kwargs and not isinstance(kwargs["model"], ModelConfig):
            kwargs["model"] = ModelConfig.from_dict(kwargs["model"])
        for name in ("crop", "eval_size"):
            if isinstance(kwargs.get(name), list):
                kwargs[name] = tuple(kwargs[name])
        return cls(**kwargs)

    @classmethod
    def from_json(cls, text: str) -> TrainConfig:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise InputError(f"TrainConfig: expected JSON, found a parse error ({e})") from None
        return cls.from_dict(data)

    def differences(self, other: TrainConfig) -> list[str]:
        """Names of the fields (``model.<name>`` for the model) where the configs differ."""
        out = []
        for f in dataclasses.fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if f.name == "model":
                out += [
                    f"model.{g.name}"
                    for g in dataclasses.fields(a)
                    if getattr(a, g.name) != getattr(b, g.name)
                ]
            elif a != b:
                out.append(f.name)
        return out
