"""Shared test fixtures: dtype-keyed tolerances, reference data, seeds."""

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
