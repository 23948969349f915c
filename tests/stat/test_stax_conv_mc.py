"""Convolution, pooling and readout kernels against Monte Carlo estimates of wide networks."""

import numpy as np
import pytest
from _nets import conv_mc_z, conv_net, images

from ntk_bayes import stax

MC_NETS = {
    "conv_strides_circular_gap": lambda: stax.serial(
        conv_net(64, strides=(2, 1)),
        stax.Relu(),
        conv_net(8, filter_shape=(2, 3), padding="CIRCULAR", W_std=1.1, b_std=0.1),
        stax.GlobalAvgPool(),
    ),
    "avgpool_sumpool_flatten": lambda: stax.serial(
        conv_net(64),
        stax.Relu(),
        stax.AvgPool((3, 2), padding="SAME", normalize_edges=True),
        stax.SumPool((2, 2), strides=(2, 1), padding="CIRCULAR"),
        stax.Flatten(),
        stax.Dense(8, W_std=1.2, b_std=0.1),
    ),
    "residual_concat": lambda: stax.serial(
        conv_net(32),
        stax.FanOut(2),
        stax.parallel(stax.serial(stax.Relu(), conv_net(32)), stax.AvgPool((2, 2), padding="SAME")),
        stax.FanInConcat(),
        stax.GlobalSumPool(),
        stax.Dense(8),
    ),
    # Concatenation along a spatial axis: cross-branch blocks are 0 (GAP reads them).
    "spatial_concat_gap": lambda: stax.serial(
        conv_net(64),
        stax.Relu(),
        stax.FanOut(2),
        stax.parallel(
            conv_net(32), stax.serial(stax.AvgPool((2, 2), padding="SAME"), conv_net(32, W_std=0.9))
        ),
        stax.FanInConcat(axis=1),
        stax.GlobalAvgPool(),
        stax.Dense(8),
    ),
    "spatial_concat_flatten": lambda: stax.serial(
        conv_net(64),
        stax.Relu(),
        stax.FanOut(2),
        stax.parallel(conv_net(16), conv_net(16, filter_shape=(1, 1), b_std=0.5)),
        stax.FanInConcat(axis=-2),
        stax.Flatten(),
        stax.Dense(8),
    ),
    "conv_valid_standard": lambda: stax.serial(
        conv_net(64, padding="VALID", parameterization="standard"),
        stax.Relu(),
        conv_net(8, filter_shape=(2, 2), W_std=0.9, b_std=0.3, parameterization="standard"),
        stax.GlobalSumPool(),
    ),
}


SLOW_MC = {"conv_valid_standard"}


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_MC else n for n in sorted(MC_NETS)],
)
def test_layers_match_monte_carlo(name):
    x1, x2 = images(3), images(2, seed=1)
    z, _, mean, se = conv_mc_z(MC_NETS[name](), x1, x2)
    assert max(z.values()) < 4.5, z
    if name == "conv_strides_circular_gap":
        # The same estimate has the power to reject a plausible wrong kernel: SAME
        # instead of CIRCULAR padding in the last convolution.
        wrong = stax.serial(
            conv_net(strides=(2, 1)),
            stax.Relu(),
            conv_net(8, filter_shape=(2, 3), padding="SAME", W_std=1.1, b_std=0.1),
            stax.GlobalAvgPool(),
        ).kernel_fn(x1, x2, "ntk")
        z_wrong = np.max(np.abs(np.asarray(mean.ntk) - np.asarray(wrong)) / np.asarray(se.ntk))
        assert z_wrong > 10, z_wrong
