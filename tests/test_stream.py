"""Streaming: PIPs' forward chaining frame by frame (``Tracker.stream``, ``TrackStream``)."""

import jax
import numpy as np
import pytest

from pips_jax import InputError
from pips_jax.config import Pips2Config
from pips_jax.model.pips2 import Pips2
from pips_jax.tracker import Tracker, TrackStream
from small_model import SMALL, damped_params

H, W = 32, 48
S = SMALL.S


@pytest.fixture(scope="module")
def tracker():
    return Tracker(damped_params(SMALL), SMALL, resolution=(H, W), iters=2, max_points_per_batch=4)


@pytest.fixture(scope="module")
def video():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, size=(H + 40, W + 40, 3), dtype=np.uint8)
    # A textured scene panning 1.5 px/frame right and 1 px/frame down (integer crops).
    return np.stack([base[t // 2 : t // 2 + H, (3 * t) // 2 : (3 * t) // 2 + W] for t in range(20)])


QUERIES = np.array(
    [[0, 10, 10], [0, 30.5, 20], [3, 20.5, 15], [7, 40, 5], [12, 3, 28], [12, 25, 25]], np.float32
)


def _assert_equals_offline(frames, queries, offline):
    """Every frame once, in order; from each query frame on the offline forward
    result, before it no position."""
    assert [f.t for f in frames] == list(range(offline.num_frames))
    tracks = np.stack([f.positions for f in frames], axis=1)  # N, T, 2
    conf = np.stack([f.confidence for f in frames], axis=1)
    vis = np.stack([f.visibility for f in frames], axis=1)
    after = np.arange(offline.num_frames)[None, :] >= queries[:, :1].astype(int)  # N, T
    np.testing.assert_allclose(tracks[after], offline.tracks[after], atol=1e-4)
    np.testing.assert_allclose(conf[after], offline.confidence[after], atol=1e-5)
    np.testing.assert_array_equal(vis[after], offline.visibility[after])
    assert np.all(np.isnan(tracks[~after])) and np.all(np.isnan(conf[~after]))
    assert not np.any(vis[~after])


# Lengths: several windows; one ending exactly where a window ends (a + S == T for the
# points anchored at 12); one window; shorter than a window (padded).
@pytest.mark.parametrize("length", [20, 15, 8, 13])
def test_stream_equals_offline_forward_tracking(tracker, video, length):
    q = QUERIES[QUERIES[:, 0] < length]
    offline = tracker.track(video[:length], queries=q, backward=False)
    frames = list(tracker.stream(iter(video[:length]), q))
    _assert_equals_offline(frames, q, offline)


def test_frames_are_final_within_S_minus_1_frames_holding_about_S_maps(tracker, video):
    long = np.concatenate([video, video[::-1], video])  # 60 frames
    live = TrackStream(tracker, (H, W), QUERIES)
    returned, held = [], []
    for i, frame in enumerate(long):
        for f in live.push(frame):
            returned.append((f.t, i))
        held.append(live.held_frames)
    returned += [(f.t, len(long)) for f in live.close()]
    assert [t for t, _ in returned] == list(range(len(long)))
    latency = [i - t for t, i in returned[: -S + 1]]
    assert max(latency) <= S - 1
    assert max(held) <= S  # flat: the frames not yet final, never the whole stream
    assert live.held_frames == 0


def test_points_added_mid_stream_equal_the_same_queries_given_up_front(tracker, video):
    offline = tracker.track(video, queries=QUERIES, backward=False)
    live = TrackStream(tracker, (H, W), QUERIES[:2])
    frames = []
    for i, frame in enumerate(video):
        if i == 3:
            np.testing.assert_array_equal(live.add(QUERIES[2:4]), [2, 3])  # frames 3 and 7
        if i == 12:
            live.add(QUERIES[4:])  # on the frame pushed next
        frames += live.push(frame)
    frames += live.close()
    # A frame has a row for each point added before it was returned: frame 0 waits
    # for the first window (frames 0..7), so it comes after the add at frame 3.
    counts = [len(f.positions) for f in frames]
    assert counts == sorted(counts) and counts[0] == 4 and counts[-1] == 6
    full = [
        f._replace(
            positions=np.concatenate([f.positions, np.full((6 - len(f.positions), 2), np.nan)]),
            visibility=np.concatenate([f.visibility, np.zeros(6 - len(f.visibility), bool)]),
            confidence=np.concatenate([f.confidence, np.full(6 - len(f.confidence), np.nan)]),
        )
        for f in frames
    ]
    _assert_equals_offline(full, QUERIES, offline)


def test_frames_can_be_kept_for_drawing(tracker, video):
    frames = list(tracker.stream(video[:10], grid_size=2, keep_frames=True))
    for f in frames:
        np.testing.assert_array_equal(f.frame, video[f.t])
    assert frames[0].positions.shape == (4, 2)


def test_bad_streams_fail_in_one_line(tracker, video):
    live = TrackStream(tracker, (H, W), QUERIES[:1])
    for frame in video[:S]:
        live.push(frame)
    with pytest.raises(InputError, match=r"^stream frame 8: expected an \(32, 48, 3\) uint8 RGB"):
        live.push(video[0, :16])
    with pytest.raises(
        InputError, match=r"^stream frame 8: .* found shape \(32, 48, 3\) of float32"
    ):
        live.push(video[0].astype(np.float32))
    with pytest.raises(InputError, match=r"^query 0 is on frame 0, which is already final"):
        live.add(QUERIES[:1])
    with pytest.raises(InputError, match=r"^query 0 .* lies outside the 48x32"):
        live.add(np.array([[9, 60, 5]], np.float32))
    gen = tracker.stream(video[:5], np.array([[0, 5, 5], [9, 10, 10]], np.float32))
    frames = []
    with pytest.raises(
        InputError, match=r"^query 1 is on frame 9 but the stream ended after 5 frames; expected"
    ):
        frames += gen
    assert frames == []  # nothing returned for frames the missing point would be in
    with pytest.raises(InputError, match=r"^stream: no frames; expected at least one"):
        list(tracker.stream(iter([]), grid_size=2))


SMALL2 = Pips2Config(
    latent_dim=16, encoder_dims=(8, 8, 8, 8), encoder_stem_dim=8, delta_dim=8, delta_blocks=2,
    embed_dim=8,
)  # fmt: skip
H2, W2 = 64, 72  # the smallest PIPs++ frame: stride 8 x 2^(4 levels - 1)


@pytest.fixture(scope="module")
def video2():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, size=(H2 + 40, W2 + 40, 3), dtype=np.uint8)
    return np.stack(
        [base[t // 2 : t // 2 + H2, (3 * t) // 2 : (3 * t) // 2 + W2] for t in range(20)]
    )


# PIPs++: windows of 8 overlapping by one with the last shifted back (20 frames: 0-8,
# 7-15, 12-20), a pass ending exactly at a window's end (15 = 8 + 7), one window, one
# pass shorter than a window, a query on the last frame (one frame: the query itself).
@pytest.mark.parametrize(("window", "length"), [(8, 20), (8, 15), (8, 8), (5, 20), (6, 13)])
def test_pips2_stream_equals_offline_forward_tracking(video2, window, length):
    tracker = Tracker(
        Pips2(SMALL2).init(jax.random.key(0)), SMALL2, resolution=(H2, W2), iters=2, window=window
    )
    q = np.array(
        [[0, 10, 10], [0, 30.5, 20], [3, 20.5, 15], [7, 40, 5], [12, 3, 28], [length - 1, 5, 5]],
        np.float32,
    )
    q = q[q[:, 0] < length]
    offline = tracker.track(video2[:length], queries=q, backward=False)
    live = TrackStream(tracker, (H2, W2), q)
    frames, latency, held = [], 0, 0
    for i, frame in enumerate(video2[:length]):
        for f in live.push(frame):
            frames.append(f)
            latency = max(latency, i - f.t)
        held = max(held, live.held_frames)
    frames += live.close()
    _assert_equals_offline(frames, q, offline)
    assert np.all(np.isnan(np.stack([f.confidence for f in frames])))  # no visibility head
    assert latency <= 2 * window and held <= 2 * window


# ------------------------------------------------------------------ track --stream
@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    from pips_jax.checkpoint.store import save_params
    from pips_jax.video import write_video

    d = tmp_path_factory.mktemp("stream")
    ckpt = save_params(d / "small.safetensors", damped_params(SMALL), SMALL)
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, size=(80, 100, 3), dtype=np.uint8)
    video = write_video(d / "clip.mp4", [base[t : t + 32, t : t + 48] for t in range(19)], fps=10)
    return ckpt, video


def _track(clip, out, *extra):
    from pips_jax.cli import main

    ckpt, video = clip
    return main(
        ["track", str(video), "--checkpoint", str(ckpt), "--out", str(out), "--resolution",
         "32x48", "--iters", "2", "--quiet", "--points", str(out.parent / "points.csv"), *extra]
    )  # fmt: skip


def test_track_stream_writes_what_offline_forward_tracking_writes(clip, tmp_path):
    from pips_jax.tracks_io import load_npz
    from pips_jax.video import read_frames

    (tmp_path / "points.csv").write_text("t,x,y\n0,10,10\n0,30.5,20\n4,20,15\n11,40,5\n")
    assert _track(clip, tmp_path / "a", "--stream", "--format", "npz,csv") == 0
    assert _track(clip, tmp_path / "b", "--no-backward", "--no-viz") == 0
    a = load_npz(tmp_path / "a" / "clip_tracks.npz")
    b = load_npz(tmp_path / "b" / "clip_tracks.npz")
    after = np.arange(19)[None, :] >= a.queries[:, :1]
    np.testing.assert_allclose(a.tracks[after], b.tracks[after], atol=1e-4)
    np.testing.assert_array_equal(a.visibility, b.visibility & after)
    assert np.all(np.isnan(a.tracks[~after]))  # no position before the query frame
    assert len(list(read_frames(tmp_path / "a" / "clip_tracks.mp4"))) == 19
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [
        "clip_tracks.csv",
        "clip_tracks.mp4",
        "clip_tracks.npz",
    ]


def test_track_stream_with_pips2_weights(clip, tmp_path):
    from pips_jax.checkpoint.store import save_params
    from pips_jax.cli import main
    from pips_jax.tracks_io import load_npz

    ckpt = save_params(tmp_path / "p2.safetensors", Pips2(SMALL2).init(jax.random.key(0)), SMALL2)
    runs = {}
    for name, flags in (("a", ["--stream"]), ("b", ["--no-backward", "--no-viz"])):
        code = main(["track", str(clip[1]), "--checkpoint", str(ckpt), "--out",
                     str(tmp_path / name), "--quiet", "--window", "8", "--resolution",
                     "64x96", "--iters", "1", "--grid", "2", *flags])  # fmt: skip
        assert code == 0
        runs[name] = load_npz(tmp_path / name / "clip_tracks.npz")
    np.testing.assert_allclose(runs["a"].tracks, runs["b"].tracks, atol=1e-4)
    assert not runs["a"].has_visibility and runs["a"].tracks.shape == (4, 19, 2)
