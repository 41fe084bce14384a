"""Tests of the synthetic point-tracking benchmark (exact, analytic ground truth)."""

import importlib.util
import os
import pickle

import numpy as np
import pytest

from pips_jax import synthetic as syn
from pips_jax.errors import InputError
from pips_jax.evaluation.datasets import to_tapvid, write_tapvid_pickle
from pips_jax.training.augment import color_jitter

HAVE_SKIMAGE = importlib.util.find_spec("skimage") is not None


def _cfg(**kw):
    """A small, non-square config (catches x/y swaps); photos when scikit-image is present."""
    base = dict(
        height=72,
        width=104,
        num_frames=12,
        num_objects=3,
        num_points=64,
        object_radius_range=(0.15, 0.3),
        max_object_speed=5.0,
        texture_source="photos" if HAVE_SKIMAGE else "procedural",
    )
    base.update(kw)
    return syn.SyntheticConfig(**base)


STATIC_BG = dict(
    max_background_shift=0.0,
    max_background_rotation=0.0,
    max_background_zoom=0.0,
    max_background_perspective=0.0,
)
ARRAYS = (
    "video",
    "tracks",
    "occluded",
    "query_points",
    "layer",
    "reference_points",
    "object_affines",
    "background_homographies",
)


def _affine(a, xy):
    return xy @ a[:2, :2].T + a[:, 2]


def _homography(h, xy):
    p = np.concatenate([xy, np.ones((len(xy), 1))], axis=1) @ h.T
    return p[:, :2] / p[:, 2:]


def test_shapes_dtypes_and_queries():
    cfg = _cfg()
    clip = syn.generate_clip(cfg, 3)
    t, h, w, n, k = cfg.num_frames, cfg.height, cfg.width, cfg.num_points, cfg.num_objects
    assert clip.video.shape == (t, h, w, 3) and clip.video.dtype == np.uint8
    assert clip.tracks.shape == (n, t, 2) and clip.tracks.dtype == np.float32
    assert clip.occluded.shape == (n, t) and clip.occluded.dtype == bool
    assert clip.query_points.shape == (n, 3) and clip.query_points.dtype == np.float32
    assert clip.layer.shape == (n,) and clip.layer.dtype == np.int32
    assert clip.object_affines.shape == (k, t, 2, 3)
    assert clip.background_homographies.shape == (t, 3, 3)
    np.testing.assert_array_equal(clip.background_homographies[0], np.eye(3))
    # Half the points on objects, split evenly, and every object got its share here.
    np.testing.assert_array_equal(np.bincount(clip.layer, minlength=k + 1), [32, 11, 11, 10])

    # query_points are (t, x, y) at the first visible frame.
    tq = clip.query_points[:, 0].astype(int)
    np.testing.assert_array_equal(clip.query_points[:, 0], tq)
    idx = np.arange(n)
    assert not clip.occluded[idx, tq].any()
    for i in range(n):
        assert clip.occluded[i, : tq[i]].all()
    np.testing.assert_array_equal(clip.query_points[:, 1], clip.tracks[idx, tq, 0])
    np.testing.assert_array_equal(clip.query_points[:, 2], clip.tracks[idx, tq, 1])
    # Some points start hidden or outside, so not every query is at frame 0 ...
    assert clip.occluded.any()
    # ... and at the query frame every point is inside the image area.
    x, y = clip.query_points[:, 1], clip.query_points[:, 2]
    assert (x >= -0.5 + cfg.margin - 1e-4).all() and (x <= w - 0.5 - cfg.margin + 1e-4).all()
    assert (y >= -0.5 + cfg.margin - 1e-4).all() and (y <= h - 0.5 - cfg.margin + 1e-4).all()


def test_determinism():
    cfg = _cfg()
    a, b, c = syn.generate_clip(cfg, 11), syn.generate_clip(cfg, 11), syn.generate_clip(cfg, 12)
    for name in ARRAYS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.video, c.video)
    assert not np.array_equal(a.tracks, c.tracks)
    assert not np.array_equal(a.object_affines, c.object_affines)


