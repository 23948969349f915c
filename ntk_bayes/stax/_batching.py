"""Tiling of the ``n1 x n2`` kernel computation to a memory budget, across devices.

Kernels cost ``n1 * n2 * (spatial entries)`` memory per pair of inputs inside the
network (a CNN read out by global pooling holds ``(H, H', W, W')`` per pair even though
it returns one number), and each layer of the recursion makes a few temporaries of
that size. The largest intermediate per pair is measured by tracing the network on a
single pair; the ``n1 x n2`` problem is then cut into tiles whose temporaries fit the
budget. Tiles form a static list (only the upper triangle when ``x2`` is ``None`` and
the kernel is symmetric; the last tile of a row overlaps its neighbour instead of
padding). On one device each tile is written into the output as soon as it is
computed, so peak memory is the output plus a few tiles' temporaries. With several
devices the tiles are split evenly over them with ``jax.shard_map``, evaluated one
after another on each with ``jax.lax.map``, then written into the output (peak: about
twice the output).

A problem that fits one tile on one device (most kernels of a few thousand points or
fewer) skips all of that: :func:`one_program` traces the network once on the real
shapes, reads the largest pairwise array from that trace, and runs the same trace.

The points ``x1`` and ``x2`` are arrays, or pytrees of arrays that share the leading
(batch) axis: the inputs together with per-point keyword arguments of the layers (e.g.
``stax.Aggregate``'s ``pattern``), which every tile slices with its rows.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import threading
import warnings
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec

from .._numerics import check_int
from . import _devices

__all__ = [
    "batch",
    "check_output_fits",
    "head",
    "n_points",
    "one_program",
    "default_memory_budget",
    "free_bytes",
    "parse_bytes",
    "plan_tiles",
    "tiled_kernel",
]

# Live temporaries per output entry while one layer of the recursion runs: nngp, ntk,
# their updates, and the variances and angles of the nonlinearity.
_TEMPORARIES = 6
_CPU_FRACTION = 0.25
_GPU_FRACTION = 0.5
# On CPUs, tiles whose largest array stays cache-sized run 2-4x faster than one big
# tile (measured on the 3-layer CNN benchmark); accelerators prefer big tiles.
_CPU_TILE_BYTES = 1 << 20


_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}
_IEC = {"ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}
_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([kmgt]i?)?b?\s*$", re.IGNORECASE)


def parse_bytes(value, name: str):
    """A byte count from an int or a string such as ``"1GB"`` (10⁹), ``"512MiB"``
    (2²⁰ each) or ``"2e9"``; ``None`` passes through. Errors name the argument."""
    if value is None:
        return None
    if isinstance(value, str):
        m = _SIZE.match(value)
        if not m:
            raise ValueError(
                f"`{name}`={value!r} is not a size; use bytes (an int) or a string such as "
                "'2GB', '512MiB' or '1e9'"
            )
        unit = (m.group(2) or "").lower()
        nbytes = float(m.group(1)) * (_IEC[unit] if unit in _IEC else _UNITS[unit])
    elif isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise TypeError(
            f"`{name}` must be a number of bytes or a string such as '2GB', got "
            f"{type(value).__name__}"
        )
    else:
        nbytes = float(value)
    if not nbytes >= 1 or nbytes == float("inf"):
        raise ValueError(f"`{name}` must be a positive, finite number of bytes, got {value!r}")
    return int(nbytes)


def free_bytes(device=None) -> int:
    """Memory free on ``device`` now: available host RAM for CPUs, the allocator's
    remaining limit for accelerators."""
    device = device or jax.devices()[0]
    if device.platform != "cpu":
        stats = device.memory_stats() or {}
        if "bytes_limit" in stats:
            return int(stats["bytes_limit"] - stats.get("bytes_in_use", 0))
    try:
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f)
        return int(info["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):  # pragma: no cover - non-Linux hosts
        return 8 << 30


def default_memory_budget(device=None) -> int:
    """Bytes a kernel computation may use: ``$NTK_BAYES_MEMORY_BUDGET`` if set, else a
    fraction of the free memory of ``device`` (host RAM for CPUs)."""
    env = os.environ.get("NTK_BAYES_MEMORY_BUDGET")
    if env:
        return max(parse_bytes(env, "NTK_BAYES_MEMORY_BUDGET"), 1 << 20)
    device = device or jax.devices()[0]
    free = free_bytes(device)
    if device.platform != "cpu":
        return int(max(free, 1 << 28) * _GPU_FRACTION)
    return int(free * _CPU_FRACTION)


def n_points(x) -> int:
    """Number of points of ``x``, an array or a pytree of arrays sharing the batch axis."""
    return jax.tree_util.tree_leaves(x)[0].shape[0]


def head(x, m: int = 1):
    """The first ``m`` points of ``x`` (an array or a pytree of them)."""
    return jax.tree_util.tree_map(lambda a: a[:m], x)


def _dyn_rows(x, start, size):
    return jax.tree_util.tree_map(lambda a: jax.lax.dynamic_slice_in_dim(a, start, size), x)


def _first_repeated(x, m):
    return jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a[:1], (m,) + a.shape[1:]), x)


def _signature(x):
    """Per-point shapes and dtypes of ``x`` (a cache key that ignores the batch size)."""
    leaves, treedef = jax.tree_util.tree_flatten(x)
    return treedef, tuple((a.shape[1:], jnp.result_type(a)) for a in leaves)


def check_output_fits(net, block_fn, opts, x1, x2, names, devices=None) -> None:
    """Refuse, before any work, an output larger than the memory free for it (per-pair
    outputs and per-point ones, which with ``spatial_output="full"`` hold a covariance
    per pair of positions of each point)."""
    x2 = x1 if x2 is None else x2
    n1, n2 = n_points(x1), n_points(x2)
    pair = tuple(n for n in names if n not in _PER_POINT)
    need = n1 * n2 * _probe(net, block_fn, opts, x1, x2, pair)[2] if pair else 0
    for name, x in (("cov1", x1), ("cov2", x2)):
        if name in names:
            (_, rest, dtype), *_ = _probe(net, block_fn, opts, x, x, ("cov1",))[3]
            need += n_points(x) * math.prod(rest) * np.dtype(dtype).itemsize
    _refuse_output(tuple(names), n1, n2, need, devices)


def _refuse_output(pair, n1, n2, need, devices) -> None:
    """Raise when ``need`` bytes of output ``pair`` exceed the memory free for them."""
    device = _devices.resolve_devices(devices)[0]
    free = free_bytes(device)
    if need > free:
        raise ValueError(
            f"kernel_fn: the output {pair} for "
            f"{f'{n1} x {n2}' if any(n not in _PER_POINT for n in pair) else n1} points needs "
            f"{_human(need)}, more than the {_human(free)} free on {device.platform}; compute "
            "it in row blocks written to disk (e.g. kernel_fn(x1[i:j], x2) into a "
            "numpy.memmap), use fewer points (or inducing points), or pass a `devices=` list "
            "of accelerators with more memory"
        )


def _human(nbytes: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if nbytes < 1024 or unit == "TiB":
            return f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    return f"{nbytes} B"  # pragma: no cover


def check_block_size(block_size) -> None:
    """``block_size``: None or a positive integer (rows and columns per tile)."""
    if block_size is None:
        return
    block_size = check_int(
        block_size,
        "block_size",
        message="`{name}` must be a positive integer (rows and columns per tile) or None, "
        "got {value!r}",
        exc=TypeError,
    )
    if block_size < 1:
        raise ValueError(f"`block_size` must be >= 1 (rows and columns per tile), got {block_size}")


def plan_tiles(
    n1, n2, bytes_per_pair, memory_budget=None, block_size=None, square=False, max_pairs=None
):
    """Rows and columns per tile so that one tile's temporaries fit the budget.

    ``square=True`` (symmetric kernels) returns equal sides, so that tiles mirror
    across the diagonal. ``max_pairs`` caps a tile's pairs for speed (not memory).
    """
    budget = (
        default_memory_budget()
        if memory_budget is None
        else parse_bytes(memory_budget, "memory_budget")
    )
    if budget <= 0:
        raise ValueError(f"`memory_budget` must be a positive number of bytes, got {budget}")
    b1, b2 = n1, n2
    if block_size is not None:
        check_block_size(block_size)
        b1, b2 = min(n1, int(block_size)), min(n2, int(block_size))
    per_tile = max(budget // max(bytes_per_pair * _TEMPORARIES, 1), 1)
    if budget < bytes_per_pair * _TEMPORARIES:
        warnings.warn(
            f"`memory_budget` of {_human(budget)} is less than one pair of points needs "
            f"(about {_human(bytes_per_pair * _TEMPORARIES)} for this network); computing one "
            "pair at a time, which exceeds it. Raise memory_budget or use fewer positions",
            ResourceWarning,
            stacklevel=2,
        )
    if max_pairs is not None and block_size is None:
        per_tile = min(per_tile, max(int(max_pairs), 1))
    if square:
        side = min(b1, max(1, math.isqrt(per_tile)))
        return side, side
    if b1 * b2 > per_tile:
        if per_tile >= b2:
            b1 = max(1, min(b1, per_tile // b2))
        else:
            b1, b2 = 1, max(1, min(b2, per_tile))
    return b1, b2


def peak_bytes(fn, *args) -> int:
    """Bytes of the largest array ``fn(*args)`` creates (traced, nothing computed)."""
    jaxpr = jax.make_jaxpr(fn)(*args)
    return _max_var_bytes(jaxpr.jaxpr)


def _max_var_bytes(jaxpr, lead=None, entries=False) -> int:
    """Largest array in ``jaxpr`` (and its sub-jaxprs), in bytes or, with ``entries``,
    in entries; with ``lead``, only arrays whose leading axes equal ``lead``."""
    best = 0
    for v in list(jaxpr.invars) + list(jaxpr.outvars):
        best = max(best, _aval_bytes(getattr(v, "aval", None), lead, entries))
    for eqn in jaxpr.eqns:
        for v in eqn.outvars:
            best = max(best, _aval_bytes(v.aval, lead, entries))
        for p in eqn.params.values():
            for sub in p if isinstance(p, list | tuple) else (p,):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    best = max(best, _max_var_bytes(inner, lead, entries))
    return best


def _aval_bytes(aval, lead=None, entries=False) -> int:
    shape, dtype = getattr(aval, "shape", None), getattr(aval, "dtype", None)
    if shape is None or dtype is None:
        return 0
    if lead is not None and tuple(shape[: len(lead)]) != tuple(lead):
        return 0
    return math.prod(shape) * (1 if entries else np.dtype(dtype).itemsize)


def _mirrored_upper(t, flipped=None):
    """A square tile on the diagonal of a kernel of one set of points with its upper
    triangle (diagonal included) mirrored below it: exactly symmetric. ``flipped``:
    ``t``'s transpose when already made (see :func:`_transposed`)."""
    i = jax.lax.broadcasted_iota(jnp.int32, t.shape, 0)
    j = jax.lax.broadcasted_iota(jnp.int32, t.shape, 1)
    return jnp.where(i <= j, t, t.T if flipped is None else flipped)


