"""Shared test fixtures: dtype-keyed tolerances, reference data, seeds."""

import functools
import gc
import json
import math
import os
import pathlib
import re
import time

import jax
import numpy as np
import pytest

from ntk_bayes._numerics import tolerance

try:  # jax >= 0.7 has the context at the top level
    enable_x64 = jax.enable_x64
except AttributeError:  # pragma: no cover
    from jax.experimental import enable_x64

DATA = pathlib.Path(__file__).parent / "data"


TIERS = ("unit", "stat", "e2e", "slow")


def pytest_collection_modifyitems(items):
    """The tier of a test is the folder it lives in (tests/unit, stat, e2e, slow)."""
    for item in items:
        tier = item.path.parent.name
        if tier in TIERS:
            item.add_marker(getattr(pytest.mark, tier))


_OWN_MODULE_FIXTURE = re.compile(r"@pytest\.fixture\([^)]*scope=\"module\"")


@functools.cache
def _module_has_own_fixture(path: pathlib.Path) -> bool:
    return path.suffix == ".py" and bool(_OWN_MODULE_FIXTURE.search(path.read_text()))


def pytest_xdist_make_scheduler(config, log):
    """``--dist loadgroup``, as this project means it: the tests of one module in the
    unit and stat tiers (and of any module defining a module-scoped fixture) go to one
    worker as one work unit; any other test (e2e, slow) is a unit by itself. Units start
    longest first, by the durations recorded in ``NTK_BAYES_TEST_DURATIONS``
    (scripts/test.sh keeps one per virtual environment), else in collection order.

    A module's tests share the programs they trace (its networks, its model), and JAX's
    in-memory caches live per process: spread over two workers, both traced and lowered
    them, and a worker switching modules tore the module's fixtures down in between.
    Kept together, `--fast` took 129 s instead of 139 s (2026-12-02, 665 tests); longest
    first keeps a long module from ending the run alone.

    pytest-xdist's own loadgroup reads ``xdist_group`` marks through ``item._nodeid``,
    which pytest 9 no longer uses for ``nodeid``: grouping by the module's path here works
    on any pytest."""
    if config.getvalue("dist") != "loadgroup":
        return None
    return module_fixture_scheduling(config.rootpath)(config, log)


_SHARED_TIERS = ("unit", "stat")


def module_fixture_scheduling(root: pathlib.Path):
    """The scheduler class of :func:`pytest_xdist_make_scheduler` for a rootdir."""
    from xdist.scheduler import LoadScopeScheduling

    class ModuleFixtureScheduling(LoadScopeScheduling):
        _by_duration = False

        def _split_scope(self, nodeid):
            module = nodeid.split("::", 1)[0]
            shared = pathlib.PurePosixPath(module).parent.name in _SHARED_TIERS
            return module if shared or _module_has_own_fixture(root / module) else nodeid

        def _assign_work_unit(self, node):
            if not self._by_duration:
                self._by_duration = True
                recorded = _recorded_durations()

                def expected(unit):  # a unit with an unmeasured test may be long: first
                    return sum(recorded.get(t, math.inf) for t in unit[1])

                if recorded:
                    units = sorted(self.workqueue.items(), key=expected, reverse=True)
                    self.workqueue.clear()
                    self.workqueue.update(units)
            super()._assign_work_unit(node)

    return ModuleFixtureScheduling


def pytest_collection_finish(session):
    """Move everything alive after collection (modules, test items, JAX's own state) out
    of the garbage collector's view: the full collections of the run then scan only what
    the tests create."""
    gc.collect()
    gc.freeze()


def pytest_runtest_setup(item):
    """A CI time box: with ``NTK_BAYES_TEST_DEADLINE`` (seconds since the epoch) set, a
    test is started only if it can end by then, judged by :func:`expected_seconds`; one
    that cannot is skipped with that reason, instead of the whole run being killed (a
    killed run reports nothing and cannot gate) or the run ending far past the box. A test
    that started runs to its end."""
    deadline = os.environ.get("NTK_BAYES_TEST_DEADLINE")
    if not deadline:
        return
    left = float(deadline) - time.time()
    if left <= 0:
        pytest.skip("not started: past the CI time box (NTK_BAYES_TEST_DEADLINE)")
    need = expected_seconds(item)
    if need > left:
        pytest.skip(
            f"not started: would end past the CI time box (needs ~{need:.0f} s as measured, "
            f"{left:.0f} s left)"
        )


@functools.cache
def _recorded_durations() -> dict:
    path = os.environ.get("NTK_BAYES_TEST_DURATIONS")
    try:
        return json.loads(pathlib.Path(path).read_text()) if path else {}
    except (OSError, ValueError):
        return {}


def expected_seconds(item) -> float:
    """A test's wall time on this machine: its last run's, recorded in the JSON file named
    by ``NTK_BAYES_TEST_DURATIONS`` (CI keeps one per stack beside its compilation cache);
    else its ``seconds`` mark (a measurement written next to the test); else 0."""
    recorded = _recorded_durations().get(item.nodeid)
    if recorded is not None:
        return float(recorded)
    mark = item.get_closest_marker("seconds")
    return float(mark.args[0]) if mark else 0.0