def test_static_background_points_stay_put():
    cfg = _cfg(**STATIC_BG)
    clip = syn.generate_clip(cfg, 5)
    np.testing.assert_array_equal(
        clip.background_homographies, np.broadcast_to(np.eye(3), (12, 3, 3))
    )
    bg = clip.layer == 0
    assert bg.sum() == 32
    tracks = clip.tracks[bg]
    np.testing.assert_array_equal(tracks, np.broadcast_to(tracks[:, :1], tracks.shape))
    np.testing.assert_array_equal(tracks[:, 0], clip.query_points[bg, 1:])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_points_follow_their_layer_motion_exactly(seed):
    """Recompute every track from the query point and the stored motion parameters."""
    clip = syn.generate_clip(_cfg(), seed)
    tq = clip.query_points[:, 0].astype(int)
    q_xy = clip.query_points[:, 1:].astype(np.float64)
    for i in range(len(tq)):
        k = clip.layer[i]
        if k == 0:
            homs = clip.background_homographies
            ref = _homography(np.linalg.inv(homs[tq[i]]), q_xy[i : i + 1])
            expected = np.concatenate([_homography(h, ref) for h in homs])
        else:
            aff = clip.object_affines[k - 1]
            full = np.concatenate([aff[tq[i]], [[0, 0, 1]]])
            local = _affine(np.linalg.inv(full)[:2], q_xy[i : i + 1])
            expected = np.concatenate([_affine(a, local) for a in aff])
        np.testing.assert_allclose(clip.tracks[i], expected, atol=2e-3, rtol=0)
    # Objects are similarities: rotation + isotropic scale + translation, moving smoothly.
    lin = clip.object_affines[..., :2]
    np.testing.assert_allclose(lin[..., 0, 0], lin[..., 1, 1], atol=1e-12)
    np.testing.assert_allclose(lin[..., 0, 1], -lin[..., 1, 0], atol=1e-12)
    assert np.abs(np.diff(clip.object_affines[..., 2], axis=1)).max() > 0.5


def _flat(colour, size=16):
    return np.broadcast_to(np.asarray(colour, np.uint8), (size, size, 3)).copy()


def _passing_square_scene(t_count=20, width=64, height=48):
    """Static blue background; a red 16x16 square moving right along y = 20.3."""
    centres_x = np.linspace(-6.0, width + 12.0, t_count) + 0.37
    affines = np.zeros((t_count, 2, 3))
    affines[:, 0, 0] = affines[:, 1, 1] = 1.0
    affines[:, 0, 2] = centres_x
    affines[:, 1, 2] = 20.3
    square = np.array([[-8.0, -8.0], [8.0, -8.0], [8.0, 8.0], [-8.0, 8.0]])
    obj = syn.ObjectLayer(
        "polygon", square, affines, _flat((255, 0, 0)), np.array([[0, 0, 8.0], [0, 0, 8.0]])
    )
    return syn.Scene(
        height,
        width,
        _flat((0, 0, 255)),
        np.array([[0, 0, 8.0], [0, 0, 8.0]]),
        np.broadcast_to(np.eye(3), (t_count, 3, 3)),
        (obj,),
    ), centres_x


def test_background_point_behind_passing_object_is_occluded_exactly():
    scene, cx = _passing_square_scene()
    points = np.array([[30.0, 20.0], [30.0, 40.0], [1.2, 13.0]])  # (x, y)
    clip = syn.clip_from_scene(scene, np.zeros(3, np.int32), points)
    covered = (np.abs(cx[None] - points[:, :1]) < 8) & (np.abs(20.3 - points[:, 1:]) < 8)
    assert covered[0].sum() >= 3 and not covered[1].any() and covered[2].any()
    np.testing.assert_array_equal(clip.occluded, covered)
    # The renderer agrees: integer points sit on pixel centres, red exactly when covered.
    for i in (0, 1):
        x, y = points[i].astype(int)
        red = clip.video[:, y, x].tolist()
        assert red == [[255, 0, 0] if c else [0, 0, 255] for c in covered[i]]
    # The first point is visible at frame 0, so that is its query frame.
    np.testing.assert_array_equal(clip.query_points[0], [0, 30, 20])
    # The third point is hidden at first: its query is the first uncovered frame.
    first = int(np.argmin(covered[2]))
    assert first > 0 and clip.query_points[2, 0] == first


