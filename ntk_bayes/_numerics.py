"""Dtype-keyed numerical policy: tolerances, jitter and input checks.

One place decides how close is close and how much jitter is enough, so that tests,
solvers and kernels agree on what float32 and float64 can deliver.
"""

from __future__ import annotations

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._blas import limit_lapack_threads
from ._jaxlib import warn_if_lapack_may_deadlock

limit_lapack_threads()  # every numerical module imports this one; see _blas
warn_if_lapack_may_deadlock()  # jaxlib 0.10.0-0.11.0 can hang; see _jaxlib

__all__ = [
    "default_float",
    "tolerance",
    "base_jitter",
    "is_concrete",
    "as_float_array",
    "check_finite",
    "check_int",
    "POSITIVE_INT",
    "NON_NEGATIVE_INT",
    "full_precision",
    "has_tracer",
    "program_when_concrete",
]


def default_float() -> np.dtype:
    """The float dtype JAX uses by default: float64 when ``jax_enable_x64`` is on."""
    return np.dtype(jnp.result_type(float))


def tolerance(dtype=None) -> dict[str, float]:
    """Relative and absolute tolerances for comparisons at ``dtype``.

    float64 is held to 1e-9 (closed forms against reference values); float32 to
    a few thousand ulps, which is what chained arccos/erf recursions deliver.
    """
    dtype = np.dtype(default_float() if dtype is None else dtype)
    if dtype == np.float64:
        return {"rtol": 1e-9, "atol": 1e-12}
    if dtype == np.float32:
        return {"rtol": 2e-4, "atol": 1e-6}
    if dtype in (np.float16, jnp.bfloat16):
        return {"rtol": 2e-2, "atol": 1e-3}
    raise TypeError(f"no tolerance defined for dtype {dtype}")


def base_jitter(dtype=None) -> float:
    """Smallest diagonal jitter (relative to the mean diagonal) tried first at ``dtype``."""
    dtype = np.dtype(default_float() if dtype is None else dtype)
    return 1e-10 if dtype == np.float64 else 1e-6


def is_concrete(x) -> bool:
    """True when ``x`` holds values now (not a tracer under jit/grad/vmap)."""
    return not isinstance(x, jax.core.Tracer)


def has_tracer(tree) -> bool:
    """True when any leaf of ``tree`` is a tracer (the call is part of someone's trace)."""
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(tree))


def program_when_concrete(fn):
    """``fn`` as one compiled program when its arguments hold values, ``fn`` itself when
    any is traced.

    Called eagerly, a function of a dozen small JAX operations compiles a dozen programs
    (one per operation, shape and dtype) and dispatches each; under ``equinox.filter_jit``
    it compiles one (non-array arguments are static). Inside a caller's ``jit``, ``grad``
    or NumPyro model it runs inline, so the caller's program is exactly what it would be
    without this wrapper.
    """
    jitted = eqx.filter_jit(fn)

    @functools.wraps(fn)
    def call(*args, **kwargs):
        if has_tracer((args, kwargs)):
            return fn(*args, **kwargs)
        return jitted(*args, **kwargs)

    return call


def as_float_array(x, name: str):
    """Convert ``x`` to a JAX float array, keeping float32/float64 as given."""
    if isinstance(x, jax.Array) or isinstance(x, np.ndarray):
        arr = x
    else:
        try:
            arr = np.asarray(x)
        except Exception as e:  # pragma: no cover - numpy's own message is clear
            raise TypeError(f"`{name}` must be array-like, got {type(x).__name__}") from e
    if not jnp.issubdtype(arr.dtype, jnp.floating):
        if jnp.issubdtype(arr.dtype, jnp.number) or arr.dtype == bool:
            arr = arr.astype(default_float())
        else:
            raise TypeError(f"`{name}` must hold numbers, got dtype {arr.dtype}")
    return jnp.asarray(arr)


def check_finite(x, name: str) -> None:
    """Raise ``ValueError`` if a concrete ``x`` holds NaN or inf (no-op under tracing)."""
    if is_concrete(x):
        bad = ~np.isfinite(np.asarray(x))
        if bad.any():
            idx = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(
                f"`{name}` contains {int(bad.sum())} non-finite value(s) (first at index "
                f"{idx}); remove or impute NaN/inf entries before computing kernels."
            )


# check_int's message templates shared by many arguments
POSITIVE_INT = "`{name}` must be a positive integer, got {value!r}"
NON_NEGATIVE_INT = "`{name}` must be a non-negative integer, got {value!r}"


def check_int(
    value,
    name: str,
    *,
    low: int | None = None,
    high: int | None = None,
    message: str | None = None,
    exc: type[Exception] = ValueError,
) -> int:
    """``value`` as a Python ``int`` if it is an integer in ``[low, high]``, else raise.

    Python ints, NumPy integer scalars and 0-d NumPy integer arrays pass; ``bool``
    (an ``int`` subclass), floats (even ``3.0``), strings, ``None`` and anything else
    raise ``exc``, as do integers outside the bounds (``None``: unbounded). The result
    is a plain ``int``, so NumPy integers flow on as ints (into ``range``, shapes,
    static ``jit`` arguments, dict keys).

    ``message`` is a :meth:`str.format` template with the fields ``name``, ``value``,
    ``low`` and ``high`` (e.g. ``"Dense: `{name}` must be a positive integer, got
    {value!r}"``); the default reads "`{name}` must be an integer >= {low}, got
    {value!r}" (or "an integer in [low, high]", "an integer <= high", "an integer").
    """
    ok = False
    if isinstance(value, bool | np.bool_):
        pass
    elif isinstance(value, int | np.integer) or (
        isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "iu"
    ):
        v = int(value)
        ok = (low is None or v >= low) and (high is None or v <= high)
    if ok:
        return v
    if message is None:
        if low is not None and high is not None:
            message = "`{name}` must be an integer in [{low}, {high}], got {value!r}"
        elif low is not None:
            message = "`{name}` must be an integer >= {low}, got {value!r}"
        elif high is not None:
            message = "`{name}` must be an integer <= {high}, got {value!r}"
        else:
            message = "`{name}` must be an integer, got {value!r}"
    raise exc(message.format(name=name, value=value, low=low, high=high))


def full_precision(fn):
    """Run ``fn`` (and trace whatever it jits) with matrix products at full float32
    precision on accelerators.

    JAX's default lets GPUs multiply float32 matrices in TF32 (10-bit mantissa) and
    TPUs in bfloat16 passes: ~1e-3 relative error in a Gram matrix, enough to make a
    GP's Cholesky fail or a predictive variance negative. Kernels, GP solves and
    predictions here are wrapped in this; users' own networks keep JAX's default. On
    CPUs it changes nothing.
    """

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        with jax.default_matmul_precision("highest"):
            return fn(*args, **kwargs)

    return wrapped
