"""Model structure, stage API and input checks (small configs, no golden numbers needed)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pips_jax import InputError, ModelConfig, Pips
from small_model import damped_params

SMALL = ModelConfig(
    S=4,
    stride=4,
    latent_dim=16,
    corr_levels=2,
    corr_radius=1,
    mixer_dim=32,
    mixer_depth=2,
    encoder_dims=(8, 12, 16),
    encoder_stem_dim=8,
    embed_dim=8,
)


def _count(tree):
    return sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(tree))


def test_default_config_is_the_released_model():
    cfg = ModelConfig()
    assert (cfg.S, cfg.stride, cfg.latent_dim, cfg.corr_levels, cfg.corr_radius) == (
        8,
        4,
        128,
        4,
        3,
    )
    assert (cfg.mixer_dim, cfg.mixer_depth, cfg.mixer_expansion) == (512, 12, 4)
    assert cfg.mixer_input_dim == 128 + 196 + 192 + 3
    assert _count(Pips(cfg).param_shapes()) == 28_677_713


@pytest.mark.parametrize(
    "cfg",
    [
        SMALL,
        ModelConfig(stride=8),
        ModelConfig(S=12, mixer_depth=3),
        ModelConfig(corr_levels=3, corr_radius=2),
    ],
)
def test_shapes_for_every_config(cfg):
    model = Pips(cfg)
    params = model.param_shapes()
    h, w = 4 * cfg.stride * cfg.min_feature_size, 6 * cfg.stride * cfg.min_feature_size
    frames = jax.ShapeDtypeStruct((2, cfg.S, h, w, 3), jnp.uint8)
    xys = jax.ShapeDtypeStruct((2, 5, 2), jnp.float32)
    out = jax.eval_shape(lambda p, f, x: model.forward(p, f, x, iters=3), params, frames, xys)
    assert out.coords.shape == (3, 2, cfg.S, 5, 2)
    assert out.vis_logits.shape == (2, cfg.S, 5)
    assert out.feat_init.shape == (2, 5, cfg.latent_dim)
    assert params["delta_block"]["input"]["kernel"].shape == (cfg.mixer_input_dim, cfg.mixer_dim)
    fmaps = jax.eval_shape(model.encode, params, frames)
    assert fmaps.shape == (2, cfg.S, h // cfg.stride, w // cfg.stride, cfg.latent_dim)


@pytest.fixture(scope="module")
def small():
    model = Pips(SMALL)
    params = damped_params(SMALL, seed=0)
    rng = np.random.default_rng(0)
    frames = jnp.asarray(rng.integers(0, 256, size=(1, 4, 32, 48, 3), dtype=np.uint8))
    xys = jnp.asarray([[[5.0, 7.5], [40.25, 20.0], [0.0, 31.0]]], jnp.float32)
    return model, params, frames, xys


def test_forward_equals_stages(small):
    model, params, frames, xys = small
    out = model.forward(params, frames, xys, iters=3)
    fmaps = model.encode(params, frames)
    pyramid = model.pyramid(fmaps)
    feat = model.point_features(fmaps[:, 0], xys)
    coords = jnp.broadcast_to(xys[:, None], (1, 4, 3, 2))
    ffeats = jnp.broadcast_to(feat[:, None], (1, 4, 3, 16))
    for i in range(3):
        coords, ffeats, fcorrs = model.step(params, pyramid, coords, ffeats)
        assert fcorrs.shape == (1, 4, 3, SMALL.corr_dim)
        np.testing.assert_allclose(out.coords[i], coords, rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(
        out.vis_logits, model.visibility(params, ffeats), rtol=1e-6, atol=1e-5
    )
    np.testing.assert_allclose(out.feat_init, feat)
    # Frame 0 stays at the query; the random model moves the other frames.
    np.testing.assert_array_equal(out.coords[:, 0, 0], jnp.broadcast_to(xys[0], (3, 3, 2)))
    assert float(jnp.abs(out.coords[-1, 0, 1:] - xys[0]).max()) > 1e-3


def test_coords_init_and_feat_init_are_used(small):
    model, params, frames, xys = small
    base = model.forward(params, frames, xys, iters=2)
    # Passing the default initialisation explicitly changes nothing.
    coords_init = jnp.broadcast_to(xys[:, None], (1, 4, 3, 2))
    same = model.forward(
        params, frames, xys, iters=2, coords_init=coords_init, feat_init=base.feat_init
    )
    np.testing.assert_allclose(same.coords, base.coords, rtol=1e-6, atol=1e-5)
    # A shifted initialisation locks frame 0 at the new place; other features change the result.
    shifted = coords_init + jnp.array([3.0, -2.0])
    out = model.forward(params, frames, xys, iters=2, coords_init=shifted)
    np.testing.assert_allclose(out.coords[-1, :, 0], shifted[:, 0], atol=1e-6)
    other = model.forward(params, frames, xys, iters=2, feat_init=base.feat_init * 2.0)
    assert float(jnp.abs(other.coords - base.coords).max()) > 1e-4


def test_forward_is_jittable_and_agrees(small):
    model, params, frames, xys = small
    eager = model.forward(params, frames, xys, iters=2)
    jitted = jax.jit(model.forward, static_argnames="iters")(params, frames, xys, iters=2)
    np.testing.assert_allclose(jitted.coords, eager.coords, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize(
    ("frames", "xys", "match"),
    [
        (
            np.zeros((4, 32, 48, 3), np.uint8),
            np.zeros((1, 2, 2)),
            r"expected a \(B, S, H, W, 3\) array, got 4 dims",
        ),
        (
            np.zeros((1, 4, 32, 48, 4), np.uint8),
            np.zeros((1, 2, 2)),
            "expected 3 RGB channels in the last axis, got 4",
        ),
        (
            np.zeros((1, 4, 32, 48, 3), np.float32),
            np.zeros((1, 2, 2)),
            "expected dtype uint8 .* got float32",
        ),
        (
            np.zeros((1, 5, 32, 48, 3), np.uint8),
            np.zeros((1, 2, 2)),
            "expected S=4 frames per clip, got 5",
        ),
        (
            np.zeros((1, 4, 4, 48, 3), np.uint8),
            np.zeros((1, 2, 2)),
            "expected H and W >= 8 .* got 4x48",
        ),
        (
            np.zeros((1, 4, 32, 48, 3), np.uint8),
            np.zeros((1, 2, 3)),
            r"expected shape \(1, N, 2\) as \(x, y\) pixels, got \(1, 2, 3\)",
        ),
        (np.zeros((1, 4, 32, 48, 3), np.uint8), np.zeros((2, 2)), r"expected shape \(1, N, 2\)"),
        (np.zeros((1, 4, 32, 48, 3), np.uint8), np.array([[[np.nan, 1.0]]]), "finite"),
        # (y, x) by mistake: x = 40 would exceed H - 1 = 31 if read as y.
        (
            np.zeros((1, 4, 32, 48, 3), np.uint8),
            np.array([[[10.0, 40.0], [3.0, 20.0]]]),
            r"inside it as \(y, x\)",
        ),
    ],
)
def test_bad_input_is_named(small, frames, xys, match):
    model, params, _, _ = small
    with pytest.raises(InputError, match=match):
        model.forward(params, jnp.asarray(frames), jnp.asarray(xys, jnp.float32), iters=1)


def test_points_outside_the_frame_are_allowed_when_not_swapped(small):
    model, params, frames, _ = small
    # Outside as (x, y) and outside as (y, x) too: not a swap, PIPs tracks it.
    out = model.forward(params, frames, jnp.array([[[-5.0, 40.0]]]), iters=1)
    assert np.all(np.isfinite(np.asarray(out.coords)))


def test_bad_config_values():
    with pytest.raises(InputError, match="ModelConfig.S must be at least 2"):
        ModelConfig(S=1)
    with pytest.raises(InputError, match="stride must be a positive int"):
        ModelConfig(stride=0)
    with pytest.raises(InputError, match="unknown ModelConfig fields"):
        ModelConfig.from_dict({"S": 8, "depth": 3})
    assert ModelConfig.from_json(SMALL.to_json()) == SMALL


def test_dense_layers_flatten_leading_axes_with_the_same_products_and_gradients():
    # The mixer's dense layers reshape (..., K) inputs to 2-D before the product (a
    # faster kernel gradient on CPU); outputs and gradients are those of x @ W + b.
    from pips_jax.model.mixer import dense

    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 3, 5)).astype(np.float32)
    g = rng.normal(size=(2, 3, 4)).astype(np.float32)
    layer = dense(4)
    params = layer.init(jax.random.key(0), jnp.asarray(x))
    kernel = np.asarray(params["params"]["kernel"], np.float64)
    bias = np.asarray(params["params"]["bias"], np.float64)
    out = np.asarray(layer.apply(params, jnp.asarray(x)))
    np.testing.assert_allclose(out, x @ kernel + bias, rtol=1e-5, atol=1e-6)
    grads = jax.grad(lambda p: jnp.sum(layer.apply(p, jnp.asarray(x)) * g))(params)["params"]
    np.testing.assert_allclose(
        np.asarray(grads["kernel"]), np.einsum("abk,abf->kf", x, g), rtol=1e-5, atol=1e-5
    )
    np.testing.assert_allclose(np.asarray(grads["bias"]), g.sum(axis=(0, 1)), rtol=1e-5)
    # bfloat16 layers round inputs and weights, accumulate and return float32.
    low = dense(4, dtype=jnp.bfloat16).apply(params, jnp.asarray(x))
    assert low.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(low), out, atol=0.1)
