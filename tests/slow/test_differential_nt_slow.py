"""The rest of the seeded random architectures against neural-tangents 0.6.5 (issue 15);
the first 30 run in tests/stat/test_differential_nt.py.

Most cases get x1 with itself and x1 against x2 from one ``kernel_fn`` call on the joined
inputs (one compilation, which dominates each case); every fourth case also calls
``kernel_fn(x1, None)`` and ``kernel_fn(x1, x2)`` separately, so the two-input path
(no symmetric tiles, no self-pairs) is checked on a quarter of the architectures at about
60% of the cost of checking it on all.
"""

import pytest
from _differential import assert_case_matches, case_ids, case_name


@pytest.mark.parametrize("case", case_ids("slow"), ids=case_name)
def test_random_architecture_matches_neural_tangents(case):
    assert_case_matches(case, joint=case % 4 != 0)