@jax.jit
def _mirrored_kernel(k):
    """:func:`_mirrored_upper` of each two-dimensional per-pair kernel of ``k``."""
    return k.replace(
        **{
            name: _mirrored_upper(v)
            for name in ("nngp", "ntk")
            if (v := getattr(k, name, None)) is not None and v.ndim == 2
        }
    )


def _outputs(k, names):
    return {name: getattr(k, name) for name in names}


def _starts(n, b):
    """Start rows of tiles of ``b`` rows covering ``n``: the last one is moved back to
    end at ``n`` (overlapping its neighbour), so that nothing is padded and the output
    needs no final copy. Overlaps are computed twice, to the same values."""
    return sorted({min(k * b, n - b) for k in range(math.ceil(n / b))})


def isolated(pred, fn, shapes, like):
    """``fn()`` inside ``lax.cond(pred, ...)``, where ``pred`` is always true but traced
    (unknown to the compiler), so that XLA materialises ``fn``'s result by its own
    fusions instead of fusing it into its neighbours. ``shapes`` is the pytree of
    ``jax.ShapeDtypeStruct`` of ``fn()``; the untaken branch's zeros derive from the
    array ``like`` so that, inside ``shard_map``, both branches vary over the same mesh
    axes; they carry no derivative of ``like`` (with one, jax 0.9.2's reverse mode
    returned a wrong gradient through two stacked ``Sign`` layers: -4.83 against -12.95
    by finite differences and by forward mode, test_stax_fc.py)."""
    zero = jax.lax.stop_gradient(like).reshape(-1)[0] * 0
    return jax.lax.cond(
        pred,
        lambda: _varying_like(fn(), like),
        lambda: jax.tree_util.tree_map(
            lambda s: jnp.broadcast_to(zero.astype(s.dtype), s.shape), shapes
        ),
    )


