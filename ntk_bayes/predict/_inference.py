r"""Closed-form posteriors of infinitely wide networks (neural-tangents' ``gp_inference``).

With train kernels :math:`K = K_{DD}` (NNGP) and :math:`Θ = Θ_{DD}` (NTK), each
regularised as :math:`A_r = A + r I` (``diag_reg``), test-train kernels
:math:`K_{*D}, Θ_{*D}` and the test-test NNGP :math:`K_{**}` (NTK :math:`Θ_{**}`):

.. math::

    \text{nngp:}\quad μ = K_{*D} K_r^{-1} Y, \qquad
        Σ = K_{**} - K_{*D} K_r^{-1} K_{D*}

    \text{ntk:}\quad μ = Θ_{*D} Θ_r^{-1} Y, \qquad
        Σ = K_{**} + Θ_{*D} Θ_r^{-1} K Θ_r^{-1} Θ_{D*}
            - (Θ_{*D} Θ_r^{-1} K_{D*} + \text{h.c.})

    \text{ntkgp:}\quad μ = Θ_{*D} Θ_r^{-1} Y, \qquad
        Σ = Θ_{**} - Θ_{*D} Θ_r^{-1} Θ_{D*}

"nngp" is the exact Bayesian posterior of the infinitely wide network (Lee et al.
2018), "ntk" the distribution of an infinite ensemble trained to convergence by
gradient flow on MSE (Lee et al. 2019, eq. 16, t → ∞), "ntkgp" the GP posterior with
the NTK as prior covariance (He, Lakshminarayanan & Teh 2020).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import ArrayLike

from .._linalg import cho_solve
from .._numerics import as_float_array, check_finite, full_precision
from ._common import (
    Gaussian,
    OutputLayout,
    add_diagonal_regularizer,
    canonical_get,
    check_diag_reg,
    exact_first_cholesky,
    kernel_part,
    named_output,
)

__all__ = ["gp_inference"]

_MODES = ("nngp", "ntk", "ntkgp")


@full_precision
def gp_inference(
    k_train_train: ArrayLike | tuple[ArrayLike, ...],
    y_train: ArrayLike,
    diag_reg: float = 0.0,
    diag_reg_absolute_scale: bool = False,
    trace_axes: int | Sequence[int] = (-1,),
) -> Callable[..., Any]:
    """Posterior of the NNGP, the NTK ensemble and the NTK-GP given kernel matrices.

    Args:
        k_train_train: train-train kernel: an array, or a namedtuple with ``nngp``
            and/or ``ntk`` (both are needed for the "ntk" covariance).
        y_train: targets ``(N, *outputs)``.
        diag_reg: regulariser ``r`` added to the diagonal of the train kernel.
        diag_reg_absolute_scale: ``True``: ``r = diag_reg``; ``False`` (default):
            ``r = diag_reg * trace(K) / N`` as in neural-tangents.
        trace_axes: output axes along which the kernels act as ``⊗ I`` (omitted).

    Returns:
        ``predict_fn(get=None, k_test_train=None, k_test_test=None)``. ``get`` is
            "nngp", "ntk", "ntkgp" or a tuple of them (default ``("nngp", "ntk")``). With
            ``k_test_train=None`` the train-set prediction ``N(y_train, 0)`` is returned.
            Without ``k_test_test`` only means are returned, else :class:`Gaussian`
            ``(mean, covariance)``; a tuple ``get`` gives a namedtuple of these.
    """
    y = as_float_array(y_train, "y_train")
    check_finite(y, "y_train")
    check_diag_reg(diag_reg)
    layout = OutputLayout(y, trace_axes)
    n = y.shape[0]
    y_flat = layout.flat_y(y)

    @functools.cache
    def train(g: str):
        k = layout.matrix(kernel_part(k_train_train, g, "k_train_train"), n, n, "k_train_train")
        return k

    @functools.cache
    def factor(g: str):
        k = add_diagonal_regularizer(train(g), diag_reg, diag_reg_absolute_scale)
        return exact_first_cholesky(k, f"regularised train-train {g} kernel")

    @functools.cache
    def k_inv_y(g: str):
        L = factor(g)
        return cho_solve(L, y_flat.astype(L.dtype))

    @full_precision
    def predict_fn(get=None, k_test_train=None, k_test_test=None):
        """Test-set posterior (or the train-set one) for each mode in ``get``."""
        single, names = canonical_get(get, _MODES)
        out = {}
        for g in names:
            base = "ntk" if g == "ntkgp" else g
            k_dd = train(base)
            if k_test_train is None:
                mean = layout.unflat(y_flat.astype(k_dd.dtype), n)
                out[g] = (
                    mean
                    if k_test_test is None
                    else Gaussian(mean, layout.unmatrix(jnp.zeros_like(k_dd), n, n))
                )
                continue
            k_td = kernel_part(k_test_train, base, "k_test_train")
            m = k_td.shape[0]
            k_td = layout.matrix(k_td, m, n, "k_test_train", rows="M")
            mean = layout.unflat(k_td @ k_inv_y(base), m)
            if k_test_test is None:
                out[g] = mean
                continue
            prior = "ntk" if g == "ntkgp" else "nngp"
            k_tt = layout.matrix(
                kernel_part(k_test_test, prior, "k_test_test"), m, m, "k_test_test"
            )
            nngp_dd = nngp_td = None
            if g == "ntk":
                if not (_has_nngp(k_train_train) and _has_nngp(k_test_train)):
                    raise ValueError(
                        "the 'ntk' covariance needs the NNGP as well as the NTK: pass "
                        "k_train_train and k_test_train as namedtuples with 'nngp' and 'ntk' "
                        "(e.g. kernel_fn(x1, x2, ('nngp', 'ntk')))"
                    )
                nngp_td = layout.matrix(
                    kernel_part(k_test_train, "nngp", "k_test_train"), m, n, "k_test_train"
                )
                nngp_dd = train("nngp")
            cov = _posterior_cov(g, factor(base), k_td, k_tt, nngp_dd, nngp_td)
            out[g] = Gaussian(mean, layout.unmatrix(cov, m, m))
        return named_output(out, names, single)

    return predict_fn


@functools.partial(jax.jit, static_argnames=("g",))
def _posterior_cov(g, L, k_td, k_tt, nngp_dd, nngp_td):
    if g in ("nngp", "ntkgp"):
        return k_tt - k_td @ cho_solve(L, k_td.T)
    w = cho_solve(L, k_td.T)  # Θ_r^{-1} Θ_{D*}
    cross = k_td @ cho_solve(L, nngp_td.T)
    return k_tt + w.T @ nngp_dd @ w - cross - cross.T


def _has_nngp(k) -> bool:
    return getattr(k, "nngp", None) is not None and not hasattr(k, "ndim")
