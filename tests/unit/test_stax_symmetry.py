"""Kernels of one set of points (x2 omitted): exactly symmetric for networks over positions
or tokens (the upper triangle of each tile on the diagonal is mirrored), as computed for
fully connected ones."""

import jax.numpy as jnp
import numpy as np
import pytest
from _nets import conv_net, fc_inputs, images, tokens

from ntk_bayes import stax
from ntk_bayes.stax import _batching

CNN_GAP = stax.serial(conv_net(8), stax.Relu(), conv_net(8), stax.Erf(), stax.GlobalAvgPool())
ATTENTION = stax.serial(
    stax.Dense(8),
    stax.GlobalSelfAttention(8, 8, 8, 2),
    stax.Relu(),
    stax.GlobalAvgPool(),
    stax.Dense(1),
)


def _kernels(monkeypatch, net, x, block_size):
    """``net``'s NNGP and NTK of ``x`` with x2 omitted, and whether the diagonal was
    mirrored (asked of the tiler, or applied to the one program's output)."""
    mirrored, run, whole = [], _batching._run, _batching._mirrored_kernel

    def spy_run(*a, **kw):
        mirrored.append(kw.get("mirror_diagonal", False))
        return run(*a, **kw)

    def spy_whole(k):
        mirrored.append(True)
        return whole(k)

    monkeypatch.setattr(_batching, "_run", spy_run)
    monkeypatch.setattr(_batching, "_mirrored_kernel", spy_whole)
    k = net.kernel_fn(x, None, ("nngp", "ntk"), block_size=block_size)
    return k, any(mirrored)


NETS = {
    "cnn_gap": (CNN_GAP, lambda: images(10, (4, 4, 2))),
    "attention": (ATTENTION, lambda: tokens(10, t=3, c=4)),
}


@pytest.mark.parametrize("name", NETS)
def test_kernels_over_positions_are_mirrored_exactly_symmetric(name, dtype, tol, monkeypatch):
    """Whole (one program) and in tiles of 4 rows over 10 points (starts 0, 4, 6: the last
    tile overlaps its neighbour, so off-diagonal tiles cross the diagonal): exactly
    symmetric, and equal to the kernel of two sets. Without the mirroring, 14-80 of the
    100 entries of each kernel differ from their swap, in float32 and float64 (checked
    when this was written)."""
    net, x = NETS[name]
    x = x()
    both = net.kernel_fn(x, x, ("nngp", "ntk"))  # two sets: no mirroring
    for block_size in (None, 4):
        k, mirrored = _kernels(monkeypatch, net, x, block_size)
        assert mirrored
        for a, ref in ((k.nngp, both.nngp), (k.ntk, both.ntk)):
            a = np.asarray(a)
            np.testing.assert_array_equal(a, a.T)
            np.testing.assert_allclose(a, ref, **tol)


def test_fully_connected_kernels_are_left_as_computed(dtype, monkeypatch):
    """No positions: nothing is mirrored (tiles of 512 rows would pay 12%). Dense, ReLU,
    Erf, Gelu and ElementwiseNumerical treat a pair and its swap alike, so their kernel
    is exactly symmetric (Gelu's dual added 1 + q1 + q2 in the pair's order until it took
    q1 + q2 first: 2-8 of 100 entries differed; ElementwiseNumerical's quadrature took u
    from the first point's variance until it took the larger one: 1e-3 relative apart
    in float64). Exp's kernel in float64 is symmetric to an ulp or two (4 allowed): its
    dual is symmetric as written, the compiled program is not."""
    x = fc_inputs(10)
    tanh = stax.ElementwiseNumerical(jnp.tanh, deg=25)
    exact = stax.serial(
        stax.Dense(8), stax.Relu(), stax.Dense(8), stax.Erf(), stax.Dense(8), stax.Gelu()
    )
    numerical = stax.serial(stax.Dense(8), tanh, stax.Dense(8), tanh, stax.Dense(1))
    # W_std 0.7 keeps E[e^(2u)] = e^(2q) of the second Exp inside float32's range
    exp = stax.serial(
        stax.Dense(8, W_std=0.7), stax.Exp(), stax.Dense(8, W_std=0.7), stax.Exp(), stax.Dense(1)
    )
    eps = np.finfo(dtype).eps
    for block_size in (None, 4):
        for net, rtol in ((exact, 0.0), (numerical, 0.0), (exp, 4 * eps)):
            k, mirrored = _kernels(monkeypatch, net, x, block_size)
            assert not mirrored
            for a in (np.asarray(k.nngp), np.asarray(k.ntk)):
                assert np.isfinite(a).all()
                np.testing.assert_allclose(a, a.T, rtol=rtol, atol=0)
