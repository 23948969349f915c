r"""Empirical (finite-width) kernels of any JAX function ``f(params, x)``.

.. math::

    \hat Σ(x_1, x_2) = \frac{1}{K} \sum_k f_k(θ, x_1) f_k(θ, x_2), \qquad
    \hat Θ(x_1, x_2) = \frac{1}{K} \sum_k \sum_p
        \frac{∂ f_k(θ, x_1)}{∂ θ_p} \frac{∂ f_k(θ, x_2)}{∂ θ_p}

where k runs over the traced output axes (``trace_axes``, default the last: the
output channels) and p over every leaf of the parameter pytree θ. Works for stax
networks, Flax or Equinox models, or plain functions, as long as ``f`` is a JAX
function of a parameter pytree and a batch of inputs.
"""

from __future__ import annotations

import collections
import string
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from .._numerics import check_int, full_precision

__all__ = ["empirical_ntk_fn", "empirical_nngp_fn", "empirical_kernel_fn"]

_GETS = ("nngp", "ntk")


def _axes_tuple(axes, name: str) -> tuple[int, ...]:
    """``axes`` (an int or a sequence of ints) as a tuple of ints, else a TypeError."""
    if isinstance(axes, int | np.integer) and not isinstance(axes, bool):
        return (int(axes),)  # one axis, as neural-tangents accepts
    try:
        axes = tuple(axes)
    except TypeError:
        raise TypeError(f"`{name}` must be an int or a tuple of ints, got {axes!r}") from None
    for a in axes:
        if not isinstance(a, int | np.integer) or isinstance(a, bool):
            raise TypeError(f"`{name}` must be an int or a tuple of ints, got {axes!r}")
    return tuple(int(a) for a in axes)


def _norm_axes(axes, ndim: int, name: str, batch: bool = False) -> tuple[int, ...]:
    """``axes`` as sorted non-negative output axes; the batch axis 0 only if ``batch``."""
    axes = _axes_tuple(axes, name)
    out = []
    for a in axes:
        b = a % ndim if -ndim <= a < ndim else None
        if b is None or (b == 0 and not batch):
            raise ValueError(
                f"`{name}`={axes} names axis {a}, but outputs have {ndim} axes and axis 0 "
                "is the batch axis"
            )
        out.append(b)
    if len(set(out)) != len(out):
        raise ValueError(f"`{name}` repeats an axis: {axes}")
    return tuple(sorted(out))


def _output_axes(trace_axes, diagonal_axes, ndim: int, n1: int, n2: int | None):
    """(traced, diagonal) output axes of outputs with ``ndim`` axes, checked: no axis in
    both, and a diagonal batch axis only for ``x2`` omitted or as long as ``x1``."""
    traced = _norm_axes(trace_axes, ndim, "trace_axes")
    diagonal = _norm_axes(diagonal_axes, ndim, "diagonal_axes", batch=True)
    both = sorted(set(traced) & set(diagonal))
    if both:
        raise ValueError(
            f"`trace_axes` and `diagonal_axes` both name output axis {both[0]}; an axis is "
            "either averaged over (trace) or kept as its diagonal, not both"
        )
    if 0 in diagonal and n2 is not None and n2 != n1:
        raise ValueError(
            "`diagonal_axes` holds the batch axis 0 (each point with the point of x2 at "
            f"its index), so x2 must be omitted or hold as many points as x1; got {n1} "
            f"and {n2}"
        )
    return traced, diagonal


def _contract(a, b, ndim: int, traced: tuple[int, ...], diagonal: tuple[int, ...] = ()):
    """(n1, *out) x (n2, *out [, P]) -> (n1, n2, [free, free']...), mean over traced
    axes; a diagonal axis keeps one index for both sides ((n,) for the batch axis),
    in neural-tangents' layout."""
    letters = iter(string.ascii_letters)
    i = next(letters)
    j = i if 0 in diagonal else next(letters)
    sa, sb, free_out = [i], [j], [i] if 0 in diagonal else [i, j]
    size = 1
    for ax in range(1, ndim):
        if ax in traced:
            t = next(letters)
            sa.append(t)
            sb.append(t)
            size *= a.shape[ax]
        elif ax in diagonal:
            t = next(letters)
            sa.append(t)
            sb.append(t)
            free_out.append(t)
        else:
            u, v = next(letters), next(letters)
            sa.append(u)
            sb.append(v)
            free_out += [u, v]
    extra = a.ndim - ndim
    p = "".join(next(letters) for _ in range(extra))
    expr = f"{''.join(sa)}{p},{''.join(sb)}{p}->{''.join(free_out)}"
    return jnp.einsum(expr, a, b) / size


