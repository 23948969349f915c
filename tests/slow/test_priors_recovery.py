"""Hyperparameter recovery by NUTS from data simulated under the prior."""

import jax
import pytest
from _nets import hyper_model, relu_net
from _recovery import assert_recovered
from _stats import binomial_upper
from numpyro.infer import MCMC, NUTS

import ntk_bayes as nb


def _simulate(key, w, b, noise, n=40, k=6):
    X = jax.random.uniform(key, (n, 2), minval=-2, maxval=2)
    gp = nb.GaussianProcess(relu_net(w=w, b=b), X, noise=noise, num_outputs=k)
    return X, gp.sample(jax.random.fold_in(key, 1))


@pytest.mark.seconds(150)  # 146 s per truth at load 5-8, 2026-12-01
@pytest.mark.parametrize("truth", [(1.2, 0.3, 0.05), (1.6, 0.1, 0.2), (2.0, 0.5, 0.1)])
def test_hyperparameter_recovery_from_prior_simulations(truth):
    # An independent dataset per truth (one key for all made their errors alike).
    X, Y = _simulate(jax.random.fold_in(jax.random.PRNGKey(7), int(1000 * truth[0])), *truth)
    mcmc = MCMC(
        NUTS(hyper_model),
        num_warmup=300,
        num_samples=400,
        num_chains=2,
        progress_bar=False,
        chain_method="sequential",
    )
    mcmc.run(jax.random.PRNGKey(1), X, Y, num_outputs=Y.shape[0])
    s = mcmc.get_samples(group_by_chain=True)
    # A working sampler diverges on at most 1% of transitions; 2 x 400 draws (taken as
    # independent) then give at most Binomial(800, 0.01) divergences: false alarm < 1e-3.
    divergences = int(mcmc.get_extra_fields()["diverging"].sum())
    assert divergences <= binomial_upper(800, 0.01, 1e-3), divergences
    for name, t in zip(("W_std", "b_std", "noise"), truth, strict=True):
        assert_recovered(name, t, s[name])
