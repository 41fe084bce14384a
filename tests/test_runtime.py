"""Jobs of several processes on JAX's distributed runtime (pips_jax.runtime and the
commands' job flags): evaluation over two processes on 127.0.0.1 equals one process,
and a job that cannot run ends within its timeout with a one-line error.

Every process a test starts is killed in a ``finally``; ``communicate(timeout=...)``
guards against a hang (a hang fails the test), it does not time anything."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import jax
import pytest

from job_helpers import finish, kill, start
from pips_jax import Pips
from pips_jax.checkpoint.store import save_params
from pips_jax.cli import main
from pips_jax.errors import InputError
from pips_jax.evaluation.datasets import write_tapvid_pickle
from pips_jax.runtime import Job, JobOptions, free_port, job_in_environment, share
from pips_jax.synthetic import SyntheticConfig, generate_clip
from small_model import SMALL

TINY = SyntheticConfig(height=64, width=64, num_frames=10, num_objects=2, num_points=24)
GUARD_S = 300  # a hang fails the test after this long


def _env(tmp_path, cache=None) -> dict[str, str]:
    env = dict(os.environ)
    cache = cache or tmp_path / "cache"
    env.update(JAX_PLATFORMS="cpu", PIPS_JAX_CACHE=str(cache), HF_HUB_OFFLINE="1")
    env.pop("XLA_FLAGS", None)
    return env


def _start(args, pid, port, tmp_path, num_processes=2):
    job = ["--coordinator-address", f"127.0.0.1:{port}", "--num-processes", str(num_processes)]
    argv = [sys.executable, "-m", "pips_jax", *args, *job, "--process-id", str(pid)]
    return start(argv, _env(tmp_path))


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("w") / "small.safetensors"
    return save_params(path, Pips(SMALL).init(jax.random.key(0)), SMALL)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Five tiny clips in two pickles, one more video that cannot be evaluated."""
    import pickle

    import numpy as np

    folder = tmp_path_factory.mktemp("set")
    write_tapvid_pickle(folder / "a.pkl", {f"clip{i}": generate_clip(TINY, i) for i in range(3)})
    with open(folder / "b.pkl", "wb") as f:
        pickle.dump(
            {
                "broken": {
                    "video": np.zeros((3, 8, 8, 3), np.uint8),
                    "points": np.zeros((2, 5, 2)),
                    "occluded": np.zeros((2, 5), bool),
                }
            },
            f,
        )
    write_tapvid_pickle(
        folder / "c.pkl", {f"late{i}": generate_clip(TINY, 10 + i) for i in range(2)}
    )
    return folder


def _eval_args(ckpt, dataset, out):
    return [
        "eval",
        "--format",
        "synthetic",
        "--dataset",
        str(dataset),
        "--checkpoint",
        str(ckpt),
        "--iters",
        "1",
        "--input-resolution",
        "64x64",
        "--quiet",
        "--no-compile-cache",
        "--json",
        str(out),
    ]


def test_eval_over_two_processes_gives_the_report_of_one(ckpt, dataset, tmp_path):
    one = tmp_path / "one.json"
    cached = [a for a in _eval_args(ckpt, dataset, one) if a != "--no-compile-cache"]
    single = subprocess.run(
        [sys.executable, "-m", "pips_jax", *cached],
        env=_env(tmp_path, cache=tmp_path / "one_cache"),
        capture_output=True,
        text=True,
        timeout=GUARD_S,
    )
    assert single.returncode == 0, single.stderr[-2000:]
    table = single.stdout
    two = tmp_path / "two.json"
    port = free_port()
    procs = [_start(_eval_args(ckpt, dataset, two), pid, port, tmp_path) for pid in (0, 1)]
    (code0, out0, err0), (code1, out1, err1) = finish(procs, GUARD_S)
    assert code0 == 0, err0[-2000:]
    assert code1 == 0, err1[-2000:]
    a, b = json.loads(one.read_text()), json.loads(two.read_text())
    assert list(a["per_video"]["pips"]) == ["clip0", "clip1", "clip2", "late0", "late1"]
    assert b == a  # the same videos, in the same order, the same scores, the same skip
    assert [s[0] for s in b["skipped"]] == ["broken"]
    # the compiled programs were kept in the cache folder, and not with --no-compile-cache
    kept = [p.name for p in (tmp_path / "one_cache" / "xla").iterdir()]
    assert any(name.startswith("jit__window") for name in kept)  # the tracker's programs
    assert any(name.startswith("jit__encode") for name in kept)
    assert not (tmp_path / "cache" / "xla").exists()
    # process 0 reports the job's table, as one process does; process 1 prints nothing
    assert out0.replace(str(two), str(one)) == table
    assert out1 == ""


