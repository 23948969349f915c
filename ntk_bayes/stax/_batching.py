"""Tiling of the ``n1 x n2`` kernel computation to a memory budget, across devices.

Kernels cost ``n1 * n2 * (spatial entries)`` memory per pair of inputs inside the
network (a CNN read out by global pooling holds ``(H, H', W, W')`` per pair even though
it returns one number), and each layer of the recursion makes a few temporaries of
that size. The largest intermediate per pair is measured by tracing the network on a
single pair; the ``n1 x n2`` problem is then cut into tiles whose temporaries fit the
budget. Tiles form a static list (only the upper triangle when ``x2`` is ``None`` and
the kernel is symmetric), split evenly over the local devices with ``jax.shard_map``
and evaluated one after another on each device with ``jax.lax.map``, so peak memory
per device is the output plus a few tiles.
"""

from __future__ import annotations

import math
import os
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec

from . import _devices

__all__ = ["default_memory_budget", "plan_tiles", "tiled_kernel"]

# Live temporaries per output entry while one layer of the recursion runs: nngp, ntk,
# their updates, and the variances and angles of the nonlinearity.
_TEMPORARIES = 6
_CPU_FRACTION = 0.25
_GPU_FRACTION = 0.5
# On CPUs, tiles whose largest array stays cache-sized run 2-4x faster than one big
# tile (measured on the 3-layer CNN benchmark); accelerators prefer big tiles.
_CPU_TILE_BYTES = 1 << 20


