"""Empirical and Monte Carlo kernels: inputs, and the Monte Carlo standard error."""

import jax
import numpy as np
import pytest

import ntk_bayes as nb
from ntk_bayes import stax

X = jax.random.normal(jax.random.PRNGKey(0), (4, 3))
NET = stax.serial(stax.Dense(16, W_std=1.5, b_std=0.1), stax.Relu(), stax.Dense(1, W_std=1.5))


def test_monte_carlo_stderr_is_accurate_where_the_mean_dwarfs_the_spread():
    """A readout bias of 30 adds 900 to every NTK entry, the same in every network, while
    the rest varies by ~0.1: float32 Σv²/S - mean² cancelled to noise there (stderr 0 on
    some entries and 100x too large on others). The estimate must equal the two-pass
    standard error of the same networks' kernels."""
    net = stax.serial(stax.Dense(64), stax.Relu(), stax.Dense(1, W_std=1.0, b_std=30.0))
    n, key = 32, jax.random.PRNGKey(1)
    mc = nb.monte_carlo_kernel_fn(net.init_fn, net.apply_fn, key, n, samples_per_step=4)
    mean, se = (np.asarray(a, np.float64) for a in mc(X, None, "ntk", with_stderr=True))
    ntk_fn = nb.empirical_ntk_fn(net.apply_fn)
    ks = np.stack(
        [
            np.asarray(ntk_fn(X, None, net.init_fn(k, X.shape)[1]), np.float64)
            for k in jax.random.split(key, n)
        ]
    )
    se_ref = ks.std(0, ddof=1) / np.sqrt(n)
    assert ks.std(0).max() < 1e-3 * ks.mean(0).min()  # the regime of the bug
    np.testing.assert_allclose(mean, ks.mean(0), rtol=1e-5)
    # float32 kernels of size 900 carry ~1e-4 of round-off each: 5% of a spread of ~0.1
    np.testing.assert_allclose(se, se_ref, rtol=0.05)


def test_monte_carlo_stderr_needs_two_networks():
    mc = nb.monte_carlo_kernel_fn(NET.init_fn, NET.apply_fn, jax.random.PRNGKey(0), 1)
    assert mc(X, None, "nngp").shape == (4, 4)
    with pytest.raises(ValueError, match="n_samples` >= 2"):
        mc(X, None, "nngp", with_stderr=True)


@pytest.mark.parametrize("batch_size", [0, -1, 2.5, True])
def test_empirical_ntk_batch_size_is_checked(batch_size):
    with pytest.raises(ValueError, match="`batch_size` must be a positive integer"):
        nb.empirical_ntk_fn(NET.apply_fn, batch_size=batch_size)


def test_empirical_ntk_blocks_and_one_trace_axis():
    _, params = NET.init_fn(jax.random.PRNGKey(1), X.shape)
    full = nb.empirical_ntk_fn(NET.apply_fn)(X, None, params)
    blocked = nb.empirical_ntk_fn(NET.apply_fn, batch_size=np.int64(3))(X, None, params)
    np.testing.assert_allclose(blocked, full, rtol=1e-5)
    # a single axis as an int, as neural-tangents takes it
    one = nb.empirical_ntk_fn(NET.apply_fn, trace_axes=-1)(X, None, params)
    np.testing.assert_allclose(one, full, rtol=1e-6)
    nngp = nb.empirical_nngp_fn(NET.apply_fn, trace_axes=1)(X, None, params)
    assert nngp.shape == (4, 4)
    with pytest.raises(TypeError, match="`trace_axes` must be an int or a tuple of ints"):
        nb.empirical_ntk_fn(NET.apply_fn, trace_axes="last")(X, None, params)


CONV = stax.serial(stax.Conv(4, (2,), padding="SAME"), stax.Relu(), stax.Conv(3, (2,)))


@pytest.mark.parametrize(
    "trace_axes, diagonal_axes, x2_given, take",
    [
        (-1, 1, True, "abii->abi"),  # one axis as an int, as neural-tangents takes it
        ((), (-1,), False, "abijkk->abijk"),
        ((1,), (0,), False, "aajk->ajk"),
        ((), (0, 1), True, "aaiijk->aijk"),
    ],
)
def test_diagonal_axes_are_the_diagonals_of_the_full_kernel(
    trace_axes, diagonal_axes, x2_given, take
):
    """As neural-tangents: an output axis in `diagonal_axes` keeps one index for both
    sides (the batch axis 0: each point with x2's point at its index); the result is
    the diagonal of the full kernel, for the empirical kernels and Monte Carlo (whole
    and in blocks, mirrored below the diagonal when x2 is omitted)."""
    with jax.enable_x64(True):
        r = np.random.default_rng(0)
        # blocks of 2 x 2 points only (one program per estimate; ragged blocks are
        # tested in test_monte_carlo_blocks.py)
        x1 = r.normal(size=(4, 6, 2))
        x2 = r.normal(size=(4 if 0 in np.atleast_1d(diagonal_axes) else 2, 6, 2))
        x2 = x2 if x2_given else None
        _, params = CONV.init_fn(jax.random.PRNGKey(1), x1.shape)
        for make in (nb.empirical_nngp_fn, nb.empirical_ntk_fn):
            full = make(CONV.apply_fn, trace_axes)(x1, x2, params)
            diag = make(CONV.apply_fn, trace_axes, diagonal_axes)(x1, x2, params)
            np.testing.assert_allclose(diag, np.einsum(take, full), rtol=1e-12, atol=1e-14)

        def mc(batch_size, diagonal):
            fn = nb.monte_carlo_kernel_fn(
                CONV.init_fn,
                CONV.apply_fn,
                jax.random.PRNGKey(2),
                2,
                batch_size,
                trace_axes=trace_axes,
                diagonal_axes=diagonal,
            )
            return np.asarray(fn(x1, x2, "ntk"))

        whole = mc(0, diagonal_axes)
        np.testing.assert_allclose(whole, np.einsum(take, mc(0, ())), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(mc(2, diagonal_axes), whole, rtol=1e-12, atol=1e-14)


def test_diagonal_axes_are_checked():
    _, params = CONV.init_fn(jax.random.PRNGKey(1), (5, 6, 2))
    x1, x2 = np.ones((5, 6, 2), np.float32), np.ones((4, 6, 2), np.float32)
    with pytest.raises(ValueError, match="both name output axis 2"):
        nb.empirical_nngp_fn(CONV.apply_fn, (-1,), (2,))(x1, None, params)
    with pytest.raises(ValueError, match="x2 must be omitted or hold as many points"):
        nb.empirical_ntk_fn(CONV.apply_fn, (-1,), (0,))(x1, x2, params)
    with pytest.raises(TypeError, match="`diagonal_axes` must be an int or a tuple"):
        nb.empirical_ntk_fn(CONV.apply_fn, (-1,), "spatial")
    with pytest.raises(ValueError, match="`diagonal_axes`=\\(3,\\) names axis 3"):
        nb.empirical_nngp_fn(CONV.apply_fn, (-1,), (3,))(x1, None, params)
    mc = nb.monte_carlo_kernel_fn(
        CONV.init_fn, CONV.apply_fn, jax.random.PRNGKey(2), 2, 2, diagonal_axes=(0,)
    )
    with pytest.raises(ValueError, match="x2 must be omitted or hold as many points"):
        mc(x1, x2, "ntk")
