"""Hierarchical NNGP model: NUTS recovers simulated group and shared hyperparameters."""

import jax
import pytest
from _examples import load_example
from _recovery import assert_recovered
from _stats import binomial_upper

hierarchical = load_example("hierarchical")


@pytest.mark.seconds(260)  # at load 5-8, 2026-12-01
def test_nuts_recovers_group_and_shared_hyperparameters():
    key = jax.random.PRNGKey(0)
    X, Y, w_true = hierarchical.simulate(key, groups=4, points=30, outputs=4)
    mcmc = hierarchical.fit(
        X, Y, jax.random.fold_in(key, 1), 500, 500, chains=2, progress_bar=False
    )
    # A working sampler diverges on at most 1% of transitions; 2 x 500 draws (taken as
    # independent) then give at most Binomial(1000, 0.01) divergences: false alarm < 1e-3.
    divergences = int(mcmc.get_extra_fields()["diverging"].sum())
    assert divergences <= binomial_upper(1000, 0.01, 1e-3), divergences
    s = mcmc.get_samples(group_by_chain=True)
    truth = dict(hierarchical.TRUTH)
    checks = [(k, truth[k], s[k]) for k in ("W_std_mu", "W_std_tau", "b_std", "noise")]
    checks += [(f"W_std[{g}]", float(w_true[g]), s["W_std"][..., g]) for g in range(4)]
    for name, t, draws in checks:
        assert_recovered(name, t, draws)
