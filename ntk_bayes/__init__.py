"""ntk_bayes: infinite-width neural networks as first-class Bayesian models in NumPyro."""

import importlib

from . import gp as gp
from . import predict as predict
from . import priors as priors
from . import stax as stax
from .empirical import empirical_kernel_fn as empirical_kernel_fn
from .empirical import empirical_nngp_fn as empirical_nngp_fn
from .empirical import empirical_ntk_fn as empirical_ntk_fn
from .empirical import monte_carlo_kernel_fn as monte_carlo_kernel_fn
from .priors import GaussianProcess as GaussianProcess

__version__ = "0.1.0"

# Imported on first use: diagnostics pulls in ArviZ and xarray (seconds of start-up).
_LAZY = ("bnn", "datasets", "diagnostics", "theory")


def __getattr__(name):
    if name in _LAZY:
        module = importlib.import_module(f".{name}", __name__)
        globals()[name] = module
        return module
    raise AttributeError(f"module 'ntk_bayes' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY))


__all__ = [
    "GaussianProcess",
    "__version__",
    "bnn",
    "datasets",
    "diagnostics",
    "empirical_kernel_fn",
    "empirical_nngp_fn",
    "empirical_ntk_fn",
    "gp",
    "monte_carlo_kernel_fn",
    "predict",
    "priors",
    "stax",
    "theory",
]