def test_job_options_are_checked_before_anything_starts():
    with pytest.raises(InputError, match=r"process id 2 is out of range: expected 0 <= id < 2"):
        JobOptions("127.0.0.1:1234", 2, 2)
    with pytest.raises(InputError, match=r"expected HOST:PORT, found 'localhost'"):
        JobOptions("localhost", 2, 0)
    with pytest.raises(InputError, match="expected an integer >= 1"):
        JobOptions("127.0.0.1:1234", 0, 0)
    assert not JobOptions().given and JobOptions(process_id=0).given
    assert job_in_environment({"SLURM_STEP_NUM_TASKS": "4"})
    assert not job_in_environment({"SLURM_STEP_NUM_TASKS": "1", "OMPI_COMM_WORLD_SIZE": "1"})
    assert job_in_environment({"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234"})


def test_share_is_a_stable_split_by_position():
    items = [f"v{i}" for i in range(7)]
    assert share(items, 0, 3) == ["v0", "v3", "v6"]
    assert share(items, 2, 3) == ["v2", "v5"]
    assert sorted(share(items, 0, 2) + share(items, 1, 2)) == sorted(items)
    with pytest.raises(InputError, match="share 2/2: expected 0 <= I < N"):
        share(items, 2, 2)


def test_job_descriptions():
    assert Job(0, 1, 4, 4).describe() == "on 4 devices"
    assert Job(0, 1, 1, 1).describe() == "on 1 device"
    assert Job(1, 2, 1, 2).describe() == "on 2 processes, 2 devices"
    assert Job(0, 2, 1, 2).is_main and not Job(1, 2, 1, 2).is_main


def test_a_process_id_out_of_range_is_refused_at_once(capsys):
    args = ["eval", "--baseline-only", "--num-videos", "1", "--quiet"]
    job = ["--coordinator-address", "127.0.0.1:1", "--num-processes", "2", "--process-id", "2"]
    assert main([*args, *job]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "pips-jax eval: error: process id 2 is out of range: expected 0 <= id < 2 "
        "(the number of processes)"
    ]


def test_a_coordinator_that_never_comes_ends_the_process_within_its_timeout(tmp_path):
    port = free_port()  # nobody serves it: process 0 never starts
    args = ["eval", "--baseline-only", "--num-videos", "1", "--quiet", "--join-timeout", "3"]
    t0 = time.monotonic()
    ((code, out, err),) = finish([_start(args, 1, port, tmp_path)], GUARD_S)
    waited = time.monotonic() - t0
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines == [
        f"pips-jax eval: error: process 1 of 2 could not join the job at 127.0.0.1:{port} "
        "within 3 s; expected every process of the job started with the same "
        "--coordinator-address and --num-processes, and process 0 serving that address"
    ]
    assert waited < 3 + 30  # JAX's own deadline (the timeout + 30 s) did not come first


def test_processes_started_with_different_arguments_are_refused_by_every_process(tmp_path):
    port = free_port()
    base = ["eval", "--baseline-only", "--quiet", "--format", "synthetic"]
    procs = [
        _start([*base, "--num-videos", str(n)], pid, port, tmp_path) for pid, n in ((0, 1), (1, 2))
    ]
    results = finish(procs, GUARD_S)
    for code, out, err in results:
        assert code == 2, err[-2000:]
        assert out == ""
        assert err.strip().splitlines()[-1] == (
            "pips-jax eval: error: the processes were started with different arguments: "
            "process 1 has num_videos=2, process 0 num_videos=1; expected the same command "
            "line for every process but --process-id"
        )


def test_a_process_that_dies_ends_the_others_within_the_heartbeat_timeout(ckpt, tmp_path):
    port = free_port()
    out = tmp_path / "report.json"
    args = [*_eval_args(ckpt, tmp_path, out), "--heartbeat-timeout", "5"]
    args[args.index("--dataset") : args.index("--dataset") + 2] = ["--num-videos", "40"]
    args.remove("--quiet")  # the progress bar says when process 1 has started evaluating
    procs = [_start(args, pid, port, tmp_path) for pid in (0, 1)]
    try:
        seen = b""
        while b"eval" not in seen:
            chunk = os.read(procs[1].stderr.fileno(), 4096)
            assert chunk, "process 1 ended before it started evaluating"
            seen += chunk
        kill(procs[1])  # process 1 dies in the middle of the job
        code, stdout, err = finish(procs[:1], GUARD_S)[0]
    finally:
        for p in procs:
            kill(p)
    assert code == 1
    assert stdout == ""
    last = err.replace("\r", "\n").strip().splitlines()[-1]
    assert last == (
        "pips-jax eval: error: process 0 of 2 stopped: process 1 of the job stopped answering "
        "(no heartbeat within the --heartbeat-timeout): it died or was stopped; see its output"
    )
    assert "Check failure" not in err and "heartbeat timeout" not in err  # the runtime's log
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("report")) == []
