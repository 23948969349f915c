"""Spreading kernel tiles over the local devices, and over hosts with ``jax.distributed``.

On one host, :func:`tile_mesh` builds a one-axis :class:`jax.sharding.Mesh` over the
chosen local devices; the tiler (``_batching``) splits its list of tiles evenly along
that axis with :func:`jax.shard_map`, so each device evaluates its own tiles and the
result is gathered on return. Every device computes the same function of the same
inputs, so the result equals the one-device result (up to the order of floating-point
reductions inside a tile, which does not change).

Across hosts, :func:`distributed_kernel_fn` gives each process (started with
``jax.distributed.initialize``) a contiguous block of rows of ``x1``; each process
computes its rows on its local devices and the blocks are all-gathered.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np
from jax.sharding import Mesh

from .._numerics import check_int

__all__ = [
    "in_mapped_context",
    "tile_mesh",
    "resolve_devices",
    "process_row_range",
    "distributed_kernel_fn",
]

AXIS = "tiles"


def resolve_devices(devices=None, *, name="devices", choices="{low}..{high}") -> list:
    """The devices tiles run on: all local ones by default, the first ``devices`` if an
    int, or the given sequence of :class:`jax.Device`. ``name`` and ``choices`` word the
    error for a count above the local devices (``monte_carlo_kernel_fn`` names its
    ``device_count`` and its other choices)."""
    local = jax.local_devices()
    if devices is None:
        return list(local)
    if isinstance(devices, bool):
        raise TypeError("`devices` must be None, an int or a sequence of jax devices")
    if isinstance(devices, int | np.integer):
        n = check_int(
            devices,
            name,
            low=1,
            high=len(local),
            message="`{name}`={value} but this process has {high} local device(s); "
            f"choose {choices}",
        )
        return list(local[:n])
    if isinstance(devices, Sequence) and devices:
        devs = list(devices)
        for d in devs:
            if not isinstance(d, jax.Device):
                raise TypeError(f"`devices` must hold jax.Device objects, got {type(d).__name__}")
        if len({d.id for d in devs}) != len(devs):
            raise ValueError("`devices` lists a device twice")
        if len({d.platform for d in devs}) != 1:
            raise ValueError("`devices` mixes platforms; use devices of one backend")
        return devs
    raise TypeError(f"`devices` must be None, an int or a sequence of jax devices, got {devices!r}")


def in_mapped_context() -> bool:
    """True inside ``pmap``, ``shard_map`` or a named ``vmap`` axis.

    There the devices belong to the outer map (NumPyro's parallel chains pmap one chain
    per device): each mapped instance must compute its kernel on the device it runs on,
    and a nested ``shard_map`` over all local devices is refused by JAX ("context mesh
    ... should match the mesh passed to shard_map").
    """
    mesh = jax.sharding.get_abstract_mesh()
    if mesh is not None and not getattr(mesh, "empty", True):
        return True
    try:  # named axes of pmap / vmap(axis_name=...) (private API: best effort)
        from jax._src import core

        return bool(core.unsafe_get_axis_names())
    except Exception:  # pragma: no cover - JAX moved it; the mesh check above remains
        return False


def tile_mesh(devices=None) -> Mesh | None:
    """A one-axis mesh over the chosen devices, or ``None`` for a single device.

    With ``devices=None`` inside a mapped context (:func:`in_mapped_context`) the tiles
    run on the current device: the outer map already spreads the work over devices.
    An explicit ``devices`` is honoured, so asking for a mesh there is the caller's
    choice (and JAX's error).
    """
    if devices is None and in_mapped_context():
        return None
    devs = resolve_devices(devices)
    if len(devs) == 1:
        return None
    return Mesh(np.array(devs), (AXIS,))


def process_row_range(n: int, process_index: int | None = None, process_count: int | None = None):
    """``(start, stop)`` of this process's contiguous block of ``n`` rows."""
    i = jax.process_index() if process_index is None else process_index
    p = jax.process_count() if process_count is None else process_count
    per = -(-n // p)
    return min(i * per, n), min((i + 1) * per, n)


def distributed_kernel_fn(net, x1, x2=None, get="ntk", **kwargs):
    """Kernel of ``net`` computed by every process of a ``jax.distributed`` job.

    Each process passes the same ``x1``/``x2`` (e.g. loaded from the same file), computes
    the rows :func:`process_row_range` assigns it on its local devices, and receives the
    whole ``(n1, n2)`` kernel, assembled with
    ``jax.experimental.multihost_utils.process_allgather``. With one process it equals
    ``net.kernel_fn(x1, x2, get, **kwargs)``. ``get`` must name one kernel.
    """
    if not isinstance(get, str):
        raise TypeError("distributed_kernel_fn: `get` must be one kernel name, e.g. 'ntk'")
    n1 = np.shape(x1)[0]
    if jax.process_count() == 1:
        return net.kernel_fn(x1, x2, get, **kwargs)
    if net.needs_same_points():
        raise NotImplementedError(
            "distributed_kernel_fn: a network with train-mode Dropout needs to know which "
            "pairs are one point twice, which row blocks computed per process lose; use "
            "net.kernel_fn on one process (it still spreads tiles over local devices)"
        )
    if "pattern" in net.call_kwargs():
        raise NotImplementedError(
            "distributed_kernel_fn: a network with stax.Aggregate layers takes per-point "
            "graphs (`pattern`), which the row blocks per process do not slice; use "
            "net.kernel_fn on one process (it still spreads tiles over local devices)"
        )
    from jax.experimental import multihost_utils

    start, stop = process_row_range(n1)
    per = -(-n1 // jax.process_count())
    rows = np.asarray(x1)[start:stop]
    other = np.asarray(x1 if x2 is None else x2)
    if stop > start:
        block = np.asarray(net.kernel_fn(rows, other, get, **kwargs))
    else:
        tail = np.shape(net.kernel_fn(other[:1], other[:1], get, **kwargs))[2:]
        block = np.zeros((0, other.shape[0]) + tail)
    pad = np.zeros((per - block.shape[0],) + block.shape[1:], block.dtype)
    gathered = multihost_utils.process_allgather(np.concatenate([block, pad]), tiled=True)
    return np.asarray(gathered)[:n1]
