"""Shared test fixtures: dtype-keyed tolerances, reference data, seeds."""

import gc
import json
import os
import pathlib
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
        if _has_own_module_fixture(item):  # one worker builds it once (--dist loadgroup)
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))


def pytest_runtest_setup(item):
    """A CI time box: with ``NTK_BAYES_TEST_DEADLINE`` (seconds since the epoch) set, a
    test that would start after it is skipped, with that reason, instead of the whole
    run being killed (a killed run reports nothing and cannot gate). A test that started
    before the deadline runs to its end, so put the longest tests first."""
    deadline = os.environ.get("NTK_BAYES_TEST_DEADLINE")
    if deadline and time.time() > float(deadline):
        pytest.skip("not started: past the CI time box (NTK_BAYES_TEST_DEADLINE)")


def _has_own_module_fixture(item):
    """Whether the test uses a module-scoped fixture defined in its own module: under
    pytest-xdist each worker that gets one of the module's tests would build it again."""
    info = getattr(item, "_fixtureinfo", None)
    module = getattr(item, "module", None)
    if info is None or module is None:
        return False
    for name in item.fixturenames:
        defs = info.name2fixturedefs.get(name) or ()
        if defs and defs[-1].scope == "module" and defs[-1].func.__module__ == module.__name__:
            return True
    return False


@pytest.fixture(params=["float32", "float64"])
def dtype(request):
    """The float dtype under test: each test that asks for it runs in both precisions.

    float64 runs inside ``jax.enable_x64``, so one process covers both and a test that
    does not ask for a dtype runs once, in JAX's default float32.
    """
    with enable_x64(request.param == "float64"):
        yield np.dtype(request.param)


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
    Later modules rarely reuse an earlier module's programs, so recompiling costs little.
    """
    yield
    jax.clear_caches()
    gc.collect()


def pytest_configure(config):
    import os

    cache = os.environ.get("NTK_BAYES_JAX_CACHE")
    if cache:
        jax.config.update("jax_compilation_cache_dir", cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
        # subprocesses (CLI runs, examples, forced-device scripts) read the same cache
        os.environ["JAX_COMPILATION_CACHE_DIR"] = cache
        os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
        os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "-1"
