"""Training clips from the synthetic generator, made in background processes.

Each clip is a FlyingThings++-style scene of :mod:`pips_jax.synthetic`: a
photographic background under a smooth homography with textured objects moving in
front of it, entering and leaving the frame and hiding each other. Clips are generated
at the crop size directly. A clip's points are all visible (and at least 1.5 pixels
inside the image) on frame 0, where the model is queried, and visible on at least one
other frame, as the original's ``force_twice_vis``; they lie on the background and on
the objects, and a share of them is hidden later by a nearer object, by leaving the
frame or by an erased patch.

Conventions: frames are ``(S, H, W, 3)`` uint8 RGB; trajectories ``(S, N, 2)`` are
``(x, y)`` in pixels with the origin at the centre of the top-left pixel; ``vis`` and
``valids`` are ``(S, N)`` float32 0/1. A position is *valid* (supervised) while it lies
in the image area ``[-0.5, W - 0.5] x [-0.5, H - 0.5]``; the original's FlyingThings++
data marks every position valid, but there a track out of the image is not measured.

Clip ``index`` of training step ``step`` depends only on ``(seed, step, index)``
(``numpy.random.SeedSequence(seed, spawn_key=(step, index))``), so batch ``k`` is the
same whatever the number of workers and whether the run was resumed, and the processes
of a job can each make only their own clips of it.
"""

from __future__ import annotations

import collections
import dataclasses
import multiprocessing
import os
import signal
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor

import numpy as np

from pips_jax.errors import InputError
from pips_jax.synthetic import (
    Scene,
    SyntheticConfig,
    clip_from_scene,
    ground_truth,
    random_scene,
    sample_points,
)
from pips_jax.training.augment import augment_clip
from pips_jax.training.config import POINT_MARGIN, TrainConfig

#: Keys and per-clip shapes of a clip (a batch adds a leading ``B``).
CLIP_KEYS = ("frames", "trajs", "vis", "valids")
_SCENE_ATTEMPTS = 8
_POINT_ROUNDS = 4


@dataclasses.dataclass(frozen=True)
class ClipSpec:
    """What a training clip looks like (picklable, sent to the workers).

    Attributes:
        height, width: crop size in pixels.
        frames: S.
        num_points: N.
        num_objects: moving objects per scene.
        augment: apply :func:`~pips_jax.training.augment.augment_clip`.
    """

    height: int
    width: int
    frames: int
    num_points: int
    num_objects: int = 8
    augment: bool = True

    @classmethod
    def from_config(cls, cfg: TrainConfig) -> ClipSpec:
        h, w = cfg.crop
        return cls(h, w, cfg.model.S, cfg.num_points, cfg.num_objects, cfg.augment)

    def synthetic_config(self) -> SyntheticConfig:
        """The generator's settings; its motion limits (made for 256-pixel clips) are
        scaled by ``max(H, W) / 256``, so motion in pixels grows with the crop."""
        base = SyntheticConfig()
        scale = max(self.height, self.width) / 256.0
        return SyntheticConfig(
            height=self.height,
            width=self.width,
            num_frames=self.frames,
            num_objects=self.num_objects,
            num_points=self.num_points,
            margin=POINT_MARGIN,
            max_background_shift=base.max_background_shift * scale,
            max_object_speed=base.max_object_speed * scale,
        )


def clip_seed(seed: int, step: int, index: int) -> np.random.SeedSequence:
    """The seed sequence of clip ``index`` of step ``step``."""
    return np.random.SeedSequence(int(seed), spawn_key=(int(step), int(index)))


