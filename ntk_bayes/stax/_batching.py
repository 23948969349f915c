"""Tiling of the ``n1 x n2`` kernel computation to a memory budget.

Kernels cost ``n1 * n2 * (spatial entries)`` memory per output, and each layer of the
recursion makes a few temporaries of the same size. When the whole problem does not
fit the budget, it is cut into row tiles (and column tiles if one row of the result
is already too large) and the tiles are computed one after another with
``jax.lax.map``, so peak memory is the output plus a few tiles.
"""

from __future__ import annotations

import math
import os
from functools import partial

import jax
import jax.numpy as jnp

__all__ = ["default_memory_budget", "plan_tiles", "tiled_kernel"]

# Live temporaries per output entry while one layer of the recursion runs: nngp, ntk,
# their updates, and the variances and angles of the nonlinearity.
_TEMPORARIES = 6
_CPU_FRACTION = 0.25
_GPU_FRACTION = 0.5


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


def plan_tiles(n1, n2, bytes_per_pair, memory_budget=None, block_size=None):
    """Rows and columns per tile so that one tile's temporaries fit the budget."""
    budget = default_memory_budget() if memory_budget is None else int(memory_budget)
    if budget <= 0:
        raise ValueError(f"`memory_budget` must be a positive number of bytes, got {budget}")
    b1, b2 = n1, n2
    if block_size is not None:
        if int(block_size) < 1:
            raise ValueError(f"`block_size` must be >= 1, got {block_size}")
        b1, b2 = min(n1, int(block_size)), min(n2, int(block_size))
    per_tile = budget // max(bytes_per_pair * _TEMPORARIES, 1)
    if b1 * b2 > per_tile:
        if per_tile >= b2:
            b1 = max(1, min(b1, per_tile // b2))
        else:
            b1, b2 = 1, max(1, min(b2, per_tile))
    return b1, b2


def _tree_rows(out, n):
    return jax.tree_util.tree_map(lambda o: o.reshape((-1,) + o.shape[2:])[:n], out)


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


@partial(jax.jit, static_argnames=("names", "b1", "b2", "block_fn", "opts"))
def _run(net, x1, x2, names, b1, b2, block_fn, opts):
    def one(a, b):
        return _outputs(block_fn(net, a, b, *opts), names)

    n1, n2 = x1.shape[0], x2.shape[0]
    if b1 >= n1 and b2 >= n2:
        return one(x1, x2)

    def row(a):
        if b2 >= n2:
            return one(a, x2)
        cols = jax.lax.map(lambda b: one(a, b), _blocks(x2, b2))
        # (n_col_tiles, b1, b2, ...) -> (b1, n2, ...)
        return jax.tree_util.tree_map(
            lambda o: jnp.moveaxis(o, 0, 1).reshape((o.shape[1], -1) + o.shape[3:])[:, :n2],
            cols,
        )

    return _tree_rows(jax.lax.map(row, _blocks(x1, b1)), n1)


def tiled_kernel(
    net, block_fn, opts, x1, x2, names, *, memory_budget=None, block_size=None
):
    """Evaluate ``block_fn(net, x1_tile, x2_tile, *opts)`` over tiles; return ``names``.

    ``block_fn`` must be a module-level function and ``opts`` a hashable tuple (both
    are static jit arguments, so repeated calls reuse the compiled computation).
    Per-pair outputs (``nngp``, ``ntk``) are tiled; per-point ones (``cov1``,
    ``cov2``) are computed against a single partner point, which costs O(n).
    """
    if x2 is None:
        x2 = x1
    out = {}
    if "cov1" in names:
        out["cov1"] = _run(net, x1, x1[:1], ("cov1",), x1.shape[0], 1, block_fn, opts)["cov1"]
    if "cov2" in names:
        out["cov2"] = _run(net, x2, x2[:1], ("cov1",), x2.shape[0], 1, block_fn, opts)["cov1"]
    pair = tuple(n for n in names if n not in ("cov1", "cov2"))
    if pair:
        probe = jax.eval_shape(
            lambda a, b: _outputs(block_fn(net, a, b, *opts), pair), x1[:1], x2[:1]
        )
        bytes_per_pair = sum(math.prod(s.shape) * s.dtype.itemsize for s in probe.values())
        b1, b2 = plan_tiles(x1.shape[0], x2.shape[0], bytes_per_pair, memory_budget, block_size)
        out.update(_run(net, x1, x2, pair, b1, b2, block_fn, opts))
    return out