def _varying_like(tree, like):
    """Each leaf of ``tree`` marked as varying over the manual mesh axes that ``like``
    varies over (inside ``shard_map``; elsewhere there are none and ``tree`` is returned
    as it is). The untaken branch of :func:`isolated` derives every output from ``like``,
    so a leaf that is the same on every device (a kernel's ``same_points`` flag) would
    otherwise give the two branches different types, which ``lax.cond`` refuses.
    ``lax.pcast(..., to="varying")`` from jax 0.9, ``lax.pvary`` before (jax 0.8, the
    lowest supported: CI's lowest stack)."""
    typeof, pcast = getattr(jax, "typeof", None), getattr(jax.lax, "pcast", None)
    if pcast is not None:
        to_varying = partial(pcast, to="varying")
    else:
        to_varying = getattr(jax.lax, "pvary", None)
    if typeof is None or to_varying is None:  # a jax without varying-axis types
        return tree
    axes = _varying_axes(typeof(like))
    if not axes:
        return tree

    def vary(leaf):
        missing = tuple(sorted(axes - _varying_axes(typeof(leaf))))
        return to_varying(leaf, missing) if missing else leaf

    return jax.tree_util.tree_map(vary, tree)


def _varying_axes(aval) -> frozenset:
    """The manual mesh axes an abstract value varies over: ``aval.vma`` up to jax 0.11,
    ``aval.manual_axis_type.varying`` from jax 0.12 (both tested by the CI's two stacks)."""
    vma = getattr(aval, "vma", None)
    if vma is None:
        vma = getattr(getattr(aval, "manual_axis_type", None), "varying", None)
    return frozenset(vma or ())