def test_points_leaving_the_frame_are_occluded():
    scene, cx = _passing_square_scene()
    # A point on the object (local (3, -2)) leaves through the right edge.
    clip = syn.clip_from_scene(scene, np.array([1], np.int32), np.array([[3.0, -2.0]]))
    x = cx + 3.0
    np.testing.assert_allclose(clip.tracks[0, :, 0], x, atol=1e-5)
    np.testing.assert_array_equal(clip.occluded[0], (x < -0.5) | (x > 63.5))
    assert clip.occluded[0, 0] and clip.occluded[0, -1] and not clip.occluded[0].all()

    # In random clips (fast objects, moving background) every out-of-frame sample is occluded.
    cfg = _cfg(max_object_speed=10.0, max_background_shift=40.0)
    outside_total = 0
    for seed in range(4):
        c = syn.generate_clip(cfg, seed)
        x, y = c.tracks[..., 0], c.tracks[..., 1]
        outside = (x < -0.5) | (x > cfg.width - 0.5) | (y < -0.5) | (y > cfg.height - 0.5)
        assert c.occluded[outside].all()
        outside_total += outside.sum()
    assert outside_total > 50


def test_random_occlusion_matches_shape_test():
    """Occlusion in random clips = outside the image or inside a nearer object's shape."""
    cfg = _cfg(num_objects=4)
    clip = syn.generate_clip(cfg, 21)
    x = clip.tracks[..., 0].astype(np.float64)
    y = clip.tracks[..., 1].astype(np.float64)
    expected = (x < -0.5) | (x > cfg.width - 0.5) | (y < -0.5) | (y > cfg.height - 0.5)
    behind_any = np.zeros_like(expected)
    for j, obj in enumerate(clip.scene.objects, start=1):
        full = np.zeros((cfg.num_frames, 3, 3))
        full[:, :2] = clip.object_affines[j - 1]
        full[:, 2, 2] = 1.0
        inv = np.linalg.inv(full)
        lx = inv[:, 0, 0] * x + inv[:, 0, 1] * y + inv[:, 0, 2]
        ly = inv[:, 1, 0] * x + inv[:, 1, 1] * y + inv[:, 1, 2]
        if obj.kind == "ellipse":
            inside = (lx / obj.shape[0]) ** 2 + (ly / obj.shape[1]) ** 2 < 1
        else:
            v = obj.shape
            e = np.roll(v, -1, axis=0) - v
            cross = e[:, 0][:, None, None] * (ly[None] - v[:, 1, None, None]) - e[:, 1][
                :, None, None
            ] * (lx[None] - v[:, 0, None, None])
            inside = (cross > 0).all(0) | (cross < 0).all(0)
        covered = inside & (clip.layer[:, None] < j)
        behind_any |= covered
        expected |= covered
    # float32 tracks vs float64 internals could only flip samples on an outline itself.
    assert (clip.occluded != expected).sum() <= 1
    assert behind_any.sum() > 10


