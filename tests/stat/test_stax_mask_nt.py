"""Masked inputs against neural-tangents 0.6.5 on all 15 padded networks in both dtypes
(a parity grid, moved from tests/unit; the unit tier keeps four of them with x2 given, in
float64, and the contract)."""

import numpy as np
import pytest
from _grid import dtype_grid
from _mask_nets import NAMES, build, inputs, reference
from _nt_aggregate import limit, rel

from ntk_bayes import stax

GET = ("nngp", "ntk")


# float32 in the default tiers: convolution, attention and LayerNorm (_grid.py)
@pytest.mark.parametrize(
    ("name", "dtype"),
    dtype_grid(NAMES, {"conv_gap", "attn_softmax", "layernorm_seq"}),
    indirect=["dtype"],
)
def test_matches_neural_tangents(name, dtype):
    """NNGP and NTK agree with neural-tangents: 1e-10 relative in float64, a few
    thousand ulps in float32. One call on [x1; x2] with x2=None (the self-pair path)
    gives x1 with itself and x1 with x2."""
    ref = reference()
    x1, x2, c = inputs(name)
    k = build(stax, name).kernel_fn(
        np.concatenate([x1, x2]).astype(dtype), None, GET, mask_constant=c
    )
    n1 = len(x1)
    for g in GET:
        got = np.asarray(getattr(k, g))
        assert got.dtype == dtype
        assert rel(got[:n1, :n1], ref[f"{name}/{g}"]) <= limit(dtype), (g, "x1 x1")
        assert rel(got[:n1, n1:], ref[f"{name}/{g}12"]) <= limit(dtype), (g, "x1 x2")
