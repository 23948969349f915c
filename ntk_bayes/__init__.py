"""ntk_bayes: infinite-width neural networks as first-class Bayesian models in NumPyro.

Every subpackage and top-level name is imported on first use (PEP 562), so that
``import ntk_bayes`` (and with it the ``ntk-bayes --help`` command) does not pay the
seconds JAX, NumPyro, Equinox and ArviZ take to import.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_SUBPACKAGES = (
    "bnn",
    "calibrate",
    "datasets",
    "diagnostics",
    "empirical",
    "gp",
    "predict",
    "priors",
    "stax",
    "theory",
)
# name -> the subpackage it comes from
_NAMES = {
    "GaussianProcess": "priors",
    "empirical_kernel_fn": "empirical",
    "empirical_nngp_fn": "empirical",
    "empirical_ntk_fn": "empirical",
    "linearize": "theory",
    "monte_carlo_kernel_fn": "empirical",
    "taylor_expand": "theory",
}

if TYPE_CHECKING:  # for type checkers and the API pages; at run time see __getattr__
    from . import bnn as bnn
    from . import calibrate as calibrate
    from . import datasets as datasets
    from . import diagnostics as diagnostics
    from . import empirical as empirical
    from . import gp as gp
    from . import predict as predict
    from . import priors as priors
    from . import stax as stax
    from . import theory as theory
    from .empirical import empirical_kernel_fn as empirical_kernel_fn
    from .empirical import empirical_nngp_fn as empirical_nngp_fn
    from .empirical import empirical_ntk_fn as empirical_ntk_fn
    from .empirical import monte_carlo_kernel_fn as monte_carlo_kernel_fn
    from .priors import GaussianProcess as GaussianProcess
    from .theory import linearize as linearize
    from .theory import taylor_expand as taylor_expand


def __getattr__(name: str):
    if name in _SUBPACKAGES:
        value = importlib.import_module(f".{name}", __name__)
    elif name in _NAMES:
        value = getattr(importlib.import_module(f".{_NAMES[name]}", __name__), name)
    else:
        raise AttributeError(f"module 'ntk_bayes' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_SUBPACKAGES) | set(_NAMES))


__all__ = [
    "GaussianProcess",
    "__version__",
    "bnn",
    "calibrate",
    "datasets",
    "diagnostics",
    "empirical",
    "empirical_kernel_fn",
    "empirical_nngp_fn",
    "empirical_ntk_fn",
    "gp",
    "linearize",
    "monte_carlo_kernel_fn",
    "predict",
    "priors",
    "stax",
    "taylor_expand",
    "theory",
]
