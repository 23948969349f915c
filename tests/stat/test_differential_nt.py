"""ntk_bayes against neural-tangents 0.6.5 on 30 seeded random architectures (issue 15).

Fully connected, residual (FanInSum/FanInConcat/FanInProd), repeat, LayerNorm, 1-D and
2-D convolutional (Conv, ConvTranspose, ConvLocal; SAME/VALID/CIRCULAR, strides),
pooling, Index, DotGeneral, ImageResize and attention (with positional embeddings)
networks over every elementwise layer both libraries compute in closed form (the
polynomial-type ones included); float64 NNGP and NTK of x1 with
itself and of x1 against x2 agree to 1e-10 (matrix-relative). The remaining cases of the
same generator run in tests/slow/test_differential_nt_slow.py.
"""

import pytest
from _differential import assert_case_matches, case_ids, case_name


@pytest.mark.parametrize("case", case_ids("stat"), ids=case_name)
def test_random_architecture_matches_neural_tangents(case):
    assert_case_matches(case, joint=True)
