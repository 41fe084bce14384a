"""The tracker on a mesh of devices: points split over 4 (virtual CPU) devices, and
over the devices of two processes, give the tracks of one device; nothing recompiles
from chunk to chunk or from video to video.

XLA_FLAGS must be set before jax is imported, so the runs on several devices are
subprocesses. Every process a test starts is killed in a ``finally``;
``communicate(timeout=...)`` guards against a hang (a hang fails the test), it does not
time anything."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest
from jax.sharding import Mesh

from job_helpers import finish, start
from pips_jax.checkpoint.store import save_params
from pips_jax.errors import InputError
from pips_jax.runtime import free_port
from pips_jax.tracker import Tracker, check_mesh
from small_model import SMALL, damped_params

H, W = 32, 48
# 6 points a chunk: a chunk is padded to 8 on 4 devices (2 each), to 6 on 1 and 2.
SETTINGS = {"resolution": (H, W), "iters": 2, "max_points_per_batch": 6}
# 11 points (not a multiple of 4) on four frames: 7 on frame 0 need two chunks, the
# ones queried later are also tracked backward.
QUERIES = np.array(
    [[0, 5, 7.5], [0, 40.25, 20], [0, 0, 31], [0, 23, 16], [0, 30, 2.5], [0, 12, 25],
     [0, 44, 10], [4, 20.5, 15], [9, 3, 28], [9, 35, 5.5], [19, 40, 30]],
    np.float32,
)  # fmt: skip
# A second video of the same size, fewer frames and 5 points (the same chunk size).
OTHER_QUERIES = np.array([[0, 8, 8], [2, 30, 20], [2, 10, 4], [12, 44, 29], [6, 1, 1]], np.float32)
GUARD_S = 300  # a hang fails the test after this long
TESTS = Path(__file__).parent

CASE = """
import json, sys
sys.path.insert(0, sys.argv[1])
import numpy as np
from pips_jax.checkpoint.store import load_params
from pips_jax.tracker import Tracker
from small_model import SMALL


class Recording(Tracker):
    # the shapes each device's program sees: the slices of frames and points
    seen = {"frames": set(), "points": set()}

    def _encode_impl(self, params, frames, resolution):
        self.seen["frames"].add(frames.shape[0])
        return super()._encode_impl(params, frames, resolution)

    def _window_impl(self, params, fmaps, xys, feats):
        self.seen["points"].add(xys.shape[0])
        return super()._window_impl(params, fmaps, xys, feats)


def load():  # after joining a job: loading the parameters starts JAX's backend
    return load_params(sys.argv[2], SMALL)[0], np.load(sys.argv[3])


settings = json.loads(sys.argv[4])


def result(r):
    return {"tracks": r.tracks.tolist(), "visibility": r.visibility.tolist(),
            "confidence": r.confidence.tolist()}
