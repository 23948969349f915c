"""Aggregate: every neural-tangents reference network (``tools/make_nt_reference_aggregate.py``)
in float32 and float64; two of them also run in tests/unit."""

import pytest
from _grid import dtype_grid
from _nt_aggregate import check_case, reference

UNIT_CASES = {"fc1d_binary", "sparse2d"}  # tests/unit/test_stax_aggregate.py


# float32 in the default tiers: a convolutional and a sparse-pattern case (_grid.py)
@pytest.mark.parametrize(
    ("case", "dtype"),
    dtype_grid(sorted(set(reference()[0]["cases"]) - UNIT_CASES), {"conv2d_all", "sparse1d"}),
    indirect=["dtype"],
)
def test_kernels_match_neural_tangents(case, dtype):
    check_case(case, dtype)