# Fewer pairs than this (a 64 x 64 tile) and a value materialised apart saves nothing
# (``_elementwise.computed_once``, ``serial``'s packed segments).
APART_MIN_PAIRS = 4096


def apart(fn, x, out):
    """``fn(x)`` inside a conditional whose predicate is always true (``x[0] > inf`` is
    false for every float, NaN included) but unknown to the compiler, so that XLA
    materialises ``fn(x)`` by its own fusions and fuses nothing across the boundary
    (:func:`isolated`; ``optimization_barrier`` does not do this: XLA's CPU pipeline
    drops it before fusion). ``out`` is the shape and dtype of ``fn(x)`` (given, so that
    ``fn`` is traced once). Under ``vmap`` over ``x`` the conditional becomes a select,
    which computes ``fn(x)`` all the same."""
    pred = jnp.logical_not(x.reshape(-1)[0] > jnp.inf)
    return isolated(pred, lambda: fn(x), out, x)


class NotPacked(Exception):
    """A segment's output cannot be packed (raised while tracing, caught by ``serial``)."""


_FUSED = threading.local()


@contextlib.contextmanager
def fused_segment():
    """Mark the trace of a materialised segment of layers (``serial``'s ``_segment``):
    everything inside becomes one fusion, so values need not be materialised apart."""
    depth = getattr(_FUSED, "depth", 0)
    _FUSED.depth = depth + 1
    try:
        yield
    finally:
        _FUSED.depth = depth


def in_fused_segment() -> bool:
    return getattr(_FUSED, "depth", 0) > 0


def _tile(one, net, a, b, same_points, true, shapes):
    """``one(net, a, b, same_points)`` (whose outputs are ``shapes``) inside a conditional
    that is always taken (``true`` is a traced True), so that the tile is materialised by
    its own fusions, which XLA runs on all threads, instead of being fused into the
    in-place write of the output, which runs on one. Every path uses it, so tiles are
    bit-identical across device counts."""
    first = jax.tree_util.tree_leaves(a)[0]
    return isolated(true, lambda: one(net, a, b, same_points), shapes, first)


_PER_POINT = ("cov1", "cov2")


def _transposed(tiles, true):
    """Each 2-D tile transposed into its own row-major buffer (``true``: a traced
    True, as for :func:`_tile`).

    XLA's CPU backend is fast at a transpose it materialises between two contiguous
    buffers (a 512 x 512 float32 tile in ~0.05 ms), and slow at one fused into a
    neighbour: read from the wide output (columns 8 KiB apart) it took ~0.75 ms, and
    fused into the write it runs on one thread. The flat result keeps the layout
    assignment from making the transpose a bitcast and moving the strided copy into
    the write; the conditional (:func:`isolated`) keeps the tile's own fusions out.
    """
    shapes = {n: jax.ShapeDtypeStruct((t.size,), t.dtype) for n, t in tiles.items()}
    like = next(iter(tiles.values()))
    flat = isolated(true, lambda: {n: t.T.reshape(-1) for n, t in tiles.items()}, shapes, like)
    return {n: f.reshape(tiles[n].shape[::-1]) for n, f in flat.items()}


def _put(outs, tiles, r, c):
    """Write each tile at row ``r`` (and column ``c`` for per-pair outputs)."""
    # every start index in r's integer type: literal zeros become int64 under x64, and
    # dynamic_update_slice refuses mixed index types
    r = jnp.asarray(r, jnp.int32)
    c = jnp.asarray(c, jnp.int32)
    zero = jnp.zeros((), jnp.int32)
    return {
        name: jax.lax.dynamic_update_slice(
            o,
            t,
            (r,) + (zero,) * (t.ndim - 1)
            if name in _PER_POINT
            else (r, c) + (zero,) * (t.ndim - 2),
        )
        for (name, o), t in zip(outs.items(), tiles.values(), strict=True)
    }


