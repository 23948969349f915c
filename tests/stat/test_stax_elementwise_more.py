"""neural-tangents 0.6.5's further nonlinearities (Exp, Gaussian, Sigmoid_like): closed
forms against 2-D Gauss–Hermite quadrature of the same function."""

import jax.numpy as jnp
import numpy as np
import pytest
from _nets import fc_inputs

from ntk_bayes import stax

LAYERS = {
    "exp": (stax.Exp(a=0.7, b=0.5), lambda x: 0.7 * jnp.exp(0.5 * x)),
    "gaussian": (stax.Gaussian(a=1.2, b=-0.6), lambda x: 1.2 * jnp.exp(-0.6 * x * x)),
    "sigmoid_like": (
        stax.Sigmoid_like(),
        lambda x: 0.5 * jax_erf(x / 2.4020563531719796) + 0.5,
    ),
}


def jax_erf(x):
    from jax.scipy.special import erf

    return erf(x)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_closed_form_matches_quadrature(name, x64):
    layer, fn = LAYERS[name]
    numeric = stax.ElementwiseNumerical(fn, deg=100)
    x1, x2 = fc_inputs(4, seed=4), fc_inputs(3, seed=5)

    def kern(phi, b):
        net = stax.serial(stax.Dense(1, W_std=1.2, b_std=0.1), phi, stax.Dense(1, b_std=0.1))
        return net.kernel_fn(x1, b, ("nngp", "ntk"))

    # deg 100 converges to ~1e-8 here (Gaussian: 1e-15 off the diagonal, 7e-9 on it).
    rtol = 5e-8 if x64 else 2e-5
    for b in (x2, None):
        a, n = kern(layer, b), kern(numeric, b)
        for g in ("nngp", "ntk"):
            np.testing.assert_allclose(getattr(a, g), getattr(n, g), rtol=rtol, atol=rtol)
