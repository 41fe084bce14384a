"""TAP-Vid dataset readers, coordinate conversions and query sampling."""

from __future__ import annotations

import io
import pickle

import numpy as np
import pytest
from PIL import Image

from pips_jax.errors import InputError
from pips_jax.evaluation.datasets import (
    VideoSample,
    iter_dataset,
    load_dataset,
    load_pickle,
    normalized_to_pixels,
    pixels_to_normalized,
    prepare_evaluation,
    rescale_points,
    resize_video,
    sample_queries_first,
    sample_queries_strided,
)

T, H, W, N = 3, 4, 8, 2


def _entry(seed: int = 0, t: int = T, n: int = N) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "video": rng.integers(0, 256, (t, H, W, 3), dtype=np.uint8),
        "points": rng.uniform(0, 1, (n, t, 2)).astype(np.float32),
        "occluded": rng.uniform(size=(n, t)) < 0.5,
    }


def _dump(path, obj, protocol=pickle.HIGHEST_PROTOCOL):
    with open(path, "wb") as fh:
        pickle.dump(obj, fh, protocol=protocol)
    return path


def _jpeg(frame: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


# ------------------------------------------------------------------ coordinates


def test_normalized_to_pixels_centre_origin():
    pts = np.array([[0.0, 0.0], [1.0, 1.0], [0.5, 0.5], [1 / 16, 1 / 8]])
    px = normalized_to_pixels(pts, (H, W))  # size is (H, W), points (x, y)
    np.testing.assert_array_equal(px, [[-0.5, -0.5], [7.5, 3.5], [3.5, 1.5], [0.0, 0.0]])
    np.testing.assert_array_equal(normalized_to_pixels(pts, (H, W), origin="corner"), pts * [W, H])
    np.testing.assert_array_equal(pixels_to_normalized(px, (H, W)), pts)
    with pytest.raises(InputError, match="origin"):
        normalized_to_pixels(pts, (H, W), origin="middle")
    with pytest.raises(InputError, match=r"\(\.\.\., 2\)"):
        normalized_to_pixels(np.zeros((3, 3)), (H, W))


def test_rescale_points_round_trip():
    rng = np.random.default_rng(0)
    pts = rng.uniform(-0.5, 400, (50, 7, 2))
    # power-of-two scale factors: bit-exact
    back = rescale_points(rescale_points(pts, (480, 512), (240, 256)), (240, 256), (480, 512))
    np.testing.assert_array_equal(back, pts)
    # arbitrary factors: exact up to float64 rounding
    back = rescale_points(rescale_points(pts, (480, 854), (256, 256)), (256, 256), (480, 854))
    np.testing.assert_allclose(back, pts, rtol=0, atol=1e-12)
    # the image area maps onto the image area
    np.testing.assert_allclose(
        rescale_points([[-0.5, -0.5], [853.5, 479.5]], (480, 854), (256, 256)),
        [[-0.5, -0.5], [255.5, 255.5]],
    )
    # consistent with going through normalised coordinates
    np.testing.assert_allclose(
        rescale_points(pts, (480, 854), (256, 256)),
        normalized_to_pixels(pixels_to_normalized(pts, (480, 854)), (256, 256)),
        atol=1e-12,
    )


def test_resize_video_geometry_matches_rescale_points():
    video = np.zeros((1, 4, 4, 3), np.uint8)
    video[0, 1, 1] = 200  # a bright pixel centred at (x, y) = (1, 1)
    big = resize_video(video, (8, 8))
    assert big.shape == (1, 8, 8, 3) and big.dtype == np.uint8
    w = big[0, ..., 0].astype(float)
    ys, xs = np.mgrid[0:8, 0:8]
    centroid = (np.sum(w * xs) / w.sum(), np.sum(w * ys) / w.sum())
    np.testing.assert_allclose(centroid, rescale_points([1.0, 1.0], (4, 4), (8, 8)))
    np.testing.assert_allclose(centroid, (2.5, 2.5))
    const = np.full((2, 5, 7, 3), 77, np.uint8)
    np.testing.assert_array_equal(resize_video(const, (3, 11)), 77)
    with pytest.raises(InputError, match="uint8"):
        resize_video(np.zeros((1, 4, 4, 3), np.float32), (2, 2))


# ---------------------------------------------------------------- query sampling

POINTS = np.arange(3 * 6 * 2, dtype=float).reshape(3, 6, 2)  # (x, y) = (2k, 2k + 1)
OCCLUDED = np.array(
    [
        [0, 0, 1, 0, 0, 0],  # track 0: visible at 0 and 5
        [1, 1, 0, 1, 1, 0],  # track 1: first visible at 2, visible at 5
        [1, 1, 1, 1, 1, 1],  # track 2: never visible
    ],
    bool,
)


def test_sample_queries_first():
    q = sample_queries_first(POINTS, OCCLUDED)
    np.testing.assert_array_equal(q.track_index, [0, 1])
    # (t, x, y): track 0 at frame 0 is (x, y) = (0, 1); track 1 at frame 2 is (16, 17)
    np.testing.assert_array_equal(q.query_points, [[0, 0, 1], [2, 16, 17]])
    np.testing.assert_array_equal(q.target_points, POINTS[:2])
    np.testing.assert_array_equal(q.target_occluded, OCCLUDED[:2])


def test_sample_queries_strided():
    q = sample_queries_strided(POINTS, OCCLUDED, stride=5)  # frames 0 and 5
    np.testing.assert_array_equal(q.track_index, [0, 0, 1])
    np.testing.assert_array_equal(q.query_points, [[0, 0, 1], [5, 10, 11], [5, 22, 23]])
    np.testing.assert_array_equal(q.target_points, POINTS[[0, 0, 1]])
    np.testing.assert_array_equal(q.target_occluded, OCCLUDED[[0, 0, 1]])
    q2 = sample_queries_strided(POINTS, OCCLUDED, stride=2)  # frames 0, 2, 4
    np.testing.assert_array_equal(q2.track_index, [0, 1, 0])
    np.testing.assert_array_equal(q2.query_points[:, 0], [0, 2, 4])


def test_sample_queries_bad_input():
    with pytest.raises(InputError, match="occluded"):
        sample_queries_first(POINTS, OCCLUDED[:, :5])
    with pytest.raises(InputError, match="stride"):
        sample_queries_strided(POINTS, OCCLUDED, stride=0)


# ------------------------------------------------------------------ readers


@pytest.mark.parametrize("fmt", ["davis", "robotap"])
@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_load_davis_style(tmp_path, fmt, protocol):
    data = {"bear": _entry(0), "camel": _entry(1)}
    path = _dump(tmp_path / "tapvid_davis.pkl", data, protocol)
    samples = load_dataset(path, fmt)
    assert [s.name for s in samples] == ["bear", "camel"]
    for s, e in zip(samples, data.values(), strict=True):
        assert isinstance(s, VideoSample)
        assert s.video.shape == (T, H, W, 3) and s.video.dtype == np.uint8
        assert s.points.shape == (N, T, 2) and s.occluded.shape == (N, T)
        assert s.size == (H, W) and s.num_frames == T and s.num_points == N
        np.testing.assert_array_equal(s.video, e["video"])
        np.testing.assert_allclose(s.points[..., 0], e["points"][..., 0] * W - 0.5)
        np.testing.assert_allclose(s.points[..., 1], e["points"][..., 1] * H - 0.5)
        np.testing.assert_array_equal(s.occluded, e["occluded"])


def test_load_folder_of_pickles(tmp_path):
    _dump(tmp_path / "b.pkl", {"v2": _entry(2)})
    _dump(tmp_path / "a.pkl", {"v1": _entry(1)})
    (tmp_path / "notes.txt").write_text("ignored")
    assert [s.name for s in load_dataset(tmp_path, "robotap")] == ["v1", "v2"]


def test_load_rgb_stacking(tmp_path):
    path = _dump(tmp_path / "rgb.pkl", [_entry(0), _entry(1), _entry(2)])
    samples = load_dataset(path, "rgb_stacking")
    assert [s.name for s in samples] == ["video_0000", "video_0001", "video_0002"]
    assert samples[1].points.shape == (N, T, 2)


def test_load_kinetics_jpeg_shard(tmp_path):
    colours = [(250, 10, 10), (10, 250, 10), (10, 10, 250)]
    frames = [np.tile(np.array(c, np.uint8), (H, W, 1)) for c in colours]
    entries = []
    for i in range(2):
        e = _entry(i)
        e["video"] = [_jpeg(f) for f in frames]
        entries.append(e)
    entries[1]["video_id"] = "abc123"
    path = _dump(tmp_path / "0000_of_0010.pkl", entries)
    samples = load_dataset(path, "kinetics")
    assert [s.name for s in samples] == ["0000_of_0010/video_0000", "abc123"]
    s = samples[0]
    assert s.video.shape == (T, H, W, 3) and s.video.dtype == np.uint8
    for t, c in enumerate(colours):
        np.testing.assert_allclose(s.video[t].reshape(-1, 3).mean(0), c, atol=3)
    np.testing.assert_allclose(s.points, entries[0]["points"] * [W, H] - 0.5, rtol=1e-6)


def test_load_kinetics_bad_jpeg_names_video(tmp_path):
    e = _entry(0)
    e["video"] = [b"not a jpeg"] * T
    path = _dump(tmp_path / "shard.pkl", [e])
    with pytest.raises(InputError, match=r"shard/video_0000.*frame 0"):
        load_dataset(path, "kinetics")


def _bad(key, value):
    e = _entry(0)
    if value is None:
        del e[key]
    else:
        e[key] = value
    return e


@pytest.mark.parametrize(
    ("entry", "match"),
    [
        (_bad("occluded", None), "missing 'occluded'"),
        (_bad("occluded", np.zeros((N, T + 1), bool)), r"'occluded' of shape \(2, 3\)"),
        (_bad("points", np.zeros((N, T, 3))), "'points' float"),
        (_bad("video", np.zeros((T - 1, H, W, 3), np.uint8)), "expected 3 frames.*found 2"),
        (_bad("video", np.zeros((T, H, W, 3), np.float32)), "uint8"),
        (_bad("video", [1, 2, 3]), "uint8 array"),
        ([1, 2], "expected a dict"),
    ],
)
def test_bad_video_raises_naming_it(tmp_path, entry, match):
    path = _dump(tmp_path / "d.pkl", {"good": _entry(1), "broken": entry})
    with pytest.raises(InputError, match=f"video 'broken'.*{match}"):
        load_dataset(path, "davis")


def test_iter_dataset_reports_bad_videos_and_keeps_others(tmp_path):
    data = {"a": _entry(0), "b": _bad("points", None), "c": _entry(2)}
    path = _dump(tmp_path / "d.pkl", data)
    items = list(iter_dataset(path, "davis"))
    assert [name for name, _ in items] == ["a", "b", "c"]
    assert isinstance(items[0][1], VideoSample) and isinstance(items[2][1], VideoSample)
    assert isinstance(items[1][1], InputError) and "'b'" in str(items[1][1])


def test_iter_dataset_reports_bad_file_and_keeps_others(tmp_path):
    _dump(tmp_path / "1.pkl", {"x": _entry(0)})
    (tmp_path / "2.pkl").write_bytes(b"garbage")
    _dump(tmp_path / "3.pkl", {"y": _entry(1)})
    items = list(iter_dataset(tmp_path, "davis"))
    assert [n for n, _ in items] == ["x", "2.pkl", "y"]
    assert isinstance(items[1][1], InputError)


@pytest.mark.parametrize(
    ("obj", "fmt", "match"),
    [
        ([_entry(0)], "davis", "expected a dict .* found list"),
        ({"v": _entry(0)}, "rgb_stacking", "expected a list .* found dict"),
        (np.zeros(3), "kinetics", "expected a list .* found ndarray"),
    ],
)
def test_wrong_layout_raises(tmp_path, obj, fmt, match):
    path = _dump(tmp_path / "x.pkl", obj)
    with pytest.raises(InputError, match=f"x.pkl: {match}"):
        load_dataset(path, fmt)


def test_empty_dataset_and_bad_paths(tmp_path):
    with pytest.raises(InputError, match="empty dataset"):
        load_dataset(_dump(tmp_path / "e.pkl", {}), "davis")
    with pytest.raises(InputError, match="empty dataset"):
        load_dataset(_dump(tmp_path / "l.pkl", []), "rgb_stacking")
    with pytest.raises(InputError, match="found nothing"):
        load_dataset(tmp_path / "missing.pkl", "davis")
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    with pytest.raises(InputError, match=r"\*\.pkl"):
        iter_dataset(empty_dir, "davis")
    with pytest.raises(InputError, match="fmt"):
        iter_dataset(tmp_path / "e.pkl", "tapvid")


def test_disallowed_global_is_refused(tmp_path):
    # protocol-0 pickle calling os.system("true"): must be refused, never run
    path = tmp_path / "evil.pkl"
    path.write_bytes(b"cos\nsystem\n(S'true'\ntR.")
    with pytest.raises(InputError, match=r"refusing to unpickle global os\.system"):
        load_pickle(path)
    with pytest.raises(InputError, match=r"os\.system"):
        load_dataset(path, "davis")

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path2 = _dump(tmp_path / "evil2.pkl", {"v": {"video": Evil()}})
    with pytest.raises(InputError, match=r"builtins\.print"):
        load_pickle(path2)


def test_prepare_evaluation(tmp_path):
    e = _entry(0, t=6, n=3)
    e["points"] = np.array([[[0.25, 0.5]] * 6] * 3, np.float32)
    e["occluded"] = OCCLUDED
    path = _dump(tmp_path / "d.pkl", {"v": e})
    (sample,) = load_dataset(path, "davis")
    ex = prepare_evaluation(sample, "first", resolution=(16, 32))
    assert ex.video.shape == (1, 6, 16, 32, 3)
    assert ex.query_points.shape == (1, 2, 3)
    assert ex.target_points.shape == (1, 2, 6, 2) and ex.occluded.shape == (1, 2, 6)
    # normalised (0.25, 0.5) at 32x16 pixels, centre origin: (7.5, 7.5)
    np.testing.assert_allclose(ex.query_points[0], [[0, 7.5, 7.5], [2, 7.5, 7.5]])
    np.testing.assert_allclose(ex.target_points, 7.5)
    ex = prepare_evaluation(sample, "strided", resolution=(256, 256))
    assert ex.query_points.shape == (1, 3, 3)
    np.testing.assert_allclose(ex.query_points[0, :, 1:], [[63.5, 127.5]] * 3)  # (x, y)
    np.testing.assert_allclose(ex.tapvid_query_points[0, :, 1:], [[127.5, 63.5]] * 3)  # (y, x)
    e["occluded"] = np.ones_like(OCCLUDED)
    (sample,) = load_dataset(_dump(tmp_path / "o.pkl", {"w": e}), "davis")
    with pytest.raises(InputError, match="video 'w'.*visible point"):
        prepare_evaluation(sample, "first")
