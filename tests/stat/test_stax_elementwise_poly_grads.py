"""Polynomial-family and normalised elementwise layers: gradients stay finite at coincident
inputs (a grid over layers and dtypes; moved from tests/unit to keep the edit-test loop
under two minutes)."""

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest
from _nt_poly import reference

from ntk_bayes import stax


@pytest.mark.parametrize(
    "layer",
    [stax.RectifiedMonomial(2), stax.RectifiedMonomial(0), stax.ExpNormalized(), stax.Gabor()],
    ids=["rectified2", "rectified0", "expnorm", "gabor"],
)
def test_grad_finite_at_coincident_inputs(layer, dtype):
    x1 = np.asarray(reference()[1]["gabor/fc/x1"], dtype)

    def loss(w):
        net = stax.serial(stax.Dense(8, W_std=w, b_std=0.1), layer, stax.Dense(1))
        k = net.kernel_fn(x1, None, ("nngp", "ntk"))
        return jnp.sum(k.nngp) + jnp.sum(k.ntk)

    g = jax.grad(loss)(jnp.asarray(1.3, dtype))
    assert np.isfinite(g) and g != 0
