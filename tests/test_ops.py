"""Pure ops on tiny arrays, against hand-worked values."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pips_jax.ops.embedding import sincos_embedding_3d, sincos_frequencies, torch_linspace
from pips_jax.ops.resize import avg_pool_2x2, resize_bilinear_align_corners
from pips_jax.ops.sampling import sample_clamped, sample_zeros

RNG = np.random.default_rng(0)
FMAP = RNG.normal(size=(5, 7, 3)).astype(np.float32)  # H=5, W=7, C=3


@pytest.mark.parametrize("sample", [sample_zeros, sample_clamped])
def test_integer_coordinates_return_pixels_exactly(sample):
    ys, xs = np.meshgrid(np.arange(5), np.arange(7), indexing="ij")
    xy = np.stack([xs, ys], -1).astype(np.float32)  # (x, y) order
    np.testing.assert_array_equal(np.asarray(sample(jnp.asarray(FMAP), jnp.asarray(xy))), FMAP)


@pytest.mark.parametrize("sample", [sample_zeros, sample_clamped])
def test_half_pixel_is_the_mean_of_four(sample):
    # (x, y) = (2.5, 1.5) lies between columns 2, 3 and rows 1, 2.
    got = np.asarray(sample(jnp.asarray(FMAP), jnp.array([2.5, 1.5])))
    expected = FMAP[1:3, 2:4].mean(axis=(0, 1))
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_x_indexes_columns():
    fmap = np.zeros((2, 3, 1), np.float32)
    fmap[0, 2, 0] = 1.0  # row 0, column 2: (x, y) = (2, 0)
    assert float(sample_zeros(jnp.asarray(fmap), jnp.array([2.0, 0.0]))[0]) == 1.0
    assert float(sample_zeros(jnp.asarray(fmap), jnp.array([0.0, 2.0]))[0]) == 0.0


def test_border_behaviours_differ_as_the_original():
    fmap = jnp.ones((4, 4, 1), jnp.float32)
    # Half a pixel left of the map: zeros padding fades to half...
    assert float(sample_zeros(fmap, jnp.array([-0.5, 1.0]))[0]) == 0.5
    # ...clamped indices with unclamped weights read the border pixel twice.
    assert float(sample_clamped(fmap, jnp.array([-0.5, 1.0]))[0]) == 1.0
    # Far outside: zeros gives 0, clamped extrapolates (weights 1 - fx and fx with
    # both neighbours clamped to the border) and still gives the border value.
    assert float(sample_zeros(fmap, jnp.array([-5.25, 1.0]))[0]) == 0.0
    assert float(sample_clamped(fmap, jnp.array([-5.25, 1.0]))[0]) == 1.0


def test_align_corners_resize_hand_worked():
    # 1-D ramp 0, 10, 20 (W=3) to W=5: sources at 0, 0.5, 1, 1.5, 2.
    x = jnp.asarray(np.array([0.0, 10.0, 20.0], np.float32).reshape(1, 3, 1))
    got = np.asarray(resize_bilinear_align_corners(x, (1, 5)))[0, :, 0]
    np.testing.assert_allclose(got, [0, 5, 10, 15, 20], atol=1e-6)
    # Downsizing 5 -> 3 keeps the corners and the centre.
    y = jnp.asarray(np.arange(5, dtype=np.float32).reshape(5, 1, 1))
    got = np.asarray(resize_bilinear_align_corners(y, (3, 1)))[:, 0, 0]
    np.testing.assert_allclose(got, [0, 2, 4])


def test_align_corners_resize_is_separable_bilinear():
    img = RNG.normal(size=(2, 4, 6, 2)).astype(np.float32)
    got = np.asarray(resize_bilinear_align_corners(jnp.asarray(img), (7, 11)))
    # Output (i, j) reads input (i * 3/6, j * 5/10) bilinearly.
    i, j = 5, 7
    y, x = i * 3 / 6, j * 5 / 10
    y0, x0 = int(y), int(x)
    fy, fx = y - y0, x - x0
    expected = (
        (1 - fy) * (1 - fx) * img[:, y0, x0]
        + (1 - fy) * fx * img[:, y0, x0 + 1]
        + fy * (1 - fx) * img[:, y0 + 1, x0]
        + fy * fx * img[:, y0 + 1, x0 + 1]
    )
    np.testing.assert_allclose(got[:, i, j], expected, rtol=1e-5)


def test_align_corners_resize_gradient_hand_worked():
    # W=3 -> W=5 reads 0, 0.5, 1, 1.5, 2: input 0 gets g0 + g1/2, input 1 gets
    # g1/2 + g2 + g3/2, input 2 gets g3/2 + g4.
    g = jnp.asarray(np.array([1.0, 2.0, 4.0, 8.0, 16.0], np.float32))

    def loss(x):
        return jnp.sum(resize_bilinear_align_corners(x, (1, 5))[0, :, 0] * g)

    got = np.asarray(jax.grad(loss)(jnp.zeros((1, 3, 1))))[0, :, 0]
    np.testing.assert_allclose(got, [1 + 1, 1 + 4 + 4, 4 + 16])
    # Downsizing 5 -> 3 reads rows 0, 2, 4 only: the others get no gradient.
    rows = jax.grad(lambda y: jnp.sum(resize_bilinear_align_corners(y, (3, 2)) * 3.0))(
        jnp.zeros((2, 5, 2, 1))
    )
    np.testing.assert_array_equal(np.asarray(rows)[0, :, 0, 0], [3, 0, 3, 0, 3])


def test_align_corners_resize_gradient_is_the_transposed_interpolation():
    # <resize(x), g> = <x, resize^T(g)> for the separable bilinear weights written out
    # with numpy, for a batch and channels (2 x 4 x 6 x 2 -> 7 x 11).
    img = RNG.normal(size=(2, 4, 6, 2)).astype(np.float32)
    g = RNG.normal(size=(2, 7, 11, 2)).astype(np.float32)

    def weights(n_in, n_out):
        m = np.zeros((n_out, n_in))
        for i in range(n_out):
            src = i * (n_in - 1) / (n_out - 1)
            lo = min(int(src), n_in - 1)
            hi = min(lo + 1, n_in - 1)
            m[i, lo] += 1 - (src - lo)
            m[i, hi] += src - lo
        return m

    expected = np.einsum("bhwc,hi,wj->bijc", g, weights(4, 7), weights(6, 11))
    got = jax.grad(lambda x: jnp.sum(resize_bilinear_align_corners(x, (7, 11)) * g))(
        jnp.asarray(img)
    )
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5, atol=1e-5)


def test_avg_pool_floors_odd_sizes():
    x = np.arange(5 * 3, dtype=np.float32).reshape(1, 5, 3, 1)
    got = np.asarray(avg_pool_2x2(jnp.asarray(x)))
    assert got.shape == (1, 2, 1, 1)
    # Top-left 2x2 block of rows [0 1 2], [3 4 5]: (0 + 1 + 3 + 4) / 4.
    assert got[0, 0, 0, 0] == 2.0
    assert got[0, 1, 0, 0] == (6 + 7 + 9 + 10) / 4


def test_embedding_frequencies_of_the_original():
    f = sincos_frequencies(64)
    assert f.shape == (32,)
    assert f[0] == 0.0 and f[1] == 31.25 and f[-1] == 968.75


def test_embedding_layout():
    xyz = jnp.array([[0.1, -0.2, 0.5]], jnp.float32)
    e = np.asarray(sincos_embedding_3d(xyz, 4))[0]  # frequencies 0 and 500
    assert e.shape == (15,)
    x, y, t = 0.1, -0.2, 0.5
    expected = [0.0, 1.0, np.sin(500 * x), np.cos(500 * x)]
    expected += [0.0, 1.0, np.sin(500 * y), np.cos(500 * y)]
    expected += [0.0, 1.0, np.sin(500 * t), np.cos(500 * t)]
    expected += [x, y, t]
    np.testing.assert_allclose(e, expected, atol=2e-5)


def test_torch_linspace_counts_down_in_the_second_half():
    t = torch_linspace(0, 8, 8)
    step = np.float32(8) / np.float32(7)
    assert t[0] == 0 and t[-1] == 8
    assert t[3] == np.float32(3) * step
    assert t[4] == np.float32(8) - step * np.float32(3)
    # NumPy's linspace rounds 4 * 8/7 differently in the last bit.
    assert t[4] != np.float32(4) * step