def empirical_nngp_fn(f: Callable, trace_axes: Sequence[int] = (-1,), diagonal_axes=()):
    """Returns ``nngp_fn(x1, x2, params, **kwargs)``: the output covariance of ``f`` at
    fixed ``params``, averaged over ``trace_axes`` (shape ``(n1, n2)`` by default).

    ``diagonal_axes`` (as in neural-tangents): output axes of which only the diagonal
    is computed, one axis in the result instead of a pair; with the batch axis 0 the
    result holds each point with the point of ``x2`` at its index, ``(n, ...)``.
    """
    _axes_tuple(trace_axes, "trace_axes")
    _axes_tuple(diagonal_axes, "diagonal_axes")

    @full_precision
    def nngp_fn(x1, x2, params, **kwargs):
        kw1, kw2 = _split_kwargs(kwargs, x1, x2)
        f1 = f(params, x1, **kw1)
        n2 = None if x2 is None else np.shape(x2)[0]
        axes = _output_axes(trace_axes, diagonal_axes, f1.ndim, np.shape(x1)[0], n2)
        f2 = f1 if x2 is None else f(params, x2, **kw2)
        return _contract(f1, f2, f1.ndim, *axes)

    return nngp_fn


def empirical_ntk_fn(
    f: Callable,
    trace_axes: Sequence[int] = (-1,),
    diagonal_axes=(),
    vmap_axes=None,
    implementation=None,
    batch_size: int | None = None,
):
    """Returns ``ntk_fn(x1, x2, params, **kwargs)``: the empirical NTK J(x1) J(x2)ᵀ of
    ``f`` at ``params``, averaged over ``trace_axes`` (as ``nt.empirical_ntk_fn``).

    Jacobians are formed per block of ``batch_size`` inputs (default: all at once), so
    memory is ``batch_size x outputs x parameters``. A ``rng`` keyword (for Dropout) is
    folded with each block's start, so blocks draw independent masks; per-point keyword
    arrays (leading axis the number of points, such as ``pattern``) are cut with their
    points. Keywords go to ``f`` by neural-tangents' rule: a tuple of two is ``(for x1,
    for x2)``. ``diagonal_axes``: as in :func:`empirical_nngp_fn`.
    """
    _axes_tuple(trace_axes, "trace_axes")
    _axes_tuple(diagonal_axes, "diagonal_axes")
    if batch_size is not None:
        batch_size = check_int(
            batch_size,
            "batch_size",
            low=1,
            message="`{name}` must be a positive integer (inputs per Jacobian block) or None "
            "(all at once), got {value!r}",
        )

    def jac(params, x, kwargs):
        return jax.jacrev(lambda p: f(p, x, **kwargs))(params)

    @full_precision
    def ntk_fn(x1, x2, params, **kwargs):
        kw1, kw2 = _split_kwargs(kwargs, x1, x2)
        out_ndim = jax.eval_shape(lambda x: f(params, x, **kw1), x1).ndim
        n2 = None if x2 is None else np.shape(x2)[0]
        axes = _output_axes(trace_axes, diagonal_axes, out_ndim, np.shape(x1)[0], n2)
        j1 = _batched_jac(jac, params, x1, kw1, batch_size)
        j2 = j1 if x2 is None else _batched_jac(jac, params, x2, kw2, batch_size)

        def leaf(a, b):
            n1, n2 = a.shape[0], b.shape[0]
            out_shape = a.shape[:out_ndim]
            a = a.reshape(out_shape + (-1,))
            b = b.reshape((n2,) + out_shape[1:] + (-1,))
            del n1
            return _contract(a, b, out_ndim, *axes)

        leaves = jax.tree_util.tree_leaves(jax.tree_util.tree_map(leaf, j1, j2))
        if not leaves:
            raise ValueError("`params` has no array leaves: nothing to differentiate")
        return sum(leaves[1:], leaves[0])

    return ntk_fn


