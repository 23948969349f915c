"""Finite Bayesian networks of a ``stax`` architecture, trained by NUTS or SVI.

::

    from ntk_bayes import bnn, stax
    net = stax.serial(stax.Dense(512, W_std=1.5, b_std=0.05), stax.Relu(), stax.Dense(1))
    model = bnn.BNN(net, width=16, likelihood="gaussian")     # noise ~ HalfNormal(1)
    post = model.fit_nuts(X, y, num_chains=2, seed=0)
    pred = post.predictive(X_test)                            # a SamplePredictive
    idata = post.to_inference_data(X_test, y_test)            # ArviZ data
"""

from ._finite import finite_network as finite_network
from ._model import BNN as BNN
from ._model import LIKELIHOODS as LIKELIHOODS
from ._posterior import BNNPosterior as BNNPosterior

__all__ = ["BNN", "BNNPosterior", "LIKELIHOODS", "finite_network"]
