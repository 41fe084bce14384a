"""Training over many processes (JAX's distributed runtime; CPU devices that talk
through gloo): two processes with one device each train the run that one process with
two devices trains, only process 0 writes the run's files, new processes resume a run
of two processes from its checkpoint exactly, and a Ctrl-C in one process stops all of
them after the same step, with a checkpoint. Every run is a subprocess: the device
count and the job must be set before JAX starts."""

import dataclasses
import json
import os
import shutil
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from job_helpers import finish, start
from pips_jax import InputError
from pips_jax.checkpoint.store import flatten, load_params
from pips_jax.runtime import free_port
from pips_jax.training.data import BatchLoader, ClipSpec, make_batch
from pips_jax.training.log import read_records
from pips_jax.training.trainer import make_mesh, process_rows, shard_batch
from training_helpers import TINY, train_records, write_tiny_params

#: The run: TINY's model and batch (2 clips), 4 steps logged one by one, a checkpoint
#: at step 2 (and 4) to resume from, the held-out evaluation (2 clips: one per process
#: of a job) at the end.
CONFIG = dataclasses.replace(TINY, num_steps=4, checkpoint_every=2, eval_every=4, eval_clips=2)
COMPARED = ("loss", "seq", "vis", "score", "grad_norm", "ate_vis")
#: Two processes compute what one process with two devices computes, device for
#: device (each device sees one clip); only the gradient all-reduce runs elsewhere
#: (gloo instead of in-process), which may reorder a sum of two. A wrong split (a clip
#: made twice, a shard dropped, per-process means not averaged) is off by percents.
REL = 1e-4
#: A guard against hangs only (JAX's own timeouts end a broken job sooner).
GUARD_S = 900

# A process of a job driven by the library, as the CLI runs it (its XLA flag, its
# compilation cache): joins, checks the refusals every process must give alike,
# resumes the run with a Ctrl-C in process 1 only after step 3, resumes it again to
# its end and prints a JSON summary.
SCRIPT = textwrap.dedent(
    """
    import dataclasses, json, os, signal, sys
    from pips_jax.cli.xla_flags import add_cpu_conv_flag

    add_cpu_conv_flag()  # before JAX starts, as the CLI (the reference) does
    from pips_jax import runtime
    from pips_jax.errors import InputError

    port, index, run, cache = sys.argv[1:5]
    runtime.join(runtime.JobOptions(f"127.0.0.1:{port}", 2, int(index)))
    runtime.enable_compilation_cache(cache)
    from pips_jax.training import TrainConfig, train

    cfg = TrainConfig.from_json(sys.argv[5])
    refused = {}
    for name, args in {
        "again": (cfg, run),
        "odd": (dataclasses.replace(cfg, batch_size=3), run + "-odd"),
    }.items():
        try:
            train(*args, workers=0, progress=False)
        except InputError as e:
            refused[name] = str(e)

    def ctrl_c_in_process_1(step):
        if index == "1" and step == 3:
            os.kill(os.getpid(), signal.SIGINT)

    interrupted = False
    try:
        train(None, run, resume=True, workers=0, progress=False, on_step=ctrl_c_in_process_1)
    except KeyboardInterrupt:
        interrupted = True
    summary = train(None, run, resume=True, workers=0, progress=False)
    print(json.dumps({"step": summary["step"], "params": summary["params"], "refused": refused,
                      "interrupted": interrupted}))
    """
)


SPEC = ClipSpec(24, 24, 4, 6, num_objects=2)


def test_a_share_of_a_batch_is_those_clips_of_the_whole_batch():
    whole = make_batch(SPEC, 3, 5, 4)
    share = make_batch(SPEC, 3, 5, 4, indices=[3, 1])
    with BatchLoader(SPEC, 4, seed=3, start=5, stop=6, indices=[3, 1]) as loader:
        ((step, loaded),) = list(loader)
    assert step == 5
    for key, value in whole.items():
        np.testing.assert_array_equal(share[key], value[[3, 1]], err_msg=key)
        np.testing.assert_array_equal(loaded[key], value[[3, 1]], err_msg=key)


def test_one_process_holds_every_row_and_assembles_the_batch_it_was_given():
    mesh = make_mesh()
    assert process_rows(mesh, 4) == [0, 1, 2, 3]
    rows = np.arange(12, dtype=np.float32).reshape(4, 3)
    batch = shard_batch({"x": rows}, mesh, 4)["x"]
    assert batch.shape == (4, 3)
    np.testing.assert_array_equal(np.asarray(batch), rows)
    with pytest.raises(InputError, match="expected this process's 4 of 4 clips, found 2"):
        shard_batch({"x": rows[:2]}, mesh, 4)


def _env(cache, devices: int = 1) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        JAX_PLATFORMS="cpu",
        XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
        PIPS_JAX_CACHE=str(cache),
    )
    return env


def _job_flags(port: int, index: int) -> list[str]:
    return ["--coordinator-address", f"127.0.0.1:{port}", "--num-processes", "2",
            "--process-id", str(index)]  # fmt: skip


def _run_all(commands: list[tuple[list[str], dict[str, str]]]) -> list[tuple[int, str, str]]:
    """Starts every ``(argv, env)`` at once; returns ``(returncode, stdout, stderr)`` of
    each. Every process still running at the end (a failure, a hang) is killed."""
    return finish([start(argv, env) for argv, env in commands], GUARD_S)


