"""Which points are equal in value: one integer id per point, computed once per kernel call.

A nonlinearity evaluates a pair of equal points by its same-point form (``Σ12 = q1 = q2``
exactly) instead of recovering it from round-off, where ``q1 q2 - Σ12²`` is one ulp and
its square root ~1e-8 (Sign and the NTK factors of ABRelu amplify that layer by layer).
``x2=None`` gives the pairs of a point with itself by index; the ids add the copies: the
same row twice in ``x1``, or a point of ``x1`` that is also in ``x2``.

Ids are exact: two points share an id only if every bit of their inputs (and per-point
keyword arguments) is equal, ``-0.0`` counted as ``0.0``. The rows are sorted by a
32-bit hash of their bits and each row compared with its neighbour in full, so a hash
collision can only split a group of copies (those pairs then take the general form, as
they would without ids), never join two different points. Cost: two sorts of one
integer per point and two passes over their values, next to the ``n1 x n2`` kernel
(2048 points of 128 float32: 0.37 ms, against 0.60 ms with two hashes sorted as two
keys); memory: a few arrays of one number per point, and the neighbours are compared a
chunk of rows (16 MiB) at a time.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from .._numerics import is_concrete

__all__ = ["point_ids", "has_copies"]


def _multipliers(n_words: int) -> np.ndarray:
    """Odd multipliers, one per 32-bit word of a point (a fixed seed)."""
    rng = np.random.default_rng([20261202, 0])
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
    if size >= 4:
        w = jax.lax.bitcast_convert_type(a, jnp.uint32)  # 8-byte values: (..., 2) words
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


def _hash(words):
    mult = jnp.asarray(_multipliers(words.shape[1]))
    salted = _mix(words ^ jnp.uint32(0x9E3779B9)) * mult
    # integer addition wraps and is associative: equal rows hash equally in any order
    return jax.lax.reduce(salted, np.uint32(0), jax.lax.add, (1,))


def _point_hash(parts):
    """One 32-bit hash per point over all its parts."""
    h = jnp.zeros(parts[0].shape[0], jnp.uint32)
    for k, a in enumerate(parts):
        h = _mix(h + _hash(_words(a)) + jnp.uint32(k + 1))
    return h


def _per_row_chunks(fn, parts, chunk: int):
    """``fn(rows of parts)`` -> tuple of ``(rows,)`` arrays, evaluated ``chunk`` rows at a
    time (the last chunk moved back to end at the last row): the temporaries of ``fn``
    never hold more than ``chunk`` rows."""
    n = parts[0].shape[0]
    if chunk >= n:
        return fn(parts)
    starts = jnp.minimum(jnp.arange(-(-n // chunk), dtype=jnp.int32) * chunk, n - chunk)
    shapes = jax.eval_shape(fn, [a[:chunk] for a in parts])
    outs = tuple(jnp.zeros((n,) + o.shape[1:], o.dtype) for o in shapes)

    def body(i, outs):
        rows = [jax.lax.dynamic_slice_in_dim(a, starts[i], chunk) for a in parts]
        return tuple(
            jax.lax.dynamic_update_slice_in_dim(o, r, starts[i], 0)
            for o, r in zip(outs, fn(rows), strict=True)
        )

    return jax.lax.fori_loop(0, starts.shape[0], body, outs)


# Rows compared at once when checking sorted neighbours: bounded memory for any n.
_CHUNK_BYTES = 1 << 24
# Concrete inputs on the CPU up to this size get their ids from NumPy on the host: no
# program to trace, compile or load per input shape (four kernel-heavy unit modules took
# 53 s against 56 s with the compiled ids), and a sort of this many bytes is fast.
_HOST_BYTES = 1 << 24


def point_ids(parts1, parts2=None, chunk_bytes: int = _CHUNK_BYTES, on_host: bool | None = None):
    """``(ids1, ids2)``: int32 ids of the points of ``parts1`` and ``parts2`` (each a list
    of arrays with the points on the leading axis: inputs, graphs, masks), equal exactly
    when two points are equal in every part; ``ids2`` is ``ids1`` when ``parts2`` is
    ``None``. ``chunk_bytes``: how many bytes of rows are compared at once (compiled
    path). ``on_host``: NumPy on the host (``True``) or a compiled program (``False``);
    default: the host for concrete CPU arrays of at most 16 MiB in all (its ids are
    NumPy arrays). Both number the distinct points ``0 .. k-1``, not necessarily in the
    same order."""
    parts1 = list(parts1)
    parts2 = None if parts2 is None else list(parts2)
    if on_host is None:
        on_host = _small_on_cpu(parts1 + (parts2 or []))
    if on_host:
        ids1, ids2 = _host_ids(parts1, parts2)
    else:
        ids1, ids2 = _point_ids(parts1, parts2, chunk_bytes=chunk_bytes)
    return (ids1, ids1) if parts2 is None else (ids1, ids2)


def _small_on_cpu(parts) -> bool:
    total = 0
    for a in parts:
        if not is_concrete(a):
            return False
        if isinstance(a, jax.Array) and any(d.platform != "cpu" for d in a.devices()):
            return False
        total += a.size * np.dtype(a.dtype).itemsize
    return total <= _HOST_BYTES


def _host_bytes(a) -> np.ndarray:
    """The bits of each point of ``a`` as ``(n, B)`` bytes, ``-0.0`` as ``0.0``."""
    a = np.asarray(a)
    if jnp.issubdtype(a.dtype, jnp.floating):  # bfloat16 too
        a = np.where(a == 0, np.zeros((), a.dtype), a)  # -0.0 and 0.0 are one value
    return np.ascontiguousarray(a).reshape(a.shape[0], -1).view(np.uint8)


def _host_ids(parts1, parts2):
    """:func:`point_ids` by NumPy: the rows' bytes as one opaque (void) value per point,
    ``np.unique`` over those. Sorting void values compares whole rows with ``memcmp``;
    ``np.unique(axis=0)`` on the byte matrix gives the same ids but compares the rows
    byte field by byte field (n = 2048 rows of 512 bytes: 17 ms against 1 ms)."""
    n1 = np.shape(parts1[0])[0]
    sets = [parts1] if parts2 is None else [parts1, parts2]
    rows = np.concatenate(
        [np.concatenate([_host_bytes(a) for a in parts], axis=1) for parts in sets], axis=0
    )
    if rows.shape[1] == 0:  # nothing per point: every point is the same point
        inverse = np.zeros(rows.shape[0], np.int64)
    else:
        values = rows.view(np.dtype((np.void, rows.shape[1])))  # concatenate's C order
        _, inverse = np.unique(values, return_inverse=True)
    ids = inverse.reshape(-1).astype(np.int32)
    # NumPy arrays: the caller usually finds no copies and drops them, so the two
    # transfers to the device are made only for ids that are kept
    return ids[:n1], ids[n1:]


def _rows(p1, p2, n1: int, idx):
    """Rows ``idx`` of the points of one part over both sets (``x1`` then ``x2``)."""
    if p2 is None:
        return p1[idx]
    a = p1[jnp.clip(idx, 0, n1 - 1)]
    b = p2[jnp.clip(idx - n1, 0, p2.shape[0] - 1)]
    return jnp.where((idx < n1).reshape((-1,) + (1,) * (a.ndim - 1)), a, b)


def _hash_order(h):
    """The indices that sort the points by their hash ``h`` (uint32), ties by index.

    XLA's CPU sort of several operands calls a compiled comparator per comparison
    (2048 points, two keys and the indices: 0.38 ms); one uint32 operand takes a
    library sort (0.07 ms). So each pass sorts one uint32 of ``32 - b`` hash bits above
    the ``b`` bits of a position, and two passes, least significant digit first, sort
    by ``2 (32 - b)`` bits of the hash: all 32 up to 65536 points. Past that the top
    bits are left unsorted: points whose hashes agree in the bits sorted but differ
    elsewhere may interleave, which can only split a group of copies (see
    :func:`point_ids`), never join two points."""
    m = h.shape[0]
    b = max(1, (m - 1).bit_length())
    if b > 24:  # too few hash bits per pass: the comparator sort
        return jax.lax.sort((h, jnp.arange(m, dtype=jnp.int32)), num_keys=1)[1]
    digit = 32 - b
    low = jnp.uint32((1 << b) - 1)
    pos = jnp.arange(m, dtype=jnp.uint32)
    order = pos
    for shift in (0, digit):
        d = (h[order] >> jnp.uint32(shift)) & jnp.uint32((1 << min(digit, 32 - shift)) - 1)
        order = order[jnp.sort((d << jnp.uint32(b)) | pos) & low]
    return order.astype(jnp.int32)


@functools.partial(jax.jit, static_argnames="chunk_bytes")
def _point_ids(parts1, parts2, chunk_bytes: int):
    n1 = parts1[0].shape[0]
    row_bytes = sum(math.prod(a.shape[1:]) * a.dtype.itemsize for a in parts1)
    rows_at_once = max(1, chunk_bytes // max(row_bytes, 1))

    def hash_of(parts):
        return _per_row_chunks(lambda rows: (_point_hash(rows),), parts, rows_at_once)[0]

    h = hash_of(parts1)
    if parts2 is not None:
        h = jnp.concatenate([h, hash_of(parts2)])
    m = h.shape[0]
    order = _hash_order(h)
    # each sorted row against its predecessor, in full, a chunk of rows at a time
    chunk = max(1, min(m - 1, rows_at_once))
    n_chunks = -(-(m - 1) // chunk)
    pad = n_chunks * chunk - (m - 1)
    left = jnp.concatenate([order[:-1], jnp.zeros(pad, jnp.int32)]).reshape(n_chunks, chunk)
    right = jnp.concatenate([order[1:], jnp.zeros(pad, jnp.int32)]).reshape(n_chunks, chunk)

    def equal_rows(lr):
        eq = jnp.ones(chunk, bool)
        for k, p1 in enumerate(parts1):
            p2 = None if parts2 is None else parts2[k]
            a, b = (_words(_rows(p1, p2, n1, i)) for i in lr)
            eq = eq & jnp.all(a == b, axis=1)
        return eq

    same = jax.lax.map(equal_rows, (left, right)).reshape(-1)[: m - 1]
    new = jnp.concatenate([jnp.ones(1, bool), ~same])
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
