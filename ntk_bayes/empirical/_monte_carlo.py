r"""Monte Carlo estimates of NNGP/NTK kernels from random finite-width networks.

.. math::

    \bar Σ = \frac1S \sum_{s=1}^S \hat Σ_{θ_s}, \qquad
    \bar Θ = \frac1S \sum_{s=1}^S \hat Θ_{θ_s}, \qquad θ_s \sim \text{init\_fn}

with the empirical kernels of :mod:`ntk_bayes.empirical._empirical`. As width and S
grow, these converge to the analytic kernels (Neal 1996; Jacot et al. 2018); the
per-entry standard error ``sd / sqrt(S)`` is returned on request, so that tests can
compare analytic and Monte Carlo kernels with a tolerance derived from it.

The arguments are neural-tangents' (``nt.monte_carlo_kernel_fn``) with their meanings
there: ``batch_size`` cuts ``x1`` and ``x2`` into blocks of inputs, ``device_count``
spreads the blocks over devices, ``store_on_device=False`` returns host arrays, and a
list of sample counts makes the kernel function a generator of running estimates.
``samples_per_step`` (ntk_bayes's own) evaluates that many networks at once with
``vmap``.
"""

from __future__ import annotations

import collections
import inspect
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import PRNGKeyArray

from .._numerics import POSITIVE_INT, check_int
from ..stax import _devices as _stax_devices
from . import _empirical
from ._empirical import empirical_nngp_fn, empirical_ntk_fn

__all__ = ["monte_carlo_kernel_fn"]

_GETS = ("nngp", "ntk")


