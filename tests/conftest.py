"""Shared test fixtures: dtype-keyed tolerances, reference data, seeds."""

import gc
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntk_bayes._numerics import tolerance

DATA = pathlib.Path(__file__).parent / "data"


@pytest.fixture
def dtype():
    """The float dtype under test (float64 when JAX_ENABLE_X64=1)."""
    return np.dtype(jnp.result_type(float))


@pytest.fixture
def tol(dtype):
    return tolerance(dtype)


@pytest.fixture
def x64():
    return bool(jax.config.jax_enable_x64)


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
