"""Training clips: shapes, conventions, determinism, augmentation and the worker pool."""

import multiprocessing

import numpy as np
import pytest

from pips_jax.synthetic import SyntheticConfig, generate_clip
from pips_jax.training.augment import erase_patches, flip_clip, flip_tracks
from pips_jax.training.data import BatchLoader, ClipSpec, make_batch, make_clip
from training_helpers import TINY

SPEC = ClipSpec.from_config(TINY)


def test_clip_shapes_and_conventions():
    spec = ClipSpec(32, 48, 8, 16)
    b = make_batch(spec, 0, 0, 3)
    assert b["frames"].shape == (3, 8, 32, 48, 3) and b["frames"].dtype == np.uint8
    assert b["trajs"].shape == (3, 8, 16, 2) and b["trajs"].dtype == np.float32
    assert b["vis"].shape == b["valids"].shape == (3, 8, 16)
    # every point is visible and well inside the image on frame 0 (the query frame)
    assert np.all(b["vis"][:, 0] == 1)
    x0, y0 = b["trajs"][:, 0, :, 0], b["trajs"][:, 0, :, 1]
    assert x0.min() >= 1.0 and x0.max() <= 48 - 2.0 and y0.min() >= 1.0 and y0.max() <= 32 - 2.0
    # ... and on at least one other frame
    assert np.all(b["vis"][:, 1:].max(axis=1) == 1)
    # valid = inside the image area [-0.5, W - 0.5] x [-0.5, H - 0.5]; a point outside
    # is never visible
    x, y = b["trajs"][..., 0], b["trajs"][..., 1]
    inside = (x >= -0.5) & (x <= 47.5) & (y >= -0.5) & (y <= 31.5)
    np.testing.assert_array_equal(b["valids"], inside.astype(np.float32))
    assert np.all(b["vis"][~inside] == 0)


def test_clips_have_occlusions_and_motion():
    b = make_batch(SPEC, 0, 0, 4)
    hidden = (b["vis"] == 0) & (b["valids"] == 1)
    assert hidden.any(), "some in-image points should be occluded"
    assert np.abs(b["trajs"][:, -1] - b["trajs"][:, 0]).max() > 1.0


def test_clips_are_deterministic_per_seed_step_and_index():
    a = make_clip(SPEC, 3, 5, 1)
    b = make_clip(SPEC, 3, 5, 1)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    for other in (make_clip(SPEC, 3, 5, 0), make_clip(SPEC, 3, 6, 1), make_clip(SPEC, 4, 5, 1)):
        assert not np.array_equal(a["trajs"], other["trajs"])


def test_a_scene_without_room_for_points_is_redrawn():
    # Clip 2 of step 990 of data seed 8 (stage 7 of the shipped weights) draws a first
    # scene in which no point can be sampled at all; it used to stop training with
    # "need at least one array to concatenate" instead of drawing the next scene.
    spec = ClipSpec(256, 256, 8, 192)
    clip = make_clip(spec, 8, 990, 2)
    assert clip["trajs"].shape == (8, 192, 2)
    assert np.all(clip["vis"][0] == 1) and np.all(clip["vis"][1:].max(axis=0) == 1)


def test_flip_tracks_by_hand():
    # W = 10, H = 6, origin at the centre of the top-left pixel
    tracks = np.array([[0.0, 0.0], [9.0, 5.0], [2.5, 1.25], [-0.5, 5.5]])
    out = flip_tracks(tracks, (6, 10), horizontal=True, vertical=False)
    np.testing.assert_array_equal(out, [[9, 0], [0, 5], [6.5, 1.25], [9.5, 5.5]])
    out = flip_tracks(tracks, (6, 10), horizontal=False, vertical=True)
    np.testing.assert_array_equal(out, [[0, 5], [9, 0], [2.5, 3.75], [-0.5, -0.5]])


@pytest.mark.parametrize("horizontal, vertical", [(True, False), (False, True), (True, True)])
def test_flipped_tracks_follow_the_flipped_video(horizontal, vertical):
    clip = generate_clip(SyntheticConfig(height=24, width=40, num_frames=4, num_points=40), 1)
    flipped = flip_clip(clip, horizontal, vertical)
    n, t = np.nonzero(~clip.occluded)

    # nearest pixel of every visible point, before and after: same colour
    def pixels(c):
        col = np.floor(c.tracks[n, t, 0] + 0.5).astype(int)
        row = np.floor(c.tracks[n, t, 1] + 0.5).astype(int)
        return c.video[t, row, col]

    np.testing.assert_array_equal(pixels(flipped), pixels(clip))
    assert not np.array_equal(flipped.video, clip.video)


def test_erased_patches_hide_the_points_under_them():
    clip = generate_clip(None, 2)
    rng = np.random.default_rng(0)
    video, occluded = erase_patches(clip.video, clip.tracks, clip.occluded, rng)
    np.testing.assert_array_equal(video[0], clip.video[0])  # the query frame is untouched
    assert np.all(occluded >= clip.occluded) and np.all(occluded[:, 0] == clip.occluded[:, 0])
    new = occluded & ~clip.occluded
    assert new.any()
    n, t = np.nonzero(new)
    col = np.clip(np.floor(clip.tracks[n, t, 0] + 0.5).astype(int), 0, 255)
    row = np.clip(np.floor(clip.tracks[n, t, 1] + 0.5).astype(int), 0, 255)
    changed = np.any(video[t, row, col] != clip.video[t, row, col], axis=-1)
    assert changed.mean() > 0.8  # covered by a flat patch (rarely the same colour)


def test_worker_pool_gives_the_same_batches_and_shuts_down():
    with BatchLoader(SPEC, 2, seed=5, start=3, stop=5, workers=0) as loader:
        inline = list(loader)
    with BatchLoader(SPEC, 2, seed=5, start=3, stop=5, workers=1, prefetch=2) as loader:
        pooled = list(loader)
        assert multiprocessing.active_children()
    assert not multiprocessing.active_children()
    assert [s for s, _ in inline] == [s for s, _ in pooled] == [3, 4]
    for (_, a), (_, b) in zip(inline, pooled, strict=True):
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])
    direct = make_batch(SPEC, 5, 4, 2)
    np.testing.assert_array_equal(direct["trajs"], inline[1][1]["trajs"])
