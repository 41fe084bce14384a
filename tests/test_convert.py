"""State_dict conversion: explicit layouts, loud failures, safe storage round trip."""

import jax
import numpy as np
import pytest

from pips_jax import CheckpointError, ModelConfig, Pips
from pips_jax.checkpoint.convert import convert_state_dict, key_mapping
from pips_jax.checkpoint.store import flatten, load_params, save_params
from reference import manifest, reference_state_dict


@pytest.fixture(scope="module")
def sd():
    return reference_state_dict()


@pytest.fixture(scope="module")
def params(sd):
    return convert_state_dict(sd)


def test_layouts(sd, params):
    # Conv2d (out, in, kh, kw) -> (kh, kw, in, out).
    w = sd["fnet.layer2.0.conv1.weight"]  # (96, 64, 3, 3)
    k = params["fnet"]["layer2_0"]["conv1"]["kernel"]
    assert k.shape == (3, 3, 64, 96)
    assert k[2, 1, 5, 7] == w[7, 5, 2, 1]
    # Linear (out, in) -> (in, out).
    w = sd["delta_block.to_delta.0.weight"]  # (512, 519)
    k = params["delta_block"]["input"]["kernel"]
    assert k.shape == (519, 512) and k[300, 11] == w[11, 300]
    # Token-mixing Conv1d (out, in, 1) -> (in, out).
    w = sd["delta_block.to_delta.3.0.fn.0.weight"]  # (32, 8, 1)
    k = params["delta_block"]["block_2"]["token_fc1"]["kernel"]
    assert k.shape == (8, 32) and k[6, 20] == w[20, 6, 0]
    # Norm weight -> scale; GroupNorm(1) of the feature updater -> ffeat_norm.
    np.testing.assert_array_equal(params["ffeat_norm"]["scale"], sd["norm.weight"])
    np.testing.assert_array_equal(
        params["delta_block"]["final_norm"]["bias"], sd["delta_block.to_delta.13.bias"]
    )
    np.testing.assert_array_equal(
        params["delta_block"]["head"]["bias"], sd["delta_block.to_delta.15.bias"]
    )


def test_converted_tree_matches_model_init(params):
    shapes = Pips(ModelConfig()).param_shapes()
    got = jax.tree_util.tree_map(lambda x: (x.shape, x.dtype), params)
    want = jax.tree_util.tree_map(lambda x: (x.shape, x.dtype), shapes)
    assert got == want
    assert sum(x.size for x in jax.tree_util.tree_leaves(params)) == 28_677_713


def test_mapping_is_one_to_one_with_manifest():
    keys = [e.torch_key for e in key_mapping(ModelConfig())]
    assert keys == [m["key"] for m in manifest()]
    assert len({e.flax_path for e in key_mapping(ModelConfig())}) == 200


def test_every_problem_is_listed(sd):
    bad = dict(sd)
    del bad["fnet.conv1.bias"]
    del bad["vis_predictor.0.weight"]
    bad["extra.weight"] = np.zeros(3, np.float32)
    bad["fnet.conv3.weight"] = np.zeros((64, 256, 1, 1), np.float32)
    with pytest.raises(CheckpointError) as e:
        convert_state_dict(bad)
    msg = str(e.value)
    assert "2 missing keys: fnet.conv1.bias, vis_predictor.0.weight" in msg
    assert "1 unused keys: extra.weight" in msg
    assert "fnet.conv3.weight: expected (128, 256, 1, 1), found (64, 256, 1, 1)" in msg
    assert "\n" not in msg


def test_checkpoint_of_another_config_is_refused(sd):
    # The reference state_dict is for S=8: a 12-frame model's token mixers differ.
    with pytest.raises(
        CheckpointError,
        match=r"delta_block.to_delta.1.0.fn.0.weight: expected \(48, 12, 1\), found \(32, 8, 1\)",
    ):
        convert_state_dict(sd, ModelConfig(S=12))


def test_save_load_round_trip(tmp_path, params):
    path = save_params(tmp_path / "m.safetensors", params, ModelConfig(), {"source": "unit"})
    loaded, config, meta = load_params(path)
    assert config == ModelConfig()
    assert meta["source"] == "unit" and meta["format"] == "pips-jax"
    flat_a, flat_b = flatten(params), flatten(loaded)
    assert flat_a.keys() == flat_b.keys()
    for k in flat_a:
        np.testing.assert_array_equal(flat_a[k], flat_b[k])
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_load_refuses_wrong_config_and_corruption(tmp_path, params):
    path = save_params(tmp_path / "m.safetensors", params, ModelConfig())
    with pytest.raises(CheckpointError, match="expected"):
        load_params(path, ModelConfig(stride=8))
    data = path.read_bytes()
    truncated = tmp_path / "t.safetensors"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated|corrupt"):
        load_params(truncated)
    other = tmp_path / "o.safetensors"
    other.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError):
        load_params(other)
    with pytest.raises(CheckpointError, match="cannot read"):
        load_params(tmp_path / "missing.safetensors")


def test_small_config_round_trip(tmp_path):
    cfg = ModelConfig(
        S=4,
        latent_dim=16,
        mixer_dim=32,
        mixer_depth=2,
        encoder_dims=(8, 12),
        encoder_stem_dim=8,
        corr_levels=2,
        corr_radius=1,
    )
    params = Pips(cfg).init(jax.random.key(0))
    path = save_params(tmp_path / "small.safetensors", params, cfg)
    loaded, config, _ = load_params(path)
    assert config == cfg
    assert jax.tree_util.tree_structure(loaded) == jax.tree_util.tree_structure(params)


def test_written_files_get_the_usual_permissions(tmp_path):
    """Atomic writes go through an owner-only temporary file; the result must still be
    readable like any file the user writes (0o666 less the umask), not 0o600."""
    import os
    import stat

    from pips_jax.files import atomic_write_bytes

    old = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "a.bin", b"x")
        os.umask(0o002)
        atomic_write_bytes(tmp_path / "b.bin", b"y")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.bin").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "b.bin").stat().st_mode) == 0o664
    assert (tmp_path / "b.bin").read_bytes() == b"y"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "b.bin"]
