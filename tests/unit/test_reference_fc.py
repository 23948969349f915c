"""Rung 1: closed forms against neural-tangents 0.6.5 reference values."""

import pytest
from conftest import assert_matches_reference

from ntk_bayes import stax

FC_CASES = ["fc_relu", "fc_erf", "resnet_fc"]


@pytest.mark.parametrize("case", FC_CASES)
def test_matches_neural_tangents(case, nt_reference, nt_spec, tol, dtype):
    assert_matches_reference(stax, case, nt_reference, nt_spec, dtype, tol)
