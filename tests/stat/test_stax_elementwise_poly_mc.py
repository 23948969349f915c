"""Monomial, RectifiedMonomial, Hermite, Polynomial, ExpNormalized and Gabor kernels
against Monte Carlo of their finite twins (the library's own ``apply_fn``)."""

import pytest
from _nets import conv_mc_z, fc_inputs

from ntk_bayes import stax

LAYERS = {
    "monomial3": lambda: stax.Monomial(3),
    "rectified0": lambda: stax.RectifiedMonomial(0),
    "rectified2": lambda: stax.RectifiedMonomial(2),
    # No LayerNorm before it: variances far from 1, the general form beyond neural-tangents.
    "hermite3": lambda: stax.Hermite(3),
    "polynomial": lambda: stax.Polynomial([0.3, -1.0, 0.5, 0.2]),
    "gabor": stax.Gabor,
}


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_matches_monte_carlo(name):
    net = stax.serial(
        stax.Dense(64, W_std=1.1, b_std=0.2), LAYERS[name](), stax.Dense(4, W_std=1.3, b_std=0.1)
    )
    # One nonlinearity after the first affine layer: exactly Gaussian pre-activations, so
    # the Monte Carlo mean is unbiased at width 64 and the tolerance is two-sided.
    z, *_ = conv_mc_z(net, fc_inputs(3), fc_inputs(2, seed=1))
    # 5 standard errors (t, 63 dof) anywhere in 12 entries x 2 kernels: false alarm < 1.2e-4
    assert max(z.values()) < 5.0, z


def test_exp_normalized_matches_monte_carlo():
    """The finite twin normalises by the root mean square over channels, which equals the
    variance q only as the width grows (bias O(1/width)): width 1024 puts that bias far
    below the Monte Carlo error of 64 networks."""
    net = stax.serial(
        stax.Dense(1024, W_std=1.1, b_std=0.2),
        stax.ExpNormalized(gamma=0.5, shift=0.3),
        stax.Dense(4, W_std=1.3, b_std=0.1),
    )
    z, *_ = conv_mc_z(net, fc_inputs(3), fc_inputs(2, seed=1))
    # 5 standard errors (t, 63 dof) anywhere in 12 entries x 2 kernels: false alarm < 1.2e-4
    assert max(z.values()) < 5.0, z
