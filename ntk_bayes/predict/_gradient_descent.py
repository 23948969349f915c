"""Gradient flow of a linearised network on any loss (neural-tangents' ``gradient_descent``).

For a network linearised around its initialisation, gradient flow on a loss L moves
the outputs along the NTK (Lee et al. 2019):

    df_train/dt = -η Θ(X, X) ∇_f L(f_train, y),   df_test/dt = -η Θ(X*, X) ∇_f L(f_train, y)

which has a closed form only for MSE (``gradient_descent_mse``); here the ODE is
integrated with ``jax.experimental.ode.odeint`` (adaptive Dormand–Prince).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental.ode import odeint
from jaxtyping import Array, ArrayLike

from .._numerics import as_float_array, check_finite, full_precision, is_concrete
from ._common import initial_outputs

__all__ = ["gradient_descent"]


def gradient_descent(
    loss: Callable[[Array, Array], Array],
    k_train_train: ArrayLike,
    y_train: ArrayLike,
    learning_rate: float = 1.0,
    momentum: float | None = None,
    trace_axes: int | Sequence[int] = (-1,),
) -> Callable[..., Array | tuple[Array, Array]]:
    """Trajectory of a linearised network trained by gradient flow on ``loss``.

    Args:
        loss: ``loss(fx_train, y_train) -> scalar``, e.g.
            ``lambda f, y: 0.5 * jnp.mean((f - y) ** 2)`` (which reproduces
            ``gradient_descent_mse``) or a cross-entropy.
        k_train_train: NTK on the training inputs, ``(N, N)``; ``(N, N, K, K)`` with
            ``trace_axes=()`` (one entry per pair of output units).
        y_train: targets ``(N,)`` or ``(N, K)``.
        learning_rate: η; ``t`` counts steps, absolute time ``η t``.
        momentum: ``None`` for gradient flow, or m in [0, 1) for heavy-ball momentum in
            continuous time, as neural-tangents solves it: with s = sqrt(η), time
            τ = s t and velocity q, df/dτ = q and dq/dτ = -Θ ∇L(f) + (m - 1)/s q,
            starting at rest (q = 0).
        trace_axes: ``(-1,)`` (the kernel acts as ``Θ ⊗ I`` on the output axis) or ``()``
            (the kernel couples output units: ``k_train_train`` ``(N, N, K, K)``,
            ``k_test_train`` ``(M, N, K, K)``, ``y_train`` ``(N, K)``).

    Returns:
        ``predict_fn(t, fx_train_0=0.0, fx_test_0=None, k_test_train=None)`` returning
            ``fx_train_t``, or ``(fx_train_t, fx_test_t)`` when ``fx_test_0`` is given,
            with a leading axis of ``t``'s length when ``t`` is a 1-D array of times.
    """
    if not callable(loss):
        raise TypeError(f"`loss` must be callable, got {type(loss).__name__}")
    if momentum is not None:
        if isinstance(momentum, bool | str | bytes) or np.ndim(momentum) != 0:
            raise ValueError(f"`momentum` must be None or a number in [0, 1), got {momentum!r}")
        if is_concrete(momentum) and not 0.0 <= float(momentum) < 1.0:
            raise ValueError(f"`momentum` must be None or a number in [0, 1), got {momentum!r}")
    axes = (trace_axes,) if isinstance(trace_axes, int) else tuple(trace_axes)
    if axes not in ((-1,), ()):
        raise ValueError(f"`trace_axes` must be (-1,) or (), got {trace_axes!r}")
    full = axes == ()
    y = as_float_array(y_train, "y_train")
    check_finite(y, "y_train")
    if y.ndim not in (1, 2):
        raise ValueError(f"`y_train` must be (N,) or (N, K), got shape {y.shape}")
    k = as_float_array(k_train_train, "k_train_train")
    n = y.shape[0]
    if full:
        if y.ndim != 2 or k.shape != (n, n) + y.shape[1:] * 2:
            raise ValueError(
                "with trace_axes=() `y_train` must be (N, K) and `k_train_train` (N, N, K, K) "
                f"(the NTK between every pair of output units); got {y.shape} and {k.shape}. "
                "For a kernel with its output axes traced out, (N, N), use trace_axes=(-1,)"
            )
    elif k.shape != (n, n):
        raise ValueError(
            f"`k_train_train` must be ({n}, {n}) for {n} training targets, got {k.shape}; "
            "pass the NTK with its output axes traced out (kernel_fn(x, None, 'ntk'))"
        )
    check_finite(k, "k_train_train")
    if is_concrete(learning_rate) and not float(learning_rate) > 0:
        raise ValueError(f"`learning_rate` must be > 0, got {learning_rate}")
    dtype = jnp.promote_types(k.dtype, y.dtype)
    k, y = k.astype(dtype), y.astype(dtype)
    grad_loss = jax.grad(lambda f: loss(f, y))

    @full_precision
    def predict_fn(t, fx_train_0=0.0, fx_test_0=None, k_test_train=None):
        """Outputs on the train [and test] set at time(s) ``t``."""
        if t is None:
            raise ValueError(
                "gradient_descent integrates an ODE and needs finite times `t`; for infinite "
                "time on MSE use gradient_descent_mse(...)(t=None)"
            )
        ts = jnp.asarray(t, dtype)
        if ts.ndim > 1:
            raise ValueError(f"`t` must be a scalar or a 1-D array of times, got {ts.shape}")
        if is_concrete(ts) and (
            not np.all(np.isfinite(np.asarray(ts))) or np.any(np.asarray(ts) < 0)
        ):
            raise ValueError(f"`t` must hold finite times >= 0, got {np.asarray(ts)}")
        f0 = initial_outputs(fx_train_0, y.shape, dtype, "fx_train_0")
        if fx_test_0 is not None and k_test_train is None:
            raise ValueError("predicting on a test set needs `k_test_train`")
        k_td = None
        if fx_test_0 is not None:
            k_td = as_float_array(k_test_train, "k_test_train").astype(dtype)
            want = (n,) + (y.shape[1:] * 2 if full else ())
            if k_td.ndim != 2 + 2 * full or k_td.shape[1:] != want:
                shape = f"(M, {', '.join(map(str, want))})"
                raise ValueError(f"`k_test_train` must be {shape}, got {k_td.shape}")
            g0 = initial_outputs(fx_test_0, (k_td.shape[0],) + y.shape[1:], dtype, "fx_test_0")
        state0 = (f0,) if k_td is None else (f0, g0)

        def apply(kern, grad):  # Θ acting on the loss gradient of the outputs
            return jnp.einsum("ijab,jb->ia", kern, grad) if full else kern @ grad

        kernels = (k,) if k_td is None else (k, k_td)
        if momentum is None:
            scale = learning_rate  # time η t

            def rhs(state, _):
                grad = grad_loss(state[0])
                return tuple(-apply(kern, grad) for kern in kernels)

        else:  # outputs, then their velocities (at rest at t = 0); time τ = sqrt(η) t
            scale = jnp.sqrt(jnp.asarray(learning_rate, dtype))
            friction = (jnp.asarray(momentum, dtype) - 1.0) / scale
            state0 = state0 + tuple(jnp.zeros_like(v) for v in state0)

            def rhs(state, _):
                grad = grad_loss(state[0])
                vels = state[len(kernels) :]
                acc = tuple(
                    -apply(kern, grad) + friction * v for kern, v in zip(kernels, vels, strict=True)
                )
                return vels + acc

        ts = ts * scale  # the ODE's own time

        # odeint returns NaN on a zero-length interval: t = 0 is answered with the
        # initial state, and integration starts from an interval of positive length.
        flat = ts.reshape(-1)
        tiny = jnp.asarray(np.finfo(dtype).tiny, dtype) * 1e6
        times = jnp.concatenate([jnp.zeros(1, dtype), jnp.maximum(flat, tiny)])
        tol = 1e-10 if dtype == jnp.float64 else 1e-6
        out = odeint(rhs, state0, times, rtol=tol, atol=tol)
        at_zero = (flat == 0).reshape((-1,) + (1,) * y.ndim)
        f_t = jnp.where(at_zero, f0, out[0][1:])
        g_t = f_t if k_td is None else jnp.where(at_zero, g0, out[1][1:])
        if ts.ndim == 0:
            f_t, g_t = f_t[0], g_t[0]
        return f_t if k_td is None else (f_t, g_t)

    return predict_fn
