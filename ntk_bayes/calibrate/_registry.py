"""The models of ``ntk-bayes calibrate``: one registry the pipeline, the kernel check,
the files and the CLI read.

A model is a function ``fit(ctx) -> ModelResult`` registered under its task and name::

    @register("regression", "nngp", label="NNGP (exact GP)", kernel="nngp")
    def fit_nngp(ctx):
        ...

The modules that define the models (:mod:`._regression`, :mod:`._classification`)
register them when imported; the package imports both, so every ``calibrate`` module
sees the full registry. The order of registration is the order of the reports.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

__all__ = ["ModelSpec", "register", "spec", "models", "TASKS"]

TASKS = ("regression", "classification")


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A registered model.

    Attributes:
        task: ``"regression"`` or ``"classification"``.
        name: the ``--models`` name.
        label: the name shown in tables.
        kernel: the infinite-width kernel its fit evaluates (``"nngp"``, ``"ntk"`` or
            ``None``), checked for overflow before any fit.
        fit: ``fit(ctx) -> ModelResult`` on the run's training split.
        sampled: whether the fit is a Monte Carlo sampler under given settings:
            ``True``, ``False`` or ``"hyper-nuts"`` (only with ``Settings.hyper ==
            "nuts"``). ``Settings.sampled_splits`` limits sampled models to the first K
            splits.
    """

    task: str
    name: str
    label: str
    kernel: str | None
    fit: Callable[[Any], Any]
    sampled: bool | str = False

    def is_sampled(self, settings) -> bool:
        """Whether this model samples (MCMC) under ``settings``."""
        if self.sampled == "hyper-nuts":
            return settings.hyper == "nuts"
        return bool(self.sampled)


_REGISTRY: dict[str, dict[str, ModelSpec]] = {t: {} for t in TASKS}


def register(
    task: str, name: str, *, label: str, kernel: str | None = None, sampled: bool | str = False
):
    """Decorator: register ``fit(ctx)`` as model ``name`` of ``task``.

    Raises:
        ValueError: an unknown task, kernel or ``sampled``, or a name registered twice.
    """
    if task not in TASKS:
        raise ValueError(f"`task` must be one of {TASKS}, got {task!r}")
    if kernel not in (None, "nngp", "ntk"):
        raise ValueError(f"`kernel` must be 'nngp', 'ntk' or None, got {kernel!r}")
    if sampled not in (True, False, "hyper-nuts"):
        raise ValueError(f"`sampled` must be True, False or 'hyper-nuts', got {sampled!r}")

    def deco(fit):
        if name in _REGISTRY[task]:
            raise ValueError(f"model {name!r} of {task} is registered twice")
        _REGISTRY[task][name] = ModelSpec(task, name, label, kernel, fit, sampled)
        return fit

    return deco


def spec(task: str, name: str) -> ModelSpec:
    """The registered model ``name`` of ``task`` (``KeyError`` if there is none)."""
    return _REGISTRY[task][name]


def models(task: str) -> tuple[str, ...]:
    """Names of the registered models of ``task``, in registration order."""
    if task not in TASKS:
        raise ValueError(f"`task` must be one of {TASKS}, got {task!r}")
    return tuple(_REGISTRY[task])
