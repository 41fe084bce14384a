"""Correlation windows computed only where sampled equal the full-volume original."""

import jax.numpy as jnp
import numpy as np
import pytest

from pips_jax.model.correlation import (
    build_pyramid,
    correlation_volumes,
    sample_correlation_volumes,
    sample_correlations,
    window_offsets,
)


def _setup(seed=0, b=1, s=2, h=12, w=20, c=8, n=9):
    rng = np.random.default_rng(seed)
    fmaps = jnp.asarray(rng.normal(size=(b, s, h, w, c)).astype(np.float32))
    feats = jnp.asarray(rng.normal(size=(b, s, n, c)).astype(np.float32))
    xy = rng.uniform([-3, -3], [w + 2, h + 2], size=(b, s, n, 2)).astype(np.float32)
    xy[0, 0, 0] = [0.0, 0.0]  # corner
    xy[0, 0, 1] = [w - 1, h - 1]  # opposite corner, integer
    xy[0, 0, 2] = [-40.0, 5.5]  # window entirely outside the map
    return fmaps, feats, jnp.asarray(xy)


@pytest.mark.parametrize("radius", [0, 1, 3])
def test_windows_equal_full_volumes(radius):
    fmaps, feats, xy = _setup()
    pyramid = build_pyramid(fmaps, 3)
    fast = np.asarray(sample_correlations(pyramid, feats, xy, radius))
    naive = np.asarray(sample_correlation_volumes(correlation_volumes(pyramid, feats), xy, radius))
    assert fast.shape == (1, 2, 9, 3 * (2 * radius + 1) ** 2)
    np.testing.assert_allclose(fast, naive, rtol=1e-5, atol=1e-5)
    # The outside window is zero on every level.
    assert np.all(fast[0, 0, 2] == 0)


def test_window_order_is_x_major():
    # The original adds its (dy, dx) meshgrid to (x, y): the major index moves x.
    off = window_offsets(1)
    assert off.tolist() == [
        [-1, -1], [-1, 0], [-1, 1],
        [0, -1], [0, 0], [0, 1],
        [1, -1], [1, 0], [1, 1],
    ]  # fmt: skip
    # A map that is 1 only at (x, y) = (4, 3); point feature 1; C = 1.
    fmap = np.zeros((1, 1, 6, 8, 1), np.float32)
    fmap[0, 0, 3, 4, 0] = 1.0
    feats = jnp.ones((1, 1, 1, 1))
    # Centre at (3, 3): the hot pixel is at dx = +1, dy = 0 -> index (1 + 1) * 3 + 1 = 7.
    out = np.asarray(
        sample_correlations([jnp.asarray(fmap)], feats, jnp.array([[[[3.0, 3.0]]]]), 1)
    )
    assert out[0, 0, 0].tolist() == [0, 0, 0, 0, 0, 0, 0, 1, 0]


def test_levels_sample_at_scaled_coordinates():
    fmaps, feats, xy = _setup(c=4)
    pyramid = build_pyramid(fmaps, 2)
    assert pyramid[1].shape == (1, 2, 6, 10, 4)
    out = np.asarray(sample_correlations(pyramid, feats, xy, 0))
    # Radius 0: level 1's single tap is the bilinear sample at xy / 2.
    from pips_jax.ops.sampling import sample_zeros

    level1 = np.asarray(sample_zeros(pyramid[1][0, 1], xy[0, 1] / 2))
    expected = (level1 * np.asarray(feats[0, 1])).sum(-1) / 2.0  # / sqrt(C=4)
    np.testing.assert_allclose(out[0, 1, :, 1], expected, rtol=1e-5, atol=1e-6)
