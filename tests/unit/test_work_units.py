"""The work units of ``--dist loadgroup`` (tests/conftest.py): a module of the unit or
stat tier, or one with a module-scoped fixture of its own, is one unit; any other test is
a unit by itself. Units start longest first by the recorded durations."""

import collections
import pathlib

import conftest
from conftest import module_fixture_scheduling

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_modules_of_shared_tiers_or_with_their_own_fixture_are_one_unit():
    split = module_fixture_scheduling(ROOT)._split_scope
    shared = "tests/e2e/test_cli.py"  # defines quick_run(scope="module")
    assert split(None, f"{shared}::test_a") == split(None, f"{shared}::test_b[x-1]") == shared
    unit = "tests/unit/test_work_units.py"
    assert split(None, f"{unit}::test_a") == split(None, f"{unit}::test_b") == unit
    stat = "tests/stat/test_gp_sparse.py"
    assert split(None, f"{stat}::test_a[1]") == stat
    alone = "tests/e2e/test_examples.py::test_example_runs[a.py]"  # no module fixture
    assert split(None, alone) == alone


class _Node:
    def __init__(self):
        self.sent = []

    def send_runtest_some(self, indices):
        self.sent.append(indices)


def test_units_start_longest_first_and_unmeasured_ones_before_all(monkeypatch):
    tests = [
        "tests/unit/test_a.py::t1",
        "tests/unit/test_a.py::t2",
        "tests/unit/test_b.py::t1",
        "tests/e2e/test_examples.py::test_x",
        "tests/e2e/test_examples.py::test_new",
    ]
    recorded = {tests[0]: 1.0, tests[1]: 2.0, tests[2]: 5.0, tests[3]: 0.5}
    monkeypatch.setattr(conftest, "_recorded_durations", lambda: recorded)
    cls = module_fixture_scheduling(ROOT)
    sched = cls.__new__(cls)  # the queue by hand, without xdist's nodes
    sched.workqueue = collections.OrderedDict()
    for t in tests:
        sched.workqueue.setdefault(sched._split_scope(t), {})[t] = False
    sched.assigned_work = collections.OrderedDict()  # pytest-xdist 3.5 calls setdefault(default=)
    node = _Node()
    sched.registered_collections = {node: tests}
    order = []
    while sched.workqueue:
        sched._assign_work_unit(node)
        order.append(node.sent[-1])
    # unmeasured test first, then b (5 s), a (3 s), the 0.5 s example
    assert order == [[4], [2], [0, 1], [3]]