@partial(
    jax.jit,
    static_argnames=(
        "names",
        "b1",
        "b2",
        "block_fn",
        "opts",
        "symmetric",
        "mesh",
        "structs",
        "mirror_diagonal",
    ),
)
def _run(
    net,
    x1,
    x2,
    names,
    b1,
    b2,
    block_fn,
    opts,
    symmetric=False,
    mesh=None,
    same=None,
    *,
    structs,
    mirror_diagonal=False,
):
    """Tiles of ``b1 x b2`` pairs (only those on and above the diagonal when
    ``symmetric``, each then also written transposed below it), each written into the
    output in place: no padding and no stacked tiles to gather and transpose afterwards
    (that assembly cost a quarter of a fully connected kernel's time). Every write holds
    the kernel of the pairs it covers, so tiles that overlap may be written in any
    order. With a mesh, the tiles are computed across its devices first, then written by
    the same loop. ``same`` (``None`` or a boolean scalar) tells each tile whether ``x2``
    is ``x1``, with its offset from the diagonal. ``structs`` (from :func:`_probe`): each
    output's shape past its point axes and its dtype, so that the tile's shapes need no
    trace of their own (one trace of the network fewer per call). ``mirror_diagonal``
    (with ``symmetric``): each tile on the diagonal keeps its upper triangle and mirrors
    it (:func:`_mirrored_upper`), so that the whole output is exactly symmetric. Asked
    for networks whose kernels hold positions or tokens: their sums over them take a
    pair and its swap in different orders (1-2 ulp apart), and their tiles are small,
    so mirroring costs nothing measurable (3-conv CNN-GAP, n = 128: -2.4 ms [-5.1,
    +2.7] of 227). Fully connected kernels are left as computed: exactly symmetric for
    the ReLU family, Erf, Gelu, ElementwiseNumerical and others, within 2-3 ulp for a
    few duals in float64 (Exp, Sin, Cos, Rbf), where mirroring tiles of 512 rows cost
    12% (3-layer Gelu, n = 2048: +2.4 ms [+2.1, +2.5] of 20)."""

    def one(net_, a, b, same_points):
        return _outputs(block_fn(net_, a, b, same_points, *opts), names)

    def mirrored(tile, true):
        # the transposes materialised apart: fused into the select they read columns
        # 2 KiB apart (+6.9 ms on the 3-layer ReLU network at n = 2048, tiles of 512)
        flipped = _transposed(tile, true)
        return {name: _mirrored_upper(t, flipped[name]) for name, t in tile.items()}

    def same_at(same_, r, c):
        return None if same_ is None else (same_, jnp.asarray(r - c, jnp.int32))

    n1, n2 = n_points(x1), n_points(x2)
    b1, b2 = min(b1, n1), min(b2, n2)
    if b1 == n1 and b2 == n2 and mesh is None:
        whole = one(net, x1, x2, same_at(same, 0, 0))
        if not (symmetric and mirror_diagonal):
            return whole
        first = jax.tree_util.tree_leaves(x1)[0]
        return mirrored(whole, jnp.logical_not(first.reshape(-1)[0] > jnp.inf))
    s1, s2 = _starts(n1, b1), _starts(n2, b2)
    pairs = [(r, c) for i, r in enumerate(s1) for j, c in enumerate(s2) if not symmetric or j >= i]
    R = jnp.asarray([r for r, _ in pairs], jnp.int32)
    C = jnp.asarray([c for _, c in pairs], jnp.int32)

    shapes = {
        name: jax.ShapeDtypeStruct(((b1,) if name in _PER_POINT else (b1, b2)) + rest, dt)
        for name, rest, dt in structs
    }

    def tile_at(net_, x1_, x2_, same_, r, c):
        a = _dyn_rows(x1_, r, b1)
        b = _dyn_rows(x2_, c, b2)
        return _tile(one, net_, a, b, same_at(same_, r, c), r >= 0, shapes)

    # Every entry is written by a tile; the fills only start the buffers. They differ
    # (0, 1, 2, ...): equal fills are merged by XLA into one broadcast and a copy of it
    # per further output, a copy that runs on one thread (1.1-1.4 ms for a 2048 x 2048
    # float32 output, where the broadcast runs on all threads).
    outs = {
        name: jnp.full(
            ((n1,) + sh.shape[1:]) if name in _PER_POINT else ((n1, n2) + sh.shape[2:]),
            k,
            sh.dtype,
        )
        for k, (name, sh) in enumerate(shapes.items())
    }

    def write(outs, tile, r, c):
        if symmetric:
            # The tile's mirror image below the diagonal first, then the tile (where a
            # mirror image overlaps a later tile, the tile's values are the ones kept).
            # A tile on the diagonal covers its own mirror image: its transpose is
            # neither made nor written (n = 2048, tiles of 512: 0.9 ms of 15 saved, the
            # outputs bit for bit the same).
            outs = jax.lax.cond(
                r != c,
                lambda o, t: _put(o, _transposed(t, r >= 0), c, r),
                lambda o, t: o,
                outs,
                tile,
            )
            if mirror_diagonal:
                # Every write (a diagonal tile, or a tile with its mirror image) covers a
                # region symmetric about the diagonal, so a pair and its swap are last
                # written by the same one; the only one that can give them values of
                # two computations is a tile that overlaps the diagonal off it, and the
                # diagonal tile written after it covers that overlap.
                tile = jax.lax.cond(r == c, lambda t: mirrored(t, r >= 0), lambda t: t, tile)
        return _put(outs, tile, r, c)

    if mesh is None:

        def body(p, outs):
            return write(outs, tile_at(net, x1, x2, same, R[p], C[p]), R[p], C[p])

    else:
        # Pad the tile list to a multiple of the device count with repeats of tile 0.
        pad = -len(pairs) % mesh.size
        Rp = jnp.concatenate([R, jnp.zeros(pad, jnp.int32) + R[0]])
        Cp = jnp.concatenate([C, jnp.zeros(pad, jnp.int32) + C[0]])

        def tiles_of(net_, x1_, x2_, same_, R_, C_):
            return jax.lax.map(lambda rc: tile_at(net_, x1_, x2_, same_, rc[0], rc[1]), (R_, C_))

        rep, split = PartitionSpec(), PartitionSpec(_devices.AXIS)
        tiles = jax.shard_map(
            tiles_of, mesh=mesh, in_specs=(rep, rep, rep, rep, split, split), out_specs=split
        )(net, x1, x2, same, Rp, Cp)

        def body(p, outs):
            return write(outs, {n: t[p] for n, t in tiles.items()}, R[p], C[p])

    return jax.lax.fori_loop(0, len(pairs), body, outs)


