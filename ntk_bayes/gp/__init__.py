"""Exact and sparse GP posteriors for NNGP/NTK (or any) kernels.

* :class:`ExactGP` — Cholesky posterior, log marginal likelihood, joint samples,
  closed-form leave-one-out.
* :class:`SGPR` — Titsias' collapsed bound with its optimal q(u) (Gaussian noise).
* :class:`SVGP` — whitened stochastic variational GP with minibatch ELBO and the
  :class:`Gaussian`, :class:`Bernoulli`, :class:`Categorical`, :class:`Poisson`
  likelihoods.
* :func:`kmeans_pp`, :func:`greedy_variance` — inducing inputs from the data;
  :func:`fit_exact`, :func:`fit_sgpr`, :func:`fit_svgp`, :func:`optimize` — optax loops.
* :func:`psd_cholesky` and friends — the jitter policy shared by all of them.
"""

from .._linalg import NotPSDError as NotPSDError
from .._linalg import NumericalWarning as NumericalWarning
from .._linalg import cho_solve as cho_solve
from .._linalg import psd_cholesky as psd_cholesky
from .._linalg import tri_solve as tri_solve
from ._exact import ExactGP as ExactGP
from ._fit import FitResult as FitResult
from ._fit import fit_exact as fit_exact
from ._fit import fit_sgpr as fit_sgpr
from ._fit import fit_svgp as fit_svgp
from ._fit import optimize as optimize
from ._fit import trainable_floats as trainable_floats
from ._inducing import greedy_variance as greedy_variance
from ._inducing import kmeans_pp as kmeans_pp
from ._kernels import FunctionKernel as FunctionKernel
from ._kernels import GPKernel as GPKernel
from ._kernels import NetworkKernel as NetworkKernel
from ._kernels import as_kernel as as_kernel
from ._likelihoods import Bernoulli as Bernoulli
from ._likelihoods import Categorical as Categorical
from ._likelihoods import Gaussian as Gaussian
from ._likelihoods import Likelihood as Likelihood
from ._likelihoods import Poisson as Poisson
from ._sgpr import SGPR as SGPR
from ._svgp import SVGP as SVGP
from ._svgp import SVGPParams as SVGPParams

__all__ = [
    "Bernoulli",
    "Categorical",
    "ExactGP",
    "FitResult",
    "FunctionKernel",
    "GPKernel",
    "Gaussian",
    "Likelihood",
    "NetworkKernel",
    "NotPSDError",
    "NumericalWarning",
    "Poisson",
    "SGPR",
    "SVGP",
    "SVGPParams",
    "as_kernel",
    "cho_solve",
    "fit_exact",
    "fit_sgpr",
    "fit_svgp",
    "greedy_variance",
    "kmeans_pp",
    "optimize",
    "psd_cholesky",
    "tri_solve",
    "trainable_floats",
]
