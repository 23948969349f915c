"""ArviZ files and statistics with one behaviour on ArviZ 0.x and 1.x.

Atomic netCDF writes, unrounded ``az.summary``, worst-case R-hat/ESS, PSIS-LOO and
``az.compare`` with version-independent field names, and the held-out log predictive
density of the layout described in :mod:`._arviz`.
"""

from __future__ import annotations

import math
import os
import pathlib
import tempfile
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from ._arviz import ARVIZ_1, _get_group, az

if TYPE_CHECKING:
    import pandas

__all__ = [
    "save_netcdf",
    "load_netcdf",
    "summary",
    "convergence",
    "loo",
    "compare",
    "held_out_lpd",
    "pareto_k_threshold",
]


def save_netcdf(idata, path, *, overwrite: bool = False) -> pathlib.Path:
    """Write ArviZ data to netCDF atomically (a temporary file renamed into place).

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
    """
    path = pathlib.Path(os.fspath(path))
    if path.exists() and not overwrite:
        raise FileExistsError(f"{str(path)!r} exists; pass overwrite=True to replace it")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"directory {str(path.parent)!r} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            idata.to_netcdf(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def load_netcdf(path):
    """Read ArviZ data written by :func:`save_netcdf` (fully loaded, file closed)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        data = az.from_netcdf(os.fspath(path))
    if ARVIZ_1:
        return data.load()
    return data


def summary(idata, var_names=None, group: str = "posterior"):
    """``az.summary`` (means, intervals, R-hat, ESS) as an unrounded DataFrame."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return az.summary(idata, var_names=var_names, group=group, round_to="none")


def convergence(idata, var_names=None, group: str = "posterior") -> dict:
    """Worst-case R-hat and ESS over the chosen variables of ``group`` (all by default).

    For networks, weight-space R-hat is spoiled by symmetries (permuted hidden units
    give the same function); judge convergence on function values such as ``f_test``.

    Returns:
        ``{"max_rhat", "min_ess_bulk", "min_ess_tail", "n_params"}``.
    """
    s = summary(idata, var_names, group)
    return {
        "max_rhat": float(np.nanmax(s["r_hat"].to_numpy(float))),
        "min_ess_bulk": float(np.nanmin(s["ess_bulk"].to_numpy(float))),
        "min_ess_tail": float(np.nanmin(s["ess_tail"].to_numpy(float))),
        "n_params": int(len(s)),
    }


def pareto_k_threshold(n_samples: int) -> float:
    """Pareto k above which PSIS is unreliable with ``n_samples`` draws.

    min(1 - 1/log10(S), 0.7) (Vehtari et al. 2024, eq. 13; ArviZ's ``good_k``): with
    few draws the tail fit needs a lighter tail, e.g. 0.44 at S = 60 draws.
    """
    s = int(n_samples)
    if s < 1:
        raise ValueError(f"`n_samples` must be a positive integer, got {n_samples!r}")
    if s == 1:  # one draw cannot be importance-sampled: no k is good enough
        return -math.inf
    return float(min(1.0 - 1.0 / math.log10(s), 0.7))  # <= 0 for S <= 10, as in ArviZ


def _elpd_field(res, name):
    return getattr(res, name) if ARVIZ_1 else res[name]


def loo(idata, var_name: str = "y") -> dict:
    """PSIS-LOO on the training data, as a version-independent dict.

    A point is bad when its Pareto k exceeds :func:`pareto_k_threshold` of the number
    of posterior draws S, min(1 - 1/log10(S), 0.7), as in ArviZ (not a fixed 0.7).

    Returns:
        ``{"elpd", "se", "p", "n_points", "n_samples", "max_pareto_k", "k_threshold",
            "n_bad_k", "warning"}``: ``n_points`` the pointwise terms summed,
            ``n_samples`` the draws S, ``n_bad_k`` the points with Pareto k >
            ``k_threshold`` and ``warning`` whether there is any.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ArviZ warns on high Pareto k; we report it
        res = az.loo(idata, var_name=var_name, pointwise=True)
    if ARVIZ_1:
        elpd, se, p = res.elpd, res.se, res.p
    else:
        elpd, se, p = res["elpd_loo"], res["se"], res["p_loo"]
    k = np.asarray(_elpd_field(res, "pareto_k"), np.float64)
    n_samples = int(_elpd_field(res, "n_samples"))
    k_max = pareto_k_threshold(n_samples)
    bad = int(np.sum(k > k_max))
    return {
        "elpd": float(elpd),
        "se": float(se),
        "p": float(p),
        "n_points": int(k.size),
        "n_samples": n_samples,
        "max_pareto_k": float(np.max(k)),
        "k_threshold": k_max,
        "n_bad_k": bad,
        "warning": bad > 0,
    }


def compare(models: Mapping, var_name: str = "y") -> pandas.DataFrame:
    """``az.compare`` by PSIS-LOO with one column naming across ArviZ versions.

    Returns:
        A DataFrame indexed by model name with columns ``rank, elpd, se, p, elpd_diff,
            dse, weight, warning``, best model first; ``elpd_diff`` = best elpd - elpd >= 0.
    """
    if not isinstance(models, Mapping) or len(models) < 2:
        raise ValueError("`models` must be a dict of at least two {name: idata}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if ARVIZ_1:
            df = az.compare(dict(models), var_name=var_name, round_to="none")
        else:
            df = az.compare(dict(models), var_name=var_name)
    df = df.rename(columns={"elpd_loo": "elpd", "p_loo": "p"})
    # ArviZ 1.x reports elpd_diff as elpd - best (<= 0), 0.x as best - elpd (>= 0)
    df["elpd_diff"] = df["elpd"].max() - df["elpd"]
    cols = ["rank", "elpd", "se", "p", "elpd_diff", "dse", "weight", "warning"]
    for c in cols:
        if c not in df.columns:
            df[c] = np.nan
    return df[cols]


def held_out_lpd(idata, var_name: str = "y_test") -> np.ndarray:
    """Pointwise held-out log predictive density, log mean_s p(y*_j | draw s).

    Raises:
        ValueError: ``idata`` has no ``log_likelihood`` group or no ``var_name`` in it.
            Only sampled models store test log-likelihoods (``from_latent_samples``
            with ``f_test`` and ``y_test``, ``from_class_probs`` with ``y_test``); a
            Gaussian predictive (``from_gaussian``) has none: score it in closed form,
            ``GaussianPredictive(mean, std).logpdf(y_test)``.
    """
    from scipy.special import logsumexp

    how = (
        "held_out_lpd needs pointwise log-likelihoods of the test targets, written by "
        "from_latent_samples(..., f_test=..., y_test=...) or from_class_probs(..., "
        "y_test=...); Gaussian predictives (from_gaussian) store none: score them in "
        "closed form with GaussianPredictive(mean, std).logpdf(y_test)"
    )
    group = _get_group(idata, "log_likelihood")
    if group is None:
        raise ValueError(f"these ArviZ data have no 'log_likelihood' group: {how}")
    if var_name not in group.data_vars:
        have = ", ".join(repr(str(v)) for v in group.data_vars) or "none"
        raise ValueError(f"'log_likelihood' has no variable {var_name!r} (it has {have}): {how}")
    ll = np.asarray(group[var_name].values, np.float64)
    ll = ll.reshape(-1, ll.shape[-1])
    return logsumexp(ll, axis=0) - math.log(ll.shape[0])
