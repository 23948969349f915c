"""Fit every requested model on one train/test split: :func:`run_calibration`."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence

import numpy as np

from ..datasets import Dataset
from ..gp import NotPSDError
from ._archs import Architecture
from ._common import (
    CLASSIFICATION_MODELS,
    MODEL_LABELS,
    REGRESSION_MODELS,
    Context,
    ModelResult,
    Settings,
    grid_for,
)

__all__ = ["CalibrationRun", "run_calibration", "available_models", "check_models"]

# failures of one model that should not abort the others (numerical trouble, bad fits);
# anything else is a bug and propagates
_MODEL_FAILURES = (FloatingPointError, NotPSDError, ValueError, np.linalg.LinAlgError)


@dataclasses.dataclass
class CalibrationRun:
    """Everything the report needs: data, architecture, settings and the fitted models.

    Attributes:
        dataset: the train/test split (standardised).
        arch: the architecture.
        settings: the budgets used.
        results: one :class:`ModelResult` per model that fitted, in the order asked.
        failures: ``{model: "ExceptionType: message"}`` for models that failed.
        x_grid: the 1-D evaluation grid (``None`` for other inputs).
        total_time: wall-clock seconds of all fits.
    """

    dataset: Dataset
    arch: Architecture
    settings: Settings
    results: list[ModelResult]
    failures: dict[str, str] = dataclasses.field(default_factory=dict)
    x_grid: np.ndarray | None = None
    total_time: float = 0.0


def available_models(task: str) -> tuple[str, ...]:
    """Model names for ``"regression"`` or ``"classification"``."""
    return REGRESSION_MODELS if task == "regression" else CLASSIFICATION_MODELS


def check_models(models: Sequence[str] | None, task: str) -> tuple[str, ...]:
    """Validate model names for the task (``None``: all of them), keeping the order.

    Raises:
        ValueError: unknown or duplicate names, naming the valid ones.
    """
    valid = available_models(task)
    if models is None:
        return valid
    models = tuple(m.strip().lower() for m in models if m.strip())
    if not models:
        raise ValueError(f"--models is empty; choose from {', '.join(valid)}")
    unknown = [m for m in models if m not in valid]
    if unknown:
        raise ValueError(
            f"unknown model(s) {', '.join(unknown)} for {task}; choose from {', '.join(valid)}"
        )
    dup = sorted({m for m in models if models.count(m) > 1})
    if dup:
        raise ValueError(f"model(s) {', '.join(dup)} given twice in --models")
    return models


def run_calibration(
    ds: Dataset,
    arch: Architecture,
    models: Sequence[str] | None = None,
    settings: Settings | None = None,
    log: Callable[[str], None] | None = None,
) -> CalibrationRun:
    """Fit the models on ``ds``'s training split and predict its test split.

    Args:
        ds: a :class:`~ntk_bayes.datasets.Dataset` (regression or classification).
        arch: the architecture (see :func:`parse_arch`).
        models: names from :func:`available_models` (default: all for the task).
        settings: budgets (default :class:`Settings`).
        log: called with one line per step (progress).

    Returns:
        A :class:`CalibrationRun`. A model that fails numerically is recorded in
        ``failures`` and the others still run; if every model fails the first error
        is raised.
    """
    from ._classification import FIT_CLASSIFICATION
    from ._regression import FIT_REGRESSION

    settings = Settings() if settings is None else settings
    names = check_models(models, ds.task)
    log = log or (lambda msg: None)
    ctx = Context(ds, arch, settings, x_grid=grid_for(ds), log=log)
    fitters = FIT_REGRESSION if ds.task == "regression" else FIT_CLASSIFICATION
    results, failures, first_error = [], {}, None
    t0 = time.perf_counter()
    for i, name in enumerate(names, 1):
        log(f"[{i}/{len(names)}] {MODEL_LABELS[(ds.task, name)]}")
        t = time.perf_counter()
        try:
            res = fitters[name](ctx)
        except _MODEL_FAILURES as e:
            failures[name] = f"{type(e).__name__}: {e}"
            first_error = first_error or e
            log(f"  {name} failed: {failures[name]}")
            continue
        results.append(res)
        log(f"  done in {time.perf_counter() - t:.1f} s")
    if not results and first_error is not None:
        raise first_error
    return CalibrationRun(
        dataset=ds,
        arch=arch,
        settings=settings,
        results=results,
        failures=failures,
        x_grid=ctx.x_grid,
        total_time=time.perf_counter() - t0,
    )
