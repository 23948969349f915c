"""Kernel evolution (lazy vs rich) and finite-width corrections against width."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntk_bayes import stax
from ntk_bayes.theory import (
    finite_width_corrections,
    fit_loglog,
    kernel_evolution,
    plot_finite_width,
    plot_kernel_evolution,
    scaled_mlp,
)


@pytest.fixture(scope="module")
def data():
    x = jax.random.normal(jax.random.key(1), (8, 3))
    y = jnp.sin(2 * x[:, :1])
    return x, y


def test_fit_loglog_recovers_power_law():
    x = np.array([10.0, 20.0, 40.0, 80.0])
    fit = fit_loglog(x, 3.0 * x**-0.5)
    assert abs(fit.slope + 0.5) < 1e-12 and abs(fit.stderr) < 1e-10
    np.testing.assert_allclose(fit(x), 3.0 * x**-0.5)
    with pytest.raises(ValueError, match="positive"):
        fit_loglog(x, -x)
    with pytest.raises(ValueError, match="length"):
        fit_loglog(x[:1], x[:1])


def test_finite_width_spread_falls_as_inverse_sqrt_width(data):
    """Cheap version of the slope claim: one hidden layer, widths 64..1024."""
    x, _ = data
    res = finite_width_corrections(
        lambda n: scaled_mlp(n, 1, stax.Relu(), W_std=1.5, b_std=0.1).lazy_net,
        x,
        [64, 256, 1024],
        key=jax.random.key(0),
        n_seeds=12,
    )
    fit = res.fit("spread")
    assert abs(fit.slope + 0.5) < 0.15, fit
    assert abs(res.fit("deviation").slope + 0.5) < 0.15
    # One hidden layer: the empirical NTK is an i.i.d. average, so it is unbiased and the
    # bias of the seed mean is at the Monte Carlo floor (3 sd covers the check).
    assert np.all(res.bias < 3 * res.noise_floor)
    assert res.deviation.shape == (12, 3) and len(res.rows()) == 3
    assert plot_finite_width(res).axes


def test_lazy_kernel_change_falls_with_width_rich_does_not(data):
    x, y = data
    res = kernel_evolution(
        x, y, [32, 128, 512], key=jax.random.key(0), steps=60, n_seeds=1, b_std=0.1
    )
    lazy, rich = res.mean_change("ntk"), res.mean_change("mup")
    assert np.all(np.diff(lazy) < 0)
    # Theory: O(n^{-1/2}) at most (Lee et al. 2019), O(1/n) for MSE (Dyer & Gur-Ari 2020).
    assert res.fit("ntk").slope < -0.4
    assert abs(res.fit("mup").slope) < 0.2
    assert np.all(rich > 3 * lazy) and rich[-1] > 20 * lazy[-1]
    # Both scalings really trained.
    for p in ("ntk", "mup"):
        assert np.all(res.final_loss[p] < 0.5 * res.initial_loss[p])
    rows = res.rows()
    assert {r["parameterization"] for r in rows} == {"ntk", "mup"} and len(rows) == 6
    assert plot_kernel_evolution(res).axes


def test_regime_functions_validate_arguments(data):
    x, y = data
    with pytest.raises(ValueError, match="widths"):
        kernel_evolution(x, y, [], key=jax.random.key(0))
    with pytest.raises(ValueError, match="parameterization"):
        kernel_evolution(x, y, [8], key=jax.random.key(0), parameterizations=("standard",))
    with pytest.raises(ValueError, match="y_train"):
        kernel_evolution(x, y[:, 0], [8], key=jax.random.key(0))
    with pytest.raises(ValueError, match="n_seeds"):
        finite_width_corrections(lambda n: stax.Dense(n), x, [8], key=jax.random.key(0), n_seeds=1)
    with pytest.raises(TypeError, match="stax network"):
        finite_width_corrections(lambda n: n, x, [8, 16], key=jax.random.key(0))
