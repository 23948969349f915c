"""Exact GP posterior draws against the analytic posterior moments (Monte Carlo; moved from
tests/unit/test_gp_exact.py to keep the edit-test loop under two minutes)."""

import jax
import numpy as np
from _nets import relu_net, toy_data

from ntk_bayes import gp


def test_joint_samples_have_the_posterior_moments(dtype):
    x, y, xs, _ = toy_data(n=15)
    xs = xs[:4]
    model = gp.ExactGP(relu_net(depth=1), x, y, 0.05)
    mean, cov = model.predict(xs, full_cov=True)
    s = 20_000
    draws = np.asarray(model.sample(jax.random.PRNGKey(0), xs, n_samples=s), np.float64)
    assert draws.shape == (s, 4)
    sd = np.sqrt(np.diag(cov))
    # mean: 5 standard errors; covariance: 5 standard errors of a sample covariance
    # (normal approximation): 4 + 16 entries x 5.7e-7 two-sided, false alarm < 2e-5
    assert np.all(np.abs(draws.mean(0) - mean) <= 5 * sd / np.sqrt(s))
    emp = np.cov(draws.T)
    se = np.sqrt((np.outer(sd, sd) ** 2 + np.asarray(cov) ** 2) / s)
    assert np.all(np.abs(emp - cov) <= 5 * se + 1e-6)
    multi = gp.ExactGP(relu_net(depth=1), x, np.stack([y, -y], 1), 0.05)
    assert multi.sample(jax.random.PRNGKey(1), xs, n_samples=3).shape == (3, 4, 2)