def _pick_points(
    scene: Scene, count: int, rng: np.random.Generator, config: SyntheticConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``count`` points visible on frame 0 and on some later frame.

    Returns ``(layer (M,), ref_xy (M, 2))`` with ``M <= count``.
    """
    layers, refs, have = [], [], 0
    for _ in range(_POINT_ROUNDS):
        need = count - have
        try:
            layer, ref = sample_points(
                scene, 2 * need + 16, rng, config.fraction_on_objects, config.margin
            )
        except InputError:  # a scene with too little visible area: make do or retry
            break
        _, occluded = ground_truth(scene, layer, ref)
        ok = np.nonzero(~occluded[:, 0] & (~occluded[:, 1:]).any(axis=1))[0][:need]
        layers.append(layer[ok])
        refs.append(ref[ok])
        have += len(ok)
        if have == count:
            break
    if not layers:  # no round sampled anything: the caller draws another scene
        return np.zeros(0, np.int32), np.zeros((0, 2))
    return np.concatenate(layers), np.concatenate(refs)


def make_clip(spec: ClipSpec, seed: int, step: int, index: int) -> dict[str, np.ndarray]:
    """Clip ``index`` of training step ``step``.

    Returns:
        ``frames`` uint8 ``(S, H, W, 3)``, ``trajs`` float32 ``(S, N, 2)`` ``(x, y)``
        pixels, ``vis`` and ``valids`` float32 ``(S, N)``.
    """
    scene_seq, aug_seq = clip_seed(seed, step, index).spawn(2)
    rng = np.random.default_rng(scene_seq)
    config = spec.synthetic_config()
    for _ in range(_SCENE_ATTEMPTS):
        scene = random_scene(config, rng)
        layer, ref = _pick_points(scene, spec.num_points, rng, config)
        if len(layer):
            break
    else:  # pragma: no cover - never seen; the sizes are validated up front
        raise RuntimeError(f"no trackable point in {_SCENE_ATTEMPTS} scenes for {spec}")
    if len(layer) < spec.num_points:  # rare: repeat points to fill the clip
        extra = rng.choice(len(layer), spec.num_points - len(layer))
        layer, ref = np.concatenate([layer, layer[extra]]), np.concatenate([ref, ref[extra]])
    clip = clip_from_scene(scene, layer, ref)
    if spec.augment:
        clip = augment_clip(clip, np.random.default_rng(aug_seq))
    trajs = np.ascontiguousarray(clip.tracks.transpose(1, 0, 2), dtype=np.float32)
    h, w = spec.height, spec.width
    inside = (
        (trajs[..., 0] >= -0.5)
        & (trajs[..., 0] <= w - 0.5)
        & (trajs[..., 1] >= -0.5)
        & (trajs[..., 1] <= h - 0.5)
    )
    return {
        "frames": clip.video,
        "trajs": trajs,
        "vis": (~clip.occluded.T).astype(np.float32),
        "valids": inside.astype(np.float32),
    }


def make_batch(
    spec: ClipSpec,
    seed: int,
    step: int,
    batch_size: int,
    indices: Sequence[int] | None = None,
) -> dict[str, np.ndarray]:
    """Batch ``step``: clips ``0 .. batch_size - 1`` stacked along a new first axis, or
    only the clips ``indices`` of it (a process's share of a global batch), in that
    order."""
    rows = range(batch_size) if indices is None else indices
    return stack([make_clip(spec, seed, step, i) for i in rows])


def stack(clips: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.stack([c[k] for c in clips]) for k in CLIP_KEYS}


# ------------------------------------------------------------------ loading
def _worker_init() -> None:
    # Ctrl-C is handled by the training loop, which then shuts the pool down.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Workers only run NumPy; should anything touch JAX, keep it off the accelerator.
    os.environ["JAX_PLATFORMS"] = "cpu"


class BatchLoader:
    """Batches ``start, start + 1, ...`` made ahead of time by worker processes.

    With ``workers=0`` batches are made in the calling thread when asked for. With
    ``workers > 0`` a pool of that many processes (``spawn`` start method, so it is
    safe beside JAX; a script that trains must guard its entry point with ``if
    __name__ == "__main__":``) makes the clips of the next ``prefetch`` batches.
    Use as a context manager, or call :meth:`close`.

    ``indices``: make only these clips of each batch (a process's rows of the global
    batch of ``batch_size``; default all of them).

    Yields ``(step, batch)`` with ``batch`` as :func:`make_batch`.
    """

    def __init__(
        self,
        spec: ClipSpec,
        batch_size: int,
        seed: int,
        start: int = 0,
        stop: int | None = None,
        workers: int = 0,
        prefetch: int | None = None,
        indices: Sequence[int] | None = None,
    ) -> None:
        self.spec = spec
        self.batch_size = int(batch_size)
        self.indices = list(range(self.batch_size) if indices is None else indices)
        self.seed = int(seed)
        self.next_step = int(start)
        self.stop = stop
        self.prefetch = max(1, prefetch if prefetch is not None else max(2, workers))
        self._queue: collections.deque[tuple[int, list[Future]]] = collections.deque()
        self._pool: ProcessPoolExecutor | None = None
        self._submitted = self.next_step
        if workers > 0:
            self._pool = ProcessPoolExecutor(
                max_workers=workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_worker_init,
            )

    def _fill(self) -> None:
        assert self._pool is not None
        while len(self._queue) < self.prefetch and (
            self.stop is None or self._submitted < self.stop
        ):
            step = self._submitted
            futures = [
                self._pool.submit(make_clip, self.spec, self.seed, step, i) for i in self.indices
            ]
            self._queue.append((step, futures))
            self._submitted += 1

    def __iter__(self) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        return self

    def __next__(self) -> tuple[int, dict[str, np.ndarray]]:
        if self.stop is not None and self.next_step >= self.stop:
            raise StopIteration
        step = self.next_step
        if self._pool is None:
            batch = make_batch(self.spec, self.seed, step, self.batch_size, self.indices)
        else:
            self._fill()
            queued, futures = self._queue.popleft()
            assert queued == step
            batch = stack([f.result() for f in futures])
            self._fill()
        self.next_step += 1
        return step, batch

    def close(self) -> None:
        """Cancels the queued work and stops the workers."""
        for _, futures in self._queue:
            for f in futures:
                f.cancel()
        self._queue.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> BatchLoader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
