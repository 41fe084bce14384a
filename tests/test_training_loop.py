"""The train step, the loop, checkpoints (resume, Ctrl-C, crash while saving), init,
the CLI and export."""

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from pips_jax import InputError, Pips
from pips_jax.checkpoint.store import load_params, save_params
from pips_jax.cli import main
from pips_jax.training import export_params, train
from pips_jax.training.checkpoints import RunCheckpoints
from pips_jax.training.data import ClipSpec, make_batch
from pips_jax.training.trainer import (
    init_state,
    make_mesh,
    make_train_step,
    replicate,
    shard_batch,
)
from small_model import SMALL
from training_helpers import TINY, tiny_params, train_records, write_tiny_params

COMPARED = ("loss", "seq", "vis", "score", "lr", "grad_norm")


@pytest.fixture(scope="module")
def init_file(tmp_path_factory):
    return write_tiny_params(tmp_path_factory.mktemp("init") / "init.safetensors")


@pytest.fixture(scope="module")
def straight(tmp_path_factory, init_file):
    """An uninterrupted run of 5 steps; its log is the reference."""
    run = tmp_path_factory.mktemp("straight")
    cfg = dataclasses.replace(TINY, checkpoint_every=1, keep_checkpoints=3)
    summary = train(cfg, run, init=init_file, until_step=5, workers=0, progress=False)
    assert summary["step"] == 5 and summary["checkpoint_step"] == 5
    runs = RunCheckpoints(run, read_only=True)
    assert runs.all_steps() == [3, 4, 5]  # the latest keep_checkpoints
    runs.close()
    return run, train_records(run)


def _same_steps(records, reference):
    assert [r["step"] for r in records] == [r["step"] for r in reference[: len(records)]]
    for r, ref in zip(records, reference, strict=False):
        for k in COMPARED:
            assert r[k] == pytest.approx(ref[k], rel=1e-6, abs=1e-9), (r["step"], k)


def _step_inputs():
    mesh = make_mesh()
    state = replicate(init_state(TINY, tiny_params()), mesh)
    batch = shard_batch(make_batch(ClipSpec.from_config(TINY), 0, 0, TINY.batch_size), mesh)
    return mesh, state, batch


def test_one_train_step_is_finite_and_changes_every_parameter():
    mesh, state, batch = _step_inputs()
    before = jax.device_get(state.params)
    state, m = make_train_step(TINY, mesh)(state, batch, jax.random.key(0))
    m = {k: float(v) for k, v in m.items()}
    assert all(np.isfinite(m[k]) for k in ("loss", "seq", "vis", "score", "grad_norm", "ate_vis"))
    assert m["loss"] == pytest.approx(m["seq"] + 10 * m["vis"] + m["score"], rel=1e-6)
    assert m["lr"] == pytest.approx(TINY.lr / 25, rel=1e-5)  # OneCycleLR starts at lr / 25
    assert int(state.step) == 1
    after = jax.device_get(state.params)
    leaves = jax.tree_util.tree_leaves_with_path(before)
    unchanged = [
        jax.tree_util.keystr(p)
        for (p, a), b in zip(leaves, jax.tree_util.tree_leaves(after), strict=True)
        if np.array_equal(a, b)
    ]
    assert unchanged == []


def test_tiny_fixed_batch_overfits():
    mesh, state, batch = _step_inputs()
    step = make_train_step(TINY, mesh)
    history = []
    for _ in range(TINY.num_steps):
        state, m = step(state, batch, jax.random.key(0))
        history.append(jax.device_get(m))
    first, last = history[0], history[-1]
    assert float(last["loss"]) < 0.25 * float(first["loss"])
    assert float(last["seq"]) < 0.5 * float(first["seq"])
    assert float(last["ate_vis"]) < 0.5 * float(first["ate_vis"])


def test_resume_continues_exactly(tmp_path, init_file, straight):
    _, reference = straight
    # checkpoints at 2 (then step 3 runs on, donating the state's buffers) and at 3
    cfg = dataclasses.replace(TINY, checkpoint_every=2)
    first = train(cfg, tmp_path, init=init_file, until_step=3, workers=0, progress=False)
    assert first["step"] == 3 and first["params"] is None
    with pytest.raises(InputError, match="already holds a training run .checkpoint at step 3"):
        train(cfg, tmp_path, until_step=5, workers=0, progress=False)
    shutil.rmtree(tmp_path / "checkpoints" / "3")  # resume from the mid-run checkpoint
    second = train(None, tmp_path, resume=True, until_step=5, workers=0, progress=False)
    assert second["step"] == 5
    records = train_records(tmp_path)
    assert len(records) == 5
    _same_steps(records, reference)


