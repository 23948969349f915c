"""Hierarchical NNGP model (examples/hierarchical.py): NUTS recovers simulated truth."""

import jax
import numpyro
from _examples import load_example

hierarchical = load_example("hierarchical")


def test_model_traces_with_group_sites():
    X, Y, _ = hierarchical.simulate(jax.random.PRNGKey(0), groups=2, points=5, outputs=2)
    tr = numpyro.handlers.trace(numpyro.handlers.seed(hierarchical.model, 0)).get_trace(X, Y)
    assert {"W_std_mu", "W_std_tau", "W_std_z", "W_std", "b_std", "noise", "y"} <= set(tr)
    assert tr["W_std"]["value"].shape == (2,)
    assert tr["y"]["fn"].batch_shape == (2, 2)  # (outputs, groups): one batched GP
