"""Data parallelism: the same run on 2 (virtual CPU) devices and on 1 device gives the
same per-step losses. XLA_FLAGS must be set before jax is imported, so each run is a
subprocess."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from training_helpers import TINY, write_tiny_params

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import jax
    import numpy as np
    from pips_jax.training import TrainConfig, train
    from pips_jax.training.trainer import make_mesh, shard_batch
    from pips_jax.training.log import read_records

    cfg = TrainConfig.from_json(sys.argv[1])
    out, init = sys.argv[2], sys.argv[3]
    train(cfg, out, init=init, until_step=3, workers=0, progress=False)
    records = [r for r in read_records(out + "/metrics.jsonl") if r["type"] == "train"]
    batch = shard_batch({"x": np.zeros((cfg.batch_size, 3))}, make_mesh())["x"]
    shards = [s.data.shape[0] for s in batch.addressable_shards]
    print(json.dumps({"devices": jax.device_count(), "shards": shards, "records": records}))
    """
)


def _start(devices: int, out, init):
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["JAX_PLATFORMS"] = "cpu"
    return subprocess.Popen(
        [sys.executable, "-c", SCRIPT, TINY.to_json(), str(out), str(init)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_two_devices_give_the_losses_of_one(tmp_path):
    init = write_tiny_params(tmp_path / "init.safetensors")
    runs = {n: _start(n, tmp_path / f"run{n}", init) for n in (1, 2)}
    results = {}
    for n, proc in runs.items():
        out, err = proc.communicate(timeout=900)  # a guard against hangs, not a timing
        assert proc.returncode == 0, err[-3000:]
        results[n] = json.loads(out.strip().splitlines()[-1])
    assert results[1]["shards"] == [2] and results[2]["shards"] == [1, 1]  # clips per device
    one, two = results[1]["records"], results[2]["records"]
    assert [r["step"] for r in one] == [r["step"] for r in two] == [1, 2, 3]
    # Step 1 starts from the same parameters: only the summation order differs (the
    # per-device convolutions see batch 1 instead of 2), a few 1e-6 relative. A wrong
    # split (per-device means averaged, a dropped shard) is off by percents. After
    # that, Adam's first steps are nearly sign(gradient), so float noise in tiny
    # gradient entries moves some weights by a whole lr and the runs drift apart
    # slowly: about 1e-4 relative by step 3.
    for a, b in zip(one, two, strict=True):
        rel = 2e-5 if a["step"] == 1 else 2e-3
        for key in ("loss", "seq", "vis", "score", "grad_norm", "ate_vis"):
            assert b[key] == pytest.approx(a[key], rel=rel), (a["step"], key)
        assert b["lr"] == a["lr"]
