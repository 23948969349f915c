"""Empirical NTK/NNGP of any JAX function and Monte Carlo kernel estimates."""

from ._empirical import empirical_kernel_fn as empirical_kernel_fn
from ._empirical import empirical_nngp_fn as empirical_nngp_fn
from ._empirical import empirical_ntk_fn as empirical_ntk_fn
from ._monte_carlo import monte_carlo_kernel_fn as monte_carlo_kernel_fn

__all__ = [
    "empirical_kernel_fn",
    "empirical_nngp_fn",
    "empirical_ntk_fn",
    "monte_carlo_kernel_fn",
]
