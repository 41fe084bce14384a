"""Tests of pips_jax.viz: colours, drawing tracks and queries, saving visualizations."""

import inspect
import os

import numpy as np
import pytest
from PIL import Image

from pips_jax.errors import InputError
from pips_jax.video import probe_video, read_frames
from pips_jax.viz import draw_queries, draw_tracks, point_colors, save_visualization, side_by_side


def black(t: int = 1, h: int = 20, w: int = 30) -> np.ndarray:
    return np.zeros((t, h, w, 3), np.uint8)


def one(frames, tracks, visible=None, **kw) -> list[np.ndarray]:
    return list(draw_tracks(frames, np.asarray(tracks, float), visible, **kw))


# --------------------------------------------------------------------- colours
def test_point_colors_stable_and_distinct():
    c = point_colors(12)
    assert c.shape == (12, 3) and c.dtype == np.uint8
    np.testing.assert_array_equal(c, point_colors(12))
    np.testing.assert_array_equal(point_colors(50)[:12], c)  # independent of n
    d = np.abs(c[:, None].astype(int) - c[None].astype(int)).sum(-1)
    assert d[~np.eye(12, dtype=bool)].min() > 40
    assert len({tuple(x) for x in point_colors(1000)}) > 900
    assert not np.array_equal(point_colors(5, seed=1), point_colors(5))
    assert point_colors(0).shape == (0, 3)
    with pytest.raises(InputError):
        point_colors(-1)


# --------------------------------------------------------------------- drawing
def test_visible_point_at_x10_y5():
    color = point_colors(1)[0]
    (out,) = one(black(), [[[10.0, 5.0]]], np.array([[True]]), radius=2)
    np.testing.assert_array_equal(out[5, 10], color)  # row y=5, column x=10
    np.testing.assert_array_equal(out[5, 12], color)
    mask = out.any(-1)
    rows, cols = np.nonzero(mask)
    assert rows.min() >= 3 and rows.max() <= 7 and cols.min() >= 8 and cols.max() <= 12
    assert not out[10, 5].any() and not out[0, 0].any() and not out[19, 29].any()


def test_occluded_point_is_hollow():
    color = point_colors(1)[0]
    (out,) = one(black(), [[[10.0, 5.0]]], np.array([[False]]), radius=3)
    assert not out[5, 10].any()  # centre empty
    for r, c in ((5, 13), (5, 7), (2, 10), (8, 10)):
        np.testing.assert_array_equal(out[r, c], color)


def test_trail_between_positions_and_fading():
    color = point_colors(1)[0]
    tracks = [[[5.0, 10.0], [25.0, 10.0]]]
    _, out = one(black(2), tracks, radius=0, trail=4, line_width=1)
    for x in range(5, 26):
        np.testing.assert_array_equal(out[10, x], color)  # newest segment: opaque
    assert not out[12, 15].any()
    _, bare = one(black(2), tracks, radius=0, trail=0)
    assert not bare.any()
    # Four segments to the right: the older, the dimmer.
    xs = [[[2.0 + 6 * t, 10.0] for t in range(5)]]
    last = one(black(5, 20, 30), xs, radius=0, trail=4, line_width=1)[-1]
    brightness = [int(last[10, x].sum()) for x in (5, 11, 17, 23)]  # oldest .. newest
    assert brightness == sorted(brightness) and brightness[0] < brightness[-1]
    assert not last[10, 0].any()  # the segment before the trail window is gone


def test_nan_points_and_segments_skipped():
    tracks = np.array(
        [[[np.nan, 5.0], [10.0, 5.0], [20.0, 5.0]], [[3.0, 3.0], [np.inf, 1.0], [3.0, 15.0]]]
    )
    frames = black(3)
    out = one(frames, tracks, radius=2, line_width=1)
    assert not out[0][:, 6:].any()  # point 0 absent on frame 0 (point 1 is at x <= 5)
    assert not out[1][:, 15:].any()  # point 1 absent on frame 1 ...
    assert not out[2][9, 3].any()  # ... and no segment through its missing frame
    np.testing.assert_array_equal(out[2][15, 3], point_colors(2)[1])
    np.testing.assert_array_equal(out[2][5, 15], point_colors(2)[0])  # point 0 trail 10 -> 20
    np.testing.assert_array_equal(frames, black(3))  # inputs untouched


