"""The one-call Python API: :func:`track` a video, or :func:`load_tracker` once and
track many.

Both choose the weights exactly as the command line does
(:func:`pips_jax.weights.load_weights`: a given checkpoint, else the released PIPs
weights in the cache, else the weights shipped with the package) and run them with
the settings their card chooses (:func:`pips_jax.inference.settings_for`), under any
setting given by keyword.

Conventions: a video is a path (a file or a folder of frames) or a ``(T, H, W, 3)``
uint8 RGB array; queries are ``(N, 3)`` rows ``(t, x, y)``, ``t`` an input frame index
and ``(x, y)`` input pixels with the origin at the centre of the top-left pixel;
resolutions are ``(H, W)``.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from pips_jax.inference import settings_for
from pips_jax.tracker import FEATURE_MEMORY_BYTES, Tracker
from pips_jax.tracks_io import TrackResult
from pips_jax.weights import Weights, load_weights

#: The grid :func:`track` uses when given neither queries nor a grid (as ``pips-jax track``).
DEFAULT_GRID = 10


def load_tracker(
    weights: str | os.PathLike | Weights | None = None,
    *,
    iters: int | None = None,
    resolution: tuple[int, int] | None = None,
    precision: str | None = None,
    window: int | None = None,
    max_points_per_batch: int = 1024,
    progress: bool = False,
    mesh: Any = None,
    encode_batch: int = 8,
    feature_memory_bytes: int = FEATURE_MEMORY_BYTES,
) -> Tracker:
    """A :class:`~pips_jax.tracker.Tracker` for ``weights``, set up as ``pips-jax track``
    would be.

    Args:
        weights: a checkpoint (an original ``.pth`` of PIPs or PIPs++, a converted
            ``.safetensors``, a ``pips-jax train`` run folder), loaded
            :class:`~pips_jax.weights.Weights`, or None for the default weights (the
            released PIPs weights in the cache, else the shipped ones).
        iters: refinement iterations per window (default: the weights' card, else the
            family's default).
        resolution: ``(H, W)`` every video is resized to, each side a multiple of the
            stride (default: each video's own aspect ratio at about 360x640's pixel
            count for PIPs, 512x896's for PIPs++).
        precision: ``"float32"`` (exact, default) or ``"bfloat16"``.
        window: PIPs++ only: frames per window (default 128, the original evaluation's).
        max_points_per_batch, progress, mesh, encode_batch, feature_memory_bytes: as
            for :class:`~pips_jax.tracker.Tracker`.

    Raises:
        CheckpointError: no weights were found, or a checkpoint cannot be read.
        InputError: a setting out of range, or ``window`` for PIPs weights.
    """
    if not isinstance(weights, Weights):
        weights = load_weights(weights)
    settings = settings_for(
        weights, iters=iters, video_resolution=resolution, precision=precision, window=window
    )
    return Tracker.from_settings(
        weights.params,
        weights.config,
        settings,
        max_points_per_batch=max_points_per_batch,
        progress=progress,
        mesh=mesh,
        encode_batch=encode_batch,
        feature_memory_bytes=feature_memory_bytes,
    )


def track(
    video: Any,
    queries: np.ndarray | None = None,
    *,
    grid_size: int | None = None,
    weights: str | os.PathLike | Weights | None = None,
    grid_query_frame: int | None = None,
    grid_mask: np.ndarray | None = None,
    backward: bool = True,
    start: int = 0,
    stop: int | None = None,
    step: int = 1,
    **settings: Any,
) -> TrackResult:
    """Tracks points through a video in one call::

        import pips_jax
        result = pips_jax.track("video.mp4", grid_size=20)
        result.tracks        # (N, T, 2) (x, y) input pixels
        result.save("video_tracks.npz")

    Args:
        video: a video file, a folder of frames, or a ``(T, H, W, 3)`` uint8 RGB array.
        queries: ``(N, 3)`` rows ``(t, x, y)``: an input frame index and input pixels
            (origin at the centre of the top-left pixel).
        grid_size: instead of ``queries``, a ``K x K`` grid on ``grid_query_frame`` (an
            input frame index, default the first tracked frame), only where
            ``grid_mask`` (``(H, W)`` bool) is True when given. With neither queries
            nor a grid: a :data:`DEFAULT_GRID` x :data:`DEFAULT_GRID` grid.
        weights: as for :func:`load_tracker` (default: the default weights).
        backward: also track the frames before each query frame.
        start, stop, step: track the input frames ``start, start + step, ...`` below
            ``stop`` (None: to the end).
        settings: any keyword of :func:`load_tracker` (``iters``, ``resolution``,
            ``precision``, ``window``, ``max_points_per_batch``, ``progress``, ...).

    Returns:
        :class:`~pips_jax.tracks_io.TrackResult` over the tracked frames.

    Each call builds (and compiles) a tracker: to track many videos, build one with
    :func:`load_tracker` and call its :meth:`~pips_jax.tracker.Tracker.track`.
    """
    if queries is None and grid_size is None:
        grid_size = DEFAULT_GRID
    tracker = load_tracker(weights, **settings)
    return tracker.track(
        video,
        queries=queries,
        grid_size=grid_size,
        grid_query_frame=grid_query_frame,
        grid_mask=grid_mask,
        backward=backward,
        start=start,
        stop=stop,
        step=step,
    )
