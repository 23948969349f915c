r"""Hierarchical hyperpriors for groups of related GP regressions.

.. math::

    μ \sim \mathcal N(μ_0, s_μ), \quad τ \sim \text{HalfNormal}(s_τ), \quad
    z_g \sim \mathcal N(0, 1), \quad \log σ_g = μ + τ z_g

in the non-centred form, which NUTS samples without the funnel of the centred one.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jaxtyping import Array

from .._numerics import check_int, is_concrete

__all__ = ["group_log_normal"]


def group_log_normal(
    name: str, num_groups: int, loc: float = 0.0, loc_scale: float = 1.0, tau_scale: float = 0.5
) -> Array:
    """Per-group positive hyperparameters sharing a log-normal hyperprior.

    Creates sites ``{name}_mu``, ``{name}_tau``, ``{name}_z`` (plate ``{name}_groups``)
    and the deterministic ``name`` (shape ``(num_groups,)``), which it returns.
    """
    if not isinstance(name, str) or not name:
        raise ValueError("`name` must be a non-empty string: it prefixes the sample sites")
    num_groups = check_int(
        num_groups, "num_groups", low=1, message="`{name}` must be a positive int, got {value!r}"
    )
    for arg, v, positive in (
        ("loc", loc, False),
        ("loc_scale", loc_scale, True),
        ("tau_scale", tau_scale, True),
    ):
        if is_concrete(v):
            a = np.asarray(v)
            if a.ndim or not np.isfinite(a) or (positive and not a > 0):
                want = "a finite number > 0" if positive else "a finite number"
                raise ValueError(f"`{arg}` must be {want}, got {v!r}")
    mu = numpyro.sample(f"{name}_mu", dist.Normal(loc, loc_scale))
    tau = numpyro.sample(f"{name}_tau", dist.HalfNormal(tau_scale))
    with numpyro.plate(f"{name}_groups", num_groups):
        z = numpyro.sample(f"{name}_z", dist.Normal(0.0, 1.0))
    return numpyro.deterministic(name, jnp.exp(mu + tau * z))