def _check_ok(results) -> None:
    for i, (code, _, err) in enumerate(results):
        assert code == 0, f"process {i}: {err[-3000:]}"


def _same_losses(records, reference) -> None:
    assert [r["step"] for r in records] == [r["step"] for r in reference]
    for r, ref in zip(records, reference, strict=True):
        for key in COMPARED:
            assert r[key] == pytest.approx(ref[key], rel=REL), (r["step"], key)
        assert r["lr"] == ref["lr"]


def _same_eval(run, reference) -> None:
    """One eval record at the end, the scores of both clips: the zero-motion baseline's
    (data only) exactly; the model's up to the tracker's float noise (its points run on
    one device per process here, split over two devices in the reference), which an
    untrained model's six refinement iterations amplify to about 1e-3 of the error."""
    (found,) = [r for r in read_records(Path(run) / "metrics.jsonl") if r["type"] == "eval"]
    (expected,) = [
        r for r in read_records(Path(reference) / "metrics.jsonl") if r["type"] == "eval"
    ]
    assert found["step"] == expected["step"] == CONFIG.num_steps
    for key, value in expected.items():
        if key.startswith("zero_motion_"):
            assert found[key] == value, key
    for key in ("ate_visible", "ate_occluded", "occlusion_accuracy"):
        assert found[key] == pytest.approx(expected[key], rel=1e-2), key


def _same_params(path, reference) -> None:
    params = flatten(load_params(path)[0])
    expected = flatten(load_params(reference)[0])
    assert params.keys() == expected.keys()
    for name, value in expected.items():
        np.testing.assert_allclose(params[name], value, rtol=REL, atol=1e-6, err_msg=name)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The CLI's run of one process with two devices (the reference) and of two
    processes with one device each, started together; a compilation cache shared by
    every run of this module (the CLI's, ``$PIPS_JAX_CACHE/xla``)."""
    root = tmp_path_factory.mktemp("distributed")
    init = write_tiny_params(root / "init.safetensors")
    config = root / "tiny.json"
    config.write_text(CONFIG.to_json())
    cache = root / "cache"

    def cli(out, *job: str) -> list[str]:
        return [sys.executable, "-m", "pips_jax", "train", "--out", str(out), "--config",
                str(config), "--init", str(init), "--workers", "0", "--quiet", *job]  # fmt: skip

    port = free_port()
    results = _run_all(
        [
            (cli(root / "one"), _env(cache, devices=2)),
            *((cli(root / "two", *_job_flags(port, i)), _env(cache)) for i in (0, 1)),
        ]
    )
    _check_ok(results)
    return {"root": root, "init": init, "cache": cache, "results": results}


def test_two_processes_train_what_one_process_with_two_devices_trains(runs):
    root = runs["root"]
    reference = train_records(root / "one")
    assert [r["step"] for r in reference] == [1, 2, 3, 4]
    # Process 1 writing too would append every record twice (or empty the log when
    # it opens it after process 0 has written).
    _same_losses(train_records(root / "two"), reference)
    assert json.loads((root / "two" / "config.json").read_text()) == CONFIG.to_dict()
    assert sorted(os.listdir(root / "two")) == sorted(os.listdir(root / "one"))
    _same_params(root / "two" / "params.safetensors", root / "one" / "params.safetensors")
    _same_eval(root / "two", root / "one")
    # Only process 0 speaks (the CLI's own summary line aside).
    (_, _, err0), (_, _, err1) = runs["results"][1:]
    assert "pips-jax train: starting from" in err0
    assert "pips-jax train:" not in err1


def test_new_processes_resume_exactly_and_ctrl_c_in_one_stops_all(runs, tmp_path):
    # The two processes' run as it was at its checkpoint of step 2.
    run = tmp_path / "run"
    shutil.copytree(runs["root"] / "two", run)
    shutil.rmtree(run / "checkpoints" / "4")
    (run / "params.safetensors").unlink()
    port = free_port()
    script = [sys.executable, "-c", SCRIPT, str(port)]
    results = _run_all(
        [
            (
                [*script, str(i), str(run), str(runs["cache"] / "xla"), CONFIG.to_json()],
                _env(runs["cache"]),
            )
            for i in (0, 1)
        ]
    )
    _check_ok(results)
    summaries = [json.loads(out.splitlines()[-1]) for _, out, _ in results]
    assert [s["step"] for s in summaries] == [4, 4]
    # Process 1's Ctrl-C stopped both after step 3, with a checkpoint there.
    assert [s["interrupted"] for s in summaries] == [True, True]
    assert sorted(os.listdir(run / "checkpoints"), key=int) == ["2", "3", "4"]
    assert "saved a checkpoint at step 3" in results[0][2]
    assert summaries[0]["params"] == str(run / "params.safetensors")
    assert summaries[1]["params"] is None  # written by process 0 only
    # Refusals come from every process alike, before any compute.
    refused = [s["refused"] for s in summaries]
    assert refused[0] == refused[1]
    assert "already holds a training run (checkpoint at step 2)" in refused[0]["again"]
    assert refused[0]["odd"] == (
        "TrainConfig.batch_size: expected a multiple of the 2 devices of 2 processes, found 3"
    )
    # Steps 3-4 recomputed from the checkpoints (the log's were dropped at the resume).
    _same_losses(train_records(run), train_records(runs["root"] / "one"))
    _same_params(run / "params.safetensors", runs["root"] / "one" / "params.safetensors")
    _same_eval(run, runs["root"] / "one")
