"""``stax.repeat`` (a compiled, checkpointed loop) and the ``batch`` compatibility alias."""

import numpy as np
import pytest
from _nets import fc_inputs

from ntk_bayes import stax


@pytest.mark.parametrize(
    "make, exc, match",
    [
        (lambda: stax.repeat(stax.Dense(4), 0), ValueError, "`n` must be a positive integer"),
        (lambda: stax.repeat("relu", 2), TypeError, "`layer` must be a stax layer"),
        (
            lambda: stax.repeat(stax.Dense(4), 2).output_shape((3, 5)),
            ValueError,
            "must keep the shape",
        ),
    ],
)
def test_repeat_errors(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_batch_alias_tiles_through_kernel_fn():
    net = stax.serial(stax.Dense(8, W_std=1.5, b_std=0.1), stax.Relu(), stax.Dense(1))
    x = fc_inputs(7)
    batched = stax.batch(net.kernel_fn, batch_size=3, device_count=0)
    np.testing.assert_allclose(
        batched(x, None, "ntk"), net.kernel_fn(x, None, "ntk"), rtol=1e-5, atol=1e-6
    )
    with pytest.raises(ValueError, match="`batch_size` must be an integer >= 0"):
        stax.batch(net.kernel_fn, batch_size=-1)