def test_static_background_colour_is_consistent():
    cfg = _cfg(num_objects=4, **STATIC_BG)
    clip = syn.generate_clip(cfg, 8)
    scene = clip.scene
    # Every pixel centre as a background point: wherever it is visible, the rendered
    # colour equals the texture colour, i.e. the same in every frame.
    ys, xs = np.mgrid[0 : cfg.height, 0 : cfg.width]
    ref = np.stack([xs.ravel(), ys.ravel()], 1).astype(np.float64)
    layer = np.zeros(len(ref), np.int32)
    _, occluded = syn.ground_truth(scene, layer, ref)
    assert occluded.any() and not occluded.all()
    colours = np.rint(syn.surface_colors(scene, layer, ref))
    rendered = clip.video.reshape(cfg.num_frames, -1, 3).transpose(1, 0, 2).astype(np.float32)
    visible = ~occluded
    np.testing.assert_allclose(
        rendered[visible], np.broadcast_to(colours[:, None], rendered.shape)[visible], atol=1
    )
    # And where hidden, an object is drawn instead (some pixel changes colour).
    assert (np.abs(rendered - colours[:, None]).max(-1) > 8)[occluded].mean() > 0.5

    # The clip's own background points: nearest-pixel colour at visible frames equals
    # the colour at the query frame (unless the rounded pixel touches an object's edge).
    bg = np.nonzero(clip.layer == 0)[0]
    px = np.rint(clip.tracks[bg]).astype(int)
    t = np.arange(cfg.num_frames)
    seen = clip.video[t[None], px[..., 1], px[..., 0]].astype(int)  # (n, T, 3)
    tq = clip.query_points[bg, 0].astype(int)
    at_query = seen[np.arange(len(bg)), tq]
    same = (seen == at_query[:, None]).all(-1)
    vis = ~clip.occluded[bg]
    assert same[vis].mean() > 0.97


def _sample_video(video, xy):
    """Bilinear sample of video (T, H, W, 3) at xy (N, T, 2), pixel-centre origin."""
    t_count, h, w, _ = video.shape
    x = np.clip(xy[..., 0], 0, w - 1)
    y = np.clip(xy[..., 1], 0, h - 1)
    x0 = np.minimum(np.floor(x).astype(int), w - 2)
    y0 = np.minimum(np.floor(y).astype(int), h - 2)
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]
    t = np.arange(t_count)[None]
    v = video.astype(np.float64)
    top = v[t, y0, x0] * (1 - fx) + v[t, y0, x0 + 1] * fx
    bot = v[t, y0 + 1, x0] * (1 - fx) + v[t, y0 + 1, x0 + 1] * fx
    return top * (1 - fy) + bot * fy


def test_moving_scene_colour_follows_tracks():
    """With everything moving, the video sampled along the tracks keeps each point's
    colour; a half-pixel convention error would double the error."""
    cfg = _cfg(num_points=200, max_background_shift=30.0)
    errors, shifted = [], []
    for seed in range(3):
        clip = syn.generate_clip(cfg, seed)
        colours = syn.surface_colors(clip.scene, clip.layer, clip.reference_points)
        vis = ~clip.occluded
        tracks = clip.tracks.astype(np.float64)
        errors.append(np.abs(_sample_video(clip.video, tracks) - colours[:, None])[vis])
        off = _sample_video(clip.video, tracks + 0.5)
        shifted.append(np.abs(off - colours[:, None])[vis])
    err, off = np.median(np.concatenate(errors)), np.median(np.concatenate(shifted))
    assert err < 1.5  # measured ~0.6 (uint8 rounding + interpolating a photo)
    assert err < 0.4 * off  # measured ~4.3 half a pixel off


def test_object_texture_on_pixel_grid_is_exact():
    """An object translating by whole pixels with an integer texture map shows its
    texture pixels exactly at the tracked pixel centres."""
    t_count = 5
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
    affines = np.zeros((t_count, 2, 3))
    affines[:, 0, 0] = affines[:, 1, 1] = 1.0
    affines[:, 0, 2] = 20 + 3 * np.arange(t_count)
    affines[:, 1, 2] = 18 - 2 * np.arange(t_count)
    obj = syn.ObjectLayer(
        "ellipse", np.array([9.5, 6.5]), affines, texture, np.array([[1.0, 0, 20], [0, 1.0, 20]])
    )
    scene = syn.Scene(
        40,
        48,
        _flat((0, 0, 0)),
        np.array([[0, 0, 8.0], [0, 0, 8.0]]),
        np.broadcast_to(np.eye(3), (t_count, 3, 3)),
        (obj,),
    )
    lx, ly = np.meshgrid(np.arange(-9, 10), np.arange(-6, 7))
    local = np.stack([lx.ravel(), ly.ravel()], 1).astype(np.float64)
    local = local[(local[:, 0] / 9.5) ** 2 + (local[:, 1] / 6.5) ** 2 < 1]
    clip = syn.clip_from_scene(scene, np.ones(len(local), np.int32), local)
    assert not clip.occluded.any()
    px = clip.tracks.astype(int)
    np.testing.assert_array_equal(px, clip.tracks)
    expected = texture[local[:, 1].astype(int) + 20, local[:, 0].astype(int) + 20]
    for t in range(t_count):
        np.testing.assert_array_equal(clip.video[t, px[:, t, 1], px[:, t, 0]], expected)


