"""The rest of the seeded random architectures against neural-tangents 0.6.5 (issue 15);
the first 30 run in tests/stat/test_differential_nt.py."""

import pytest
from _differential import assert_case_matches, case_ids, case_name


@pytest.mark.parametrize("case", case_ids("slow"), ids=case_name)
def test_random_architecture_matches_neural_tangents(case):
    assert_case_matches(case, joint=False)
