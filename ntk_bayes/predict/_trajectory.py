r"""Training trajectory of one linearised network, and the largest stable learning rate.

A network linearised around its initialisation :math:`f_0`, trained by gradient flow on
:math:`\mathcal L = \frac{1}{2|Y|}\lVert f(X) - Y\rVert^2` at learning rate η with
(empirical or analytic) NTK :math:`Θ_r = Θ_{DD} + r I`, follows (Jacot et al. 2018;
Lee et al. 2019, eqs. 10–11), with :math:`τ = η t / |Y|`:

.. math::

    f_t(X) = f_0(X) + (I - e^{-τ Θ_r}) (Y - f_0(X)), \qquad
    f_t(x_*) = f_0(x_*) + Θ_{*D} Θ_r^{-1} (I - e^{-τ Θ_r}) (Y - f_0(X)).

Gradient descent with steps of size η is stable while
:math:`η < 2 |Y| / λ_{max}(Θ)` (``max_learning_rate``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike

from .._linalg import cho_solve
from .._numerics import as_float_array, check_finite, full_precision, is_concrete
from ._common import (
    OutputLayout,
    add_diagonal_regularizer,
    check_diag_reg,
    exact_first_cholesky,
    initial_outputs,
)
from ._ensemble import _check_time, neg_expm1, neg_inv_expm1

__all__ = ["gradient_descent_mse", "max_learning_rate"]


@full_precision
def gradient_descent_mse(
    k_train_train: ArrayLike,
    y_train: ArrayLike,
    learning_rate: float = 1.0,
    diag_reg: float = 0.0,
    diag_reg_absolute_scale: bool = False,
    trace_axes: int | Sequence[int] = (-1,),
) -> Callable[..., Array | tuple[Array, Array]]:
    """Closed-form gradient-flow trajectory of a linearised network on MSE.

    Args:
        k_train_train: NTK on the training inputs (analytic or empirical), in
            neural-tangents' layout without ``trace_axes``.
        y_train: targets ``(N, *outputs)``.
        learning_rate: η; ``t`` counts steps, absolute time ``η t``.
        diag_reg: diagonal regulariser (relative to ``trace(K)/N`` unless
            ``diag_reg_absolute_scale``).
        diag_reg_absolute_scale: whether ``diag_reg`` is absolute.
        trace_axes: output axes along which the kernel acts as ``⊗ I``.

    Returns:
        ``predict_fn(t=None, fx_train_0=0.0, fx_test_0=None, k_test_train=None)``
            returning ``fx_train_t``, ``fx_test_t`` (when ``fx_train_0`` is None) or both,
            with leading axes of ``t``'s shape; ``t=None`` is infinite time.
    """
    y = as_float_array(y_train, "y_train")
    check_finite(y, "y_train")
    check_diag_reg(diag_reg)
    if is_concrete(learning_rate) and not float(learning_rate) > 0:
        raise ValueError(f"`learning_rate` must be > 0, got {learning_rate}")
    layout = OutputLayout(y, trace_axes)
    n = y.shape[0]
    k_dd = layout.matrix(k_train_train, n, n, "k_train_train")
    k_reg = add_diagonal_regularizer(k_dd, diag_reg, diag_reg_absolute_scale)

    @functools.cache
    def chol():
        return exact_first_cholesky(k_reg, "regularised k_train_train")

    @functools.cache
    def eig():
        return jnp.linalg.eigh(k_reg)

    @full_precision
    def predict_fn(t=None, fx_train_0=0.0, fx_test_0=None, k_test_train=None):
        """Outputs on the train [and test] set at time(s) ``t``."""
        if fx_train_0 is None and fx_test_0 is None:
            raise ValueError(
                "both `fx_train_0` and `fx_test_0` are None: nothing to predict; pass "
                "the network's initial outputs (or 0.0)"
            )
        if fx_test_0 is not None and k_test_train is None:
            raise ValueError("predicting on a test set needs `k_test_train`")
        dtype = k_dd.dtype
        f0 = (
            None
            if fx_train_0 is None
            else initial_outputs(fx_train_0, y.shape, dtype, "fx_train_0")
        )
        resid = layout.flat_y(y.astype(dtype) if f0 is None else y.astype(dtype) - f0)
        k_td = None
        if fx_test_0 is not None:
            m = np.shape(k_test_train)[0]
            k_td = layout.matrix(k_test_train, m, n, "k_test_train", rows="M")
            g0 = initial_outputs(fx_test_0, (m,) + y.shape[1:], dtype, "fx_test_0")

        if t is None:
            fx_train = None if f0 is None else y.astype(dtype)
            fx_test = None
            if k_td is not None:
                fx_test = g0 + layout.unflat(k_td @ cho_solve(chol(), resid), m)
        else:
            t = _check_time(t, dtype) * learning_rate
            lead = t.shape
            tau = t.reshape((-1, 1)) / y.size
            evals, evecs = eig()
            proj = evecs.T @ resid
            fx_train = fx_test = None
            if f0 is not None:
                d = jnp.einsum("ji,si,it->sjt", evecs, neg_expm1(evals, tau), proj)
                fx_train = f0 + layout.unflat(d, n, lead)
            if k_td is not None:
                a = k_td @ evecs
                d = jnp.einsum("mi,si,it->smt", a, neg_inv_expm1(evals, tau), proj)
                fx_test = g0 + layout.unflat(d, m, lead)
        if fx_train is None:
            return fx_test
        if fx_test is None:
            return fx_train
        return fx_train, fx_test

    return predict_fn


@full_precision
def max_learning_rate(
    ntk_train_train: ArrayLike,
    y_train_size: int | None = None,
    momentum: float = 0.0,
    eps: float = 1e-12,
) -> float:
    """Largest learning rate for which (momentum) GD on MSE converges, ``2(1+μ)|Y|/λ_max``.

    Args:
        ntk_train_train: NTK on the training inputs, ``(N, N)`` (or interleaved
            ``(N, N, K, K)`` with untraced outputs).
        y_train_size: ``y_train.size``; default: the kernel's row count (one output).
        momentum: momentum μ of the optimiser.
        eps: guards a zero divisor.
    """
    k = np.asarray(ntk_train_train, dtype=np.float64)
    if k.ndim % 2 or k.ndim == 0:
        raise ValueError(f"`ntk_train_train` must be (N, N[, K, K]), got shape {k.shape}")
    if k.ndim > 2:
        order = tuple(range(0, k.ndim, 2)) + tuple(range(1, k.ndim, 2))
        p = int(np.prod(k.shape[::2]))
        k = np.transpose(k, order).reshape(p, p)
    if k.shape[0] != k.shape[1]:
        raise ValueError(f"`ntk_train_train` must be square, got shape {k.shape}")
    if not np.all(np.isfinite(k)):
        raise ValueError("`ntk_train_train` contains NaN or inf")
    factor = k.shape[0] if y_train_size is None else int(y_train_size)
    lam = float(np.linalg.eigvalsh(k)[-1])
    return 2.0 * (1.0 + momentum) * factor / (lam + eps)
