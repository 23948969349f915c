r"""Monte Carlo estimates of NNGP/NTK kernels from random finite-width networks.

.. math::

    \bar Σ = \frac1S \sum_{s=1}^S \hat Σ_{θ_s}, \qquad
    \bar Θ = \frac1S \sum_{s=1}^S \hat Θ_{θ_s}, \qquad θ_s \sim \text{init\_fn}

with the empirical kernels of :mod:`ntk_bayes.empirical._empirical`. As width and S
grow, these converge to the analytic kernels (Neal 1996; Jacot et al. 2018); the
per-entry standard error ``sd / sqrt(S)`` is returned on request, so that tests can
compare analytic and Monte Carlo kernels with a tolerance derived from it.
"""

from __future__ import annotations

import collections
import inspect
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import PRNGKeyArray

from .._numerics import POSITIVE_INT, check_int
from ._empirical import empirical_nngp_fn, empirical_ntk_fn

__all__ = ["monte_carlo_kernel_fn"]

_GETS = ("nngp", "ntk")


def monte_carlo_kernel_fn(
    init_fn: Callable,
    apply_fn: Callable,
    key: PRNGKeyArray,
    n_samples: int,
    batch_size: int = 1,
    device_count: int = 0,
    store_on_device: bool = True,
    trace_axes: Sequence[int] = (-1,),
    diagonal_axes: Sequence[int] = (),
    implementation: Any = None,
) -> Callable[..., Any]:
    """Returns ``kernel_fn(x1, x2=None, get=("nngp", "ntk"), with_stderr=False,
    **apply_fn_kwargs)``.

    Args:
        init_fn: ``init_fn(key, input_shape)`` of the finite network (e.g. ``net.init_fn``).
        apply_fn: ``apply_fn(params, x)`` of the finite network (e.g. ``net.apply_fn``).
        key: PRNG key; sample s initialises with ``k_s = jax.random.split(key,
            n_samples)[s]`` and, when ``apply_fn`` takes an ``rng`` keyword (every stax
            network does), applies with ``rng=jax.random.fold_in(k_s, 1)``: Dropout
            draws fresh masks per sample, shared by a point paired with itself.
        n_samples: number of random networks averaged.
        batch_size: networks evaluated together (vmapped) per step.

    ``with_stderr=True`` returns ``(mean, stderr)``, two namedtuples of the same layout;
    ``stderr`` is sd / sqrt(S) with the unbiased sd (so ``n_samples`` >= 2), accumulated
    by a running mean and sum of squared deviations, which stays accurate in float32 where
    an entry's spread is tiny against its mean.
    Further keywords go to ``apply_fn`` as in neural-tangents: a tuple of two is ``(for
    x1, for x2)``, e.g. ``pattern=(pattern1, pattern2)`` for graph networks, anything else
    goes to both; ``rng`` is drawn per sample and cannot be given.
    """
    n_samples = check_int(n_samples, "n_samples", low=1, message=POSITIVE_INT)
    batch_size = check_int(
        batch_size,
        "batch_size",
        low=1,
        message=POSITIVE_INT,
    )
    if n_samples % batch_size:
        raise ValueError(
            f"`n_samples` ({n_samples}) must be a multiple of `batch_size` ({batch_size})"
        )
    nngp_fn = empirical_nngp_fn(apply_fn, trace_axes, diagonal_axes)
    ntk_fn = empirical_ntk_fn(apply_fn, trace_axes, diagonal_axes)
    keys = jax.random.split(key, n_samples)
    # typed keys are (n,), legacy uint32 keys (n, 2): keep whatever trails the sample axis
    keys = keys.reshape((n_samples // batch_size, batch_size) + keys.shape[1:])
    takes_rng = _takes_rng(apply_fn)

    def estimate(x1, x2, names, arrays, static):
        def one(k):
            _, params = init_fn(k, x1.shape)
            fns = {"nngp": nngp_fn, "ntk": ntk_fn}
            kw = {**arrays, **dict(static)}
            if takes_rng:
                kw["rng"] = jax.random.fold_in(k, 1)
            return {g: fns[g](x1, x2, params, **kw) for g in names}

        # Running mean and sum of squared deviations, merged batch by batch (Chan, Golub &
        # LeVeque 1979). Not Σv² / S - mean²: where an entry's spread is small against its
        # mean (a large readout bias, float32) that difference cancels to noise, and the
        # standard error came out 0 or 1000 times too large.
        def step(carry, xs):
            kb, i = xs
            vals = jax.vmap(one)(kb)
            mean, m2 = carry
            n_a = (i * batch_size).astype(dtype)
            n = n_a + batch_size
            new_mean, new_m2 = {}, {}
            for g in names:
                mb = vals[g].mean(0)
                delta = mb - mean[g]
                new_mean[g] = mean[g] + delta * (batch_size / n)
                m2b = jnp.sum(jnp.square(vals[g] - mb), axis=0)
                new_m2[g] = m2[g] + m2b + jnp.square(delta) * (n_a * batch_size / n)
            return (new_mean, new_m2), None

        shape = jax.eval_shape(one, keys[0, 0])
        dtype = jnp.result_type(*(shape[g].dtype for g in names))
        zeros = {g: jnp.zeros(shape[g].shape, shape[g].dtype) for g in names}
        steps = jnp.arange(keys.shape[0])
        (mean, m2), _ = jax.lax.scan(step, (zeros, zeros), (keys, steps))
        # sd / sqrt(S) with the unbiased variance; undefined (NaN) for one sample
        denom = n_samples - 1 if n_samples > 1 else jnp.nan
        stderr = {g: jnp.sqrt(m2[g] / denom / n_samples) for g in names}
        return mean, stderr

    estimate_jit = jax.jit(estimate, static_argnames=("names", "static"))

    def kernel_fn(x1, x2=None, get=_GETS, with_stderr: bool = False, **apply_fn_kwargs):
        names = (get,) if isinstance(get, str) else tuple(get or _GETS)
        for g in names:
            if g not in _GETS:
                raise ValueError(f"`get` has unknown kernel {g!r}; choose from {_GETS}")
        if with_stderr and n_samples < 2:
            raise ValueError(
                "`with_stderr=True` needs `n_samples` >= 2 to estimate a standard error; "
                f"this kernel_fn averages {n_samples} network"
            )
        arrays, static = _split_by_kind(apply_fn_kwargs)
        x1 = jnp.asarray(x1)
        x2 = None if x2 is None else jnp.asarray(x2)
        mean, stderr = estimate_jit(x1, x2, names, arrays, static)
        if isinstance(get, str):
            return (mean[get], stderr[get]) if with_stderr else mean[get]
        nt = collections.namedtuple("Kernel", names)
        if with_stderr:
            return nt(**mean), nt(**stderr)
        return nt(**mean)

    return kernel_fn


def _split_by_kind(kwargs):
    """``apply_fn``'s keywords as (those holding arrays: traced, a dict) and (the rest:
    compiled in, a sorted tuple of pairs, which must be hashable)."""
    if "rng" in kwargs:
        raise ValueError(
            "`rng`: monte_carlo_kernel_fn draws each sample's rng from its `key`; drop `rng`"
        )
    arrays, static = {}, []
    for name, value in kwargs.items():
        leaves = jax.tree_util.tree_leaves(value)
        if any(isinstance(v, jax.Array | np.ndarray | np.generic) for v in leaves):
            arrays[name] = value
            continue
        try:
            hash(value)
        except TypeError:
            raise TypeError(
                f"`{name}`={value!r} is neither arrays nor a hashable constant; pass arrays "
                "(e.g. np.asarray) or a number, string or tuple"
            ) from None
        static.append((name, value))
    return arrays, tuple(sorted(static))


def _takes_rng(fn) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "rng" or p.kind is p.VAR_KEYWORD for p in params)
