"""Layer norm, residual sums and 1-D convolutions against Monte Carlo (long runs)."""

import pytest
from _nets import conv_mc_z, conv_net, images

from ntk_bayes import stax


@pytest.mark.parametrize("axis", [-1, (1, 2, 3)])
def test_layer_norm_matches_monte_carlo(axis):
    # LayerNorm divides by a finite-width variance estimate: a bias of O(1/width).
    net = stax.serial(
        conv_net(256), stax.LayerNorm(axis=axis), stax.Relu(), stax.Flatten(), stax.Dense(8)
    )
    z, *_ = conv_mc_z(net, images(3), images(2, seed=1))
    assert max(z.values()) < 4.5, z


def test_residual_sum_and_conv1d_match_monte_carlo():
    net = stax.serial(
        conv_net(64, filter_shape=(3,)),
        stax.FanOut(2),
        stax.parallel(stax.serial(stax.Relu(), conv_net(64, filter_shape=(3,))), stax.Identity()),
        stax.FanInSum(),
        stax.GlobalAvgPool(),
        stax.Dense(8),
    )
    z, *_ = conv_mc_z(net, images(3, (5, 2)), images(2, (5, 2), seed=1))
    assert max(z.values()) < 4.5, z