# A private keyword of the functions returned here: whether Dropout's rng is shared
# between x1 and x2 (True/False or a traced boolean), decided by the caller instead of
# by :func:`same_inputs`; ``monte_carlo_kernel_fn`` sets it for its blocks.
SHARE_RNG = "_ntk_bayes_share_rng"


def same_inputs(x1, x2):
    """Whether ``x2`` is ``x1`` for Dropout's masks, by neural-tangents' rule: omitted,
    the same array, or equal in value (same shape, every entry equal; the analytic
    kernel's rule too). A Python bool for concrete inputs, a traced boolean otherwise."""
    if x2 is None or x2 is x1:
        return True
    if np.shape(x1) != np.shape(x2):
        return False
    if any(isinstance(x, jax.core.Tracer) for x in (x1, x2)):
        return jnp.array_equal(x1, x2)
    return bool(np.array_equal(np.asarray(x1), np.asarray(x2)))


def _split_kwargs(kwargs, x1, x2):
    """Keyword arguments for ``f`` at ``x1`` and at ``x2``, by neural-tangents' rule: a
    tuple of two is ``(for x1, for x2)`` (e.g. ``pattern=(pattern1, pattern2)`` of graph
    networks); anything else goes to both. A ``rng`` (Dropout's masks) is shared when
    ``x2`` is ``x1`` (:func:`same_inputs`: omitted, the same array or equal in value), so
    a point paired with itself sees one mask; otherwise it is split, so different points
    draw independent masks (as neural-tangents does)."""
    kwargs = dict(kwargs)
    share = kwargs.pop(SHARE_RNG, None)
    kw1, kw2 = {}, {}
    for name, value in kwargs.items():
        if name != "rng" and isinstance(value, tuple) and len(value) == 2:
            kw1[name], kw2[name] = value
        else:
            kw1[name] = kw2[name] = value
    rng = kwargs.get("rng")
    if rng is not None and x2 is not None:
        same = same_inputs(x1, x2) if share is None else share
        if same is not True:
            k1, k2 = jax.random.split(rng)
            if same is False:
                kw1["rng"], kw2["rng"] = k1, k2
            else:  # traced: select the keys in the program
                kw1["rng"], kw2["rng"] = jnp.where(same, rng, k1), jnp.where(same, rng, k2)
    return kw1, kw2


def _rows(value, start, stop, n):
    """Rows ``start:stop`` of a per-point keyword array (leading axis of length ``n``, the
    number of points, such as a graph ``pattern``); other values are returned whole."""
    shape = getattr(value, "shape", ())
    if len(shape) >= 1 and shape[0] == n:
        return value[start:stop]
    return value


def _batched_jac(jac, params, x, kwargs, batch_size):
    n = x.shape[0]
    if batch_size is None or batch_size >= n:
        return jac(params, x, kwargs)

    def at(s):
        block = {
            name: _rows(value, s, s + batch_size, n) if name != "rng" else value
            for name, value in kwargs.items()
        }
        if kwargs.get("rng") is not None:
            block["rng"] = jax.random.fold_in(kwargs["rng"], s)
        return block

    parts = [jac(params, x[s : s + batch_size], at(s)) for s in range(0, n, batch_size)]
    return jax.tree_util.tree_map(lambda *p: jnp.concatenate(p, axis=0), *parts)


def empirical_kernel_fn(f: Callable, trace_axes: Sequence[int] = (-1,), diagonal_axes=()):
    """Returns ``kernel_fn(x1, x2, get, params)`` computing empirical NNGP and/or NTK."""
    nngp_fn = empirical_nngp_fn(f, trace_axes, diagonal_axes)
    ntk_fn = empirical_ntk_fn(f, trace_axes, diagonal_axes)

    @full_precision
    def kernel_fn(x1, x2, get, params, **kwargs):
        names = (get,) if isinstance(get, str) else tuple(get or _GETS)
        for g in names:
            if g not in _GETS:
                raise ValueError(f"`get` has unknown kernel {g!r}; choose from {_GETS}")
        fns = {"nngp": nngp_fn, "ntk": ntk_fn}
        out = {g: fns[g](x1, x2, params, **kwargs) for g in names}
        if isinstance(get, str):
            return out[get]
        return collections.namedtuple("Kernel", names)(**out)

    return kernel_fn
