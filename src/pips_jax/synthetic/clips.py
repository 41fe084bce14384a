"""The clip API: a :class:`Clip` with exact ground truth, made from a scene or a seed,
stacked into batches, or drawn from a reproducible :class:`SyntheticDataset`.

Everything is NumPy and deterministic for a seed. Tracks are ``(x, y)`` pixels with
the origin at the centre of the top-left pixel; queries are ``(t, x, y)`` rows, the
convention of :class:`~pips_jax.tracker.Tracker`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from pips_jax.config import is_int
from pips_jax.errors import InputError
from pips_jax.synthetic.config import SyntheticConfig
from pips_jax.synthetic.points import sample_points
from pips_jax.synthetic.render import first_visible, ground_truth, render
from pips_jax.synthetic.scene import Scene, random_scene

__all__ = [
    "Augment",
    "Clip",
    "SyntheticDataset",
    "clip_from_scene",
    "generate_batch",
    "generate_clip",
    "stack_clips",
]


@dataclass(frozen=True, eq=False)
class Clip:
    """One synthetic clip with exact ground truth.

    Attributes:
        video: uint8 ``(T, H, W, 3)``.
        tracks: float32 ``(N, T, 2)`` ``(x, y)`` pixels, origin at the centre of the
            top-left pixel.
        occluded: bool ``(N, T)``; True outside the image area
            ``[-0.5, W - 0.5] x [-0.5, H - 0.5]`` or behind a nearer layer.
        query_points: float32 ``(N, 3)`` ``(t, x, y)``: each point's first visible frame
            and its position there (``occluded[i, t] is False``).
        layer: int32 ``(N,)`` layer ids (0 = background, ``k`` = object ``k``; larger
            ids are nearer).
        reference_points: float64 ``(N, 2)`` ``(x, y)`` in the layer's reference plane.
        object_affines: float64 ``(K, T, 2, 3)`` local -> frame pixels per object.
        background_homographies: float64 ``(T, 3, 3)`` background reference (frame 0)
            -> frame pixels.
        seed: the seed the clip was generated from (``-1`` for explicit scenes).
        scene: the :class:`Scene` (textures, shapes) the clip was rendered from.
    """

    video: np.ndarray
    tracks: np.ndarray
    occluded: np.ndarray
    query_points: np.ndarray
    layer: np.ndarray
    reference_points: np.ndarray
    object_affines: np.ndarray
    background_homographies: np.ndarray
    seed: int = -1
    scene: Scene | None = field(default=None, repr=False)


def clip_from_scene(scene: Scene, layer: np.ndarray, ref_xy: np.ndarray, seed: int = -1) -> Clip:
    """Renders ``scene`` and tracks the given points (``layer``, ``ref_xy`` as in
    :func:`ground_truth`); every point must be visible in at least one frame."""
    tracks, occluded = ground_truth(scene, layer, ref_xy)
    first = first_visible(occluded)
    if (first < 0).any():
        raise InputError(
            f"clip_from_scene: expected every point to be visible in some frame, got {int((first < 0).sum())} never visible"
        )
    pos = tracks[np.arange(len(first)), first]
    query = np.stack([first, pos[:, 0], pos[:, 1]], axis=1).astype(np.float32)
    return Clip(
        video=render(scene),
        tracks=tracks.astype(np.float32),
        occluded=occluded,
        query_points=query,
        layer=np.asarray(layer, dtype=np.int32),
        reference_points=np.asarray(ref_xy, dtype=np.float64),
        object_affines=scene.object_affines,
        background_homographies=scene.background_homographies.copy(),
        seed=int(seed),
        scene=scene,
    )


def _check_seed(seed: object) -> int:
    if not is_int(seed) or int(seed) < 0:  # type: ignore[call-overload]
        raise InputError(f"seed: expected a non-negative integer, got {seed!r}")
    return int(seed)  # type: ignore[call-overload]


def generate_clip(config: SyntheticConfig | None = None, seed: int = 0) -> Clip:
    """Generates the clip for ``(config, seed)``; identical arrays for identical inputs.

    See :class:`Clip` for shapes and conventions. ``config=None`` uses the defaults
    (256x256, 24 frames, 4 objects, 256 points).
    """
    config = SyntheticConfig() if config is None else config
    if not isinstance(config, SyntheticConfig):
        raise InputError(f"config: expected a SyntheticConfig, got {type(config).__name__}")
    seed = _check_seed(seed)
    rng = np.random.default_rng(seed)
    scene = random_scene(config, rng)
    layer, ref = sample_points(
        scene, config.num_points, rng, config.fraction_on_objects, config.margin
    )
    return clip_from_scene(scene, layer, ref, seed)


_STACK_KEYS = (
    "video",
    "tracks",
    "occluded",
    "query_points",
    "layer",
    "reference_points",
    "object_affines",
    "background_homographies",
)


def stack_clips(clips: Sequence[Clip]) -> dict[str, np.ndarray]:
    """Stacks same-shaped clips: ``{key: (B, ...)}`` for every array of :class:`Clip`
    (``video`` (B, T, H, W, 3) uint8, ``tracks`` (B, N, T, 2), ``occluded`` (B, N, T),
    ``query_points`` (B, N, 3) ``(t, x, y)``, ``layer`` (B, N), ...) plus ``seed`` (B,)."""
    clips = list(clips)
    if not clips or not all(isinstance(c, Clip) for c in clips):
        raise InputError("stack_clips: expected a non-empty sequence of Clip, got something else")
    out = {}
    for key in _STACK_KEYS:
        arrays = [getattr(c, key) for c in clips]
        if len({a.shape for a in arrays}) != 1:
            raise InputError(
                f"stack_clips: expected equal {key} shapes, got {sorted({a.shape for a in arrays})}"
            )
        out[key] = np.stack(arrays)
    out["seed"] = np.array([c.seed for c in clips], dtype=np.int64)
    return out


def generate_batch(config: SyntheticConfig | None, seeds: Iterable[int]) -> dict[str, np.ndarray]:
    """:func:`generate_clip` for every seed, stacked by :func:`stack_clips`."""
    seeds = list(seeds)
    if not seeds:
        raise InputError("seeds: expected at least one seed, got none")
    return stack_clips([generate_clip(config, s) for s in seeds])


#: ``augment(clip, rng) -> clip``: a random change of a clip, drawn from ``rng``.
Augment = Callable[[Clip, np.random.Generator], Clip]


class SyntheticDataset(Sequence[Clip]):
    """A reproducible, indexable sequence of ``length`` synthetic clips.

    Clip ``i`` is ``generate_clip(config, dataset.clip_seed(i))`` where the clip seed
    is derived from ``(seed, i)`` with ``numpy.random.SeedSequence``; if ``augment`` is
    given it is applied as ``augment(clip, rng)`` with an rng also derived from
    ``(seed, i)``, so ``dataset[i]`` is the same every time and in every process.
    """

    def __init__(
        self,
        config: SyntheticConfig | None = None,
        seed: int = 0,
        length: int = 1000,
        augment: Augment | None = None,
    ) -> None:
        self.config = SyntheticConfig() if config is None else config
        if not isinstance(self.config, SyntheticConfig):
            raise InputError(
                f"config: expected a SyntheticConfig, got {type(self.config).__name__}"
            )
        self.seed = _check_seed(seed)
        if not is_int(length) or length < 0:
            raise InputError(f"length: expected a non-negative integer, got {length!r}")
        if augment is not None and not callable(augment):
            raise InputError(f"augment: expected a callable or None, got {type(augment).__name__}")
        self.length = int(length)
        self.augment = augment

    def __len__(self) -> int:
        return self.length

    def _index(self, index: object) -> int:
        if not is_int(index):
            raise TypeError(f"index: expected an integer, got {type(index).__name__}")
        i = int(index)  # type: ignore[call-overload]
        if i < 0:
            i += self.length
        if not 0 <= i < self.length:
            raise IndexError(f"index {index} out of range for a dataset of {self.length} clips")
        return i

    def clip_seed(self, index: int) -> int:
        """The :func:`generate_clip` seed of clip ``index`` (a 63-bit integer)."""
        i = self._index(index)
        state = np.random.SeedSequence(self.seed, spawn_key=(i, 0)).generate_state(1, np.uint64)
        return int(state[0] >> np.uint64(1))

    def __getitem__(self, index: int) -> Clip:  # type: ignore[override]
        i = self._index(index)
        clip = generate_clip(self.config, self.clip_seed(i))
        if self.augment is not None:
            rng = np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(i, 1)))
            clip = self.augment(clip, rng)
        return clip

    def __iter__(self) -> Iterator[Clip]:
        for i in range(self.length):
            yield self[i]

    def batch(self, indices: Iterable[int]) -> dict[str, np.ndarray]:
        """Clips ``indices`` stacked by :func:`stack_clips`."""
        return stack_clips([self[i] for i in indices])
