"""What a calibrate run writes: :func:`write_report` (``report.md``, ``metrics.json``,
figures, one netCDF file per model), and per model its global attributes, the ArviZ
layout of sampled models and what of it goes into the netCDF file (the rendering is
:mod:`._report`, the scoring :mod:`._scoring`).

The file holds what the report was computed from, at a bounded size
(:func:`for_file`): at most :data:`MAX_FILE_DRAWS` draws per variable, every chain kept
and thinned by the same stride; ``posterior`` and ``posterior_predictive`` (function
values, hyperparameter and predictive draws: plots and R-hat/ESS, for which float32's
seven digits exceed any Monte Carlo precision of 1000 draws) in float32;
``log_likelihood`` (PSIS-LOO sums n pointwise terms) and ``observed_data`` (the targets)
in float64. The scores, LOO and convergence figures of the report come from all draws
in memory; the file's attributes say how it was thinned.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .. import diagnostics as dg
from .._io import current_umask, write_json
from .._numerics import POSITIVE_INT, check_int
from ._common import Context, ModelResult
from ._registry import spec

if TYPE_CHECKING:
    from ._pipeline import CalibrationRun

__all__ = [
    "write_report",
    "attrs_for",
    "result",
    "sampled_idata",
    "for_file",
    "MAX_FILE_DRAWS",
    "FLOAT32_GROUPS",
]

#: draws per variable a calibrate netCDF file keeps, all chains together
MAX_FILE_DRAWS = 1000
#: groups stored in float32 (the others keep their dtype)
FLOAT32_GROUPS = ("posterior", "posterior_predictive")
_SAMPLE_GROUPS = ("posterior", "posterior_predictive", "log_likelihood", "sample_stats")


def _np(a) -> np.ndarray:
    return np.asarray(a, np.float64)


def attrs_for(ctx: Context, name: str, inference: str) -> dict:
    """Global attributes of a model's netCDF file."""
    task = ctx.ds.task
    out = {
        "model": name,
        "label": spec(task, name).label,
        "inference": inference,
        "dataset": ctx.ds.name,
        "arch": ctx.arch.name,
    }
    if task == "regression":
        out.update(
            y_std=ctx.ds.y_std,
            y_mean=ctx.ds.y_mean,
            units="standardised targets (multiply by y_std, add y_mean for raw units)",
        )
    else:
        out["classes"] = list(ctx.ds.classes or ())
    return out


def result(ctx: Context, name: str, t0: float, **fields) -> ModelResult:
    """A :class:`ModelResult` of this run's task, timed from ``t0``."""
    task = ctx.ds.task
    return ModelResult(
        name=name,
        label=spec(task, name).label,
        task=task,
        fit_time=time.perf_counter() - t0,
        **fields,
    )


def sampled_idata(
    f_tr, f_te, sd, ds, *, seed, attrs, sample_stats=None, log_lik=None, posterior=None
):
    """The file layout of a sampled regression model: ``posterior.f_test`` (function
    values, for convergence) beside the sampled parameters ``posterior`` (e.g. the
    hyperparameter draws), predictive draws of y at train and test inputs, one
    ``log_likelihood`` variable ``y`` (default ``az.loo`` works) and observed data.

    ``sd`` is the noise standard deviation per draw, ``(chain, draw, 1)``."""
    if log_lik is None:
        z = (_np(ds.y_train) - f_tr) / sd
        log_lik = -0.5 * z * z - np.log(sd) - 0.5 * math.log(2 * math.pi)
    rng = np.random.default_rng(seed)
    return dg.to_inference_data(
        posterior={**(posterior or {}), "f_test": f_te},
        posterior_predictive={
            "y": f_tr + sd * rng.standard_normal(f_tr.shape),
            "y_test": f_te + sd * rng.standard_normal(f_te.shape),
        },
        log_likelihood={"y": log_lik},
        observed_data={"y": _np(ds.y_train), "y_test": _np(ds.y_test)},
        sample_stats=sample_stats or None,
        attrs=attrs,
    )


def for_file(idata, max_draws: int = MAX_FILE_DRAWS):
    """A copy of ``idata`` as a calibrate run stores it (``idata`` is not changed).

    Every chain is kept and thinned by the same stride ``thin = ceil(draws /
    (max_draws // chains))`` (at least one draw per chain), so that chains x draws <=
    ``max_draws`` whenever chains <= ``max_draws``; float64 variables of
    :data:`FLOAT32_GROUPS` become float32. The attributes record it: ``thin``,
    ``draws_sampled`` and ``draws_stored`` (per chain), ``max_draws``, ``float32_groups``.
    """
    from ..diagnostics._arviz import _get_group, _set_var

    max_draws = check_int(max_draws, "max_draws", low=1, message=POSITIVE_INT)
    groups = {g: _get_group(idata, g) for g in _SAMPLE_GROUPS}
    lead = next((ds.sizes for ds in groups.values() if ds is not None and "draw" in ds.sizes), None)
    if lead is None:
        return idata
    chains, draws = int(lead["chain"]), int(lead["draw"])
    thin = math.ceil(draws / max(1, max_draws // chains))
    out = idata.isel(draw=slice(None, None, thin))  # a copy, even when thin == 1
    for g in FLOAT32_GROUPS:
        ds = _get_group(out, g)
        for name, da in ({} if ds is None else ds.data_vars).items():
            if da.dtype == np.float64:
                out = _set_var(out, g, name, da.astype(np.float32))
    out.attrs.update(
        thin=thin,
        draws_sampled=draws,
        draws_stored=math.ceil(draws / thin),
        max_draws=max_draws,
        float32_groups=", ".join(FLOAT32_GROUPS),
        storage="every chain thinned by `thin`, at most `max_draws` draws per variable; "
        "the report's scores, LOO and R-hat/ESS used all draws",
    )
    return out


def write_report(run: CalibrationRun, out: str | os.PathLike, *, extra: dict | None = None) -> dict:
    """Write ``report.md``, ``metrics.json``, the figures and one netCDF per model.

    Args:
        run: the fitted models.
        out: an existing directory (write into a temporary one and rename it into place
            to keep a failed run from leaving half a report).
        extra: more top-level entries for ``metrics.json`` (e.g. the command line).

    Returns:
        The summary written to ``metrics.json``.
    """
    from ._report import figures as render_figures
    from ._report import markdown
    from ._scoring import build_summary, evaluate

    out = Path(out)
    evals = evaluate(run)
    summary = build_summary(run, evals, extra)
    mode = 0o666 & ~current_umask()
    for res in run.results:
        path = dg.save_netcdf(for_file(res.idata), out / f"{res.name}.nc")
        path.chmod(mode)  # save_netcdf's temporary file is private; results should not be
    figures = render_figures(run, evals)
    for name, fig in figures.items():
        fig.savefig(out / name, dpi=110)
    write_json(out / "metrics.json", summary)
    (out / "report.md").write_text(markdown(run, summary, list(figures)))
    return summary
