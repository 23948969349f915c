"""Input validation shared by the GP models: fail early, name the argument and the fix."""

from __future__ import annotations

import numbers

import jax
import jax.numpy as jnp
import numpy as np

from .._numerics import as_float_array, check_finite, is_concrete

__all__ = [
    "check_X",
    "check_y",
    "check_noise",
    "check_positive_noise",
    "check_jitter",
    "check_key",
    "mean_values",
    "check_Z",
    "check_same_dtype",
]


def check_X(X, name: str = "X"):
    X = as_float_array(X, name)
    if X.ndim < 2:
        raise ValueError(
            f"`{name}` must be (N, features) (or (N, ...) for images/sequences), got shape "
            f"{X.shape}; reshape a 1-d input with x[:, None]"
        )
    if X.shape[0] == 0:
        raise ValueError(f"`{name}` has no points (shape {X.shape}); pass at least one row")
    check_finite(X, name)
    return X


def check_jitter(jitter, name: str = "jitter") -> float | None:
    """A relative jitter: ``None`` or a real scalar >= 0 (Python, NumPy or a concrete JAX
    scalar), returned as a Python float (it is static structure, not a leaf)."""
    if jitter is None:
        return None
    if isinstance(jitter, bool | str | bytes) or isinstance(jitter, jax.core.Tracer):
        what = "a traced value" if isinstance(jitter, jax.core.Tracer) else repr(jitter)
        raise TypeError(
            f"`{name}` must be a concrete real number >= 0 (or None for the dtype's default), "
            f"got {what}"
        )
    if not isinstance(jitter, numbers.Real):
        arr = np.asarray(jitter)
        if arr.ndim != 0 or not (
            np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
        ):
            raise TypeError(
                f"`{name}` must be a real scalar >= 0 (or None), got "
                f"{type(jitter).__name__} of shape {arr.shape} and dtype {arr.dtype}"
            )
    value = float(jitter)
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"`{name}` must be a finite number >= 0 (or None), got {value!r}")
    return value


def check_key(key, name: str = "key"):
    """A single PRNG key, typed (``jax.random.key``) or legacy (``PRNGKey``)."""
    if isinstance(key, int | np.integer):
        raise TypeError(
            f"`{name}` must be a PRNG key: jax.random.key(0) or jax.random.PRNGKey(0), got the "
            f"integer {key!r}"
        )
    try:
        key = jnp.asarray(key) if not isinstance(key, jax.Array) else key
    except TypeError:
        raise TypeError(
            f"`{name}` must be a PRNG key: jax.random.key(0) or jax.random.PRNGKey(0), got "
            f"{type(key).__name__}"
        ) from None
    typed = jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
    if not typed and key.dtype != jnp.uint32:
        raise TypeError(
            f"`{name}` must be a PRNG key: jax.random.key(0) or jax.random.PRNGKey(0), got an "
            f"array of dtype {key.dtype}"
        )
    if (typed and key.shape != ()) or (not typed and key.shape != (2,)):
        raise ValueError(
            f"`{name}` must be one PRNG key (a typed key of shape () or a legacy uint32 key of "
            f"shape (2,)), got shape {key.shape}; split it first"
        )
    return key


def check_y(y, n: int, name: str = "y"):
    """Return ``(y2d, squeeze)``: targets as ``(N, K)`` and whether they were ``(N,)``."""
    y = as_float_array(y, name)
    if y.ndim not in (1, 2):
        raise ValueError(f"`{name}` must be (N,) or (N, K), got shape {y.shape}")
    if y.shape[0] != n:
        raise ValueError(
            f"`{name}` has {y.shape[0]} rows but the inputs have {n} points; they must match"
        )
    check_finite(y, name)
    return (y[:, None], True) if y.ndim == 1 else (y, False)


def check_noise(noise, n: int | None, name: str = "noise"):
    """Observation noise variance: a scalar or (when ``n`` is given) one per point."""
    if noise is None or isinstance(noise, str | bytes):
        raise TypeError(f"`{name}` must be a noise variance (a number >= 0), got {noise!r}")
    noise = jnp.asarray(noise)
    if not jnp.issubdtype(noise.dtype, jnp.floating):
        noise = noise.astype(jnp.result_type(float))
    allowed = ((),) if n is None else ((), (n,))
    if noise.shape not in allowed:
        raise ValueError(
            f"`{name}` must be a scalar variance{'' if n is None else f' or shape ({n},)'}, "
            f"got shape {noise.shape}"
        )
    if is_concrete(noise):
        v = np.asarray(noise)
        if not np.all(np.isfinite(v)):
            raise ValueError(f"`{name}` must be finite, got {v}")
        if np.any(v < 0):
            raise ValueError(
                f"`{name}` is a variance and must be >= 0, got {v.min():g}; pass sigma**2, "
                "not a negative number"
            )
    return noise


def check_positive_noise(noise, model: str, name: str = "noise"):
    """Refuse a concrete noise variance that is not > 0 (for models whose bound divides by
    it); the shape and sign checks of :func:`check_noise` come first."""
    if is_concrete(noise) and np.any(np.asarray(noise) <= 0):
        raise ValueError(
            f"`{name}` must be > 0 for {model} (its bound divides by the noise variance), got "
            f"{np.asarray(noise).min():g}; use a small positive variance such as 1e-6, or an "
            "exact GP (gp.ExactGP) for noiseless data"
        )
    return noise


def mean_values(mean, X, k: int, dtype):
    """Evaluate a mean (scalar, per-column ``(K,)`` array, or callable) as ``(N, K)``.

    A callable's ``mean(X)`` may be ``(N,)``, ``(N, 1)`` or ``(N, K)``."""
    if callable(mean):
        n = X.shape[0]
        m = jnp.asarray(mean(X), dtype)
        if m.ndim == 1 and m.shape[0] == n:
            m = m[:, None]
        if m.shape not in ((n, 1), (n, k)):
            want = f"({n},) or ({n}, 1)" + (
                f" or ({n}, {k}), one column per output" if k > 1 else ""
            )
            raise ValueError(
                f"the callable `mean` returned shape {m.shape} for {n} points; expected {want}"
            )
        return jnp.broadcast_to(m, (n, k))
    m = jnp.asarray(mean, dtype)
    if m.shape not in ((), (k,)):
        raise ValueError(f"`mean` must be a scalar, a ({k},) array or a callable, got {m.shape}")
    return jnp.broadcast_to(m, (X.shape[0], k))


def check_Z(Z, X_shape: tuple, n: int | None, name: str = "Z"):
    Z = check_X(Z, name)
    if tuple(Z.shape[1:]) != tuple(X_shape[1:]):
        raise ValueError(
            f"`{name}` has per-point shape {Z.shape[1:]} but the data have {X_shape[1:]}"
        )
    if n is not None and Z.shape[0] > n:
        raise ValueError(
            f"`{name}` has {Z.shape[0]} inducing points but there are only {n} data points; "
            "use at most as many inducing points as data (or an exact GP)"
        )
    return Z


def check_same_dtype(*arrays):
    dtype = jnp.result_type(*arrays)
    return tuple(jnp.asarray(a, dtype) for a in arrays)
