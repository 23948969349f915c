"""ConvTranspose, ConvLocal and ImageResize kernels against Monte Carlo estimates of wide
finite networks (their own init_fn/apply_fn), in both spatial layouts."""

import numpy as np
import pytest
from _nets import conv_mc_z, images

from ntk_bayes import stax

WB = {"W_std": 1.3, "b_std": 0.2}

# One nonlinearity after the first affine layer: pre-activations are exactly Gaussian,
# so the Monte Carlo mean is unbiased at any width (see conv_mc_z).
MC_NETS = {
    "transpose_full": lambda: stax.serial(
        stax.ConvTranspose(32, (3, 2), (2, 1), "SAME", **WB),
        stax.Relu(),
        stax.ConvTranspose(8, (2, 3), (1, 2), "CIRCULAR", W_std=1.1, b_std=0.1),
        stax.GlobalAvgPool(),
    ),
    "transpose_diagonal_standard": lambda: stax.serial(
        stax.ConvTranspose(32, (2, 2), (2, 2), "VALID", parameterization="standard", **WB),
        stax.Relu(),
        stax.ConvTranspose(8, (3, 1), padding="SAME", W_std=0.9, parameterization="standard"),
        stax.Flatten(),
        stax.Dense(4),
    ),
    "local_full": lambda: stax.serial(
        stax.ConvLocal(32, (2, 2), padding="SAME", **WB),
        stax.Relu(),
        stax.Conv(8, (2, 2), padding="CIRCULAR", W_std=1.1, b_std=0.1),
        stax.GlobalAvgPool(),
    ),
    "local_diagonal": lambda: stax.serial(
        stax.ConvLocal(32, (3, 2), (1, 2), "CIRCULAR", **WB),
        stax.Relu(),
        stax.ConvLocal(8, (2, 1), b_std=0.3, parameterization="standard"),
        stax.Flatten(),
        stax.Dense(4),
    ),
    # One Conv before the resize: where neural-tangents 0.6.5 resizes the wrong axes of
    # its (reversed) full-layout kernel; Monte Carlo settles it for ntk_bayes.
    "resize_linear": lambda: stax.serial(
        stax.Conv(32, (2, 2), padding="SAME", **WB),
        stax.Relu(),
        stax.ImageResize((-1, 7, 3, -1), "linear"),
        stax.Conv(8, (2, 2), W_std=1.1),
        stax.GlobalAvgPool(),
    ),
    "resize_nearest": lambda: stax.serial(
        stax.Conv(32, (2, 2), padding="SAME", **WB),
        stax.Relu(),
        stax.ImageResize((-1, 3, 6, -1), "nearest"),
        stax.Conv(8, (3, 3), padding="SAME"),
        stax.Flatten(),
        stax.Dense(4),
    ),
}


# One network per layer in the stat tier (about 10 CPU-s of compilation each); the
# diagonal-layout twins, also checked against neural-tangents in tests/unit, run slow.
SLOW_MC = {"transpose_diagonal_standard", "local_diagonal", "resize_nearest"}


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_MC else n for n in sorted(MC_NETS)],
)
def test_layers_match_monte_carlo(name):
    x1, x2 = images(3, (4, 3, 2)), images(2, (4, 3, 2), seed=1)
    z, _, mean, se = conv_mc_z(MC_NETS[name](), x1, x2)
    # 4.5 sd over 12 entries, t with 63 dof: false alarm < 1e-3 per test.
    assert max(z.values()) < 4.5, z
    if name == "local_full":
        # The estimate rejects a plausible wrong kernel: shared instead of unshared weights.
        wrong = stax.serial(
            stax.Conv(32, (2, 2), padding="SAME", **WB),
            stax.Relu(),
            stax.Conv(8, (2, 2), padding="CIRCULAR", W_std=1.1, b_std=0.1),
            stax.GlobalAvgPool(),
        ).kernel_fn(x1, x2, "ntk")
        z_wrong = np.max(np.abs(np.asarray(mean.ntk) - np.asarray(wrong)) / np.asarray(se.ntk))
        assert z_wrong > 10, z_wrong
