"""Analytic GD dynamics of the infinite ensemble against trained finite networks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntk_bayes import stax
from ntk_bayes.theory import CenteredApply, dynamics_comparison, plot_dynamics, scaled_mlp
from ntk_bayes.theory._dynamics import _discrete_gd_mean


@pytest.fixture(scope="module")
def comparison():
    x = jax.random.normal(jax.random.key(1), (10, 3))
    y = jnp.sin(2 * x[:, :1])
    xt = jax.random.normal(jax.random.key(2), (6, 3))
    return dynamics_comparison(
        lambda n: scaled_mlp(n, 2, stax.Erf(), W_std=1.5, b_std=0.1).lazy_net,
        x,
        y,
        xt,
        [64, 1024],
        steps=[0, 10, 40, 160],
        key=jax.random.key(0),
        n_nets=2,
    )


def test_centered_networks_track_the_analytic_mean(comparison):
    r = comparison
    assert r.analytic_test.shape == (4, 6, 1) and r.network_test.shape == (2, 4, 6, 1)
    err = r.error("test")
    # At t = 0 the centred networks and the ensemble mean are both exactly zero.
    np.testing.assert_allclose(err[:, 0], 0.0, atol=1e-6)
    np.testing.assert_allclose(r.analytic_test[0], 0.0, atol=1e-6)
    # The gap shrinks with width (O(n^{-1/2})) and is small for the wide network.
    assert err[1, 1:].max() < 0.5 * err[0, 1:].max()
    assert err[1, 1:].max() < 0.1
    assert r.error("train")[1, 1:].max() < 0.1
    # Training really moved the predictions: the analytic train mean approaches y.
    y_rms = np.sqrt(np.mean(r.y_train**2))
    assert np.sqrt(np.mean((r.analytic_train[-1] - r.y_train) ** 2)) < 0.5 * y_rms
    # At 5% of the stable rate, discrete GD is close to the gradient flow μ_t describes.
    assert r.discretization_gap[0] == 0 and r.discretization_gap.max() < 0.02
    assert r.fit().slope < 0
    assert plot_dynamics(r).axes


def test_discrete_gd_mean_matches_matrix_powers():
    rng = np.random.default_rng(0)
    A = rng.normal(size=(6, 6))
    K = A @ A.T + 0.1 * np.eye(6)
    Kt = rng.normal(size=(3, 6))
    y = rng.normal(size=(6, 2))
    lr = 1.5 * y.size / np.linalg.eigvalsh(K)[-1]
    got = _discrete_gd_mean(K, Kt, y, lr, [0, 1, 7])
    for i, k in enumerate([0, 1, 7]):
        step = np.linalg.matrix_power(np.eye(6) - lr * K / y.size, k)
        want = Kt @ np.linalg.solve(K, (np.eye(6) - step) @ y)
        np.testing.assert_allclose(got[i], want, rtol=1e-10, atol=1e-12)


def test_centered_apply_is_zero_at_init():
    net = scaled_mlp(16, 1).net
    x = jnp.ones((3, 2))
    _, params = net.init_fn(jax.random.key(0), x.shape)
    np.testing.assert_array_equal(CenteredApply(net.apply_fn, params)(params, x), 0.0)


def test_dynamics_comparison_validates(comparison):
    x = jnp.ones((4, 2))
    net_fn = lambda n: scaled_mlp(n, 1).lazy_net
    with pytest.raises(ValueError, match="steps"):
        dynamics_comparison(net_fn, x, x[:, :1], x, [8], steps=[-1], key=jax.random.key(0))
    with pytest.raises(ValueError, match="y_train"):
        dynamics_comparison(net_fn, x, x[:3, :1], x, [8], steps=[1], key=jax.random.key(0))
    with pytest.raises(ValueError, match="split"):
        comparison.error("validation")