"""

FOUR_DEVICES = CASE + textwrap.dedent(
    """
    import jax

    compiles = []
    jax.monitoring.register_event_duration_secs_listener(
        lambda event, secs, **kw: compiles.append(event)
        if event == "/jax/core/compile/backend_compile_duration" else None
    )
    params, case = load()
    four = Recording(params, SMALL, **settings)
    a4 = four.track(case["video"], queries=case["queries"])
    before = len(compiles)
    b4 = four.track(case["other_video"], queries=case["other_queries"])
    out = {
        "devices": four.device_count,
        "encode_batch": four.encode_batch,
        "per_device": {k: sorted(v) for k, v in four.seen.items()},
        "four": result(a4), "other": result(b4),
        "compiles_on_the_second_video": len(compiles) - before,
        "cache_sizes": [four._window._cache_size(), four._encode._cache_size(),
                        four._sample._cache_size()],
    }
    frames = list(four.stream(iter(case["video"]), case["queries"]))  # forward, as frames come
    out["stream"] = {
        "t": [f.t for f in frames],
        "tracks": np.stack([f.positions for f in frames], 1).tolist(),
        "visibility": np.stack([f.visibility for f in frames], 1).tolist(),
    }
    print(json.dumps(out))
    """
)

TWO_PROCESSES = CASE + textwrap.dedent(
    """
    from pips_jax import runtime

    job = runtime.join(runtime.JobOptions(f"127.0.0.1:{sys.argv[5]}", 2, int(sys.argv[6])))
    params, case = load()
    tracker = Recording(params, SMALL, mesh=runtime.global_mesh("points"), **settings)
    r = tracker.track(case["video"], queries=case["queries"])
    print(json.dumps({"job": [job.process_index, job.process_count, job.local_device_count],
                      "devices": tracker.device_count, "result": result(r),
                      "per_device": {k: sorted(v) for k, v in tracker.seen.items()}}))
    """
)


def _video(seed: int, frames: int) -> np.ndarray:
    """A textured scene panning 1.5 px/frame right and 1 px/frame down (integer crops)."""
    base = np.random.default_rng(seed).integers(0, 256, size=(H + 40, W + 40, 3), dtype=np.uint8)
    return np.stack(
        [base[t // 2 : t // 2 + H, (3 * t) // 2 : (3 * t) // 2 + W] for t in range(frames)]
    )


@pytest.fixture(scope="module")
def params():
    return jax.device_get(damped_params(SMALL))


@pytest.fixture(scope="module")
def files(tmp_path_factory, params):
    """The parameters and the videos, as files the subprocesses read."""
    folder = tmp_path_factory.mktemp("devices")
    weights = save_params(folder / "small.safetensors", params, SMALL)
    case = folder / "case.npz"
    np.savez(
        case,
        video=_video(0, 20),
        queries=QUERIES,
        other_video=_video(1, 13),
        other_queries=OTHER_QUERIES,
    )
    return [str(weights), str(case), json.dumps(SETTINGS)]


@pytest.fixture(scope="module")
def reference(params):
    """The tracks on one device."""
    tracker = Tracker(
        params, SMALL, mesh=Mesh(np.asarray(jax.devices()[:1]), ("points",)), **SETTINGS
    )
    assert tracker.device_count == 1
    return tracker.track(_video(0, 20), queries=QUERIES)


def _env(devices: int) -> dict[str, str]:
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["JAX_PLATFORMS"] = "cpu"
    return env


def _start(script: str, devices: int, *args: str) -> subprocess.Popen:
    return start([sys.executable, "-c", script, str(TESTS), *args], _env(devices))


def _finish(procs: list[subprocess.Popen]) -> list[dict]:
    """The JSON each process printed last; kills them all on the way out."""
    results = finish(procs, GUARD_S)
    for code, _, err in results:
        assert code == 0, err[-3000:]
    return [json.loads(out.strip().splitlines()[-1]) for _, out, _ in results]


def _assert_same(result: dict, expected) -> None:
    """Tracks within 1e-3 px, confidence within 1e-4, visibility equal."""
    np.testing.assert_allclose(np.asarray(result["tracks"]), expected.tracks, atol=1e-3)
    np.testing.assert_allclose(np.asarray(result["confidence"]), expected.confidence, atol=1e-4)
    np.testing.assert_array_equal(np.asarray(result["visibility"]), expected.visibility)


@pytest.fixture(scope="module")
def four_devices(files):
    return _finish([_start(FOUR_DEVICES, 4, *files)])[0]


def test_four_devices_give_the_tracks_of_one(four_devices, reference):
    assert four_devices["devices"] == 4  # the default mesh: every device of the process
    # each device encodes 2 of the 8 frames of a batch and tracks 2 of the 8 points of a chunk
    assert four_devices["per_device"] == {"frames": [2], "points": [2]}
    _assert_same(four_devices["four"], reference)
    tracks = np.asarray(four_devices["four"]["tracks"])
    assert tracks.shape == (11, 20, 2)
    # every query is where it was asked, forward and backward tracks join there
    np.testing.assert_allclose(
        tracks[np.arange(11), QUERIES[:, 0].astype(int)], QUERIES[:, 1:], atol=1e-4
    )


def test_nothing_recompiles_from_video_to_video_on_four_devices(four_devices):
    assert four_devices["encode_batch"] == 8  # a multiple of 4
    assert four_devices["compiles_on_the_second_video"] == 0
    assert four_devices["cache_sizes"] == [1, 1, 1]  # window, encode, query features
    other = np.asarray(four_devices["other"]["tracks"])
    assert other.shape == (5, 13, 2)
    np.testing.assert_allclose(
        other[np.arange(5), OTHER_QUERIES[:, 0].astype(int)], OTHER_QUERIES[:, 1:], atol=1e-4
    )


def test_a_stream_on_four_devices_gives_the_forward_tracks_of_one(four_devices, params):
    one = Tracker(params, SMALL, mesh=Mesh(np.asarray(jax.devices()[:1]), ("points",)), **SETTINGS)
    forward = one.track(_video(0, 20), queries=QUERIES, backward=False)
    stream = four_devices["stream"]
    assert stream["t"] == list(range(20))
    tracks, visible = np.asarray(stream["tracks"]), np.asarray(stream["visibility"])
    after = np.arange(20)[None, :] >= QUERIES[:, :1].astype(int)  # no position before a query
    np.testing.assert_allclose(tracks[after], forward.tracks[after], atol=1e-3)
    np.testing.assert_array_equal(visible[after], forward.visibility[after])
    assert np.all(np.isnan(tracks[~after]))


def test_two_processes_on_a_global_mesh_give_the_tracks_of_one(files, reference):
    port = str(free_port())
    procs = [_start(TWO_PROCESSES, 1, *files, port, str(pid)) for pid in (0, 1)]
    first, second = _finish(procs)
    assert first["job"] == [0, 2, 1] and second["job"] == [1, 2, 1]
    assert first["devices"] == second["devices"] == 2
    # each process encodes 4 of the 8 frames of a batch and tracks 3 of the 6 points of a chunk
    assert first["per_device"] == second["per_device"] == {"frames": [4], "points": [3]}
    assert first["result"] == second["result"]  # both read the whole, replicated result
    _assert_same(first["result"], reference)


def test_a_mesh_must_have_one_axis(params):
    devices = np.asarray(jax.devices()[:1])
    with pytest.raises(InputError, match=r"expected a 1-D mesh .* found axes \('a', 'b'\)"):
        Tracker(params, SMALL, mesh=Mesh(devices.reshape(1, 1), ("a", "b")))
    with pytest.raises(InputError, match="expected a jax.sharding.Mesh, found list"):
        Tracker(params, SMALL, mesh=list(devices))
    assert check_mesh(Mesh(devices, ("points",))).axis_names == ("points",)


PIPS2_FOUR_DEVICES = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from pips_jax.checkpoint.store import load_params
    from pips_jax.tracker import Tracker

    params, config, _ = load_params(sys.argv[1])
    case = np.load(sys.argv[2])
    tracker = Tracker(params, config, resolution=(64, 96), iters=2, window=6,
                      max_points_per_batch=6)
    r = tracker.track(case["video"], queries=case["queries"])
    print(json.dumps({"devices": tracker.device_count, "tracks": r.tracks.tolist()}))
    """
)


