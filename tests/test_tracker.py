"""Whole-video tracking: chaining, batching, feature reuse and coordinate mapping."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pips_jax import InputError, Pips
from pips_jax.ops.frame import to_input_pixels, to_model_pixels
from pips_jax.tracker import Tracker, check_queries, grid_queries, reanchor_offsets
from pips_jax.tracks_io import load_npz, load_points_csv, save_csv, save_npz
from small_model import SMALL, damped_params

H, W = 32, 48


@pytest.fixture(scope="module")
def params():
    return damped_params(SMALL)


@pytest.fixture(scope="module")
def video():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, size=(H + 40, W + 40, 3), dtype=np.uint8)
    # A textured scene panning 1.5 px/frame right and 1 px/frame down (integer crops).
    return np.stack([base[t // 2 : t // 2 + H, (3 * t) // 2 : (3 * t) // 2 + W] for t in range(20)])


def test_reanchor_rule_of_the_original():
    s = 8
    c = np.full((s, 5), 0.95, np.float32)
    c[:, 1] = [1, 1, 1, 0.95, 0.5, 0.5, 0.5, 0.5]  # latest > 0.9 is offset 3
    c[:, 2] = [1, 1, 0.3, 0.3, 0.85, 0.3, 0.3, 0.3]  # needs threshold 0.84 (3 steps) -> 4
    c[:, 3] = [1, 1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]  # all tie at 0.1: latest = 7
    c[:, 4] = [1, 0.99, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2]  # offset 1 is never a candidate
    c[7, 4] = 0.1
    assert reanchor_offsets(c).tolist() == [7, 3, 4, 7, 6]


def test_model_pixel_mapping_round_trip():
    xy = np.array([[-0.5, -0.5], [0, 0], [47.5, 31.5], [10.25, 3.75]], np.float32)
    m = to_model_pixels(xy, (32, 48), (64, 64))
    # Image edges map to image edges; pixel centres scale about the edges.
    np.testing.assert_allclose(m[0], [-0.5, -0.5])
    np.testing.assert_allclose(m[2], [63.5, 63.5])
    np.testing.assert_allclose(m[1], [0.5 * 64 / 48 - 0.5, 0.5 * 2 - 0.5])
    np.testing.assert_allclose(to_input_pixels(m, (32, 48), (64, 64)), xy, atol=1e-5)


def test_chaining_equals_one_forward_at_T_equals_S(params, video):
    frames = video[:8]
    xy = np.array([[5.0, 7.5], [40.25, 20.0], [0.0, 31.0], [23.0, 16.0]], np.float32)
    tracker = Tracker(params, SMALL, resolution=(H, W), iters=3)
    res = tracker.track(frames, queries=np.concatenate([np.zeros((4, 1)), xy], 1))
    out = Pips(SMALL).forward(params, jnp.asarray(frames)[None], jnp.asarray(xy)[None], iters=3)
    expected = np.asarray(out.coords[-1, 0]).transpose(1, 0, 2)  # N, S, 2
    np.testing.assert_allclose(res.tracks, expected, atol=1e-4)
    np.testing.assert_allclose(
        res.confidence, np.asarray(jax.nn.sigmoid(out.vis_logits[0])).T, atol=1e-5
    )
    assert res.tracks.shape == (4, 8, 2) and res.visibility.dtype == bool


def _reference_chain(params, frames, xy0, iters):
    """The original chain_demo loop for one point (re-encoding every window), with the
    documented stop rule: finished once a window reaches the last frame."""
    model = Pips(SMALL)
    t_count, s = len(frames), SMALL.S
    traj = np.zeros((t_count, 2), np.float32)
    conf = np.zeros(t_count, np.float32)
    traj[0] = xy0
    cur, feat = 0, None
    while True:
        seq = frames[cur : cur + s]
        local = len(seq)
        seq = np.concatenate([seq, np.repeat(seq[-1:], s - local, 0)])
        out = model.forward(
            params,
            jnp.asarray(seq)[None],
            jnp.asarray(traj[cur])[None, None],
            iters=iters,
            feat_init=feat,
        )
        feat = out.feat_init
        xys = np.asarray(out.coords[-1, 0, :, 0])
        vis = np.asarray(jax.nn.sigmoid(out.vis_logits[0, :, 0]))
        traj[cur : cur + local] = xys[:local]
        conf[cur : cur + local] = vis[:local]
        if cur + s >= t_count:
            return traj, conf
        thr, si = 0.9, s - 1
        while not vis[si] > thr:
            si -= 1
            if si == 1:
                thr -= 0.02
                si = s - 1
        cur += si


def test_batched_chaining_equals_per_point_original_loop(params, video):
    xy = np.array([[5.0, 7.5], [30.0, 12.0], [44.0, 2.5]], np.float32)
    tracker = Tracker(params, SMALL, resolution=(H, W), iters=2, max_points_per_batch=2)
    res = tracker.track(video, queries=np.concatenate([np.zeros((3, 1)), xy], 1))
    for i in range(3):
        traj, conf = _reference_chain(params, video, xy[i], iters=2)
        np.testing.assert_allclose(res.tracks[i], traj, atol=2e-3)
        np.testing.assert_allclose(res.confidence[i], conf, atol=1e-4)


def test_queries_on_later_frames_get_full_tracks(params, video):
    q = np.array([[0, 10, 10], [7, 20.5, 15], [19, 40, 30], [12, 3, 28]], np.float32)
    tracker = Tracker(params, SMALL, resolution=(H, W), iters=2)
    res = tracker.track(video, queries=q)
    assert res.tracks.shape == (4, 20, 2)
    for i, (t, x, y) in enumerate(q):
        np.testing.assert_allclose(res.tracks[i, int(t)], [x, y], atol=1e-4)  # locked query
        assert res.visibility[i, int(t)]
    assert np.all(np.isfinite(res.tracks))
    # Backward part: the point queried on the last frame, tracked on the reversed video,
    # equals forward tracking of the same query on the reversed video.
    rev = tracker.track(video[::-1].copy(), queries=np.array([[0, 40, 30]], np.float32))
    np.testing.assert_allclose(res.tracks[2], rev.tracks[0, ::-1], atol=1e-4)
    np.testing.assert_allclose(res.confidence[2, :19], rev.confidence[0, ::-1][:19], atol=1e-5)


def test_chunking_and_disk_features_do_not_change_results(params, video):
    q = grid_queries((H, W), 4, query_frame=3)
    a = Tracker(params, SMALL, resolution=(H, W), iters=2, max_points_per_batch=1024).track(
        video, queries=q
    )
    b = Tracker(
        params, SMALL, resolution=(H, W), iters=2, max_points_per_batch=5, feature_memory_bytes=0
    ).track(video, queries=q)
    np.testing.assert_allclose(a.tracks, b.tracks, atol=1e-4)
    np.testing.assert_allclose(a.confidence, b.confidence, atol=1e-5)


def test_short_clips_are_padded_and_trimmed(params, video):
    res = Tracker(params, SMALL, resolution=(H, W), iters=2).track(video[:3], grid_size=2)
    assert res.tracks.shape == (4, 3, 2)
    padded = np.concatenate([video[:3], np.repeat(video[2:3], 5, 0)])
    full = Tracker(params, SMALL, resolution=(H, W), iters=2).track(padded, grid_size=2)
    np.testing.assert_allclose(res.tracks, full.tracks[:, :3], atol=1e-5)


class _OracleTracker(Tracker):
    """Replaces the network by the exact motion of a translating video (test double).

    The "encoder" writes each frame's index into its feature map, and the window
    function moves every point by the known velocity (in model pixels) times the frame
    difference. What is left to test is everything around the network: resizing,
    coordinate mapping both ways, chaining, re-anchoring and time reversal.
    """

    def __init__(self, velocity_in, size, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._encode = self._oracle_encode
        self._window = self._oracle_window
        self._t = 0
        scale = np.array([self.resolution[1] / size[1], self.resolution[0] / size[0]])
        self._v = np.asarray(velocity_in) * scale

    def _oracle_encode(self, params, frames, resolution):
        h, w = resolution[0] // 4, resolution[1] // 4
        ids = self._t + np.arange(len(frames))
        self._t += len(frames)
        return np.broadcast_to(
            ids[:, None, None, None], (len(frames), h, w, self.config.latent_dim)
        ).astype(np.float32)

    def _oracle_window(self, params, fmaps, xys, feats):
        t = np.asarray(fmaps)[:, 0, 0, 0]  # S real frame indices
        xy = np.asarray(xys)[None] + (t - t[0])[:, None, None] * self._v
        return xy, np.ones(xy.shape[:2], np.float32) * 0.97


def test_pure_translation_maps_back_to_input_pixels(params):
    v = np.array([1.25, -0.5])  # input pixels per frame
    t_count, size = 30, (45, 70)
    frames = np.zeros((t_count, *size, 3), np.uint8)  # contents unused by the oracle
    q = np.array([[0, 10, 30], [13, 40.5, 20.25], [29, 60, 5]], np.float32)
    tr = _OracleTracker(v, size, params, SMALL, resolution=(64, 100), iters=1)
    res = tr.track(frames, queries=q)
    t = np.arange(t_count)
    for i, (tq, x, y) in enumerate(q):
        expected = np.stack([x + v[0] * (t - tq), y + v[1] * (t - tq)], -1)
        np.testing.assert_allclose(res.tracks[i], expected, atol=1e-3)
    assert res.visibility.all()


def test_query_validation():
    with pytest.raises(
        InputError, match="query 1 has frame index 20; expected an integer in 0..19"
    ):
        check_queries(np.array([[0, 1, 1], [20, 1, 1]]), 20, (H, W))
    with pytest.raises(InputError, match="outside the 48x32"):
        check_queries(np.array([[0, 48.0, 1]]), 20, (H, W))
    with pytest.raises(InputError, match="NaN"):
        check_queries(np.array([[0, np.nan, 1]]), 20, (H, W))
    with pytest.raises(InputError, match=r"expected an \(N, 3\) array"):
        check_queries(np.zeros((3, 2)), 20, (H, W))
    with pytest.raises(InputError, match="at least one"):
        check_queries(np.zeros((0, 3)), 20, (H, W))


def test_grid_queries_are_cell_centres_with_mask():
    g = grid_queries((40, 60), 2, query_frame=5)
    np.testing.assert_allclose(
        g, [[5, 14.5, 9.5], [5, 44.5, 9.5], [5, 14.5, 29.5], [5, 44.5, 29.5]]
    )
    mask = np.zeros((40, 60), bool)
    mask[:, 30:] = True
    np.testing.assert_allclose(grid_queries((40, 60), 2, 0, mask)[:, 1], [44.5, 44.5])


def test_resolution_must_fit_the_model(params):
    with pytest.raises(InputError, match="multiple of the stride 4"):
        Tracker(params, SMALL, resolution=(30, 48))


def test_npz_and_csv_round_trip(tmp_path, params, video):
    res = Tracker(params, SMALL, resolution=(H, W), iters=1).track(
        video[:9], grid_size=2, grid_query_frame=4
    )
    npz = load_npz(save_npz(tmp_path / "t.npz", res))
    np.testing.assert_array_equal(npz.tracks, res.tracks)
    np.testing.assert_array_equal(npz.visibility, res.visibility)
    assert npz.size == (H, W) and npz.queries.shape == (4, 3)
    path = save_csv(tmp_path / "t.csv", res)
    lines = path.read_text().splitlines()
    assert lines[0] == "point,frame,x,y,visible,confidence"
    assert len(lines) == 1 + 4 * 9
    rows = np.array([[float(v) for v in ln.split(",")] for ln in lines[1:]])
    np.testing.assert_allclose(rows[:, 2:4].reshape(4, 9, 2), res.tracks, atol=1e-4)
    np.testing.assert_array_equal(rows[:, 4].reshape(4, 9).astype(bool), res.visibility)
    np.testing.assert_allclose(rows[:, 5].reshape(4, 9), res.confidence, atol=1e-5)
    assert rows[9, 0] == 1 and rows[9, 1] == 0  # point 1, frame 0


def test_points_csv(tmp_path):
    p = tmp_path / "p.csv"
    p.write_text("t,x,y\n0,1.5,2\n3,4,5\n")
    np.testing.assert_array_equal(load_points_csv(p), [[0, 1.5, 2], [3, 4, 5]])
    p.write_text("")
    with pytest.raises(InputError, match="empty"):
        load_points_csv(p)
    p.write_text("x,y\n1,2\n")
    with pytest.raises(InputError, match="expected the header t,x,y, found x,y"):
        load_points_csv(p)
    p.write_text("t,x,y\n")
    with pytest.raises(InputError, match="no points"):
        load_points_csv(p)
    p.write_text("t,x,y\n0,1\n")
    with pytest.raises(InputError, match="line 2 has 2 columns"):
        load_points_csv(p)


# ----------------------------------------------------------------- real footage
def test_points_leaving_the_frame_are_not_visible_and_not_clamped(params):
    # A pan: the oracle moves every point 2.5 px right and 0.75 px up per frame, so
    # points leave through the right and the top edges.
    v = np.array([2.5, -0.75])
    t_count, size = 24, (40, 60)
    frames = np.zeros((t_count, *size, 3), np.uint8)
    q = np.array([[0, 30, 20], [0, 50.5, 5], [0, 5, 35], [10, 57, 2]], np.float32)
    tr = _OracleTracker(v, size, params, SMALL, resolution=(40, 60), iters=1)
    res = tr.track(frames, queries=q)
    t = np.arange(t_count)
    for i, (tq, x, y) in enumerate(q):
        expected = np.stack([x + v[0] * (t - tq), y + v[1] * (t - tq)], -1)
        np.testing.assert_allclose(res.tracks[i], expected, atol=1e-3)  # kept, not clamped
        # Visible exactly while on the frame: at most half a pixel past the border
        # pixels' centres (x <= 59.5, y >= -0.5); the oracle's confidence is 0.97.
        on_frame = (expected[:, 0] <= 59.5) & (expected[:, 1] >= -0.5) & (expected[:, 0] >= -0.5)
        np.testing.assert_array_equal(res.visibility[i], on_frame)
    np.testing.assert_allclose(res.confidence, 0.97)
    # Point 1 leaves at x = 50.5 + 2.5 t > 59.5, from frame 4 on; point 3, queried on
    # frame 10 at x = 57, is at x = 59.5 on frame 11 (still on the frame), off it on 12.
    assert res.visibility[1].tolist() == [True] * 4 + [False] * 20
    assert res.visibility[3, 11] and not res.visibility[3, 12]
    assert res.tracks[1, -1, 0] == pytest.approx(50.5 + 2.5 * 23, abs=1e-3)


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((720, 1280), (360, 640)),  # the original demo's 360x640
        ((480, 854), (360, 640)),  # 854x480 DAVIS: sqrt(230400 / 409920) = 0.7497
        ((720, 1296), (356, 644)),  # scale 0.4969: 357.8 x 644.0
        ((480, 368), (548, 420)),  # portrait, scale 1.1421: 548.2 x 420.3
        ((360, 640), (360, 640)),
        ((100, 2000), (108, 2148)),  # very wide: 107.3 x 2146.6
    ],
)
def test_working_resolution_keeps_the_aspect_ratio(size, expected):
    from pips_jax.config import ModelConfig
    from pips_jax.tracker import working_resolution

    assert working_resolution(size, ModelConfig()) == expected


def test_inside_frame_is_the_pixel_area():
    from pips_jax.ops.frame import inside_frame

    xy = np.array(
        [[-0.5, -0.5], [47.5, 31.5], [-0.51, 3], [47.51, 3], [3, 31.51], [3, -0.6], [np.nan, 1]]
    )
    assert inside_frame(xy, (32, 48)).tolist() == [True, True, False, False, False, False, False]


@pytest.mark.parametrize("memory_bytes", [1 << 30, 0])  # in memory, memory-mapped file
def test_feature_store_grows_to_the_frames_that_come(memory_bytes):
    from pips_jax.tracker import FeatureStore

    store = FeatureStore(2, (3, 4, 5), memory_bytes, (12, 16))  # an estimate of 2 frames
    maps = np.arange(11 * 60, dtype=np.float32).reshape(11, 3, 4, 5)
    for i in range(0, 11, 3):
        store.append(maps[i : i + 3])
    assert store.count == 11 and store.data.shape == (11, 3, 4, 5)
    np.testing.assert_array_equal(store.data, maps)
    np.testing.assert_array_equal(store.window(np.array([10, 0, 10])), maps[[10, 0, 10]])
    store.close()


def test_part_of_a_video_equals_the_same_frames_cut_out(params, video):
    tracker = Tracker(params, SMALL, resolution=(H, W), iters=2)
    q = np.array([[5, 10, 10], [11, 20.5, 15], [17, 40, 30]], np.float32)
    part = tracker.track(video, queries=q, start=5, stop=19, step=3)  # frames 5, 8, ..., 17
    np.testing.assert_array_equal(part.frame_indices, [5, 8, 11, 14, 17])
    np.testing.assert_array_equal(part.queries, q)
    cut = tracker.track(video[5:19:3], queries=np.array([[0, 10, 10], [2, 20.5, 15], [4, 40, 30]]))
    np.testing.assert_allclose(part.tracks, cut.tracks, atol=1e-5)
    np.testing.assert_array_equal(part.visibility, cut.visibility)
    grid = tracker.track(video, grid_size=2, start=4, step=2)
    np.testing.assert_array_equal(grid.queries[:, 0], 4)  # the grid is on the first tracked frame
    assert grid.num_frames == 8
    with pytest.raises(
        InputError,
        match="query 0 has frame index 6; expected one of the tracked frames 5, 8, ..., 17",
    ):
        tracker.track(video, queries=np.array([[6, 1, 1]]), start=5, stop=19, step=3)
    with pytest.raises(InputError, match="the array has 20 frames"):
        tracker.track(video, grid_size=2, start=20)


def test_shipped_weights_on_a_pan_out_of_the_frame():
    """The shipped weights on a real photograph panning 4 px per frame to the left:
    points near the left edge leave the frame. The model follows them while they are on
    it; where it predicts a position off the frame the position is kept (not clamped to
    the border) and the point is not visible."""
    from skimage import data

    from pips_jax.weights import load_weights, shipped_path

    img = data.astronaut()
    t_count, h, w, v = 16, 96, 128, 4
    frames = np.stack([img[200 : 200 + h, 100 + v * t : 100 + v * t + w] for t in range(t_count)])
    weights = load_weights(shipped_path())
    tracker = Tracker(weights.params, weights.config, resolution=(h, w), iters=4)
    q = np.array(
        [[0, x, y] for y in np.linspace(10, 85, 6) for x in (5, 15, 25, 35, 45, 60, 90, 120)]
    )
    res = tracker.track(frames, queries=q)
    truth = q[:, None, 1:] + np.stack([-v * np.arange(t_count), np.zeros(t_count)], -1)[None]
    on_frame = truth[..., 0] >= -0.5
    error = np.linalg.norm(res.tracks - truth, axis=-1)
    assert np.median(error[on_frame]) < 4.0  # it tracks
    off = res.tracks[..., 0] < -0.5
    assert off.sum() >= 5 and res.tracks[..., 0].min() < -3  # predicted off the frame, kept
    assert not res.visibility[off].any()
    np.testing.assert_array_equal(
        res.visibility, (res.confidence > 0.5) & ~off | (np.arange(t_count) == 0)
    )


def test_float32_means_full_float32_products_on_every_backend(params):
    """XLA's default matrix products round float32 inputs on GPUs and TPUs; a float32
    tracker asks for full precision in every product and convolution of its programs
    (bfloat16 keeps the default)."""
    s, h, w, c, n = SMALL.S, H // SMALL.stride, W // SMALL.stride, SMALL.latent_dim, 16
    shapes = (
        jax.ShapeDtypeStruct((s, h, w, c), jnp.float32),
        jax.ShapeDtypeStruct((n, 2), jnp.float32),
        jax.ShapeDtypeStruct((n, c), jnp.float32),
    )

    def precisions(dtype: str) -> str:
        tracker = Tracker(params, SMALL, resolution=(H, W), iters=1, compute_dtype=dtype)
        text = tracker._window.lower(tracker.params, *shapes).as_text()
        return text

    exact = precisions("float32")
    products = exact.count("stablehlo.dot_general")
    assert products > 0 and exact.count("HIGHEST") == 2 * products  # both operands
    assert "HIGHEST" not in precisions("bfloat16")
