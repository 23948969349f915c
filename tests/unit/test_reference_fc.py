"""Rung 1: closed forms against neural-tangents 0.6.5 reference values."""

import numpy as np
import pytest
from conftest import build_from_spec

from ntk_bayes import stax

FC_CASES = ["fc_relu", "fc_erf", "resnet_fc"]


@pytest.mark.parametrize("case", FC_CASES)
def test_matches_neural_tangents(case, nt_reference, nt_spec, tol, dtype):
    net = build_from_spec(stax, nt_spec[case]["net"])
    x1 = nt_reference[f"{case}/x1"].astype(dtype)
    x2 = nt_reference[f"{case}/x2"].astype(dtype) if f"{case}/x2" in nt_reference else None
    k = net.kernel_fn(x1, x2, ("nngp", "ntk"))
    for name in ("nngp", "ntk"):
        ref = nt_reference[f"{case}/{name}"]
        got = np.asarray(getattr(k, name))
        assert got.dtype == dtype
        rel = np.max(np.abs(got - ref)) / np.max(np.abs(ref))
        assert rel <= (1e-9 if dtype == np.float64 else tol["rtol"]), (name, rel)
