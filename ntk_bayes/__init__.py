"""ntk_bayes: infinite-width neural networks as first-class Bayesian models in NumPyro."""

from . import stax as stax

__version__ = "0.1.0"

__all__ = ["stax", "__version__"]
