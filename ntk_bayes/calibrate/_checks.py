"""Refuse a run whose kernels cannot give a meaningful fit, before the first fit.

The fits solve with, multiply and differentiate the kernel matrix; entries beyond
√(largest float of the dtype) overflow in those products (and a non-finite entry is
NaN from the start), so every model built on that kernel would end in NaN or inf after
its compilation and optimisation. :func:`check_kernels` evaluates the NNGP and NTK of the
architecture at its initial hyperparameters on a few inputs, once: those of largest
norm (the fully connected kernels' diagonal grows with ‖x‖², and by Cauchy-Schwarz
bounds every off-diagonal entry) and the one of smallest norm.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ..datasets import Dataset
from ._archs import Architecture
from ._registry import spec

__all__ = ["KernelOverflowError", "check_kernels"]

_NAMES = {"nngp": "NNGP kernel", "ntk": "NTK"}
_PROBE = 8  # inputs of largest norm evaluated


class KernelOverflowError(ValueError):
    """A kernel of the architecture is non-finite or overflows the dtype on the data."""


def _probe_inputs(ds: Dataset, x_grid) -> np.ndarray:
    parts = [np.asarray(ds.X_train), np.asarray(ds.X_test)]
    if x_grid is not None:
        parts.append(np.asarray(x_grid))
    X = np.concatenate([p.reshape(len(p), -1) for p in parts if len(p)])
    norms = np.einsum("ij,ij->i", X.astype(np.float64), X.astype(np.float64))
    order = np.argsort(norms)
    idx = np.unique(np.r_[order[-_PROBE:], order[:1]])
    return np.concatenate([p for p in parts if len(p)])[idx]


def check_kernels(
    ds: Dataset, arch: Architecture, models: Sequence[str], x_grid: np.ndarray | None = None
) -> dict[str, float]:
    """Evaluate the kernels that ``models`` need at ``arch``'s initial W_std, b_std.

    Args:
        ds: the data (train, test and ``x_grid`` inputs are probed).
        arch: the architecture and its initial hyperparameters.
        models: model names of ``ds.task``.
        x_grid: extra evaluation inputs (the bands' grid).

    Returns:
        ``{"nngp": largest |entry|, "ntk": ...}`` of the kernels checked.

    Raises:
        KernelOverflowError: a kernel has a non-finite entry or one above √(dtype max),
            naming the kernel, the models that need it, the hyperparameters and the fix.
    """
    import jax.numpy as jnp

    from ..stax._core import outputs_unchecked

    need: dict[str, list[str]] = {}
    for m in models:
        kind = spec(ds.task, m).kernel
        if kind is not None:
            need.setdefault(kind, []).append(m)
    if not need:
        return {}
    X = _probe_inputs(ds, x_grid)
    x = jnp.asarray(X.reshape((len(X),) + tuple(ds.input_shape)))
    dtype = np.dtype(x.dtype)
    limit = math.sqrt(float(np.finfo(dtype).max))
    # both kernels in one call whatever is needed: one compilation per architecture;
    # returned as computed, so that only the kernels the models need are judged, here
    with outputs_unchecked():
        out = arch.build().kernel_fn(x, None, ("nngp", "ntk"))
    largest = {}
    for kind, users in need.items():
        K = np.asarray(getattr(out, kind))
        finite = bool(np.isfinite(K).all())
        biggest = float(np.max(np.abs(K[np.isfinite(K)]), initial=0.0))
        largest[kind] = biggest if finite else math.inf
        if finite and biggest <= limit:
            continue
        what = (
            "non-finite entries (inf/NaN)"
            if not finite
            else f"entries up to {biggest:.3g}, beyond √(largest {dtype.name}) = {limit:.3g}"
        )
        norm = float(np.sqrt(np.max(np.sum(np.square(X, dtype=np.float64), axis=1))))
        raise KernelOverflowError(
            f"the {_NAMES[kind]} of {arch.name} at W_std={arch.W_std:g}, "
            f"b_std={arch.b_std:g} has {what} on the data (largest input norm {norm:.3g}, "
            f"after standardisation); model(s) {', '.join(users)} would fit NaN or inf. "
            "The kernel grows with a factor of order W_std² per layer: lower --W-std "
            "(1.4 to 1.5 keeps a ReLU network's kernel of order one) or use a shallower "
            "--arch" + (", or compute in float64 (drop --float32)" if dtype.itemsize < 8 else "")
        )
    return largest
