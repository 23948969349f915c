"""Finite Bayesian networks of a ``stax`` architecture, trained by NUTS or SVI.

::

    from ntk_bayes import bnn, stax
    net = stax.serial(stax.Dense(512, W_std=1.5, b_std=0.05), stax.Relu(), stax.Dense(1))
    model = bnn.BNN(net, width=16, noise=0.05)       # noise: the noise VARIANCE
    post = model.fit_nuts(X, y, X_eval=X_test, seed=0)
    post.convergence.converged                       # split R-hat, bulk ESS, divergences
    pred = post.predictive(X_test)                   # a SamplePredictive
    idata = post.to_inference_data(X_test, y_test)   # ArviZ data
"""

from ._convergence import ESS_BAR as ESS_BAR
from ._convergence import RHAT_BAR as RHAT_BAR
from ._convergence import Convergence as Convergence
from ._convergence import function_convergence as function_convergence
from ._finite import finite_network as finite_network
from ._likelihood import LIKELIHOODS as LIKELIHOODS
from ._model import BNN as BNN
from ._model import DEFAULT_NUTS as DEFAULT_NUTS
from ._nuts import NutsRun as NutsRun
from ._nuts import run_nuts as run_nuts
from ._posterior import BNNPosterior as BNNPosterior

__all__ = [
    "BNN",
    "BNNPosterior",
    "Convergence",
    "DEFAULT_NUTS",
    "ESS_BAR",
    "LIKELIHOODS",
    "NutsRun",
    "RHAT_BAR",
    "finite_network",
    "function_convergence",
    "run_nuts",
]
