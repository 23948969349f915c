"""Finite BNN priors against the NNGP: wide-network Monte Carlo covariances."""

import jax
import numpy as np
import pytest
from _nets import bnn_mlp

from ntk_bayes import bnn, stax


def _z_scores(f, K):
    """(empirical second moment - K) / its Monte Carlo standard error, upper triangle."""
    f = np.asarray(f, np.float64)
    prods = f[:, :, None] * f[:, None, :]
    z = (prods.mean(0) - K) / (prods.std(0) / np.sqrt(len(f)))
    return z[np.triu_indices(len(K))]


def test_one_hidden_layer_prior_covariance_is_nngp_at_any_width():
    """With one hidden layer E[f f'] = K_nngp exactly, even at width 3."""
    net = bnn_mlp(512, depth=1)
    X = np.random.default_rng(0).normal(size=(4, 3))
    K = np.asarray(net.kernel_fn(X, X, "nngp"), np.float64)
    f = bnn.BNN(net, width=3).sample_prior(jax.random.PRNGKey(0), X, 4000)[..., 0]
    z = _z_scores(f, K)
    # 10 entries at |z| < 4 (two-sided 6.3e-5 each): false alarm < 1e-3
    assert np.max(np.abs(z)) < 4.0, z


@pytest.mark.parametrize("depth, act", [(2, stax.Relu), (3, stax.Erf)])
def test_wide_prior_covariance_matches_nngp(depth, act):
    """Two-sided: the discrepancy is within Monte Carlo error, and a 25% wrong kernel is not."""
    net = bnn_mlp(512, depth=depth, act=act)
    X = np.random.default_rng(1).normal(size=(4, 3))
    K = np.asarray(net.kernel_fn(X, X, "nngp"), np.float64)
    f = bnn.BNN(net, width=64).sample_prior(jax.random.PRNGKey(1), X, 2000)[..., 0]
    z = _z_scores(f, K)
    # 10 entries at |z| < 4 (two-sided 6.3e-5 each, plus an O(1/width) bias of ~0.5 sd):
    # false alarm < 1e-2
    assert np.max(np.abs(z)) < 4.0, z
    # mean of 10 z² below 0.05: P(χ²₁₀ < 0.5) < 1e-6 (were the z independent)
    assert np.mean(z**2) > 0.05  # the standard errors are not absurdly loose
    assert np.max(np.abs(_z_scores(f, 1.25 * K))) > 4.0


def test_branching_prior_matches_nngp():
    net = stax.serial(
        stax.Dense(512, W_std=1.2, b_std=0.2),
        stax.FanOut(2),
        stax.parallel(
            stax.serial(stax.Relu(), stax.Dense(512, W_std=1.3)),
            stax.serial(stax.Erf(), stax.Dense(512, W_std=0.9, b_std=0.3)),
        ),
        stax.FanInConcat(),
        stax.Relu(),
        stax.Dense(1, W_std=1.4, b_std=0.1),
    )
    X = np.random.default_rng(2).normal(size=(3, 2))
    K = np.asarray(net.kernel_fn(X, X, "nngp"), np.float64)
    f = bnn.BNN(net, width=64).sample_prior(jax.random.PRNGKey(2), X, 2000)[..., 0]
    # 6 entries at |z| < 4: false alarm < 1e-3 (plus the O(1/width) bias)
    assert np.max(np.abs(_z_scores(f, K))) < 4.0


def test_conv_prior_matches_nngp():
    net = stax.serial(
        stax.Conv(512, (3, 3), padding="SAME", W_std=1.4, b_std=0.1),
        stax.Relu(),
        stax.Flatten(),
        stax.Dense(1, W_std=1.2, b_std=0.1),
    )
    X = np.random.default_rng(3).normal(size=(3, 4, 4, 1))
    K = np.asarray(net.kernel_fn(X, X, "nngp"), np.float64)
    f = bnn.BNN(net, width=4).sample_prior(jax.random.PRNGKey(3), X, 3000)[..., 0]
    # one hidden layer: exact at any width; 6 entries at |z| < 4: false alarm < 1e-3
    assert np.max(np.abs(_z_scores(f, K))) < 4.0
