"""Masked inputs through the tiler: tiles equal one block (moved from tests/unit/test_stax_mask.py
to keep the edit-test loop under two minutes)."""

import numpy as np
from _mask_nets import build, inputs

from ntk_bayes import stax

GET = ("nngp", "ntk")


def test_tiles_carry_the_masks(dtype, tol):
    """Tiled (block_size=2, several tiles per side) equals one block, x2=None and given."""
    x1, x2, c = inputs("attn_softmax")
    x1 = np.concatenate([x1, x1[::-1]]).astype(dtype)
    net = build(stax, "attn_softmax")
    for b in (x2.astype(dtype), None):
        whole = net.kernel_fn(x1, b, GET, mask_constant=c)
        tiled = net.kernel_fn(x1, b, GET, mask_constant=c, block_size=2)
        for g in GET:
            np.testing.assert_allclose(getattr(tiled, g), getattr(whole, g), **tol)