_durations: dict[str, float] = {}
_ran: set[str] = set()


def pytest_runtest_logreport(report):
    """Sum each test's setup, call and teardown time (in the controller under xdist); a
    test skipped in its setup never ran and keeps its recorded duration."""
    _durations[report.nodeid] = _durations.get(report.nodeid, 0.0) + report.duration
    if report.when == "call":
        _ran.add(report.nodeid)


def pytest_sessionfinish(session):
    """With ``NTK_BAYES_TEST_DURATIONS`` set, merge this run's durations of the tests that
    ran into that file (written whole, then renamed: a killed run leaves the old one)."""
    path = os.environ.get("NTK_BAYES_TEST_DURATIONS")
    if not path or os.environ.get("PYTEST_XDIST_WORKER") or not _ran:
        return
    path = pathlib.Path(path)
    merged = {**_recorded_durations(), **{k: round(_durations[k], 1) for k in _ran}}
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(merged, indent=0, sort_keys=True))
    os.replace(tmp, path)


@pytest.fixture(params=["float32", "float64"])
def dtype(request):
    """The float dtype under test: each test that asks for it runs in both precisions.

    float64 runs inside ``jax.enable_x64``, so one process covers both and a test that
    does not ask for a dtype runs once, in JAX's default float32.
    """
    with enable_x64(request.param == "float64"):
        yield np.dtype(request.param)


@pytest.fixture
def xla_path():
    """Kernels by the XLA program even where the native fully connected kernel would run
    (stax/_native.py): for tests of that program's structure (loops, fusions, traces)."""
    from ntk_bayes import stax

    with stax.native_disabled():
        yield


@pytest.fixture
def tol(dtype):
    return tolerance(dtype)


@pytest.fixture
def x64(dtype):
    return dtype == np.float64


@pytest.fixture(scope="session")
def nt_reference():
    return np.load(DATA / "nt_public.npz")


@pytest.fixture(scope="session")
def nt_spec():
    return {c["name"]: c for c in json.loads((DATA / "nt_public_spec.json").read_text())}


@pytest.fixture(scope="session")
def nt_predict_reference():
    return np.load(DATA / "nt_predict_public.npz")


def build_from_spec(stax, spec):
    """Build a network from the reference spec's nested [name, kwargs] lists."""
    name, arg = spec
    if name in ("serial", "parallel"):
        return getattr(stax, name)(*[build_from_spec(stax, s) for s in arg])
    return getattr(stax, name)(**arg)


def assert_matches_reference(stax, case, nt_reference, nt_spec, dtype, tol, **kernel_kwargs):
    """The case's NNGP and NTK agree with neural-tangents' stored values: to 1e-9 relative
    in float64, to the dtype's tolerance in float32 (x2 absent: x1 against itself)."""
    net = build_from_spec(stax, nt_spec[case]["net"])
    x1 = nt_reference[f"{case}/x1"].astype(dtype)
    x2 = nt_reference[f"{case}/x2"].astype(dtype) if f"{case}/x2" in nt_reference else None
    k = net.kernel_fn(x1, x2, ("nngp", "ntk"), **kernel_kwargs)
    for name in ("nngp", "ntk"):
        ref = nt_reference[f"{case}/{name}"]
        got = np.asarray(getattr(k, name))
        assert got.dtype == dtype
        rel = np.max(np.abs(got - ref)) / np.max(np.abs(ref))
        assert rel <= (1e-9 if dtype == np.float64 else tol["rtol"]), (name, rel)


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Drop each test module's compiled programs when it finishes.

    Every XLA:CPU executable keeps a few memory mappings for its machine code. One pytest
    process compiles thousands of programs, and without this the full float64 run with the
    slow checks passes Linux's default limit of 65,530 mappings per process
    (vm.max_map_count), after which LLVM's next allocation fails and the process segfaults.
    Later modules rarely reuse an earlier module's programs, so recompiling costs little;
    keeping them is slower still (measured: the unit tier took 210 s instead of 139 s
    without the clearing, the retained traces slowing every later module).
    """
    yield
    jax.clear_caches()
    gc.collect()


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "seconds(n): the test's measured wall time here; the CI time box starts it only "
        "if n seconds are left (a duration recorded by the last CI run takes precedence)",
    )
    # Tracing a kernel allocates hundreds of thousands of short-lived Python objects; at
    # CPython's default threshold (700) the young generation is collected thousands of
    # times per test. Collecting every 100,000 allocations instead cut the heavy unit
    # modules' time by 8% (docs/contributing.md); the cyclic garbage is freed all the same.
    gc.set_threshold(100_000, 20, 20)
    cache = os.environ.get("NTK_BAYES_JAX_CACHE")
    if cache:
        # JAX writes the folder's path into every program's compile options, which are
        # part of the cache key: ".venv/jax-cache" and "/abs/.venv/jax-cache" would be
        # two caches, so the path is made absolute (as scripts/test.sh gives it)
        cache = os.path.abspath(cache)
        jax.config.update("jax_compilation_cache_dir", cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
        # subprocesses (CLI runs, examples, forced-device scripts) read the same cache
        os.environ["JAX_COMPILATION_CACHE_DIR"] = cache
        os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
        os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "-1"
