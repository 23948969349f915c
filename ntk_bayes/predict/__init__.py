"""Closed-form predictions of infinitely wide networks (neural-tangents compatible).

``gradient_descent_mse_ensemble`` (GD-trained ensembles at any time),
``gp_inference`` (NNGP / NTK / NTK-GP posteriors from kernel matrices),
``gradient_descent_mse`` (one linearised network's trajectory) and
``max_learning_rate`` keep neural-tangents' signatures and semantics;
``gradient_descent`` integrates the same linearised dynamics for any loss.
"""

from ._common import Gaussian as Gaussian
from ._ensemble import gradient_descent_mse_ensemble as gradient_descent_mse_ensemble
from ._gradient_descent import gradient_descent as gradient_descent
from ._inference import gp_inference as gp_inference
from ._trajectory import gradient_descent_mse as gradient_descent_mse
from ._trajectory import max_learning_rate as max_learning_rate

__all__ = [
    "Gaussian",
    "gp_inference",
    "gradient_descent",
    "gradient_descent_mse",
    "gradient_descent_mse_ensemble",
    "max_learning_rate",
]
