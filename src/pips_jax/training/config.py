"""Frozen configuration of a training run, for either model family.

The defaults are the recipe of the released PIPs model (aharley/pips ``train.py`` as
used for ``model-000200000.pth``): batches of 4 clips of S = 8 frames cropped to
384 x 512, 768 points per clip, 4 refinement iterations, AdamW (lr 5e-4, weight decay
1e-4, eps 1e-8) under a linear one-cycle schedule with 5% warm-up, gradient norms
clipped to 5, 200k steps. :meth:`TrainConfig.recipe` gives each family's original
recipe: PIPs' is those defaults; PIPs++'s (aharley/pips2 ``train.py``'s ``main()``)
differs in :data:`RECIPES`: batches of 2 clips of S = 36 frames, 64 points, 6
iterations, weight decay 1e-6, 10% warm-up, 2 checkpoints kept. The clips come from the
synthetic generator (:mod:`pips_jax.synthetic`) instead of FlyingThings++ or
PointOdyssey.

A few fields apply to one family only (their metadata's ``"family"``, listed in
:data:`FAMILY_FIELDS`): ``vis_weight`` and ``remat`` to PIPs, ``random_init`` to
PIPs++. In a config of the other family they stay at their defaults and are not
written to its dict or JSON. The dict names the model's family beside its fields
(``"model": {"family": "pips2", ...}``); a dict without one, as every run folder made
before PIPs++ was added, is PIPs.

Every check that can fail is done here, before any compute, and raises
:class:`~pips_jax.errors.InputError` with a one-line message.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from typing import Any

from pips_jax.config import (
    FAMILIES,
    AnyConfig,
    ModelConfig,
    check_fields,
    config_class,
    field_flags,
    flag,
    is_int,
)
from pips_jax.errors import InputError

#: Points closer than this to the image border are not sampled (pixels); the same
#: margin as the synthetic generator's default.
POINT_MARGIN = 1.5
#: The key of a config dict's ``model`` that names the model's family.
FAMILY_KEY = "family"
#: Each family's original recipe where it differs from :class:`TrainConfig`'s defaults
#: (PIPs'): TrainConfig fields, and under ``"model"`` fields of the family's config.
#: PIPs++'s are aharley/pips2 ``train.py``'s ``main()`` defaults (``B=2, S=36, N=64,
#: iters=6``, ``weight_decay = 1e-6``, ``OneCycleLR(pct_start=0.1)``,
#: ``keep_latest=2``); its crop (384 x 512), lr (5e-4), eps (1e-8), gradient clip (5),
#: gamma (0.8), 200k steps and checkpoints every 1000 steps are PIPs' too.
RECIPES: dict[str, dict[str, Any]] = {
    "pips": {},
    "pips2": {
        "batch_size": 2,
        "num_points": 64,
        "iters": 6,
        "weight_decay": 1e-6,
        "warmup_fraction": 0.1,
        "keep_checkpoints": 2,
        "model": {"S": 36},
    },
}


def family_only(family: str, metadata: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``metadata`` of a TrainConfig field only ``family``'s training reads (with
    the field's other ``metadata``, e.g. its :func:`~pips_jax.config.flag`)."""
    return {**(metadata or {}), "family": family}


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
        model: the architecture, :class:`~pips_jax.config.ModelConfig` (PIPs) or
            :class:`~pips_jax.config.Pips2Config` (PIPs++); its ``S`` is the clip length.
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
        vis_weight: PIPs only: weight of the visibility loss in the total.
        remat: PIPs only: recompute every refinement iteration in the backward pass
            instead of storing its activations (``jax.checkpoint``): about ``iters``
            times less activation memory for the refinement loop, for about a third
            more compute. The results are the same up to float rounding. (PIPs++ keeps
            them: its refinement's activations are small beside its encoder's.)
        random_init: PIPs++ only: start each point's refinement from a noisy
            trajectory, as the original's ``run_model`` does (uniform random
            positions mixed with the ground truth by a random share per point, half
            of the points at zero velocity instead; frame 0 at the query); otherwise
            from the zero-velocity one (the query on every frame).
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
    model: AnyConfig = ModelConfig()
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
    vis_weight: float = dataclasses.field(
        default=10.0,
        metadata=family_only(
            "pips",
            flag("--vis-weight", "weight of the visibility loss", "recipe", 11, kind="float"),
        ),
    )
    remat: bool = dataclasses.field(
        default=True,
        metadata=family_only(
            "pips",
            flag(
                "--no-remat",
                "keep every refinement iteration's activations for the backward pass "
                "(faster, about iters times more memory) instead of recomputing them",
                "recipe",
                10,
                kind="off",
            ),
        ),
    )
    random_init: bool = dataclasses.field(
        default=True,
        metadata=family_only(
            "pips2",
            flag(
                "--no-random-init",
                "start the refinement from the zero-velocity trajectory instead of the "
                "original's noisy ones",
                "recipe",
                12,
                kind="off",
            ),
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
        if not isinstance(self.model, tuple(FAMILIES.values())):
            raise InputError(
                "TrainConfig.model: expected a ModelConfig (PIPs) or a Pips2Config (PIPs++), "
                f"found {type(self.model).__name__}"
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
        for name in ("augment", "remat", "random_init"):
            if not isinstance(getattr(self, name), bool):
                raise InputError(
                    f"TrainConfig.{name}: expected true or false, found {getattr(self, name)!r}"
                )
        for name, family in FAMILY_FIELDS.items():
            default = TrainConfig.__dataclass_fields__[name].default
            if family != self.family and getattr(self, name) != default:
                raise InputError(
                    f"TrainConfig.{name}: applies to {config_class(family).label} only; this "
                    f"config trains {self.model.label} (found {getattr(self, name)!r})"
                )
        self._check_size("crop", self.crop)
        self._check_size("eval_size", self.eval_size)
        # PIPs runs windows of its S frames; PIPs++ any window of 2 frames or more.
        least = self.model.S if self.family == "pips" else 2
        if self.eval_frames < least:
            what = f"S={least}" if self.family == "pips" else str(least)
            raise InputError(
                f"TrainConfig.eval_frames: expected at least {what} frames, found {self.eval_frames}"
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
    def family(self) -> str:
        """The model's family, ``"pips"`` or ``"pips2"``."""
        return self.model.family

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

    # ------------------------------------------------------------------ recipes
    @classmethod
    def recipe(cls, family: str = "pips", **fields: Any) -> TrainConfig:
        """The original recipe of ``family`` (:data:`RECIPES`), with ``fields`` on top.

        Args:
            family: ``"pips"`` or ``"pips2"``.
            fields: TrainConfig fields; ``model`` may be a config of the family or a
                dict of its fields (over the recipe's own).

        Raises:
            InputError: an unknown family, a model of another family, or fields that
                make an invalid config.
        """
        model_cls = config_class(family)
        recipe = dict(RECIPES[family])
        model_fields = dict(recipe.pop("model", {}))
        model = fields.pop("model", None)
        if isinstance(model, Mapping):
            model_fields.update(model)
            model = None
        if model is None:
            model = model_cls(**model_fields)
        elif not isinstance(model, model_cls):
            raise InputError(
                f"TrainConfig.model: expected a {model_cls.__name__} for the {family} recipe, "
                f"found {type(model).__name__}"
            )
        return cls(**{**recipe, **fields, "model": model})

    # ----------------------------------------------------------- serialisation
    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict: the model's fields and family nested under
        ``model``; the fields of the other family (:data:`FAMILY_FIELDS`) left out."""
        d = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if FAMILY_FIELDS.get(f.name, self.family) == self.family
        }
        d["model"] = {FAMILY_KEY: self.family, **self.model.to_dict()}
        d["crop"] = list(self.crop)
        d["eval_size"] = list(self.eval_size)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Builds a config from :meth:`to_dict` output; unknown keys are an error. A
        ``model`` without a ``family`` is PIPs (run folders made before PIPs++)."""
        if not isinstance(d, dict):
            raise InputError(f"TrainConfig: expected a JSON object, found {type(d).__name__}")
        check_fields(cls, d)
        kwargs = dict(d)
        model = kwargs.get("model")
        if isinstance(model, dict):
            model = dict(model)
            family = model.pop(FAMILY_KEY, "pips")
            if not isinstance(family, str):
                raise InputError(f"TrainConfig.model.family: expected a name, found {family!r}")
            kwargs["model"] = config_class(family).from_dict(model)
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
        """Names of the fields (``model.<name>`` for the model, ``model.family`` for
        models of two families) where the configs differ."""
        out = []
        for f in dataclasses.fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if f.name == "model" and a.family != b.family:
                out.append(f"model.{FAMILY_KEY}")
            elif f.name == "model":
                out += [
                    f"model.{g.name}"
                    for g in dataclasses.fields(a)
                    if getattr(a, g.name) != getattr(b, g.name)
                ]
            elif a != b:
                out.append(f.name)
        return out


#: The TrainConfig fields only one family's training reads, with that family.
FAMILY_FIELDS: dict[str, str] = {
    f.name: f.metadata["family"] for f in dataclasses.fields(TrainConfig) if "family" in f.metadata
}


def check_family_flags(
    family: str, fields: Mapping[str, Any], model_fields: Mapping[str, Any]
) -> None:
    """Refuses settings given for a run of ``family`` that belong to the other family.

    Args:
        family: the run's family.
        fields: TrainConfig fields given (e.g. as ``pips-jax train`` flags).
        model_fields: fields of the model config given.

    Raises:
        InputError: naming the first such setting by its flag (its field name when it
            has none) and the family it applies to.
    """
    label = config_class(family).label
    for name in fields:
        owner = FAMILY_FIELDS.get(name, family)
        if owner != family:
            raise InputError(
                f"{_flag_name(TrainConfig, name)} applies to {config_class(owner).label} only; "
                f"this run trains {label}"
            )
    mine = {f.name for f in dataclasses.fields(config_class(family))}
    for name in model_fields:
        if name not in mine:
            owners = [c for c in FAMILIES.values() if name in c.__dataclass_fields__]
            where = " or ".join(c.label for c in owners) or "no model family"
            flag_of = _flag_name(owners[0], name) if owners else name
            raise InputError(f"{flag_of} applies to {where} only; this run trains {label}")


def _flag_name(cls: type, name: str) -> str:
    """The flag of field ``name`` of config class ``cls``, else the field's name."""
    found = [fl.name for f, fl in field_flags(cls) if f.name == name]
    return found[0] if found else name
