"""Which points are equal in value: one integer id per point, computed once per kernel call.

A nonlinearity evaluates a pair of equal points by its same-point form (``Σ12 = q1 = q2``
exactly) instead of recovering it from round-off, where ``q1 q2 - Σ12²`` is one ulp and
its square root ~1e-8 (Sign and the NTK factors of ABRelu amplify that layer by layer).
``x2=None`` gives the pairs of a point with itself by index; the ids add the copies: the
same row twice in ``x1``, or a point of ``x1`` that is also in ``x2``.

Ids are exact: two points share an id only if every bit of their inputs (and per-point
keyword arguments) is equal, ``-0.0`` counted as ``0.0``. The rows are sorted by two
32-bit hashes of their bits and each row compared with its neighbour in full, so a hash
collision can only split a group of copies (those pairs then take the general form, as
they would without ids), never join two different points. Cost: one sort of the points
and one pass over their values, next to the ``n1 x n2`` kernel.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["point_ids", "has_copies"]


def _multipliers(n_words: int, which: int) -> np.ndarray:
    """Odd multipliers of hash ``which``, one per 32-bit word of a point (fixed seeds)."""
    rng = np.random.default_rng([20261202, which])
    return rng.integers(0, 2**32, size=n_words, dtype=np.uint64).astype(np.uint32) | np.uint32(1)


def _words(a) -> jax.Array:
    """The bits of each point of ``a`` (leading axis) as ``(n, W)`` uint32 words."""
    a = jax.lax.stop_gradient(jnp.asarray(a))
    n = a.shape[0]
    if a.dtype == jnp.bool_:
        a = a.astype(jnp.uint8)
    if jnp.issubdtype(a.dtype, jnp.floating):
        a = jnp.where(a == 0, jnp.zeros((), a.dtype), a)  # -0.0 and 0.0 are one value
    size = a.dtype.itemsize
    if size == 8:
        w = jax.lax.bitcast_convert_type(a, jnp.uint32)  # (..., 2)
    elif size == 4:
        w = jax.lax.bitcast_convert_type(a, jnp.uint32)
    else:
        unsigned = {1: jnp.uint8, 2: jnp.uint16}[size]
        w = jax.lax.bitcast_convert_type(a, unsigned).astype(jnp.uint32)
    return w.reshape(n, -1)


def _mix(w):
    """A 32-bit finaliser (MurmurHash3's fmix32): every input bit reaches every output bit."""
    w = w ^ (w >> 16)
    w = w * jnp.uint32(0x85EBCA6B)
    w = w ^ (w >> 13)
    w = w * jnp.uint32(0xC2B2AE35)
    return w ^ (w >> 16)


def _hash(words, which: int):
    mult = jnp.asarray(_multipliers(words.shape[1], which))
    salted = _mix(words ^ jnp.uint32(0x9E3779B9 * (which + 1) & 0xFFFFFFFF)) * mult
    # integer addition wraps and is associative: equal rows hash equally in any order
    return jax.lax.reduce(salted, np.uint32(0), jax.lax.add, (1,))


def point_ids(parts1, parts2=None):
    """``(ids1, ids2)``: int32 ids of the points of ``parts1`` and ``parts2`` (each a list
    of arrays with the points on the leading axis: inputs, graphs, masks), equal exactly
    when two points are equal in every part; ``ids2`` is ``ids1`` when ``parts2`` is
    ``None``."""
    ids1, ids2 = _point_ids(list(parts1), None if parts2 is None else list(parts2))
    return (ids1, ids1) if parts2 is None else (ids1, ids2)


@jax.jit
def _point_ids(parts1, parts2):
    words = jnp.concatenate([_words(a) for a in parts1], axis=1)
    n1 = words.shape[0]
    if parts2 is not None:
        words2 = jnp.concatenate([_words(a) for a in parts2], axis=1)
        words = jnp.concatenate([words, words2], axis=0)
    m = words.shape[0]
    order = jax.lax.sort(
        (_hash(words, 0), _hash(words, 1), jnp.arange(m, dtype=jnp.int32)), num_keys=2
    )[2]
    ws = words[order]
    new = jnp.concatenate([jnp.ones(1, bool), jnp.any(ws[1:] != ws[:-1], axis=1)])
    group = jnp.cumsum(new.astype(jnp.int32)) - 1
    ids = jnp.zeros(m, jnp.int32).at[order].set(group)
    return ids[:n1], ids[n1:]


def has_copies(ids, one_set: bool) -> bool:
    """Whether concrete ``ids`` (from :func:`point_ids`) pair equal points other than a
    point with itself at the same index of one set (which ``Kernel.same_points`` knows):
    without such copies the ids can be dropped and the kernel is computed as before."""
    ids1, ids2 = (np.asarray(i) for i in ids)
    m = ids1.size if one_set else ids1.size + ids2.size
    return int(max(ids1.max(), ids2.max())) + 1 < m
