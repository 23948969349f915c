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
