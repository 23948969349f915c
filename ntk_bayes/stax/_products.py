r"""``FanInProd``: the elementwise product of branches.

For branches that are independent given the input of their ``FanOut`` (all of them
but at most one end with their own random affine layer), the moments factorise
(neural-tangents' ``FanInProd``):

.. math::

    Σ' = \prod_i Σ_i, \qquad
    Θ' = \sum_i Θ_i \prod_{j \ne i} Σ_j

Σ_i is the second moment E[f_i(x) f_i(x')] of branch i (not centred: a branch may end
in a nonlinearity), Θ_i its NTK; the product rule gives Θ'.
"""

from __future__ import annotations

import functools
import operator

import jax.numpy as jnp

from ._branching import _check_cross_terms, _check_same_layout, _need_streams, _shared_ids
from ._core import Layer

__all__ = ["FanInProd"]


class FanInProd(Layer):
    """Elementwise product of the branches (``stax.FanInProd``).

    Refused, as for ``FanInSum``, when two or more branches are not independent of the
    others (they end in a nonlinearity, or pass the shared input through): the kernel
    of ``relu(h) * relu(h)`` is a fourth moment of ``h`` with no closed form here
    (neural-tangents returns the product of the second moments, which is wrong).
    The product is not Gaussian: a nonlinearity after it needs a Dense or Conv first.
    """

    def kernel(self, ks):
        ks = _need_streams("FanInProd", ks)
        self.output_shape([k.shape1 for k in ks])
        self.output_shape([k.shape2 for k in ks])
        _check_same_layout("FanInProd", ks)
        _check_cross_terms("FanInProd", ks)
        prod = lambda arrays: functools.reduce(operator.mul, arrays)
        nngp = prod([k.nngp for k in ks])
        ntk = None
        if all(k.ntk is not None for k in ks):
            # Θ' = Σ_i Θ_i Π_{j≠i} Σ_j, accumulated as (Σ_{<i}, Θ_{<i}) pairs.
            s, ntk = ks[0].nngp, ks[0].ntk
            for k in ks[1:]:
                ntk = ntk * k.nngp + s * k.ntk
                s = s * k.nngp
        return ks[0].replace(
            nngp=nngp,
            ntk=ntk,
            cov1=prod([k.cov1 for k in ks]),
            cov2=prod([k.cov2 for k in ks]),
            is_gaussian=len(ks) == 1 and ks[0].is_gaussian,
            is_input=False,
            independent=all(k.independent for k in ks),
            points_alike=all(k.points_alike for k in ks),
            point_ids=_shared_ids(ks),
        )

    def apply(self, params, xs, **kwargs):
        return functools.reduce(jnp.multiply, _need_streams("FanInProd", xs))

    def output_shape(self, input_shape):
        shapes = _need_streams("FanInProd", input_shape)
        if any(tuple(s) != tuple(shapes[0]) for s in shapes):
            raise ValueError(
                f"FanInProd: branches must have equal shapes, got {shapes}; the product is "
                "elementwise"
            )
        return tuple(shapes[0])
