"""The polynomial-type layers against neural-tangents 0.6.5 in every reference network
other than the unit tier's Dense → LayerNorm → layer → Dense: fully connected, two layers
deep (with and without LayerNorm), convolutional (the layer's full spatial covariance)."""

import pytest
from _nt_poly import RTOL, case_names, errors


@pytest.mark.parametrize("name", case_names(networks=("fc", "deep", "ln_deep", "conv", "conv_ln")))
def test_matches_neural_tangents(name):
    err = errors(name)
    assert max(err.values()) <= RTOL, err
