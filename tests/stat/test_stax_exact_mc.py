"""Same-point structure against Monte Carlo (issue 15): after Sign, a point's covariance
between two different positions is 1 - 2θ/π of the angle between its pre-activations
there (neural-tangents sets it to 1), while the same position gives exactly 1."""

import numpy as np
from _nets import conv_mc_z, conv_net, images

from ntk_bayes import stax


def test_sign_cross_position_self_covariance_matches_monte_carlo():
    net = stax.serial(
        conv_net(64, filter_shape=(2, 2)),
        stax.Sign(),
        stax.GlobalAvgPool(),
        stax.Dense(4, W_std=1.2, b_std=0.1),
    )
    x = images(3, (3, 3, 2), seed=4)
    # One nonlinearity after the first affine layer: pre-activations are exactly Gaussian
    # at any width, so the Monte Carlo mean is unbiased and the tolerance two-sided.
    z, k, mean, se = conv_mc_z(net, x, None)
    assert max(z.values()) < 4.5, z  # 4.5 sd over 18 entries: false alarm < 1e-4
    # Power: the self-pairs with every cross-position covariance set to 1 (the
    # neural-tangents value) are rejected by the same estimate.
    wrong = 1.2**2 * 1.0 + 0.1**2
    m, s = np.diag(np.asarray(mean.nngp, np.float64)), np.diag(np.asarray(se.nngp, np.float64))
    assert np.all(np.abs(m - wrong) / s > 10), (m, s)
    assert np.all(np.diag(np.asarray(k.nngp)) < wrong - 0.05)