def test_points_keep_a_margin_at_their_query_frame():
    cfg = _cfg(num_objects=4, margin=1.5)
    clip = syn.generate_clip(cfg, 4)
    tq = clip.query_points[:, 0].astype(int)
    q_xy = clip.query_points[:, 1:].astype(np.float64)
    for j, obj in enumerate(clip.scene.objects, start=1):
        inv = obj.inverse_affines[tq]
        lx = inv[:, 0, 0] * q_xy[:, 0] + inv[:, 0, 1] * q_xy[:, 1] + inv[:, 0, 2]
        ly = inv[:, 1, 0] * q_xy[:, 0] + inv[:, 1, 1] * q_xy[:, 1] + inv[:, 1, 2]
        scale = np.sqrt(np.abs(np.linalg.det(clip.object_affines[j - 1, tq, :, :2])))
        dist = obj.signed_distance(lx, ly) * scale  # frame pixels, conservative
        own = clip.layer == j
        assert own.any()
        assert (dist[own] <= -1.5 + 1e-3).all()  # well inside its own object
        behind = clip.layer < j
        assert (dist[behind] >= 1.5 - 1e-3).all()  # well clear of nearer objects


def test_tapvid_export_and_atomic_pickle(tmp_path):
    cfg = _cfg(num_points=16)
    clips = [syn.generate_clip(cfg, s) for s in (1, 2)]
    data = to_tapvid(clips)
    assert sorted(data) == ["synthetic_00000", "synthetic_00001"]
    entry = data["synthetic_00001"]
    assert entry["video"].dtype == np.uint8 and entry["video"].shape == (12, 72, 104, 3)
    assert entry["points"].shape == (16, 12, 2) and entry["occluded"].dtype == bool
    np.testing.assert_allclose(entry["points"][..., 0], (clips[1].tracks[..., 0] + 0.5) / 104)
    np.testing.assert_allclose(entry["points"][..., 1], (clips[1].tracks[..., 1] + 0.5) / 72)
    vis = ~entry["occluded"]
    assert ((entry["points"][vis] >= 0) & (entry["points"][vis] <= 1)).all()
    assert list(to_tapvid({"a": clips[0]})) == ["a"]

    path = tmp_path / "synthetic.pkl"
    assert write_tapvid_pickle(path, clips) == str(path)
    assert os.listdir(tmp_path) == ["synthetic.pkl"]  # no temp file left behind
    with open(path, "rb") as fh:
        loaded = pickle.load(fh)
    for name in data:
        for key in ("video", "points", "occluded"):
            np.testing.assert_array_equal(loaded[name][key], data[name][key])