def _parse_bytes(text: str) -> int:
    units = {"k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}
    t = text.strip().lower().rstrip("ib").rstrip("b")
    if t and t[-1] in units:
        return int(float(t[:-1]) * units[t[-1]])
    return int(float(t))


def default_memory_budget(device=None) -> int:
    """Bytes a kernel computation may use: ``$NTK_BAYES_MEMORY_BUDGET`` if set, else a
    fraction of the free memory of ``device`` (host RAM for CPUs)."""
    env = os.environ.get("NTK_BAYES_MEMORY_BUDGET")
    if env:
        try:
            return max(_parse_bytes(env), 1 << 20)
        except ValueError:
            raise ValueError(
                f"NTK_BAYES_MEMORY_BUDGET={env!r} is not a size; use e.g. 2GB or 500MB"
            ) from None
    device = device or jax.devices()[0]
    if device.platform != "cpu":
        stats = device.memory_stats() or {}
        if "bytes_limit" in stats:
            free = stats["bytes_limit"] - stats.get("bytes_in_use", 0)
            return int(max(free, 1 << 28) * _GPU_FRACTION)
    try:
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f)
        free = int(info["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):  # pragma: no cover - non-Linux hosts
        free = 8 << 30
    return int(free * _CPU_FRACTION)


def plan_tiles(
    n1, n2, bytes_per_pair, memory_budget=None, block_size=None, square=False, max_pairs=None
):
    """Rows and columns per tile so that one tile's temporaries fit the budget.

    ``square=True`` (symmetric kernels) returns equal sides, so that tiles mirror
    across the diagonal. ``max_pairs`` caps a tile's pairs for speed (not memory).
    """
    budget = default_memory_budget() if memory_budget is None else int(memory_budget)
    if budget <= 0:
        raise ValueError(f"`memory_budget` must be a positive number of bytes, got {budget}")
    b1, b2 = n1, n2
    if block_size is not None:
        if isinstance(block_size, bool) or int(block_size) < 1:
            raise ValueError(f"`block_size` must be >= 1, got {block_size}")
        b1, b2 = min(n1, int(block_size)), min(n2, int(block_size))
    per_tile = max(budget // max(bytes_per_pair * _TEMPORARIES, 1), 1)
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


def _max_var_bytes(jaxpr, lead=None) -> int:
    """Largest array in ``jaxpr`` (and its sub-jaxprs); with ``lead``, only arrays whose
    leading axes equal ``lead``."""
    best = 0
    for v in list(jaxpr.invars) + list(jaxpr.outvars):
        best = max(best, _aval_bytes(getattr(v, "aval", None), lead))
    for eqn in jaxpr.eqns:
        for v in eqn.outvars:
            best = max(best, _aval_bytes(v.aval, lead))
        for p in eqn.params.values():
            for sub in p if isinstance(p, list | tuple) else (p,):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    best = max(best, _max_var_bytes(inner, lead))
    return best


def _aval_bytes(aval, lead=None) -> int:
    shape, dtype = getattr(aval, "shape", None), getattr(aval, "dtype", None)
    if shape is None or dtype is None:
        return 0
    if lead is not None and tuple(shape[: len(lead)]) != tuple(lead):
        return 0
    return math.prod(shape) * np.dtype(dtype).itemsize


def _blocks(x, b):
    n = x.shape[0]
    nb = math.ceil(n / b)
    pad = nb * b - n
    if pad:
        # Pad with copies of a real point, not zeros: zero-norm inputs make angles 0/0.
        x = jnp.concatenate([x, jnp.broadcast_to(x[:1], (pad,) + x.shape[1:])], axis=0)
    return x.reshape((nb, b) + x.shape[1:])


def _outputs(k, names):
    return {name: getattr(k, name) for name in names}


def _tile_pairs(nb1, nb2, symmetric, n_dev):
    if symmetric:
        pairs = [(i, j) for i in range(nb1) for j in range(i, nb2)]
    else:
        pairs = [(i, j) for i in range(nb1) for j in range(nb2)]
    n = len(pairs)
    # Pad to a multiple of the device count with repeats of the first tile.
    pairs += [pairs[0]] * (-n % n_dev)
    arr = np.asarray(pairs, np.int32).reshape(-1, 2)
    return n, arr[:, 0], arr[:, 1]


def _assemble(tiles, nb1, nb2, b1, b2, n1, n2, symmetric):
    """(n_pairs, b1, b2, ...) tiles -> (n1, n2, ...)."""
    if symmetric:
        index = np.zeros((nb1, nb2), np.int32)
        p = 0
        for i in range(nb1):
            for j in range(i, nb2):
                index[i, j] = index[j, i] = p
                p += 1
        lower = jnp.asarray(np.tril(np.ones((nb1, nb2), bool), -1))

        def grid_of(t):
            g = t[index.reshape(-1)].reshape((nb1, nb2) + t.shape[1:])
            mirrored = jnp.swapaxes(g, 2, 3)
            mask = lower.reshape(lower.shape + (1,) * (g.ndim - 2))
            return jnp.where(mask, mirrored, g)
    else:

        def grid_of(t):
            return t.reshape((nb1, nb2) + t.shape[1:])

    def one(t):
        g = grid_of(t)
        g = jnp.moveaxis(g, 2, 1)  # (nb1, b1, nb2, b2, ...)
        g = g.reshape((nb1 * b1, nb2 * b2) + g.shape[4:])
        return g[:n1, :n2]

    return jax.tree_util.tree_map(one, tiles)


@partial(jax.jit, static_argnames=("names", "b1", "b2", "block_fn", "opts", "symmetric", "mesh"))
def _run(net, x1, x2, names, b1, b2, block_fn, opts, symmetric=False, mesh=None):
    def one(net_, a, b):
        return _outputs(block_fn(net_, a, b, *opts), names)

    n1, n2 = x1.shape[0], x2.shape[0]
    n_dev = 1 if mesh is None else mesh.size
    if b1 >= n1 and b2 >= n2 and n_dev == 1:
        return one(net, x1, x2)
    X1, X2 = _blocks(x1, b1), _blocks(x2, b2)
    nb1, nb2 = X1.shape[0], X2.shape[0]
    n_pairs, I, J = _tile_pairs(nb1, nb2, symmetric, n_dev)

    def tiles_of(net_, X1_, X2_, I_, J_):
        return jax.lax.map(lambda ij: one(net_, X1_[ij[0]], X2_[ij[1]]), (I_, J_))

    if mesh is None:
        tiles = tiles_of(net, X1, X2, jnp.asarray(I), jnp.asarray(J))
    else:
        rep, split = PartitionSpec(), PartitionSpec(_devices.AXIS)
        tiles = jax.shard_map(
            tiles_of,
            mesh=mesh,
            in_specs=(rep, rep, rep, split, split),
            out_specs=split,
        )(net, X1, X2, jnp.asarray(I), jnp.asarray(J))
    tiles = jax.tree_util.tree_map(lambda t: t[:n_pairs], tiles)
    return _assemble(tiles, nb1, nb2, b1, b2, n1, n2, symmetric)


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
):
    """Evaluate ``block_fn(net, x1_tile, x2_tile, *opts)`` over tiles; return ``names``.

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
    n_dev = 1 if mesh is None else mesh.size

    def per_pair_bytes(a, b, wanted):
        return _probe(net, block_fn, opts, a, b, wanted)[0]

    out = {}
    for name, x in (("cov1", x1), ("cov2", x2)):
        if name in names:
            nbytes = per_pair_bytes(x[:1], x[:1], ("cov1",))
            b, _ = plan_tiles(x.shape[0], 1, nbytes, memory_budget, block_size)
            b = _spread(b, x.shape[0], 1, n_dev)
            out[name] = _run(net, x, x[:1], ("cov1",), b, 1, block_fn, opts, False, mesh)["cov1"]
    pair = tuple(n for n in names if n not in ("cov1", "cov2"))
    if pair:
        nbytes, ndims = _probe(net, block_fn, opts, x1[:1], x2[:1], pair)
        # Mirroring tiles is only worth it (and only simple) for scalar-per-pair outputs.
        symmetric = symmetric and all(d == 2 for d in ndims)
        n1, n2 = x1.shape[0], x2.shape[0]
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
        out.update(_run(net, x1, x2, pair, b1, b2, block_fn, opts, symmetric, mesh))
    return out


def _n_sym(nb):
    return nb * (nb + 1) // 2


def _speed_cap(bytes_per_pair, devices):
    """Pairs per tile that keep a CPU tile's largest array cache-sized; ``None`` else."""
    if _devices.resolve_devices(devices)[0].platform != "cpu":
        return None
    return max(_CPU_TILE_BYTES // max(bytes_per_pair, 1), 1)


_PROBES: dict = {}


def _probe(net, block_fn, opts, a, b, names):
    """(bytes per pair of the largest pairwise intermediate, output ndims), cached per
    architecture.

    Traced on a (2 x 3)-pair problem: only arrays whose leading axes are (2, 3) grow
    with the number of pairs (inputs and per-point variances do not), so the largest
    of them, divided by 6, is what a tile of P pairs costs per pair.
    """
    leaves, treedef = jax.tree_util.tree_flatten(net)
    key = (
        treedef,
        tuple((np.shape(v), jnp.result_type(v)) for v in leaves),
        block_fn,
        opts,
        names,
        a.shape[1:],
        b.shape[1:],
        a.dtype,
    )
    if key not in _PROBES:
        a2 = jnp.broadcast_to(a[:1], (2,) + a.shape[1:])
        b3 = jnp.broadcast_to(b[:1], (3,) + b.shape[1:])
        fn = lambda a_, b_: _outputs(block_fn(net, a_, b_, *opts), names)
        jaxpr = jax.make_jaxpr(fn)(a2, b3)
        ndims = tuple(v.aval.ndim for v in jaxpr.jaxpr.outvars)
        if len(_PROBES) > 256:
            _PROBES.clear()
        _PROBES[key] = (max(_max_var_bytes(jaxpr.jaxpr, (2, 3)) // 6, 1), ndims)
    return _PROBES[key]


def _spread(b1, n1, n_col_tiles, n_dev):
    """Shrink row tiles so that every device gets at least one tile when possible."""
    if n_dev > 1 and math.ceil(n1 / b1) * n_col_tiles < n_dev:
        b1 = max(1, math.ceil(n1 / math.ceil(n_dev / n_col_tiles)))
    return b1
