"""Hierarchical NNGP model (examples/hierarchical.py): NUTS recovers simulated truth."""

import importlib.util
import pathlib

import jax
import numpyro
import pytest
from _recovery import assert_recovered

spec = importlib.util.spec_from_file_location(
    "hierarchical", pathlib.Path(__file__).parents[1] / "examples" / "hierarchical.py"
)
hierarchical = importlib.util.module_from_spec(spec)
spec.loader.exec_module(hierarchical)


def test_model_traces_with_group_sites():
    X, Y, _ = hierarchical.simulate(jax.random.PRNGKey(0), groups=2, points=5, outputs=2)
    tr = numpyro.handlers.trace(numpyro.handlers.seed(hierarchical.model, 0)).get_trace(X, Y)
    assert {"W_std_mu", "W_std_tau", "W_std_z", "W_std", "b_std", "noise", "y_0", "y_1"} <= set(tr)
    assert tr["W_std"]["value"].shape == (2,)


@pytest.mark.slow
def test_nuts_recovers_group_and_shared_hyperparameters():
    key = jax.random.PRNGKey(0)
    X, Y, w_true = hierarchical.simulate(key, groups=4, points=30, outputs=4)
    mcmc = hierarchical.fit(
        X, Y, jax.random.fold_in(key, 1), 500, 500, chains=2, progress_bar=False
    )
    assert int(mcmc.get_extra_fields()["diverging"].sum()) == 0
    s = mcmc.get_samples(group_by_chain=True)
    truth = dict(hierarchical.TRUTH)
    checks = [(k, truth[k], s[k]) for k in ("W_std_mu", "W_std_tau", "b_std", "noise")]
    checks += [(f"W_std[{g}]", float(w_true[g]), s["W_std"][..., g]) for g in range(4)]
    for name, t, draws in checks:
        assert_recovered(name, t, draws)
