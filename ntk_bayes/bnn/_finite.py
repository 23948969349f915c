r"""The finite network of a ``stax`` architecture and the layout of its weight priors.

Width: every ``Dense``/``Conv`` layer that is not a readout gets ``width`` output
units/channels; readouts (those whose output reaches the network's output without passing
another such layer) keep theirs.

Prior: each layer states the prior scale of every finite parameter
(:meth:`ntk_bayes.stax.Layer.prior_std`, a pytree shaped like its ``init_fn`` params), so
the weights are :math:`θ_j \sim N(0, s_j^2)` and the network is the layer's own
``apply_fn``. In the "ntk" parameterisation (the BNN's default) every weight is a unit
normal and ``apply_fn`` multiplies by σ_w/√n and σ_b (Jacot et al. 2018); in the
"standard" one W ~ N(0, σ_w²/n), b ~ N(0, σ_b²) (Neal 1996). Both give the same prior
over functions, whose limit as the width grows is GP(0, K_nngp); they differ only in the
geometry a sampler sees.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from .._numerics import check_int, is_concrete
from ..stax import Conv, Dense, Layer, Parallel, Serial

__all__ = ["finite_network", "ParamLayout", "param_layout", "PARAMETERIZATIONS"]

PARAMETERIZATIONS = ("ntk", "standard")
_WIDTH_FIELD = {Dense: "out_dim", Conv: "out_chan"}  # layers whose width a BNN sets


def _readouts(layer, path: tuple = ()) -> tuple[set[tuple], bool]:
    """Paths of the readout Dense/Conv layers, and whether every route through
    ``layer`` passes one."""
    if isinstance(layer, Serial):
        found: set[tuple] = set()
        for i in reversed(range(len(layer.layers))):
            r, blocked = _readouts(layer.layers[i], (*path, i))
            found |= r
            if blocked:
                return found, True
        return found, False
    if isinstance(layer, Parallel):
        found, all_blocked = set(), True
        for i, sub in enumerate(layer.layers):
            r, blocked = _readouts(sub, (*path, i))
            found |= r
            all_blocked &= blocked
        return found, all_blocked
    if type(layer) in _WIDTH_FIELD:
        return {path}, True
    return set(), False


def finite_network(net: Layer, width: int | None, parameterization: str = "ntk"):
    """The same architecture with hidden widths ``width`` (readouts kept) and every
    Dense/Conv layer in ``parameterization``. ``width=None`` keeps the layers' widths."""
    if not isinstance(net, Layer):
        raise TypeError(f"`net` must be an ntk_bayes.stax network, got {type(net).__name__}")
    if width is not None:
        width = check_int(
            width,
            "width",
            low=1,
            message="`{name}` must be a positive integer or None, got {value!r}",
        )
    if parameterization not in PARAMETERIZATIONS:
        raise ValueError(
            f"`parameterization` must be one of {PARAMETERIZATIONS}, got {parameterization!r}"
        )
    readouts, _ = _readouts(net)
    if not readouts:
        raise ValueError(
            "the network has no weighted layer (Dense/Conv): its outputs have no prior to "
            "sample; end it with a Dense readout"
        )

    def rebuild(layer, path):
        if isinstance(layer, Serial | Parallel):
            return type(layer)(tuple(rebuild(s, (*path, i)) for i, s in enumerate(layer.layers)))
        field = _WIDTH_FIELD.get(type(layer))
        if field is None:
            return layer
        changes = {"parameterization": parameterization}
        if width is not None and path not in readouts:
            changes[field] = width
        return dataclasses.replace(layer, **changes)

    return rebuild(net, ())


def _is_zero(s) -> bool:
    return is_concrete(s) and float(s) == 0.0


@dataclasses.dataclass(frozen=True)
class ParamLayout:
    """Where each sampled weight array goes in the network's ``params``.

    Attributes:
        treedef: structure of ``init_fn``'s params.
        sites: ``(suffix, shape, std)`` per params leaf, in tree order; ``std`` is
            ``None`` for a leaf fixed at zero (prior scale 0: ``apply_fn`` ignores it).
            Suffixes are the leaf's index path, e.g. ``"2_0"`` for the W of layer 2.
    """

    treedef: object
    sites: tuple

    @property
    def sampled(self) -> tuple:
        return tuple(s for s in self.sites if s[2] is not None)

    @property
    def size(self) -> int:
        """Number of sampled weights."""
        return sum(math.prod(shape) for _, shape, _ in self.sampled)

    def build(self, arrays: dict, dtype) -> object:
        """The params pytree from ``{suffix: array}`` (fixed leaves are zeros)."""
        leaves = [
            jnp.zeros(shape, dtype) if std is None else arrays[sfx]
            for sfx, shape, std in self.sites
        ]
        return jax.tree_util.tree_unflatten(self.treedef, leaves)

    def prior_draw(self, key, dtype) -> object:
        """One params pytree from the prior; all weights from one normal vector, which
        compiles far faster under ``vmap`` than one random call per array."""
        flat = jax.random.normal(key, (self.size,), dtype)
        arrays, start = {}, 0
        for sfx, shape, std in self.sampled:
            size = math.prod(shape)
            arrays[sfx] = std * flat[start : start + size].reshape(shape)
            start += size
        return self.build(arrays, dtype)


def param_layout(finite: Layer, x_shape) -> ParamLayout:
    """The :class:`ParamLayout` of ``finite`` on inputs of ``x_shape``.

    Raises:
        TypeError: a layer has parameters without a stated prior.
    """
    x_shape = tuple(x_shape)
    _, shapes = jax.eval_shape(lambda k: finite.init(k, x_shape), jax.random.PRNGKey(0))
    try:
        stds = finite.prior_std(x_shape)
    except NotImplementedError as e:
        raise TypeError(f"the finite BNN cannot put priors on this network: {e}") from None
    leaves_with_path, treedef = jax.tree_util.tree_flatten_with_path(shapes)
    std_leaves = treedef.flatten_up_to(stds)
    sites = []
    for (path, leaf), std in zip(leaves_with_path, std_leaves, strict=True):
        sfx = "_".join(str(getattr(k, "idx", getattr(k, "key", k))) for k in path)
        std = None if std is None or _is_zero(std) else std
        if std is not None and is_concrete(std):
            std = float(np.asarray(std))
        sites.append((sfx, tuple(leaf.shape), std))
    return ParamLayout(treedef, tuple(sites))
