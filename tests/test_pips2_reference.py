"""PIPs++ (aharley/pips2, ``Pips(stride=8)``) against outputs of the original PyTorch
code on its synthetic reference weights (``tests/data/pips2``, see
``tests/reference.py``): the parts of PIPs++ that pips-jax computes so far.

Its encoder (``fnet``) is PIPs' BasicEncoder at stride 8, tensor for tensor."""

import jax.numpy as jnp
import numpy as np

from pips_jax import ModelConfig
from pips_jax.checkpoint.convert import encoder_key_mapping, to_flax
from pips_jax.model.pips import PipsNet
from reference import PIPS2_DATA, pips2_reference_state_dict


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
