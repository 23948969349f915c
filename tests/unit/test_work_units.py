"""The work units of ``--dist loadgroup`` (tests/conftest.py): a module with a
module-scoped fixture of its own is one unit, any other test is a unit by itself."""

import pathlib

from conftest import module_fixture_scheduling

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_modules_with_their_own_module_fixture_are_one_unit():
    split = module_fixture_scheduling(ROOT)._split_scope
    shared = "tests/e2e/test_cli.py"  # defines quick_run(scope="module")
    assert split(None, f"{shared}::test_a") == split(None, f"{shared}::test_b[x-1]") == shared
    alone = "tests/unit/test_work_units.py::test_modules_with_their_own_module_fixture_are_one_unit"
    assert split(None, alone) == alone