def monte_carlo_kernel_fn(
    init_fn: Callable,
    apply_fn: Callable,
    key: PRNGKeyArray,
    n_samples: int | Iterable[int],
    batch_size: int = 0,
    device_count: int = 0,
    store_on_device: bool = True,
    trace_axes: Sequence[int] = (-1,),
    diagonal_axes: Sequence[int] = (),
    vmap_axes: Any = None,
    implementation: Any = None,
    *,
    samples_per_step: int = 1,
) -> Callable[..., Any]:
    """Returns ``kernel_fn(x1, x2=None, get=("nngp", "ntk"), with_stderr=False,
    **apply_fn_kwargs)``.

    Args:
        init_fn: ``init_fn(key, input_shape)`` of the finite network (e.g. ``net.init_fn``).
        apply_fn: ``apply_fn(params, x)`` of the finite network (e.g. ``net.apply_fn``).
        key: PRNG key; sample s initialises with ``k_s = jax.random.split(key, S)[s]``
            (S the largest sample count) and, when ``apply_fn`` takes an ``rng`` keyword
            (every stax network does), applies with ``rng=jax.random.fold_in(k_s, 1)``:
            Dropout draws fresh masks per sample, shared by a point paired with itself.
        n_samples: number of random networks averaged, or an iterable of such numbers:
            then ``kernel_fn`` returns a generator that yields the running estimate after
            each of them, in increasing order (the estimate at n uses the first n
            networks), as neural-tangents does.
        batch_size: inputs per block (neural-tangents' meaning): ``x1`` and ``x2`` are cut
            into blocks of at most this many points, each block pair estimated on its own
            (the last block may be smaller; the networks are the same in every block,
            initialised for the whole ``x1``'s shape). ``0``: the whole kernel at once.
        device_count: devices the blocks are spread over: ``0`` the default device, ``-1``
            all local devices, ``k`` the first ``k``. With ``batch_size=0`` and several
            devices, ``x1`` is cut into one block of rows per device.
        store_on_device: ``False`` returns NumPy arrays in host memory, assembled there
            block by block (for kernels larger than the device's memory); ``True`` JAX
            arrays on the first device used.
        trace_axes: as in :func:`empirical_ntk_fn`.
        diagonal_axes: as in :func:`empirical_ntk_fn`: output axes of which only the
            diagonal is estimated (with the batch axis 0, each point with the point of
            ``x2`` at its index; blocks then pair each block of rows with itself).
        vmap_axes: neural-tangents' hint for how to form the empirical NTK; it does not
            change its value, and ntk_bayes forms it one way.
        implementation: likewise a hint, accepted for neural-tangents' code.
        samples_per_step: networks evaluated together (vmapped) per step; every sample
            count must be a multiple of it. More is faster and takes that many times the
            memory of one network's kernels.

    ``with_stderr=True`` returns ``(mean, stderr)``, two namedtuples of the same layout;
    ``stderr`` is sd / sqrt(S) with the unbiased sd (so S >= 2), accumulated by a running
    mean and sum of squared deviations, which stays accurate in float32 where an entry's
    spread is tiny against its mean.
    Further keywords go to ``apply_fn`` as in neural-tangents: a tuple of two is ``(for
    x1, for x2)``, e.g. ``pattern=(pattern1, pattern2)`` for graph networks, anything else
    goes to both; ``rng`` is drawn per sample and cannot be given. When the kernel is cut
    into blocks, keyword arrays whose leading axis has the length of their side's points
    (per-point arrays, such as a graph ``pattern``) are cut with the points.

    Blocks of ``x2=None`` below the diagonal are the transposes of those above it, so the
    estimate is exactly symmetric; without Dropout a blocked estimate equals the whole one
    up to round-off (with Dropout the masks differ between blocks, the expectation not).
    """
    counts, as_generator = _sample_counts(n_samples)
    samples_per_step = check_int(samples_per_step, "samples_per_step", low=1, message=POSITIVE_INT)
    batch_size = check_int(
        batch_size,
        "batch_size",
        low=0,
        message="`{name}` must be 0 (the whole kernel at once) or a positive number of "
        "inputs per block, got {value!r}",
    )
    device_count = check_int(
        device_count,
        "device_count",
        low=-1,
        message="`{name}` must be -1 (all local devices), 0 (the default device) or a "
        "positive number of devices, got {value!r}",
    )
    if not isinstance(store_on_device, bool | np.bool_):
        raise TypeError(f"`store_on_device` must be True or False, got {store_on_device!r}")
    uneven = [c for c in counts if c % samples_per_step]
    if uneven:
        raise ValueError(
            f"`n_samples` ({', '.join(map(str, uneven))}) must be a multiple of "
            f"`samples_per_step` ({samples_per_step}); change one of them"
        )
    devices = _devices(device_count)
    diagonal = bool(_empirical._axes_tuple(diagonal_axes, "diagonal_axes"))
    nngp_fn = empirical_nngp_fn(apply_fn, trace_axes, diagonal_axes)
    ntk_fn = empirical_ntk_fn(apply_fn, trace_axes, diagonal_axes, vmap_axes, implementation)
    total = counts[-1]
    keys = jax.random.split(key, total)
    # typed keys are (n,), legacy uint32 keys (n, 2): keep whatever trails the sample axis
    keys = keys.reshape((total // samples_per_step, samples_per_step) + keys.shape[1:])
    takes_rng = _takes_rng(apply_fn)

    def estimate(x1, x2, keys, offset, carry, arrays, share, names, static, init_shape):
        """The running (mean, sum of squared deviations) of one block after the
        networks ``keys`` (steps of ``samples_per_step``), ``offset`` networks before;
        ``share``: whether the block's two sides share Dropout's masks (a boolean)."""

        def one(k):
            _, params = init_fn(k, init_shape)
            fns = {"nngp": nngp_fn, "ntk": ntk_fn}
            kw = {**arrays, **dict(static)}
            if takes_rng:
                kw["rng"] = jax.random.fold_in(k, 1)
                kw[_empirical.SHARE_RNG] = share
            return {g: fns[g](x1, x2, params, **kw) for g in names}

        shape = jax.eval_shape(one, keys[0, 0])
        dtype = jnp.result_type(*(shape[g].dtype for g in names))

        # Running mean and sum of squared deviations, merged batch by batch (Chan, Golub &
        # LeVeque 1979). Not Σv² / S - mean²: where an entry's spread is small against its
        # mean (a large readout bias, float32) that difference cancels to noise, and the
        # standard error came out 0 or 1000 times too large.
        def step(carry, xs):
            kb, i = xs
            vals = jax.vmap(one)(kb)
            mean, m2 = carry
            n_a = (offset + i * samples_per_step).astype(dtype)
            n = n_a + samples_per_step
            new_mean, new_m2 = {}, {}
            for g in names:
                mb = vals[g].mean(0)
                delta = mb - mean[g]
                new_mean[g] = mean[g] + delta * (samples_per_step / n)
                m2b = jnp.sum(jnp.square(vals[g] - mb), axis=0)
                new_m2[g] = m2[g] + m2b + jnp.square(delta) * (n_a * samples_per_step / n)
            return (new_mean, new_m2), None

        if carry is None:
            zeros = {g: jnp.zeros(shape[g].shape, shape[g].dtype) for g in names}
            carry = (zeros, zeros)
        steps = jnp.arange(keys.shape[0])
        return jax.lax.scan(step, carry, (keys, steps))[0]

    estimate_jit = jax.jit(estimate, static_argnames=("names", "static", "init_shape"))

    def kernel_fn(x1, x2=None, get=_GETS, with_stderr: bool = False, **apply_fn_kwargs):
        names = (get,) if isinstance(get, str) else tuple(get or _GETS)
        for g in names:
            if g not in _GETS:
                raise ValueError(f"`get` has unknown kernel {g!r}; choose from {_GETS}")
        if with_stderr and counts[0] < 2:
            raise ValueError(
                "`with_stderr=True` needs `n_samples` >= 2 to estimate a standard error; "
                f"this kernel_fn averages {counts[0]} network(s)"
            )
        arrays, static = _split_by_kind(apply_fn_kwargs)
        one_array = x2 is x1
        x1 = jnp.asarray(x1)
        if x2 is not None:
            x2 = x1 if one_array else jnp.asarray(x2)
        traced = any(isinstance(x, jax.core.Tracer) for x in (x1, x2))
        # x2 equal to x1 (the same array, or equal in value as neural-tangents reads it:
        # Dropout's masks are then shared by a point and itself) is x2 omitted, unless
        # the two sides are given different keywords
        same = _empirical.same_inputs(x1, x2)
        if x2 is not None and same is True and _sides_alike(apply_fn_kwargs):
            x2 = None
        layout = None
        if diagonal:
            kw = {**arrays, **dict(static)}
            if takes_rng:
                kw["rng"] = keys.reshape((-1,) + keys.shape[2:])[0]
            layout = _layout(init_fn, apply_fn, x1, x2, keys[0, 0], kw, trace_axes, diagonal_axes)
        plan = _Plan(x1, x2, batch_size, [None] if traced else devices, arrays, same, layout)
        host = not store_on_device and not traced

        def estimates():
            carries = [None] * len(plan.blocks)
            done = 0
            for count in counts:
                seg = keys[done // samples_per_step : count // samples_per_step]
                for b, block in enumerate(plan.blocks):
                    xa, xb, kw, dev, share = block
                    carries[b] = estimate_jit(
                        xa,
                        xb,
                        _put(seg, dev),
                        done,
                        carries[b],
                        kw,
                        share,
                        names=names,
                        static=static,
                        init_shape=tuple(x1.shape),
                    )
                done = count
                yield _result(plan, carries, names, count, get, with_stderr, host)

        if as_generator:
            return estimates()
        return next(estimates())

    return kernel_fn


def _sample_counts(n_samples) -> tuple[list[int], bool]:
    """(sorted distinct sample counts, whether ``kernel_fn`` is a generator)."""
    zero_d = isinstance(n_samples, np.ndarray) and n_samples.ndim == 0
    if zero_d or isinstance(n_samples, str | bytes) or not isinstance(n_samples, Iterable):
        message = (
            "`{name}` must be a positive integer, or an iterable of them (the sample counts "
            "at which a generator yields estimates), got {value!r}"
        )
        return [check_int(n_samples, "n_samples", low=1, message=message)], False
    counts = sorted(
        {
            check_int(
                n,
                "n_samples",
                low=1,
                message="`{name}` must hold positive integers, got {value!r}",
            )
            for n in n_samples
        }
    )
    if not counts:
        raise ValueError("`n_samples` is empty: give at least one sample count")
    return counts, True


def _devices(device_count: int) -> list:
    if device_count == 0:
        return [None]  # wherever JAX puts the inputs: the default device
    return _stax_devices.resolve_devices(
        None if device_count == -1 else device_count,
        name="device_count",
        choices="-1 (all), 0 (the default device) or {low}..{high}",
    )


def _cuts(n: int, size: int) -> list[tuple[int, int]]:
    if size <= 0 or size >= n:
        return [(0, n)]
    return [(s, min(s + size, n)) for s in range(0, n, size)]


def _rows(value, start: int, stop: int, n: int):
    """:func:`_empirical._rows` on every leaf of ``value`` (a keyword may be a pytree)."""
    return jax.tree_util.tree_map(lambda v: _empirical._rows(v, start, stop, n), value)


class _Plan:
    """The blocks of one call: ``blocks[b] = (x1 rows, x2 rows or None, keywords,
    device, share)`` for the block pairs computed, and where each sits in the output.
    ``share`` (a boolean array) tells a block whether its two sides share Dropout's
    masks: only a block of the same rows of ``x1`` and ``x2`` where ``x2`` is ``x1``
    (``same``, from :func:`_empirical.same_inputs`), so that a point shares its mask
    with itself and never with another point, as in the whole kernel."""

    def __init__(self, x1, x2, batch_size, devices, arrays, same, layout=None):
        n1 = x1.shape[0]
        n2 = n1 if x2 is None else x2.shape[0]
        size = batch_size or (math.ceil(n1 / len(devices)) if len(devices) > 1 else 0)
        # layout (from _layout): whether each untraced output axis after the batch axis
        # is kept as its diagonal; None: none is. A diagonal batch axis pairs each block
        # of rows with the same rows of x2 only, and the blocks stack along axis 0.
        self.layout = layout
        self.by_point = layout is not None and layout[0]
        self.rows = _cuts(n1, size)
        self.cols = self.rows if x2 is None or self.by_point else _cuts(n2, batch_size)
        self.symmetric = x2 is None
        self.blocks, self.where = [], {}
        other = x1 if x2 is None else x2
        for i, (a, b) in enumerate(self.rows):
            for j, (c, d) in enumerate(self.cols):
                if (self.symmetric and j < i) or (self.by_point and j != i):
                    continue  # the transpose of block (j, i), or not estimated
                dev = devices[len(self.blocks) % len(devices)]
                if len(self.rows) == len(self.cols) == 1:
                    xa, xb, kw = x1, x2, arrays
                elif x2 is None and i == j:
                    xa, xb = x1[a:b], None
                    kw = {k: _per_side(v, (a, b, n1), (a, b, n1)) for k, v in arrays.items()}
                else:
                    xa, xb = x1[a:b], other[c:d]
                    kw = {
                        k: _per_side(v, (a, b, n1), (c, d, n2), pair=True, x2_is_x1=x2 is None)
                        for k, v in arrays.items()
                    }
                share = jnp.asarray(same if (a, b) == (c, d) else False, bool)
                self.where[i, j] = len(self.blocks)
                self.blocks.append(
                    (_put(xa, dev), _put(xb, dev), _put(kw, dev), dev, _put(share, dev))
                )


def _sides_alike(kwargs) -> bool:
    """Whether every keyword gives ``x1`` and ``x2`` the same value (a tuple of two is
    ``(for x1, for x2)``; anything else goes to both); traced values cannot tell, and
    count as different."""
    for value in kwargs.values():
        if isinstance(value, tuple) and len(value) == 2:
            a, b = (jax.tree_util.tree_leaves(v) for v in value)
            if any(isinstance(u, jax.core.Tracer) for u in a + b):
                return False
            if len(a) != len(b) or not all(
                np.shape(u) == np.shape(v) and bool(np.all(np.asarray(u) == np.asarray(v)))
                for u, v in zip(a, b, strict=True)
            ):
                return False
    return True


def _per_side(value, side1, side2, pair: bool = False, x2_is_x1: bool = False):
    """A keyword's value for a block: a tuple of two is (for x1, for x2), each cut to its
    side's rows; anything else goes to both sides (as a pair when the block's two sides
    are different points, each cut to its own rows). With ``x2`` omitted both sides are
    rows of ``x1``, so a pair's x1 part serves both (neural-tangents' ``(p1, None)``)."""
    if isinstance(value, tuple) and len(value) == 2:
        second = value[0] if x2_is_x1 else value[1]
        return (_rows(value[0], *side1), _rows(second, *side2))
    if pair:
        return (_rows(value, *side1), _rows(value, *side2))
    return _rows(value, *side1)


def _put(tree, device):
    return tree if device is None or tree is None else jax.device_put(tree, device)


def _result(plan: _Plan, carries, names, count, get, with_stderr, host):
    """The estimate after ``count`` networks, assembled from the blocks' running sums."""
    xp = np if host else jnp
    first = next((b[3] for b in plan.blocks if b[3] is not None), None)

    def fetch(tree):
        if host:
            return jax.tree_util.tree_map(np.asarray, jax.device_get(tree))
        return tree if first is None else jax.device_put(tree, first)

    def assemble(part):
        if len(plan.blocks) == 1:
            return fetch(carries[0][part])

        out = {}
        for g in names:
            grid = []
            for i in range(len(plan.rows)):
                row = []
                for j in range(len(plan.cols)):
                    if (i, j) in plan.where:
                        row.append(fetch(carries[plan.where[i, j]][part][g]))
                    elif not plan.by_point:  # below a symmetric kernel's diagonal
                        block = fetch(carries[plan.where[j, i]][part][g])
                        row.append(xp.transpose(block, _mirror(block.ndim, plan.layout)))
                grid.append(xp.concatenate(row, axis=1) if len(row) > 1 else row[0])
            out[g] = xp.concatenate(grid, axis=0) if len(grid) > 1 else grid[0]
        return out

    mean = assemble(0)
    if isinstance(get, str):
        wrap = lambda d: d[get]  # noqa: E731
    else:
        nt = collections.namedtuple("Kernel", names)
        wrap = lambda d: nt(**d)  # noqa: E731
    if not with_stderr:
        return wrap(mean)
    m2 = assemble(1)
    # sd / sqrt(S) with the unbiased variance (S >= 2 checked)
    stderr = {g: xp.sqrt(m2[g] / (count - 1) / count) for g in names}
    return wrap(mean), wrap(stderr)


def _mirror(ndim: int, layout=None) -> tuple[int, ...]:
    """K(x2, x1) from K(x1, x2): swap the two points' axes and, after them, each pair of
    (x1's, x2's) untraced output axes (``_contract``'s layout); an axis kept as its
    diagonal (``layout``, from :func:`_layout`) stays."""
    if layout is None:
        layout = (False,) * ((ndim - 2) // 2 + 1)
    perm, ax = [1, 0], 2
    for diagonal in layout[1:]:
        perm += [ax] if diagonal else [ax + 1, ax]
        ax += 1 if diagonal else 2
    return tuple(perm)


def _layout(init_fn, apply_fn, x1, x2, key, kwargs, trace_axes, diagonal_axes):
    """For ``diagonal_axes``: whether the batch axis and then each untraced output axis
    is kept as its diagonal, from the network's output shape (traced, not run); the axes
    checked as the empirical kernels check them, before any work."""
    kw1, _ = _empirical._split_kwargs(kwargs, x1, x2)

    def out(k):
        return apply_fn(init_fn(k, tuple(x1.shape))[1], x1, **kw1)

    ndim = len(jax.eval_shape(out, key).shape)
    n2 = None if x2 is None else x2.shape[0]
    traced, diagonal = _empirical._output_axes(trace_axes, diagonal_axes, ndim, x1.shape[0], n2)
    return (0 in diagonal,) + tuple(ax in diagonal for ax in range(1, ndim) if ax not in traced)


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