def tiled_kernel(
    net,
    block_fn,
    opts,
    x1,
    x2,
    names,
    *,
    memory_budget=None,
    block_size=None,
    devices=None,
    same=None,
):
    """Evaluate ``block_fn(net, x1_tile, x2_tile, same_points, *opts)`` over tiles;
    return ``names``. ``same_points`` is ``None`` when ``same`` is, else
    ``(same, offset)``: whether ``x2`` is ``x1`` and how far the tile lies from the
    diagonal (``x1[i]`` is ``x2[j]`` iff ``j - i == offset``).

    ``block_fn`` must be a module-level function and ``opts`` a hashable tuple (both
    are static jit arguments, so repeated calls reuse the compiled computation).
    Per-pair outputs (``nngp``, ``ntk``) are tiled; per-point ones (``cov1``,
    ``cov2``) are computed against a single partner point, which costs O(n).
    ``x2=None`` computes only the upper triangle of tiles and mirrors it.
    """
    symmetric = x2 is None
    if x2 is None:
        x2 = x1
    mesh = _devices.tile_mesh(devices)
    if mesh is not None and devices is None:
        # All local devices by default, but inputs committed to other devices decide
        # where the work runs (as in JAX), and a kernel that is one tile on one device
        # gains nothing from them: splitting it only adds multi-device dispatch and
        # transfers (and, on forced host CPU devices, threads competing for the cores).
        one = _one_tile(net, block_fn, opts, x1, x2, names, memory_budget, block_size, symmetric)
        if one or _committed_elsewhere((net, x1, x2), mesh):
            mesh = None
    n_dev = 1 if mesh is None else mesh.size

    out = {}
    for name, x in (("cov1", x1), ("cov2", x2)):
        if name in names:
            nbytes, _, _, structs, _ = _probe(net, block_fn, opts, x, x, ("cov1",))
            b, _ = plan_tiles(n_points(x), 1, nbytes, memory_budget, block_size)
            b = _spread(b, n_points(x), 1, n_dev)
            out[name] = _run(
                net, x, head(x), ("cov1",), b, 1, block_fn, opts, False, mesh, structs=structs
            )["cov1"]
    pair = tuple(n for n in names if n not in ("cov1", "cov2"))
    if pair:
        nbytes, ndims, _, structs, positions = _probe(net, block_fn, opts, x1, x2, pair)
        # Mirroring tiles is only worth it (and only simple) for scalar-per-pair outputs.
        symmetric = symmetric and all(d == 2 for d in ndims)
        n1, n2 = n_points(x1), n_points(x2)
        b1, b2 = plan_tiles(
            n1,
            n2,
            nbytes,
            memory_budget,
            block_size,
            square=symmetric,
            max_pairs=_speed_cap(nbytes, devices),
        )
        if symmetric:
            while b1 > 1 and _n_sym(math.ceil(n1 / b1)) < n_dev:
                b1 = b2 = math.ceil(b1 / 2)
        else:
            b1 = _spread(b1, n1, math.ceil(n2 / b2), n_dev)
        # Equal tiles that just cover n (2000 rows: 4 x 500, not 4 x 512 with overlap).
        b1, b2 = _balanced(b1, n1), _balanced(b2, n2)
        out.update(
            _run(
                net,
                x1,
                x2,
                pair,
                b1,
                b2,
                block_fn,
                opts,
                symmetric,
                mesh,
                same,
                structs=structs,
                mirror_diagonal=symmetric and positions,
            )
        )
    return out