def test_batch_and_dataset():
    cfg = _cfg(num_points=24)
    batch = syn.generate_batch(cfg, [4, 5, 6])
    assert batch["video"].shape == (3, 12, 72, 104, 3)
    assert batch["tracks"].shape == (3, 24, 12, 2)
    assert batch["occluded"].shape == (3, 24, 12)
    assert batch["query_points"].shape == (3, 24, 3)
    assert batch["object_affines"].shape == (3, 3, 12, 2, 3)
    np.testing.assert_array_equal(batch["seed"], [4, 5, 6])
    np.testing.assert_array_equal(batch["tracks"][1], syn.generate_clip(cfg, 5).tracks)

    ds = syn.SyntheticDataset(cfg, seed=7, length=3)
    assert len(ds) == 3
    seeds = [ds.clip_seed(i) for i in range(3)]
    assert len(set(seeds)) == 3
    assert seeds == [syn.SyntheticDataset(cfg, seed=7, length=3).clip_seed(i) for i in range(3)]
    assert seeds[0] != syn.SyntheticDataset(cfg, seed=8, length=3).clip_seed(0)
    first = ds[0]
    np.testing.assert_array_equal(first.video, syn.generate_clip(cfg, seeds[0]).video)
    np.testing.assert_array_equal(ds[-1].tracks, ds[2].tracks)
    assert [c.seed for c in ds] == seeds
    with pytest.raises(IndexError):
        ds[3]
    assert ds.batch([0, 2])["video"].shape == (2, 12, 72, 104, 3)

    aug = syn.SyntheticDataset(cfg, seed=7, length=3, augment=color_jitter)
    a0, a0_again = aug[0], aug[0]
    np.testing.assert_array_equal(a0.video, a0_again.video)  # augmentation is deterministic
    assert not np.array_equal(a0.video, first.video)
    assert np.abs(a0.video.astype(int) - first.video).mean() < 30
    for name in ARRAYS[1:]:
        np.testing.assert_array_equal(getattr(a0, name), getattr(first, name))


def test_procedural_textures_need_no_photos():
    cfg = _cfg(texture_source="procedural")
    a, b = syn.generate_clip(cfg, 2), syn.generate_clip(cfg, 2)
    np.testing.assert_array_equal(a.video, b.video)
    assert a.video.std() > 20  # textured, not flat


@pytest.mark.skipif(not HAVE_SKIMAGE, reason="scikit-image is not installed")
def test_bundled_photos_load_offline():
    for name in syn.PHOTO_NAMES:
        photo = syn.load_photo(name)
        assert photo.dtype == np.uint8 and photo.ndim in (2, 3) and min(photo.shape[:2]) >= 256
    clip = syn.generate_clip(_cfg(), 0)
    assert clip.scene.background_texture.shape[0] >= 256  # a photograph, not a procedural patch


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        (dict(height=0), "SyntheticConfig.height: expected an integer >= 8, got 0"),
        (dict(num_frames=2.5), "SyntheticConfig.num_frames: expected an integer >= 1, got 2.5"),
        (
            dict(fraction_on_objects=1.5),
            "SyntheticConfig.fraction_on_objects: expected a number in [0.0, 1.0], got 1.5",
        ),
        (dict(object_radius_range=(0.3, 0.1)), "SyntheticConfig.object_radius_range: expected"),
        (
            dict(texture_source="noise"),
            "SyntheticConfig.texture_source: expected 'photos' or 'procedural', got 'noise'",
        ),
        (dict(background_images=("nope",)), "SyntheticConfig.background_images: expected"),
    ],
)
def test_bad_config_is_an_input_error(kwargs, fragment):
    with pytest.raises(InputError) as info:
        syn.SyntheticConfig(**kwargs)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_bad_calls_are_input_errors():
    with pytest.raises(InputError, match="seed: expected a non-negative integer, got -1"):
        syn.generate_clip(_cfg(), -1)
    with pytest.raises(InputError, match="config: expected a SyntheticConfig"):
        syn.generate_clip({"height": 64}, 0)
    scene, _ = _passing_square_scene()
    with pytest.raises(InputError, match="layer: expected ids in"):
        syn.ground_truth(scene, np.array([2]), np.array([[1.0, 1.0]]))
    with pytest.raises(InputError, match="never visible"):
        syn.clip_from_scene(scene, np.array([0]), np.array([[500.0, 1.0]]))
    with pytest.raises(InputError, match="convex polygon"):
        syn.ObjectLayer(
            "polygon",
            np.array([[0, 0], [4, 0], [1, 1], [0, 4.0]]),
            np.zeros((2, 2, 3)) + np.array([[1, 0, 0], [0, 1, 0.0]]),
            _flat((1, 2, 3)),
            np.zeros((2, 3)),
        )
