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

from ._arviz import ARVIZ_1, az

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


def _group(idata, name):
    return idata[name] if ARVIZ_1 else getattr(idata, name)


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


def loo(idata, var_name: str = "y") -> dict:
    """PSIS-LOO on the training data, as a version-independent dict.

    Returns:
        ``{"elpd", "se", "p", "n_points", "max_pareto_k", "n_bad_k", "warning"}`` with
            bad meaning Pareto k > 0.7 and ``n_points`` the pointwise terms summed.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ArviZ warns on high Pareto k; we report it
        res = az.loo(idata, var_name=var_name, pointwise=True)
    if ARVIZ_1:
        elpd, se, p = res.elpd, res.se, res.p
    else:
        elpd, se, p = res["elpd_loo"], res["se"], res["p_loo"]
    k = np.asarray(res.pareto_k if ARVIZ_1 else res["pareto_k"], np.float64)
    return {
        "elpd": float(elpd),
        "se": float(se),
        "p": float(p),
        "n_points": int(k.size),
        "max_pareto_k": float(np.max(k)),
        "n_bad_k": int(np.sum(k > 0.7)),
        "warning": bool(np.any(k > 0.7)),
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
    """Pointwise held-out log predictive density, log mean_s p(y*_j | draw s)."""
    from scipy.special import logsumexp

    ll = np.asarray(_group(idata, "log_likelihood")[var_name].values, np.float64)
    ll = ll.reshape(-1, ll.shape[-1])
    return logsumexp(ll, axis=0) - math.log(ll.shape[0])
