"""Aggregate: every neural-tangents reference network (``tools/make_nt_reference_aggregate.py``)
in float32 and float64; two of them also run in tests/unit."""

import pytest
from _nt_aggregate import check_case, reference

UNIT_CASES = {"fc1d_binary", "sparse2d"}  # tests/unit/test_stax_aggregate.py


@pytest.mark.parametrize("case", sorted(set(reference()[0]["cases"]) - UNIT_CASES))
def test_kernels_match_neural_tangents(case, dtype):
    check_case(case, dtype)
