"""PIPs++ (aharley/pips2, ``Pips(stride=8)``) against outputs of the original PyTorch
code on its synthetic reference weights (``tests/data/pips2``, see
``tests/reference.py``), converted by the real converter.

Its encoder (``fnet``) is PIPs' BasicEncoder at stride 8, tensor for tensor."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pips_jax import ModelConfig
from pips_jax.checkpoint.convert import (
    convert_state_dict,
    detect_family,
    encoder_key_mapping,
    to_flax,
)
from pips_jax.config import Pips2Config
from pips_jax.errors import CheckpointError
from pips_jax.model.pips import PipsNet
from pips_jax.model.pips2 import Pips2, trajectory_flows
from reference import PIPS2_DATA, pips2_reference_state_dict, reference_state_dict


def _nested(pairs):
    tree: dict = {}
    for path, value in pairs:
        node = tree
        for name in path[:-1]:
            node = node.setdefault(name, {})
        node[path[-1]] = jnp.asarray(value)
    return tree


def test_the_pips2_encoder_is_the_basic_encoder_at_stride_8():
    state = pips2_reference_state_dict()
    config = ModelConfig(stride=8)  # the released encoder sizes: 64 -> 64/96/128/128, 128
    entries = encoder_key_mapping(config)
    # every fnet tensor of the PIPs++ state_dict, in its order, with the shapes it has
    fnet_keys = [k for k in state if k.startswith("fnet.")]
    assert [e.torch_key for e in entries] == fnet_keys
    params = _nested((e.flax_path, to_flax(state[e.torch_key], e.kind)) for e in entries)
    with np.load(PIPS2_DATA / "case_a.npz") as case, np.load(PIPS2_DATA / "case_a_fmaps.npz") as f:
        rgbs, expected = case["rgbs"], f["fmaps_first_last"]
    images = 2.0 * (rgbs[[0, 7]].astype(np.float32) / 255.0) - 1.0
    fmaps = PipsNet(config).apply({"params": params}, jnp.asarray(images), method=PipsNet.encode)
    assert expected.shape == (2, 128 // 8, 192 // 8, 128) == fmaps.shape
    np.testing.assert_allclose(np.asarray(fmaps), expected, atol=1e-4, rtol=0)
    assert np.abs(expected).max() > 0.1  # the maps are not trivially small


def test_the_first_pips2_correlations_are_pips_windows_of_its_three_templates():
    """Before the first update PIPs++'s three templates (frame 0's feature, and the
    features at t-2 and t-4, which it samples only from the 2nd iteration on) are all
    the query feature: each of the 588 channels is one of PIPs' correlation windows,
    4 levels of radius 3, at the point's position on every frame."""
    from pips_jax.model.correlation import build_pyramid, sample_correlations
    from pips_jax.ops.sampling import sample_clamped

    state = pips2_reference_state_dict()
    config = ModelConfig(stride=8)
    entries = encoder_key_mapping(config)
    params = _nested((e.flax_path, to_flax(state[e.torch_key], e.kind)) for e in entries)
    with np.load(PIPS2_DATA / "case_a.npz") as case:
        rgbs, xys, init = case["rgbs"], case["xys"], case["trajs_init"]
        expected = case["first_step_fcorrs"]  # (N, S, 3 templates x 4 levels x 49)
    images = 2.0 * (rgbs.astype(np.float32) / 255.0) - 1.0
    fmaps = PipsNet(config).apply({"params": params}, jnp.asarray(images), method=PipsNet.encode)
    query = sample_clamped(fmaps[0], jnp.asarray(xys / 8.0))  # (N, C), feature pixels
    templates = jnp.broadcast_to(query, (1, len(rgbs), *query.shape))
    windows = sample_correlations(
        build_pyramid(fmaps[None], 4), templates, jnp.asarray(init / 8.0)[None], 3
    )[0]  # (S, N, 196)
    ours = np.transpose(np.asarray(windows), (1, 0, 2))
    assert expected.shape == (len(xys), 8, 3 * 4 * 49)
    for k in range(3):  # template 1, 2, 4: one block of 4 levels x 49 each
        np.testing.assert_allclose(ours, expected[..., 196 * k : 196 * (k + 1)], atol=1e-4, rtol=0)
    assert np.abs(expected).max() > 0.1


@functools.cache
def _converted():
    return convert_state_dict(pips2_reference_state_dict())  # the family from the keys


@functools.cache
def _forward(name: str):
    with np.load(PIPS2_DATA / f"{name}.npz") as f:
        case = dict(f)
    fn = jax.jit(Pips2(Pips2Config()).forward, static_argnames=("iters", "beautify"))
    out = fn(
        _converted(),
        jnp.asarray(case["rgbs"])[None],
        jnp.asarray(case["xys"])[None],
        iters=int(case["iters"]),
        coords_init=jnp.asarray(case["trajs_init"])[None],
        beautify=bool(case["beautify"]),
    )
    return case, out


