"""Parity grids that thin their float32 half outside the slow tier.

A grid of reference networks is checked in float64 against neural-tangents at 1e-10
relative: that is the exactness bar, and every grid point runs it in the default tiers.
The float32 half checks only that single precision works (a tolerance of a few thousand
ulps): a few representative points (one per layer family) run in the default tiers, the
rest are slow grid points (``bash scripts/test.sh --slow`` and CI's slow tier run them).
"""

import pytest


def dtype_grid(names, float32):
    """``(name, dtype)`` parameters for ``@pytest.mark.parametrize(("name", "dtype"),
    ..., indirect=["dtype"])`` (the ``dtype`` fixture of tests/conftest.py then enters
    ``jax.enable_x64`` as usual): every name in float64; in float32 the names in
    ``float32`` in the default tiers and the others marked slow."""
    names = list(names)
    missing = set(float32) - set(names)
    if missing:
        raise ValueError(f"float32 representatives {sorted(missing)} are not grid points")
    return [pytest.param(n, "float64", id=f"float64-{n}") for n in names] + [
        pytest.param(
            n, "float32", id=f"float32-{n}", marks=() if n in float32 else pytest.mark.slow
        )
        for n in names
    ]