def test_pips2_on_four_devices_gives_the_tracks_of_one(tmp_path):
    """PIPs++ windows split the points over the mesh the same way: its templates
    (n, 3, S, C) travel with their points."""
    from pips_jax.config import Pips2Config
    from pips_jax.model.pips2 import Pips2

    config = Pips2Config(
        S=6, latent_dim=16, encoder_dims=(8, 8, 8, 8), encoder_stem_dim=8, delta_dim=8,
        delta_blocks=2, embed_dim=8,
    )  # fmt: skip
    params = jax.device_get(Pips2(config).init(jax.random.key(1)))
    # updates of a few pixels, as trained weights make (random ones make the loop chaotic)
    head = params["delta_block"]["head"]
    params["delta_block"]["head"] = {k: v * 0.05 for k, v in head.items()}
    weights = save_params(tmp_path / "pips2.safetensors", params, config)
    np.savez(tmp_path / "case.npz", video=_video(0, 20), queries=QUERIES)
    (four,) = [
        json.loads(out.strip().splitlines()[-1])
        for code, out, err in finish(
            [
                start(
                    [
                        sys.executable,
                        "-c",
                        PIPS2_FOUR_DEVICES,
                        str(weights),
                        str(tmp_path / "case.npz"),
                    ],
                    _env(4),
                )
            ],
            GUARD_S,
        )
        if code == 0 or pytest.fail(err[-3000:])
    ]
    one = Tracker(
        params,
        config,
        resolution=(64, 96),
        iters=2,
        window=6,
        max_points_per_batch=6,
        mesh=Mesh(np.asarray(jax.devices()[:1]), ("points",)),
    ).track(_video(0, 20), queries=QUERIES)
    assert four["devices"] == 4
    np.testing.assert_allclose(np.asarray(four["tracks"]), one.tracks, atol=1e-3)
    assert np.abs(one.tracks[:, -1] - one.tracks[:, 0]).max() > 0.05  # the model moved them
