r"""K-fold cross-validation where PSIS-LOO fails (Vehtari, Gelman & Gabry 2017, sec. 2.3).

A sampled posterior's PSIS-LOO is unreliable at any point whose Pareto k exceeds
min(1 - 1/log10 S, 0.7) for S draws (``dg.pareto_k_threshold``); there the importance
ratios have too heavy a tail for that many draws. The fallback
refits the model K times, each time without one fold of the training points, and
scores the held-out fold by the refit's own predictive:

.. math::

    \mathrm{elpd}_{K\text{-fold}} = \sum_{k=1}^K \sum_{i \in F_k} \log p(y_i \mid y_{-F_k}),

with F_1..F_K a seeded random partition of the n training points (sizes differing by at
most one). Each refit sees (K - 1)/K of the data instead of all but one point, so the
estimate is slightly pessimistic next to exact LOO (most for small n and small K). The
cost is K fits of the model: on by ``Settings.kfold`` (``--kfold K``), off by default
in the main job, where the report says that PSIS failed and what K-fold would cost.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import numpy as np

from .._numerics import check_int
from ._common import Context, ModelResult
from ._scoring import LooResult

__all__ = ["folds", "kfold_loo", "needs_kfold", "with_kfold"]


def folds(n: int, k: int, seed: int) -> list[np.ndarray]:
    """A seeded random partition of ``range(n)`` into ``k`` sorted index arrays whose
    sizes differ by at most one.

    Raises:
        ValueError: ``k`` below 2 or above ``n``.
    """
    k = check_int(
        k,
        "k",
        low=2,
        high=n,
        message="`{name}` (the K of K-fold) must be an integer in [{low}, {high}], got {value!r}",
    )
    perm = np.random.default_rng(seed).permutation(n)
    return [np.sort(part) for part in np.array_split(perm, k)]


def _fold_dataset(ds, train: np.ndarray, held: np.ndarray):
    """The training split of ``ds`` cut into a fold: ``held`` becomes the test part.
    The standardisation stays that of the whole training split (the units of the
    other models' LOO), and loader facts about the test split (``extra``) are dropped."""
    return dataclasses.replace(
        ds,
        X_train=ds.X_train[train],
        y_train=ds.y_train[train],
        X_test=ds.X_train[held],
        y_test=ds.y_train[held],
        extra={},
    )


def kfold_loo(
    ctx: Context, fit: Callable[[Context], ModelResult], k: int, *, note: str = ""
) -> LooResult:
    """K-fold elpd of the model ``fit`` on ``ctx``'s training split.

    Args:
        ctx: the run's context (its dataset's training part is partitioned).
        fit: the model's fit, called on a fresh quiet context per fold; its
            ``predictive`` at the fold's held-out points is scored by ``logpdf``.
        k: folds K (each fold one refit).
        note: prepended to the result's note (e.g. why PSIS was not used).

    Returns:
        A :class:`LooResult` with ``method="kfold"``, one term per training point
        (in the training split's order), ``k`` and ``seconds`` of the refits.
    """
    ds, s = ctx.ds, ctx.settings
    parts = folds(ds.n_train, k, s.seed)
    pointwise = np.empty(ds.n_train, np.float64)
    t0 = time.perf_counter()
    for j, held in enumerate(parts):
        ctx.log(f"  K-fold {j + 1}/{k}")
        train = np.setdiff1d(np.arange(ds.n_train), held)
        sub = Context(
            _fold_dataset(ds, train, held),
            ctx.arch,
            dataclasses.replace(s, quiet=True, splits=1),
            x_grid=None,
        )
        res = fit(sub)
        lp = np.asarray(res.predictive.logpdf(ds.y_train[held]), np.float64).reshape(-1)
        if not np.all(np.isfinite(lp)):
            raise FloatingPointError(f"K-fold: non-finite held-out log density in fold {j + 1}")
        pointwise[held] = lp
    secs = time.perf_counter() - t0
    text = f"K-fold, K={k} refits on (K-1)/K of the data ({secs:.0f} s)"
    return LooResult(
        "kfold", pointwise, note=f"{note}; {text}" if note else text, k=k, seconds=secs
    )


def needs_kfold(loo: LooResult | None) -> bool:
    """Whether ``loo`` is a PSIS estimate with a Pareto k above its threshold."""
    return loo is not None and loo.method == "psis" and bool(loo.n_bad_k)


def with_kfold(ctx: Context, fit: Callable[[Context], ModelResult], res: ModelResult):
    """``res`` with K-fold LOO in place of a failed PSIS-LOO when ``ctx.settings.kfold``
    asks for it, else with a note in its LOO saying why K-fold was not computed and
    what it would cost (K times this model's fit time). Other results pass unchanged.
    """
    psis = res.loo
    if not needs_kfold(psis):
        return res
    k_set = ctx.settings.kfold
    why = f"PSIS: {psis.n_bad_k} Pareto k > {psis.k_threshold:.2f} (max {psis.max_k:.2f})"
    if k_set < 2:
        cost = 10 * res.fit_time
        note = (
            f"{why}; K-fold not computed (off: --kfold K refits the model K times, "
            f"about {cost:.0f} s for K=10 at this fit's {res.fit_time:.0f} s)"
        )
        return dataclasses.replace(res, loo=dataclasses.replace(psis, note=note))
    k = min(k_set, ctx.ds.n_train)
    kf = kfold_loo(ctx, fit, k, note=why)
    kf = dataclasses.replace(kf, max_k=psis.max_k, n_bad_k=psis.n_bad_k)
    return dataclasses.replace(res, loo=kf, fit_time=res.fit_time + kf.seconds)