def test_ctrl_c_saves_a_checkpoint_then_resume_matches(tmp_path, init_file, straight):
    _, reference = straight

    def raise_at_3(step):
        if step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(TINY, tmp_path / "a", init=init_file, workers=0, progress=False, on_step=raise_at_3)
    runs = RunCheckpoints(tmp_path / "a", read_only=True)
    assert runs.all_steps() == [3] and runs.meta()["data"] == {"seed": 0, "next_batch": 3}
    runs.close()

    # A real SIGINT: the loop finishes the step it is in, saves and raises.
    def sigint_at_2(step):
        if step == 2:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        train(TINY, tmp_path / "b", init=init_file, workers=0, progress=False, on_step=sigint_at_2)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    runs = RunCheckpoints(tmp_path / "b", read_only=True)
    assert runs.all_steps() == [2]
    runs.close()
    train(None, tmp_path / "b", resume=True, until_step=4, workers=0, progress=False)
    _same_steps(train_records(tmp_path / "b"), reference)


def test_a_crash_while_saving_keeps_the_previous_checkpoint(tmp_path, init_file, straight):
    _, reference = straight
    train(TINY, tmp_path, init=init_file, until_step=2, workers=0, progress=False)
    # Save step 3 in another process that dies just before orbax renames the finished
    # temporary folder into place.
    script = textwrap.dedent(
        f"""
        import os
        import jax.numpy as jnp
        from orbax.checkpoint._src.path import atomicity
        from pips_jax.training.checkpoints import RunCheckpoints

        runs = RunCheckpoints({str(tmp_path)!r}, keep=3)
        state, meta = runs.restore(runs.config())

        async def die(self, *args, **kwargs):
            os._exit(3)

        atomicity.AtomicRenameTemporaryPath.finalize = die
        runs.save(state._replace(step=jnp.asarray(3, jnp.int32)), meta)
        runs.wait()
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 3, proc.stderr[-2000:]
    names = sorted(os.listdir(tmp_path / "checkpoints"))
    assert names == ["2", "3.orbax-checkpoint-tmp"]
    runs = RunCheckpoints(tmp_path, read_only=True)
    assert runs.latest_step() == 2
    runs.close()
    train(None, tmp_path, resume=True, until_step=4, workers=0, progress=False)
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["2", "4"]
    _same_steps(train_records(tmp_path), reference)


def _to_torch(array: np.ndarray, kind: str) -> np.ndarray:
    """Inverse of ``convert.to_flax``: a Flax array in the original's layout."""
    if kind == "conv2d":
        return np.ascontiguousarray(np.transpose(array, (3, 2, 0, 1)))
    if kind == "linear":
        return np.ascontiguousarray(array.T)
    if kind == "conv1d":
        return np.ascontiguousarray(array.T[:, :, None])
    return np.ascontiguousarray(array)


def test_init_from_an_original_pth_equals_init_from_safetensors(tmp_path, straight):
    from pips_jax.checkpoint.convert import key_mapping
    from pth_writer import write_pth

    _, reference = straight
    params = tiny_params()
    state_dict = {}
    for entry in key_mapping(SMALL):
        leaf = params
        for name in entry.flax_path:
            leaf = leaf[name]
        state_dict[entry.torch_key] = _to_torch(np.asarray(leaf, np.float32), entry.kind)
    pth = tmp_path / "tiny.pth"
    write_pth(pth, {"model_state_dict": state_dict})
    train(TINY, tmp_path / "run", init=pth, until_step=1, workers=0, progress=False)
    _same_steps(train_records(tmp_path / "run"), reference)  # started from the same weights
    with pytest.raises(
        InputError, match=r"init .*tiny.pth: state_dict does not match the PIPs model"
    ):
        train(
            dataclasses.replace(TINY, model=dataclasses.replace(SMALL, latent_dim=24)),
            tmp_path / "r2",
            init=pth,
        )


def test_other_model_sizes_and_settings_are_refused_before_compute(tmp_path, straight):
    run, _ = straight
    other = dataclasses.replace(SMALL, latent_dim=24)
    shapes = jax.tree_util.tree_map(
        lambda s: np.zeros(s.shape, s.dtype), Pips(other).param_shapes()
    )
    bad = save_params(tmp_path / "other.safetensors", shapes, other)
    with pytest.raises(
        InputError, match=r"does not fit the model .*expected \(16,\), found \(24,\)"
    ):
        train(TINY, tmp_path / "new", init=bad, workers=0, progress=False)
    assert not (tmp_path / "new" / "checkpoints").exists()
    assert not (tmp_path / "new" / "config.json").exists()
    with pytest.raises(
        InputError, match=r"init .* does not fit the model .*expected \(24,\), found \(16,\)"
    ):
        train(dataclasses.replace(TINY, model=other), tmp_path / "new2", init=run, workers=0)
    with pytest.raises(InputError, match=r"resume: the checkpoint in .* does not fit the model"):
        train(dataclasses.replace(TINY, model=other), run, resume=True, workers=0)
    with pytest.raises(InputError, match=r"other settings \(lr: 0.002 -> 0.001\)"):
        train(dataclasses.replace(TINY, lr=1e-3), run, resume=True, workers=0)
    with pytest.raises(InputError, match="init applies to a new run"):
        train(TINY, run, resume=True, init=bad, workers=0)
    with pytest.raises(InputError, match="does not exist"):
        train(TINY, tmp_path / "new3", init=tmp_path / "missing.safetensors", workers=0)


def test_output_directory_checks(tmp_path, monkeypatch):
    file = tmp_path / "file"
    file.write_text("x")
    with pytest.raises(InputError, match="is a file; expected a folder"):
        train(TINY, file)
    import pips_jax.training.loop as loop

    monkeypatch.setattr(loop.os, "access", lambda *a: False)
    with pytest.raises(InputError, match="is not writable"):
        train(TINY, tmp_path / "ro")


def test_cli_errors_are_one_line(tmp_path, capsys):
    file = tmp_path / "file"
    file.write_text("x")
    assert main(["train", "--out", str(file), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("pips-jax train: error: output directory") and "\n" not in err
    assert main(["train", "--out", str(tmp_path / "r"), "--crop", "30x32", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "crop: expected H and W multiples of the stride 4, found 30x32" in err


TINY_FLAGS = [
    "--batch-size", "2", "--num-points", "8", "--crop", "32x32", "--iters", "2",
    "--latent-dim", "16", "--encoder-dims", "8,12", "--stem-dim", "8", "--mixer-dim", "32",
    "--mixer-depth", "2", "--corr-levels", "2", "--corr-radius", "1", "--embed-dim", "8",
    "--workers", "0", "--quiet",
]  # fmt: skip


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("cli")
    args = ["train", "--out", str(run), "--steps", "2", "--log-every", "1", *TINY_FLAGS]
    args += ["--eval-every", "2", "--eval-clips", "1", "--eval-size", "32x32", "--eval-frames", "8"]
    assert main(args) == 0
    return run


def test_cli_train_end_to_end(cli_run, capsys):
    cfg = json.loads((cli_run / "config.json").read_text())
    assert (
        cfg["model"] == {"family": "pips", **SMALL.to_dict()}
        and cfg["num_steps"] == 2
        and cfg["crop"] == [32, 32]
    )
    lines = [json.loads(x) for x in (cli_run / "metrics.jsonl").read_text().splitlines()]
    assert [(r["type"], r["step"]) for r in lines] == [("train", 1), ("train", 2), ("eval", 2)]
    for key in ("loss", "seq", "vis", "score", "lr", "grad_norm", "ate_vis", "steps_per_s"):
        assert np.isfinite(lines[1][key]), key
    assert 0 <= lines[2]["average_jaccard"] <= 1 and "zero_motion_average_jaccard" in lines[2]
    assert (cli_run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (cli_run / "checkpoints" / "2").is_dir()
    params, config, meta = load_params(cli_run / "params.safetensors")
    assert config == SMALL and "step 2" in meta["source"]
    # the run is complete: resuming it does nothing more
    assert main(["train", "--out", str(cli_run), "--resume", "--quiet", "--workers", "0"]) == 0
    assert "trained to step 2 of 2" in capsys.readouterr().out


def test_export_params_runs_in_the_tracker(cli_run, tmp_path):
    from pips_jax.tracker import Tracker

    out = export_params(cli_run, tmp_path / "exported.safetensors")
    params, config, meta = load_params(out)
    assert config == SMALL and meta["source"].endswith("step 2")
    final, _, _ = load_params(cli_run / "params.safetensors")
    for a, b in zip(
        jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(final), strict=True
    ):
        np.testing.assert_array_equal(a, b)
    video = make_batch(ClipSpec(32, 32, 10, 4), 0, 0, 1)["frames"][0]
    result = Tracker(params, config, resolution=(32, 32), iters=1).track(video, grid_size=2)
    assert result.tracks.shape == (4, 10, 2) and np.all(np.isfinite(result.tracks))


def test_checkpoint_option_reads_a_run_folder(cli_run, tmp_path, capsys):
    """`--checkpoint RUN` scores exactly what the run's exported parameters score."""
    from pips_jax.weights import load_weights

    weights = load_weights(cli_run)
    assert weights.config == SMALL and weights.description.endswith("(pips-jax train run, step 2)")
    scores = []
    for checkpoint in (cli_run, cli_run / "params.safetensors"):
        out = tmp_path / f"{len(scores)}.json"
        args = ["eval", "--checkpoint", str(checkpoint), "--num-videos", "1", "--iters", "1"]
        assert main([*args, "--input-resolution", "32x32", "--json", str(out), "--quiet"]) == 0
        scores.append(json.loads(out.read_text())["scores"]["pips"])
    assert scores[0] == scores[1] and 0 <= scores[0]["average_jaccard"] <= 1
    empty = tmp_path / "empty_run"
    empty.mkdir()
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(empty), "--num-videos", "1", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "expected a training checkpoint, found none" in err and "\n" not in err
