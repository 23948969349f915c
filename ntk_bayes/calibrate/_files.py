"""What a calibrate run writes per model: global attributes and the ArviZ layout of
sampled models (the rendering is :mod:`._report`, the scoring :mod:`._scoring`)."""

from __future__ import annotations

import math
import time

import numpy as np

from .. import diagnostics as dg
from ._common import MODEL_LABELS, Context, ModelResult

__all__ = ["attrs_for", "result", "sampled_idata"]


def _np(a) -> np.ndarray:
    return np.asarray(a, np.float64)


def attrs_for(ctx: Context, name: str, inference: str) -> dict:
    """Global attributes of a model's netCDF file."""
    task = ctx.ds.task
    out = {
        "model": name,
        "label": MODEL_LABELS[(task, name)],
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
        label=MODEL_LABELS[(task, name)],
        task=task,
        fit_time=time.perf_counter() - t0,
        **fields,
    )


def sampled_idata(f_tr, f_te, sd, ds, *, seed, attrs, sample_stats=None, log_lik=None):
    """The file layout of a sampled regression model: ``posterior.f_test`` (function
    values, for convergence), predictive draws of y at train and test inputs, one
    ``log_likelihood`` variable ``y`` (default ``az.loo`` works) and observed data.

    ``sd`` is the noise standard deviation per draw, ``(chain, draw, 1)``."""
    if log_lik is None:
        z = (_np(ds.y_train) - f_tr) / sd
        log_lik = -0.5 * z * z - np.log(sd) - 0.5 * math.log(2 * math.pi)
    rng = np.random.default_rng(seed)
    return dg.to_inference_data(
        posterior={"f_test": f_te},
        posterior_predictive={
            "y": f_tr + sd * rng.standard_normal(f_tr.shape),
            "y_test": f_te + sd * rng.standard_normal(f_te.shape),
        },
        log_likelihood={"y": log_lik},
        observed_data={"y": _np(ds.y_train), "y_test": _np(ds.y_test)},
        sample_stats=sample_stats or None,
        attrs=attrs,
    )
