r"""Infinite ensembles of infinitely wide networks trained by gradient descent on MSE.

Gradient flow on :math:`\mathcal L = \frac{1}{2 |Y|} \lVert f(X) - Y \rVert^2` at
learning rate η (``learning_rate``; |Y| = ``y_train.size``) for time t (in steps) makes
the outputs of an infinitely wide network, averaged over its Gaussian initialisation,
a Gaussian with (Lee et al. 2019, eqs. 15–16), writing :math:`τ = η t / |Y|`,
:math:`E_A(τ) = I - e^{-τ A}` and :math:`A_r = A + r I` (``diag_reg``):

.. math::

    \text{ntk:}\quad μ_t = Θ_{*D} Θ_r^{-1} E_{Θ_r}(τ) Y, \qquad
        Σ_t = K_{**} + Θ_{*D} Θ_r^{-1} E K_{DD} E Θ_r^{-1} Θ_{D*}
             - (Θ_{*D} Θ_r^{-1} E K_{D*} + \text{h.c.})

    \text{nngp:}\quad μ_t = K_{*D} K_r^{-1} E_{K_r}(τ) Y, \qquad
        Σ_t = K_{**} - K_{*D} K_r^{-1} E_{K_r}(2τ) K_{D*}

("nngp" dynamics: only the readout layer trains). Functions of :math:`A_r` are
applied in its eigenbasis (one ``eigh``, cached), never by an ODE solver; negative
round-off eigenvalues are clipped to 0. At ``t=None`` (infinite time) the result is
:func:`gp_inference`'s, computed by Cholesky.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike

from .._numerics import as_float_array, check_finite, full_precision, is_concrete
from ._common import (
    Gaussian,
    OutputLayout,
    add_diagonal_regularizer,
    canonical_get,
    check_diag_reg,
    named_output,
)
from ._inference import gp_inference

__all__ = ["gradient_descent_mse_ensemble", "neg_expm1", "neg_inv_expm1"]

_MODES = ("nngp", "ntk")


def neg_expm1(evals: Array, tau: ArrayLike) -> Array:
    """``1 - exp(-λ τ)`` for eigenvalues ``λ`` clipped at 0 (``tau`` broadcasts)."""
    return -jnp.expm1(-jnp.maximum(evals, 0.0) * tau)


def neg_inv_expm1(evals: Array, tau: ArrayLike) -> Array:
    """``(1 - exp(-λ τ)) / λ``, equal to its limit ``τ`` where ``λ`` is (near) 0."""
    lam = jnp.maximum(evals, 0.0)
    tiny = jnp.finfo(evals.dtype).tiny ** 0.5
    safe = jnp.where(lam > tiny, lam, 1.0)
    return jnp.where(lam > tiny, -jnp.expm1(-safe * tau) / safe, tau * jnp.ones_like(lam))


def _check_time(t, dtype):
    t = jnp.asarray(t, dtype)
    if is_concrete(t):
        tv = np.asarray(t)
        if not np.all(np.isfinite(tv)) or np.any(tv < 0):
            raise ValueError(
                "`t` must hold finite times >= 0 (use t=None for infinite time), "
                f"got {np.asarray(t)}"
            )
    return t


def _call_kernel(kernel_fn, x1, x2, names, kwargs):
    out = kernel_fn(x1, x2, names if len(names) > 1 else names[0], **kwargs)
    if len(names) == 1 and hasattr(out, "shape") and not hasattr(out, "_fields"):
        return {names[0]: out}
    res = {}
    for g in names:
        part = getattr(out, g, None)
        if part is None:
            raise ValueError(
                f"`kernel_fn` returned {type(out).__name__} without a {g!r} field; it must "
                "return an array or a namedtuple with `nngp`/`ntk` like stax kernel_fn"
            )
        res[g] = part
    return res


@full_precision
def gradient_descent_mse_ensemble(
    kernel_fn: Callable[..., Any],
    x_train: ArrayLike,
    y_train: ArrayLike,
    learning_rate: float = 1.0,
    diag_reg: float = 0.0,
    diag_reg_absolute_scale: bool = False,
    trace_axes: int | Sequence[int] = (-1,),
    **kernel_fn_train_train_kwargs: Any,
) -> Callable[..., Any]:
    """Mean and covariance of the GD-trained infinite ensemble at any training time.

    Args:
        kernel_fn: ``kernel_fn(x1, x2, get, **kwargs)`` returning the kernel(s) as an
            array or a namedtuple with ``nngp``/``ntk`` (a stax network's
            ``kernel_fn``, or a Monte Carlo/empirical kernel function).
        x_train: training inputs ``(N, ...)``.
        y_train: targets ``(N, *outputs)``.
        learning_rate: η; times ``t`` are in steps, absolute time is ``η t``.
        diag_reg: diagonal regulariser of the train kernel (see ``gp_inference``).
        diag_reg_absolute_scale: ``True`` for absolute, ``False`` (default) for
            ``diag_reg * trace(K) / N``.
        trace_axes: output axes along which the kernels act as ``⊗ I``.
        **kernel_fn_train_train_kwargs: passed to every ``kernel_fn`` call.

    Returns:
        ``predict_fn(t=None, x_test=None, get=None, compute_cov=False)``: ``t`` a
            scalar or array of times (leading axes of the result) or ``None`` for
            infinite time; ``x_test=None`` predicts on the training inputs (without
            regularisation of the targets); ``get`` "nngp", "ntk" or a tuple (default
            both). Returns means, or :class:`Gaussian` ``(mean, covariance)`` with
            ``compute_cov=True``; a namedtuple of them for a tuple ``get``.
    """
    if not callable(kernel_fn):
        raise TypeError(f"`kernel_fn` must be callable, got {type(kernel_fn).__name__}")
    y = as_float_array(y_train, "y_train")
    check_finite(y, "y_train")
    n = y.shape[0] if y.ndim else 0
    if np.shape(x_train)[:1] != (n,):
        raise ValueError(
            f"`x_train` has {np.shape(x_train)[:1]} points but `y_train` has {n}; "
            "they must share the first axis"
        )
    check_diag_reg(diag_reg)
    if is_concrete(learning_rate) and not float(learning_rate) > 0:
        raise ValueError(f"`learning_rate` must be > 0, got {learning_rate}")
    layout = OutputLayout(y, trace_axes)
    y_flat = layout.flat_y(y)
    size = y.size
    kwargs = kernel_fn_train_train_kwargs
    cache: dict[str, object] = {}

    def train(names):
        missing = tuple(g for g in names if g not in cache)
        if missing:
            for g, k in _call_kernel(kernel_fn, x_train, None, missing, kwargs).items():
                cache[g] = layout.matrix(k, n, n, f"kernel_fn(x_train, None, {g!r})")
        return {g: cache[g] for g in names}

    @functools.cache
    def eigenspace(g):
        k = add_diagonal_regularizer(train((g,))[g], diag_reg, diag_reg_absolute_scale)
        evals, evecs = jnp.linalg.eigh(k)
        return evals, evecs

    @functools.cache
    def infinite(names):
        k = train(names)
        if len(names) == 1:
            k = k[names[0]]
        else:
            k = _Pair(k.get("nngp"), k.get("ntk"))
        # Already in matrix layout: hand gp_inference flat targets and no trace axes.
        return gp_inference(
            k, y_flat.astype(_first(k).dtype), diag_reg, diag_reg_absolute_scale, trace_axes=(-1,)
        )

    @full_precision
    def predict_fn(t=None, x_test=None, get=None, compute_cov: bool = False, **test_kwargs):
        """Mean (and covariance) of the ensemble on ``x_test`` at time(s) ``t``."""
        single, names = canonical_get(get, _MODES)
        needs = tuple(g for g in _MODES if g in names or (compute_cov and g == "nngp"))
        k_dd = train(needs)
        kw = {**kwargs, **test_kwargs}
        if x_test is None:
            k_td, k_tt, m = None, None, n
        else:
            if np.ndim(x_test) < 1 or np.shape(x_test)[0] == 0:
                raise ValueError(
                    f"`x_test` must have a leading batch axis of at least one point, got shape "
                    f"{np.shape(x_test)}"
                )
            if np.shape(x_test)[1:] != np.shape(x_train)[1:]:
                raise ValueError(
                    f"`x_test` has per-point shape {np.shape(x_test)[1:]} but `x_train` has "
                    f"{np.shape(x_train)[1:]}; they must match"
                )
            m = np.shape(x_test)[0]
            k_td = {
                g: layout.matrix(v, m, n, f"kernel_fn(x_test, x_train, {g!r})")
                for g, v in _call_kernel(kernel_fn, x_test, x_train, needs, kw).items()
            }
            k_tt = None
            if compute_cov:
                v = _call_kernel(kernel_fn, x_test, None, ("nngp",), kw)["nngp"]
                k_tt = layout.matrix(v, m, m, "kernel_fn(x_test, None, 'nngp')")

        if t is None:
            out = _infinite_time(infinite(needs), names, k_td, k_tt, compute_cov, layout, m, n)
            return named_output(out, names, single)

        dtype = _first(k_dd).dtype
        t = _check_time(t, dtype) * learning_rate
        lead = t.shape
        tau = t.reshape((-1, 1)) / size
        out = {}
        for g in names:
            evals, evecs = eigenspace(g)
            mean, cov = _finite_moments(
                g,
                compute_cov,
                evals,
                evecs,
                tau,
                y_flat.astype(dtype),
                None if k_td is None else k_td[g],
                None if k_td is None or not compute_cov else k_td["nngp"],
                k_dd["nngp"] if compute_cov else None,
                k_tt,
            )
            mean = layout.unflat(mean, m, lead)
            if not compute_cov:
                out[g] = mean
                continue
            out[g] = Gaussian(mean, layout.unmatrix(cov.reshape(lead + cov.shape[1:]), m, m, lead))
        return named_output(out, names, single)

    return predict_fn


@functools.partial(jax.jit, static_argnames=("g", "compute_cov"))
def _finite_moments(g, compute_cov, evals, evecs, tau, y_flat, k_td, nngp_td, nngp_dd, k_tt):
    """Mean (S, P*, T) and covariance (S, P*, P*) at the S times ``tau`` (one program)."""
    proj = evecs.T @ y_flat  # targets in the eigenbasis, (P, T)
    if k_td is None:
        mean = jnp.einsum("ji,si,it->sjt", evecs, neg_expm1(evals, tau), proj)
    else:
        a = k_td @ evecs  # (m, P)
        mean = jnp.einsum("mi,si,it->smt", a, neg_inv_expm1(evals, tau), proj)
    if not compute_cov:
        return mean, None
    lam = jnp.maximum(evals, 0.0)
    if k_td is None:
        # Train set: the prior part cancels, leaving the decaying initial fluctuations.
        if g == "nngp":
            w = lam * jnp.exp(-2.0 * lam * tau)
            return mean, jnp.einsum("ji,si,ki->sjk", evecs, w, evecs)
        e = jnp.einsum("ji,si,ki->sjk", evecs, jnp.exp(-lam * tau), evecs)
        return mean, jnp.einsum("sjk,kl,sml->sjm", e, nngp_dd, e)
    if g == "nngp":
        return mean, k_tt[None] - jnp.einsum("mi,si,li->sml", a, neg_inv_expm1(evals, 2.0 * tau), a)
    # term_1[s] = Θ_r^{-1} E(τ) Θ_{D*}: (P, m) per time.
    term_1 = jnp.einsum("ji,si,li->sjl", evecs, neg_inv_expm1(evals, tau), a)
    term_2 = jnp.einsum("sjm,lj->sml", term_1, nngp_td)
    inner = jnp.einsum("sjm,jk,skl->sml", term_1, nngp_dd, term_1)
    return mean, k_tt[None] + inner - term_2 - jnp.swapaxes(term_2, 1, 2)


def _infinite_time(predict, names, k_td, k_tt, compute_cov, layout, m, n):
    if k_td is None:
        res = predict(names, None, True if compute_cov else None)
    else:
        res = predict(
            names,
            _Pair(k_td.get("nngp"), k_td.get("ntk")),
            _Pair(k_tt, None) if compute_cov else None,
        )
    out = {}
    for g, r in zip(names, res, strict=True):
        if compute_cov:
            mean = layout.unflat(r.mean, m)
            out[g] = Gaussian(mean, layout.unmatrix(r.covariance, m, m))
        else:
            out[g] = layout.unflat(r, m)
    return out


class _Pair:
    """Minimal ``nngp``/``ntk`` holder passed to :func:`gp_inference`."""

    _fields = ("nngp", "ntk")

    def __init__(self, nngp, ntk):
        self.nngp, self.ntk = nngp, ntk


def _first(k):
    if isinstance(k, dict):
        return next(v for v in k.values() if v is not None)
    if isinstance(k, _Pair):
        return k.nngp if k.nngp is not None else k.ntk
    return k
