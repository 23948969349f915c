"""stax.repeat equals the unrolled serial network: kernels, the finite twin with the same
weights, gradients (moved from tests/unit: each compiles a deep network and takes seconds)."""

import jax
import numpy as np
from _nets import KEY, fc_inputs

from ntk_bayes import stax


def _block():
    return stax.serial(stax.Dense(16, W_std=1.4, b_std=0.1), stax.Erf(a=1.1, b=0.8))


def test_repeat_kernel_equals_serial(dtype):
    x1 = np.asarray(fc_inputs(4, d=16), dtype)
    x2 = np.asarray(fc_inputs(3, d=16, seed=1), dtype)
    looped = stax.serial(stax.repeat(_block(), 5), stax.Dense(1))
    unrolled = stax.serial(*[_block()] * 5, stax.Dense(1))
    a = looped.kernel_fn(x1, x2, ("nngp", "ntk"))
    b = unrolled.kernel_fn(x1, x2, ("nngp", "ntk"))
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    for name in ("nngp", "ntk"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=rtol)


def test_repeat_finite_twin_equals_serial_with_the_same_weights():
    """The finite network is serial's, repetition i using slice i of the stacked params
    (independent draws per repetition, so the kernel of the ensemble is serial's)."""
    net = stax.repeat(_block(), 3)
    x = fc_inputs(4, d=16)
    shape, params = net.init_fn(KEY, x.shape)
    assert shape == (4, 16)
    per_rep = [jax.tree_util.tree_map(lambda p, i=i: p[i], params) for i in range(3)]
    assert not np.allclose(per_rep[0][0][0], per_rep[1][0][0])  # independent draws
    want = stax.serial(*[_block()] * 3).apply_fn(tuple(per_rep), x)
    np.testing.assert_allclose(net.apply_fn(params, x), want, rtol=1e-5)


def test_repeat_gradients_match_serial():
    x = fc_inputs(3)

    def loss(w, looped):
        block = stax.serial(stax.Dense(16, W_std=w, b_std=0.1), stax.Relu())
        body = stax.repeat(block, 4) if looped else stax.serial(*[block] * 4)
        return stax.serial(stax.Dense(16), body).kernel_fn(x, None, "ntk").sum()

    g1, g2 = jax.grad(loss)(1.3, True), jax.grad(loss)(1.3, False)
    np.testing.assert_allclose(g1, g2, rtol=1e-5)
