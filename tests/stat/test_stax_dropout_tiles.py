"""Dropout: the tiler finds same-point pairs in off-diagonal and overlapping tiles (moved
from tests/unit: it compiles a kernel per tile shape and takes seconds)."""

import jax.numpy as jnp
import numpy as np
from _nets import dropout_fc, dropout_inputs


def test_tiles_find_the_pairs_that_are_one_point(tol):
    """Off-diagonal and overlapping tiles locate the same-point pairs by their offset;
    x2 equal in value to x1 counts as the same points, as in neural-tangents."""
    net = dropout_fc(0.4)
    x = dropout_inputs(11, seed=5)
    one = net.kernel_fn(x, None, ("nngp", "ntk"))
    for x2, bs in ((None, 3), (None, 4), (x + 0.0, 3), (jnp.array(x), 5)):
        tiled = net.kernel_fn(x, x2, ("nngp", "ntk"), block_size=bs)
        np.testing.assert_allclose(tiled.nngp, one.nngp, **tol)
        np.testing.assert_allclose(tiled.ntk, one.ntk, **tol)
    whole = net.kernel_fn(x, x + 0.0)  # get=None: the whole Kernel state
    np.testing.assert_allclose(whole.nngp, one.nngp, **tol)
    other = net.kernel_fn(x, x.at[0, 0].add(1.0), "nngp")
    assert not np.allclose(np.diag(other)[1:], np.diag(one.nngp)[1:])
    # Per-point variances always include the gain.
    np.testing.assert_allclose(net.kernel_fn(x, None, "cov1"), np.diag(one.nngp), **tol)
