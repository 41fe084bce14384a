"""`pips-jax convert` end to end on a full synthetic checkpoint in the release layout."""

import subprocess
import sys

import numpy as np
import pytest

from pips_jax import ModelConfig
from pips_jax.checkpoint.convert import convert_state_dict
from pips_jax.checkpoint.store import flatten, load_params
from pips_jax.cli import main
from pth_writer import write_pth
from reference import reference_state_dict


@pytest.fixture(scope="module")
def release_like(tmp_path_factory):
    """The reference weights saved like the released file: optimizer + model state."""
    sd = reference_state_dict()
    path = tmp_path_factory.mktemp("ckpt") / "model-000200000.pth"
    write_pth(path, {"optimizer_state_dict": {"state": {}}, "model_state_dict": sd})
    return path, sd


def test_convert_writes_loadable_params(tmp_path, release_like, capsys):
    src, sd = release_like
    out = tmp_path / "pips.safetensors"
    assert main(["convert", str(src), str(out)]) == 0
    assert "converted" in capsys.readouterr().out
    params, config, meta = load_params(out)
    assert config == ModelConfig()
    assert meta["source"] == "model-000200000.pth" and len(meta["source_sha256"]) == 64
    expected = flatten(convert_state_dict(sd))
    got = flatten(params)
    assert got.keys() == expected.keys()
    for k in expected:
        np.testing.assert_array_equal(got[k], expected[k])


def test_convert_into_a_folder(tmp_path, release_like):
    src, _ = release_like
    assert main(["convert", str(src), str(tmp_path)]) == 0
    assert (tmp_path / "model-000200000.safetensors").is_file()


def test_failed_conversion_writes_nothing(tmp_path, release_like, capsys):
    src, _ = release_like
    out = tmp_path / "out.safetensors"
    # The checkpoint is for S=8; asking for a 12-frame model must fail loudly.
    assert main(["convert", str(src), str(out), "--S", "12"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("pips-jax convert: error:") and "shape mismatches" in err
    assert len(err.splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("content", [b"", b"hello, not a checkpoint\n", b"PK\x03\x04truncated"])
def test_non_checkpoints_are_refused(tmp_path, content, capsys):
    src = tmp_path / "bad.pth"
    src.write_bytes(content)
    out = tmp_path / "out.safetensors"
    assert main(["convert", str(src), str(out)]) == 2
    assert "bad.pth" in capsys.readouterr().err
    assert not out.exists()


def test_truncated_checkpoint_is_refused(tmp_path, release_like, capsys):
    src, _ = release_like
    cut = tmp_path / "cut.pth"
    cut.write_bytes(src.read_bytes()[:40_000_000])
    out = tmp_path / "out.safetensors"
    assert main(["convert", str(cut), str(out)]) == 2
    assert "cut.pth" in capsys.readouterr().err
    assert not out.exists()


def test_missing_input(tmp_path, capsys):
    assert main(["convert", str(tmp_path / "nope.pth"), str(tmp_path / "o.safetensors")]) == 2
    assert "nope.pth" in capsys.readouterr().err


def test_console_script_help():
    r = subprocess.run(
        [sys.executable, "-m", "pips_jax", "convert", "--help"], capture_output=True, text=True
    )
    assert r.returncode == 0
    assert "IN" in r.stdout.upper() and "--stride" in r.stdout
