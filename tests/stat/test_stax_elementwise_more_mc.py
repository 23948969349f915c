"""Exp, Gaussian and Sigmoid_like kernels against Monte Carlo of their finite twins."""

import pytest
from _nets import conv_mc_z, fc_inputs

from ntk_bayes import stax

LAYERS = {
    "exp": lambda: stax.Exp(a=0.7, b=0.5),
    "gaussian": lambda: stax.Gaussian(a=1.2, b=-0.6),
    "sigmoid_like": stax.Sigmoid_like,
}


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_matches_monte_carlo(name):
    net = stax.serial(
        stax.Dense(64, W_std=1.1, b_std=0.2), LAYERS[name](), stax.Dense(4, W_std=1.3, b_std=0.1)
    )
    # One nonlinearity after the first affine layer: exactly Gaussian pre-activations, so
    # the Monte Carlo mean is unbiased at width 64 and the tolerance is two-sided.
    z, *_ = conv_mc_z(net, fc_inputs(3), fc_inputs(2, seed=1))
    assert max(z.values()) < 4.5, z  # 4.5 sd over 12 entries x 2 kernels: false alarm < 1e-4
