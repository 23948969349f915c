r"""First-order Taylor models of a network in its parameters, and effective NTKs.

The linearisation of ``f(θ, x)`` around ``θ0`` (Lee et al. 2019, "Wide neural networks
of any depth evolve as linear models under gradient descent"):

.. math::

    f^{lin}(θ, x) = f(θ_0, x) + J(θ_0, x)\,(θ - θ_0), \qquad J = ∂f/∂θ

Gradient descent with per-parameter learning rates ``η s_p`` (``s`` the ``lr_scales``
pytree, 1 by default) moves the outputs with the *effective* NTK

.. math::

    Θ_s(x_1, x_2) = \sum_p s_p\, ∂_p f(x_1)\, ∂_p f(x_2)

which is the ordinary empirical NTK when every ``s_p = 1``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._numerics import NON_NEGATIVE_INT, check_int, is_concrete
from ..empirical import empirical_ntk_fn

__all__ = ["linearize", "taylor_expand", "effective_ntk_fn", "check_lr_scales"]


def _check_apply_fn(apply_fn) -> None:
    if not callable(apply_fn):
        raise TypeError(
            f"`apply_fn` must be callable as apply_fn(params, x), got {type(apply_fn).__name__}; "
            "pass net.apply_fn"
        )


def _check_params(params) -> None:
    leaves = jax.tree_util.tree_leaves(params)
    if not leaves:
        raise ValueError("`params` has no array leaves; pass the params returned by init_fn")
    for leaf in leaves:
        if not hasattr(leaf, "dtype") or not jnp.issubdtype(jnp.asarray(leaf).dtype, jnp.inexact):
            raise TypeError(
                f"`params` leaves must be float arrays, found {type(leaf).__name__}; "
                "pass the params returned by init_fn"
            )


def linearize(f: Callable, params: Any) -> Callable:
    """The first-order Taylor expansion of ``f`` in its parameters around ``params``
    (``neural_tangents.linearize``; also ``ntk_bayes.linearize``).

    Args:
        f: ``f(params, *args, **kwargs)`` returning an array or a pytree of arrays, e.g.
            ``net.apply_fn``.
        params: the expansion point θ0 (a pytree of float arrays).

    Returns:
        ``f_lin(p, *args, **kwargs) = f(θ0, ...) + J(θ0, ...) (p - θ0)``, computed by one
            forward-mode product (``jax.jvp``): no Jacobian is stored.
    """
    _check_apply_fn(f)
    _check_params(params)

    def f_lin(p, *args, **kwargs):
        dp = _difference(p, params)
        f0, df = jax.jvp(lambda q: f(q, *args, **kwargs), (params,), (dp,))
        return jax.tree_util.tree_map(jnp.add, f0, df)

    return f_lin


def taylor_expand(f: Callable, params: Any, degree: int) -> Callable:
    r"""The Taylor expansion of ``f`` of order ``degree`` in its parameters around
    ``params`` (``neural_tangents.taylor_expand``; also ``ntk_bayes.taylor_expand``):

    .. math::

        f^{(d)}(θ) = \sum_{k=0}^{d} \frac{1}{k!}\, D^k f(θ_0)[θ - θ_0]^{k}

    Args:
        f: ``f(params, *args, **kwargs)`` returning an array or a pytree of arrays.
        params: the expansion point θ0 (a pytree of float arrays).
        degree: the order d >= 0 (0: the constant ``f(θ0)``, 1: :func:`linearize`).

    Returns:
        ``f_tayl(p, *args, **kwargs)``. The k-th term is k nested forward-mode products
            along θ - θ0 (no Jacobian or Hessian is stored); its cost grows like 2^k.
    """
    _check_apply_fn(f)
    _check_params(params)
    degree = check_int(degree, "degree", low=0, message=NON_NEGATIVE_INT)

    def f_tayl(p, *args, **kwargs):
        dp = _difference(p, params)
        g = lambda q: f(q, *args, **kwargs)
        total = g(params)
        for k in range(1, degree + 1):
            g = _directional(g, dp)  # q -> D^k f(q)[dp]^k
            term = g(params)
            total = jax.tree_util.tree_map(lambda t, d, k=k: t + d / math.factorial(k), total, term)
        return total

    return f_tayl


def _directional(g: Callable, dp) -> Callable:
    """``q -> Dg(q)[dp]``, the derivative of ``g`` along ``dp``."""
    return lambda q: jax.jvp(g, (q,), (dp,))[1]


def _difference(p, params):
    try:
        return jax.tree_util.tree_map(jnp.subtract, p, params)
    except ValueError as e:
        raise ValueError(
            f"the new parameters must have the structure of the expansion point: {e}"
        ) from None


def check_lr_scales(lr_scales, params):
    """Validate a per-leaf learning-rate scale pytree (``None`` means all ones)."""
    if lr_scales is None:
        return None
    try:
        flat = jax.tree_util.tree_structure(params).flatten_up_to(lr_scales)
    except (ValueError, TypeError) as e:
        raise ValueError(
            "`lr_scales` must have the structure of `params` (one scalar per leaf); "
            f"got a mismatch: {e}"
        ) from None
    for s in flat:
        if not is_concrete(s):
            continue  # traced scales (inside jit) are the caller's responsibility
        arr = np.asarray(s)
        if arr.ndim != 0 or not np.isfinite(arr) or float(arr) <= 0:
            raise ValueError(f"`lr_scales` entries must be positive finite scalars, got {s!r}")
    return lr_scales


def effective_ntk_fn(apply_fn: Callable, lr_scales=None) -> Callable:
    """Returns ``ntk_fn(x1, x2, params)``: the effective NTK Θ_s of per-leaf rates ``s``.

    Reparameterises θ_p = sqrt(s_p) u_p, so that the ordinary empirical NTK in u
    (:func:`ntk_bayes.empirical_ntk_fn`) is Θ_s; ``lr_scales=None`` gives the plain
    empirical NTK. Outputs with several channels are averaged over the last axis. The
    compiled function is cached by ``apply_fn`` (an equinox network's bound method hits
    the cache for every network of equal structure and static hyperparameters).
    """
    _check_apply_fn(apply_fn)

    def ntk_fn(x1, x2, params):
        return _effective_ntk(apply_fn, lr_scales, x1, x2, params)

    return ntk_fn


@eqx.filter_jit
def _effective_ntk(apply_fn, lr_scales, x1, x2, params):
    if lr_scales is None:
        return empirical_ntk_fn(apply_fn)(x1, x2, params)

    def f_u(u, x):
        theta = jax.tree_util.tree_map(lambda ui, si: ui * jnp.sqrt(si), u, lr_scales)
        return apply_fn(theta, x)

    u = jax.tree_util.tree_map(lambda p, s: p / jnp.sqrt(s), params, lr_scales)
    return empirical_ntk_fn(f_u)(x1, x2, u)
