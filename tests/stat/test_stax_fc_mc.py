"""Fully connected kernels against Monte Carlo estimates of wide finite networks."""

import jax
import numpy as np
import pytest
from _mc import mc_z_scores
from _nets import NONLINEARITIES, fc_inputs

import ntk_bayes as nb
from ntk_bayes import stax

KEY = jax.random.PRNGKey(0)


def _assert_mc_agrees(net, x1, x2, n_samples=256, z_max=4.5):
    """Analytic kernel within z_max Monte Carlo standard errors of the estimate.

    One-hidden-layer networks have exactly Gaussian pre-activations, so the Monte Carlo
    mean is unbiased at any width and the tolerance is purely statistical.
    """
    z, k, mean, _ = mc_z_scores(net, x1, x2, n_samples, samples_per_step=32, key=KEY)
    for name in ("nngp", "ntk"):
        assert z[name].max() < z_max, (name, z[name].max(), getattr(k, name), getattr(mean, name))


@pytest.mark.parametrize("name", sorted(NONLINEARITIES))
def test_nonlinearity_matches_monte_carlo(name):
    phi = NONLINEARITIES[name]
    net = stax.serial(
        stax.Dense(256, W_std=1.3, b_std=0.3), phi, stax.Dense(8, W_std=1.1, b_std=0.2)
    )
    _assert_mc_agrees(net, fc_inputs(4), fc_inputs(3, seed=1))


@pytest.mark.parametrize("parameterization", ["ntk", "standard"])
def test_branching_and_parameterizations_match_monte_carlo(parameterization):
    dense = lambda n, w: stax.Dense(n, W_std=w, b_std=0.2, parameterization=parameterization)
    net = stax.serial(
        dense(128, 1.2),
        stax.FanOut(3),
        stax.parallel(stax.serial(stax.Relu(), dense(128, 1.4)), stax.Identity(), stax.Erf()),
        stax.FanInConcat(),
        stax.FanOut(2),
        # FanInSum adds kernels: valid when at most one branch lacks fresh weights.
        stax.parallel(stax.Identity(), stax.serial(dense(256, 0.8), stax.Gelu(), dense(384, 1.1))),
        stax.FanInSum(),
        dense(8, 1.0),
    )
    # The concat branch mixes a second hidden layer; compare at a width where the O(1/n)
    # finite-width bias is far below the Monte Carlo error.
    k = net.kernel_fn(fc_inputs(3), None, ("nngp", "ntk"))
    mc = nb.monte_carlo_kernel_fn(net.init_fn, net.apply_fn, KEY, 256, samples_per_step=32)
    mean, se = mc(fc_inputs(3), None, ("nngp", "ntk"), with_stderr=True)
    for name in ("nngp", "ntk"):
        a, m, s = (np.asarray(getattr(o, name), np.float64) for o in (k, mean, se))
        assert np.all(np.abs(m - a) < 4.5 * s + 0.02 * np.abs(a)), name
