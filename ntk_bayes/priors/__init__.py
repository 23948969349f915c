"""The NumPyro plugin: NNGP/NTK GP priors, latent GPs, predictions from posteriors."""

from .._chains import sharded_chains as sharded_chains
from ._gp import ConditionedGP as ConditionedGP
from ._gp import GaussianProcess as GaussianProcess
from ._gp import pad_groups as pad_groups
from ._hierarchical import group_log_normal as group_log_normal
from ._latent import latent_gp as latent_gp
from ._latent import sparse_latent_gp as sparse_latent_gp
from ._predict import loo_log_likelihood as loo_log_likelihood
from ._predict import posterior_predictive as posterior_predictive
from ._replicates import Replicates as Replicates
from ._replicates import collapse_replicates as collapse_replicates

__all__ = [
    "ConditionedGP",
    "GaussianProcess",
    "Replicates",
    "collapse_replicates",
    "group_log_normal",
    "latent_gp",
    "loo_log_likelihood",
    "pad_groups",
    "posterior_predictive",
    "sharded_chains",
    "sparse_latent_gp",
]