def test_draw_tracks_many_points_and_streaming(tmp_path):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
    tracks = rng.uniform(-10, 74, (2000, 4, 2))
    vis = rng.random((2000, 4)) > 0.5
    gen = draw_tracks(iter(frames), tracks, vis, colors=(255, 0, 0))
    assert inspect.isgenerator(gen)
    out = list(gen)
    assert len(out) == 4 and out[0].shape == (64, 64, 3) and out[0].dtype == np.uint8
    assert (out[3] == (255, 0, 0)).all(-1).mean() > 0.3


def test_draw_tracks_bad_input():
    frames = black(3)
    ok = np.zeros((2, 3, 2))
    for kwargs in (
        {"tracks": np.zeros((2, 3))},
        {"tracks": ok, "visible": np.zeros((2, 2), bool)},
        {"tracks": ok, "visible": np.zeros((2, 3), np.float32)},
        {"tracks": ok, "colors": np.zeros((3, 3))},
        {"tracks": ok, "trail": -1},
        {"tracks": ok, "radius": float("nan")},
    ):
        with pytest.raises(InputError) as err:
            draw_tracks(frames, **kwargs)  # raised at once, not on iteration
        assert "\n" not in str(err.value)
    with pytest.raises(InputError):
        list(draw_tracks(black(2), ok))  # 2 frames for 3-frame tracks
    with pytest.raises(InputError):
        list(draw_tracks(black(4), ok))


def test_draw_queries_and_side_by_side():
    frame = black()[0]
    q = np.array([[0, 10.0, 5.0], [2, 20.0, 12.0], [0, np.nan, 3.0]])
    c = point_colors(3)
    out = draw_queries(frame, q, radius=3, frame_index=0)
    np.testing.assert_array_equal(out[5, 10], c[0])
    assert not out[12, 20].any()  # queried on another frame: hollow
    np.testing.assert_array_equal(out[12, 23], c[1])
    assert not frame.any()
    both = side_by_side(out, black(1, 10, 7)[0], gap=2)
    assert both.shape == (20, 39, 3)
    np.testing.assert_array_equal(both[:, :30], out)
    assert not both[:, 30:].any()
    with pytest.raises(InputError):
        draw_queries(frame, np.zeros((3, 2)))


# ---------------------------------------------------------------------- saving
def moving(t: int = 6, n: int = 3):
    yy, xx = np.mgrid[0:40, 0:48]
    bg = np.stack([xx * 5, yy * 6, np.full_like(xx, 60)], -1).astype(np.uint8)
    frames = np.repeat(bg[None], t, 0)
    tracks = np.stack(
        [
            np.stack([8 + 5 * np.arange(t) + 3 * i, 10 + 8 * i + 0 * np.arange(t)], -1)
            for i in range(n)
        ]
    )
    return frames, tracks.astype(np.float32), np.ones((n, t), bool)


@pytest.mark.parametrize("name", ["v.gif", "v.mp4"])
def test_save_visualization(tmp_path, name):
    frames, tracks, vis = moving()
    out = save_visualization(tmp_path / name, frames, tracks, vis, 8)
    assert out.is_file() and out.stat().st_size > 0
    got = list(read_frames(out))
    assert len(got) == 6 and got[0].shape == (40, 48, 3)
    first = next(draw_tracks(frames, tracks, vis))
    assert np.abs(got[0].astype(int) - first).mean() < 4
    assert probe_video(out).fps == pytest.approx(8.0, abs=0.35)  # GIF: 10 ms steps


def test_save_visualization_with_queries_from_a_video_path(tmp_path):
    frames, tracks, vis = moving()
    (tmp_path / "src").mkdir()
    for i, f in enumerate(frames):
        Image.fromarray(f).save(tmp_path / "src" / f"{i}.png")
    q = np.stack([np.zeros(3), tracks[:, 0, 0], tracks[:, 0, 1]], -1)
    out = save_visualization(tmp_path / "q.mp4", tmp_path / "src", tracks, vis, 0, queries=q)
    got = list(read_frames(out))
    assert len(got) == 6 and got[0].shape == (40, 100, 3)  # 48 + 4 + 48
    assert probe_video(out).fps == 30.0  # unknown fps: the default


def test_failed_save_leaves_no_file(tmp_path):
    frames, tracks, vis = moving()
    for name in ("bad.gif", "bad.mp4"):
        with pytest.raises(InputError):
            save_visualization(
                tmp_path / name, frames[:5], tracks, vis, 10
            )  # 5 frames, 6 in tracks
        with pytest.raises(InputError):
            save_visualization(tmp_path / name, frames, tracks[:, :, :1], vis, 10)
    assert os.listdir(tmp_path) == []