@partial(jax.jit, static_argnames=("block_fn", "opts"))
def _whole(net, x1, x2, same, block_fn, opts):
    """``block_fn`` on every pair at once, as one program (the one-tile case)."""
    same_points = None if same is None else (same, jnp.zeros((), jnp.int32))
    return block_fn(net, x1, x2, same_points, *opts)


def one_program(
    net,
    block_fn,
    opts,
    x1,
    x2,
    names,
    *,
    memory_budget=None,
    block_size=None,
    devices=None,
    same=None,
):
    """The whole of ``block_fn``'s output, computed as one program, when the problem is a
    single tile on a single device; ``None`` when it must be tiled (then use
    :func:`check_output_fits` and :func:`tiled_kernel`). An output larger than the free
    memory is refused here, before any work, as :func:`check_output_fits` would.

    The program is traced once on the real shapes; the largest pairwise array of that
    trace decides, by the same plan as :func:`tiled_kernel`, whether one tile fits, and
    the call that follows reuses the trace. Small kernels thus cost one trace instead of
    three (the per-pair probe, the tiled program and the output's structure).
    """
    if devices is not None and _devices.tile_mesh(devices) is not None:
        return None  # an explicit list of devices is honoured by the tiled path
    x2_ = x1 if x2 is None else x2
    n1, n2 = n_points(x1), n_points(x2_)
    if block_size is not None and block_size < max(n1, n2):  # checked by kernel_fn
        return None
    traced = _whole.trace(net, x1, x2_, same, block_fn=block_fn, opts=opts)
    jaxpr = traced.jaxpr.jaxpr
    # the check_output_fits of the tiled path, from the trace
    need = sum(_aval_bytes(getattr(traced.out_info, n)) for n in names)
    _refuse_output(tuple(names), n1, n2, need, devices)
    per_pair = max(_pairwise_peak(jaxpr, (n1, n2)) // (n1 * n2), 1)
    b1, b2 = plan_tiles(
        n1, n2, per_pair, memory_budget, block_size, max_pairs=_speed_cap(per_pair, devices)
    )
    if b1 < n1 or b2 < n2:
        return None
    whole = _whole(net, x1, x2_, same, block_fn=block_fn, opts=opts)
    if x2 is None and _pairwise_peak(jaxpr, (n1, n2), entries=True) > n1 * n2:
        whole = _mirrored_kernel(whole)  # positions or tokens: as in tiled_kernel
    return whole


_PEAKS: dict = {}


def _pairwise_peak(jaxpr, lead, entries=False) -> int:
    """:func:`_max_var_bytes` of ``jaxpr``, remembered per jaxpr: JAX returns the same
    cached trace for repeated calls on the same shapes, and walking a network's jaxpr
    took 2-4 ms of each eager ``kernel_fn`` call (n = 2048, 3 layers)."""
    key = (id(jaxpr), lead, entries)
    hit = _PEAKS.get(key)
    if hit is None or hit[0] is not jaxpr:  # the jaxpr itself is kept: ids are not reused
        if len(_PEAKS) > 256:
            _PEAKS.clear()
        hit = _PEAKS[key] = (jaxpr, _max_var_bytes(jaxpr, lead, entries))
    return hit[1]


def _committed_elsewhere(tree, mesh):
    """Whether a concrete input is committed to devices other than the mesh's."""
    devs = set(mesh.devices.flat)
    for leaf in jax.tree_util.tree_leaves(tree):
        if isinstance(leaf, jax.Array) and not isinstance(leaf, jax.core.Tracer):
            if leaf.committed and leaf.sharding.device_set != devs:
                return True
    return False


def _one_tile(net, block_fn, opts, x1, x2, names, memory_budget, block_size, symmetric):
    """Whether every requested output is a single tile on a single device."""
    for name, x in (("cov1", x1), ("cov2", x2)):
        if name in names:
            nbytes = _probe(net, block_fn, opts, x, x, ("cov1",))[0]
            if plan_tiles(n_points(x), 1, nbytes, memory_budget, block_size)[0] < n_points(x):
                return False
    pair = tuple(n for n in names if n not in ("cov1", "cov2"))
    if pair:
        nbytes = _probe(net, block_fn, opts, x1, x2, pair)[0]
        b1, b2 = plan_tiles(
            n_points(x1),
            n_points(x2),
            nbytes,
            memory_budget,
            block_size,
            square=symmetric,
            max_pairs=_speed_cap(nbytes, None),
        )
        if b1 < n_points(x1) or b2 < n_points(x2):
            return False
    return True


def _balanced(b, n):
    return math.ceil(n / math.ceil(n / b)) if b < n else b


def _n_sym(nb):
    return nb * (nb + 1) // 2


def _speed_cap(bytes_per_pair, devices):
    """Pairs per tile that keep a CPU tile's largest array cache-sized; ``None`` else."""
    if _devices.resolve_devices(devices)[0].platform != "cpu":
        return None
    return max(_CPU_TILE_BYTES // max(bytes_per_pair, 1), 1)


_PROBES: dict = {}


def _probe(net, block_fn, opts, a, b, names):
    """(bytes per pair of the largest pairwise intermediate, output ndims, output bytes
    per pair, each output's ``(name, shape past its point axes, dtype)``, whether some
    pairwise intermediate holds more than one entry per pair: positions or tokens, see
    :func:`_run`'s ``mirror_diagonal``), cached per architecture.

    Traced on a (2 x 3)-pair problem made of the first points of ``a`` and ``b`` (any
    number of points; on a cache hit they are not touched, so a call costs no slicing):
    only arrays whose leading axes are (2, 3) grow with the number of pairs (inputs and
    per-point variances do not), so the largest of them, divided by 6, is what a tile of
    P pairs costs per pair.
    """
    leaves, treedef = jax.tree_util.tree_flatten(net)
    key = (
        treedef,
        tuple((np.shape(v), jnp.result_type(v)) for v in leaves),
        block_fn,
        opts,
        names,
        _signature(a),
        _signature(b),
    )
    if key not in _PROBES:
        a2, b3 = _first_repeated(a, 2), _first_repeated(b, 3)
        fn = lambda a_, b_: _outputs(block_fn(net, a_, b_, None, *opts), names)
        jaxpr, shapes = jax.make_jaxpr(fn, return_shape=True)(a2, b3)
        ndims = tuple(v.aval.ndim for v in jaxpr.jaxpr.outvars)
        out_bytes = sum(_aval_bytes(v.aval) // 6 for v in jaxpr.jaxpr.outvars)
        structs = tuple(
            (name, sh.shape[1 if name in _PER_POINT else 2 :], np.dtype(sh.dtype))
            for name, sh in shapes.items()
        )
        if len(_PROBES) > 256:
            _PROBES.clear()
        per_pair = max(_max_var_bytes(jaxpr.jaxpr, (2, 3)) // 6, 1)
        positions = _max_var_bytes(jaxpr.jaxpr, (2, 3), entries=True) > 6
        _PROBES[key] = (per_pair, ndims, out_bytes, structs, positions)
    return _PROBES[key]


def _spread(b1, n1, n_col_tiles, n_dev):
    """Shrink row tiles so that every device gets at least one tile when possible."""
    if n_dev > 1 and math.ceil(n1 / b1) * n_col_tiles < n_dev:
        b1 = max(1, math.ceil(n1 / math.ceil(n_dev / n_col_tiles)))
    return b1


def batch(kernel_fn, batch_size: int = 0, device_count: int = -1, store_on_device: bool = True):
    """neural-tangents' ``nt.batch``, kept for compatibility: ntk_bayes already tiles
    inside ``kernel_fn``, so this only turns ``batch_size`` into ``block_size`` (tiles
    of at most that many rows and columns) and ``device_count`` into ``devices``
    (-1: all local devices, 0: one device, k: the first k). ``store_on_device`` is
    accepted and has no effect (outputs are JAX arrays on the default device)."""
    message = "batch: `{name}` must be an integer >= {low}, got {value!r}"
    batch_size = check_int(batch_size, "batch_size", low=0, message=message)
    device_count = check_int(device_count, "device_count", low=-1, message=message)
    if not callable(kernel_fn):
        raise TypeError(f"batch: `kernel_fn` must be callable, got {type(kernel_fn).__name__}")

    def batched(x1, x2=None, get=None, **kwargs):
        from ._kernel import Kernel

        # a Kernel passed as x1 (composition) is continued as it is: no tiling to set
        if not isinstance(x1, Kernel):
            if batch_size:
                kwargs.setdefault("block_size", batch_size)
            if device_count >= 0:
                kwargs.setdefault("devices", max(device_count, 1))
        return kernel_fn(x1, x2, get, **kwargs)

    batched.__doc__ = getattr(kernel_fn, "__doc__", None)
    return batched