def test_the_converter_reads_the_family_from_the_keys_and_accepts_the_unused_norm():
    state = pips2_reference_state_dict()
    assert detect_family(state) == "pips2"
    assert detect_family(reference_state_dict()) == "pips"
    params = _converted()
    shapes = Pips2(Pips2Config()).param_shapes()
    got = jax.tree_util.tree_map(np.shape, params)
    assert got == jax.tree_util.tree_map(lambda s: s.shape, shapes)
    # (out, in, k) conv over time -> (k, in, out)
    kernel = params["delta_block"]["first_conv"]["kernel"]
    assert kernel.shape == (3, 718, 128)
    torch_w = state["delta_block.first_block_conv.conv.weight"]
    assert kernel[2, 5, 7] == torch_w[7, 5, 2]


@pytest.mark.parametrize(
    "config, message",
    [
        (ModelConfig(), r"is a PIPs\+\+ checkpoint .* --model pips2"),
        (Pips2Config(delta_blocks=6), "8 unused keys"),  # blocks 6, 7: 2 convs x 2
    ],
)
def test_pips2_weights_forced_into_another_model_fail_with_one_message(config, message):
    state = pips2_reference_state_dict()
    with pytest.raises(CheckpointError, match=message):
        convert_state_dict(state, config)


def test_pips_weights_forced_into_pips2_fail_naming_both_families():
    with pytest.raises(CheckpointError, match="is a PIPs checkpoint .* expected PIPs\\+\\+"):
        convert_state_dict(reference_state_dict(), Pips2Config())


@pytest.mark.parametrize("name", ["case_a", "case_a_beautify"])
def test_pips2_coordinates_after_every_iteration_match_the_original(name):
    """Every iteration's trajectories (frame 0 as the update left it) and the final,
    frame-0-locked one, within 1e-3 px of the original's float32 run."""
    case, out = _forward(name)
    expected = case["coords"]  # (iters + 1, S, N, 2)
    assert out.coords.shape == (int(case["iters"]) + 1, 1, *expected.shape[1:])
    np.testing.assert_allclose(np.asarray(out.coords[:, 0]), expected, atol=1e-3, rtol=0)
    # The points move (several pixels) and frame 0 moves before it is locked again.
    assert np.abs(expected[-1] - case["trajs_init"]).max() > 5.0
    assert np.abs(expected[0, 0] - case["xys"]).max() > 1e-2
    np.testing.assert_array_equal(np.asarray(out.coords[-1, 0, 0]), case["xys"])


@pytest.mark.parametrize("name", ["case_a", "case_a_beautify"])
def test_pips2_returned_templates_match_the_original(name):
    case, out = _forward(name)
    for key, ours in zip(("feats1", "feats2", "feats4"), out.feats, strict=True):
        np.testing.assert_allclose(np.asarray(ours[0]), case[key], atol=1e-4, rtol=0)
    # t-2 / t-4 templates differ from the query feature once points have moved
    assert np.abs(case["feats2"] - case["feats1"]).max() > 1e-2


def test_beautify_halves_only_the_last_quarter_of_the_updates():
    """With 6 iterations, ``itr > 3 * 6 // 4 = 4``: only iteration 5 is halved, so the
    two cases' predictions agree up to iteration 4 (4 iterations run identically in
    case A) and then differ."""
    plain, _ = _forward("case_a")
    beaut, _ = _forward("case_a_beautify")
    np.testing.assert_allclose(beaut["coords"][:4], plain["coords"][:4], atol=1e-5)


def test_pips2_first_flows_are_the_forward_differences_with_the_last_repeated():
    with np.load(PIPS2_DATA / "case_a.npz") as case:
        init, expected = case["trajs_init"], case["first_step_flows"]  # (S, N, 2), (N, S, 2)
    flows = np.asarray(trajectory_flows(jnp.asarray(init / 8.0)[None]))[0]
    np.testing.assert_allclose(np.transpose(flows, (1, 0, 2)), expected, atol=1e-6)
    # hand-worked: a point moving 8 px per frame in x has flow (1, 0) feature pixels
    line = jnp.asarray(np.stack([np.arange(4) * 8.0, np.zeros(4)], -1)[None, :, None] / 8.0)
    np.testing.assert_allclose(np.asarray(trajectory_flows(line))[0, :, 0], [[1, 0]] * 4)


def test_pips2_correlations_of_the_first_step_come_from_the_model_step():
    """The full model's first step sees the fixture's 588 correlations."""
    with np.load(PIPS2_DATA / "case_a.npz") as case:
        rgbs, xys, init = case["rgbs"], case["xys"], case["trajs_init"]
        expected = case["first_step_fcorrs"]
    model = Pips2(Pips2Config())
    params = _converted()
    fmaps = model.encode(params, jnp.asarray(rgbs)[None])
    first = model.point_features(fmaps[:, 0], jnp.asarray(xys)[None])
    feats = (jnp.broadcast_to(first[:, None], (1, 8, *first.shape[1:])),) * 3
    _, fcorrs = model.step(params, model.pyramid(fmaps), jnp.asarray(init)[None], feats)
    ours = np.transpose(np.asarray(fcorrs[0]), (1, 0, 2))
    np.testing.assert_allclose(ours, expected, atol=1e-4, rtol=0)
