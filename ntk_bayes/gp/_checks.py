"""Input validation shared by the GP models: fail early, name the argument and the fix."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from .._numerics import as_float_array, check_finite, is_concrete

__all__ = ["check_X", "check_y", "check_noise", "mean_values", "check_Z", "check_same_dtype"]


def check_X(X, name: str = "X"):
    X = as_float_array(X, name)
    if X.ndim < 2:
        raise ValueError(
            f"`{name}` must be (N, features) (or (N, ...) for images/sequences), got shape "
            f"{X.shape}; reshape a 1-d input with x[:, None]"
        )
    check_finite(X, name)
    return X


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


def mean_values(mean, X, k: int, dtype):
    """Evaluate a mean (scalar, per-column ``(K,)`` array, or callable) as ``(N, K)``."""
    if callable(mean):
        m = jnp.asarray(mean(X), dtype)
        if m.ndim == 1:
            m = m[:, None]
        if m.shape not in ((X.shape[0], 1), (X.shape[0], k)):
            raise ValueError(
                f"`mean(X)` returned shape {m.shape}; expected ({X.shape[0]},) or "
                f"({X.shape[0]}, {k})"
            )
        return jnp.broadcast_to(m, (X.shape[0], k))
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
