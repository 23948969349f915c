"""Settings, the per-run context every model fit shares, and a model's result."""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from .._numerics import check_int
from ..bnn import DEFAULT_NUTS as _BNN_NUTS
from ..datasets import Dataset
from ._archs import Architecture

__all__ = [
    "fit_bnn_nuts",
    "Settings",
    "Context",
    "ModelResult",
    "grid_for",
]


@dataclasses.dataclass(frozen=True)
class Settings:
    """Budgets of one ``calibrate`` run (``Settings.quick()`` for smoke tests).

    Attributes:
        width: hidden width of the finite BNN.
        hyper: ``"ml"`` (type-II maximum likelihood) or ``"nuts"`` (hyperparameter
            posterior) for the exact GPs.
        gp_iters, gp_lr: Adam steps and learning rate of the type-II ML fits.
        inducing: inducing points M of the sparse models (capped at n_train // 2).
            ``None`` (default): the SGPR keeps the fewest greedy-variance points (at least
            32, at most ``min(512, n_train // 2)``) whose mean Nyström residual
            ``tr(K - Q) / n`` is under a tenth of the NNGP's fitted noise variance, so M
            grows with n and with the kernel's roughness; the SVGP classifiers use 32.
        svgp_epochs: epochs of the SVGP classifiers.
        num_warmup, num_samples, num_chains, max_tree_depth: NUTS settings (BNN and
            hyperparameter posteriors).
        n_draws: predictive draws per point stored for models with Gaussian posteriors.
        splits: random train/test splits R; scores are means ± standard errors over
            them (split r uses seed ``seed + r``).
        sampled_splits: K: the sampled models (the finite BNN, and the exact GPs with
            ``hyper="nuts"``) run on the first K of the R splits only, every other model
            on all R; their scores are over those K, and paired differences use the
            splits both models ran. ``None``: every model on every split.
        kfold: K of the K-fold LOO that replaces a sampled model's PSIS-LOO where a
            Pareto k exceeds min(1 - 1/log10 S, 0.7) for S draws (K refits of that
            model); 0: not computed, the report
            says so and what it would cost.
        seed: seeds everything.
        quiet: no progress output.
    """

    width: int = 16
    hyper: str = "ml"
    gp_iters: int = 300
    gp_lr: float = 0.05
    inducing: int | None = None
    svgp_epochs: int = 60
    # the BNN's measured set-up (docs/bnn.md): meets the convergence bar on toy1d
    num_warmup: int = _BNN_NUTS["num_warmup"]
    num_samples: int = _BNN_NUTS["num_samples"]
    num_chains: int = _BNN_NUTS["num_chains"]
    max_tree_depth: int = _BNN_NUTS["max_tree_depth"]
    n_draws: int = 400
    splits: int = 1
    sampled_splits: int | None = None
    kfold: int = 0
    seed: int = 0
    quiet: bool = False

    def __post_init__(self):
        """Each field checked on its own (NumPy integers become ints), with the bounds
        of the command line's flags, so that a bad budget fails here, naming it, and not
        inside a fit; ``sampled_splits`` against the splits and the models is checked by
        ``run_calibration``."""
        lows = {
            "width": 1,
            "gp_iters": 1,
            "svgp_epochs": 1,
            "num_warmup": 1,
            "num_samples": 2,
            "num_chains": 1,
            "max_tree_depth": 1,
            "n_draws": 1,
            "splits": 1,
            "kfold": 0,
            "seed": 0,
        }
        for name, low in lows.items():
            value = check_int(getattr(self, name), f"settings.{name}", low=low)
            object.__setattr__(self, name, value)
        if self.kfold == 1:
            raise ValueError("`settings.kfold` must be 0 (off) or >= 2, got 1")
        for name in ("inducing", "sampled_splits"):
            if getattr(self, name) is not None:
                message = "`{name}` must be None or a positive integer, got {value!r}"
                value = check_int(getattr(self, name), f"settings.{name}", message=message)
                object.__setattr__(self, name, value)
        if self.inducing is not None and self.inducing < 2:
            raise ValueError(f"`settings.inducing` must be None or >= 2, got {self.inducing}")
        if self.hyper not in ("ml", "nuts"):
            raise ValueError(f"`settings.hyper` must be 'ml' or 'nuts', got {self.hyper!r}")
        lr = self.gp_lr
        if isinstance(lr, bool) or not isinstance(lr, int | float | np.integer | np.floating):
            raise ValueError(f"`settings.gp_lr` must be a positive number, got {lr!r}")
        if not (np.isfinite(lr) and lr > 0):
            raise ValueError(f"`settings.gp_lr` must be positive and finite, got {lr!r}")
        object.__setattr__(self, "gp_lr", float(lr))
        if not isinstance(self.quiet, bool | np.bool_):
            raise ValueError(f"`settings.quiet` must be True or False, got {self.quiet!r}")
        object.__setattr__(self, "quiet", bool(self.quiet))

    @classmethod
    def quick(cls, **changes) -> Settings:
        """Tiny budgets: seconds per model after compilation (for tests and CI)."""
        base = dict(
            width=4,
            gp_iters=40,
            inducing=12,
            svgp_epochs=5,
            num_warmup=30,
            num_samples=30,
            num_chains=2,
            max_tree_depth=4,
            n_draws=100,
        )
        base.update(changes)
        return cls(**base)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class ModelResult:
    """One fitted model: its held-out predictive, ArviZ data and how it was obtained.

    Attributes:
        name: short name (``"nngp"``, ``"bnn"``, ...).
        label: the name shown in tables.
        task: ``"regression"`` or ``"classification"``.
        fit_time: wall-clock seconds of this model's own steps (a shared
            hyperparameter fit counts for the model that ran it first).
        predictive: regression: a ``GaussianPredictive``/``SamplePredictive`` at the
            test inputs (standardised units).
        probs: classification: class probabilities ``(n_test, K)``.
        grid_predictive: regression on 1-D inputs: the predictive on ``Context.x_grid``.
        idata: ArviZ data (posterior, posterior_predictive, log_likelihood, observed_data).
        info: hyperparameters, noise, sampler summary, settings (JSON-ready).
        convergence: worst R-hat/ESS (MCMC models only).
        loo_ok: whether the model is a posterior given the training data (False for
            the plain GD ensemble: it takes no part in LOO comparisons).
        status: MCMC models: the convergence gate (R-hat, ESS, divergences); a model
            that fails it gets no calibration verdict.
        loo: leave-one-out on the training data by the method right for the model.
        test_cov: joint predictive covariance of the test targets (noise included,
            standardised units), for calibration tests that respect correlation.
    """

    name: str
    label: str
    task: str
    fit_time: float
    predictive: Any = None
    probs: np.ndarray | None = None
    grid_predictive: Any = None
    idata: Any = None
    info: dict = dataclasses.field(default_factory=dict)
    convergence: dict | None = None
    loo_ok: bool = True
    status: Any = None
    loo: Any = None
    test_cov: np.ndarray | None = None


@dataclasses.dataclass
class Context:
    """What the fits of one run share: data, architecture, settings, and a cache of
    hyperparameter fits that several models reuse (the BNN takes the NNGP's prior, the
    GD ensemble the NTK-GP's)."""

    ds: Dataset
    arch: Architecture
    settings: Settings
    x_grid: np.ndarray | None = None
    log: Callable[[str], None] = dataclasses.field(default=lambda msg: None)
    cache: dict = dataclasses.field(default_factory=dict)

    def cached(self, key, build):
        """``build()`` once per run; returns ``(value, seconds it took now)``."""
        if key in self.cache:
            return self.cache[key], 0.0
        t0 = time.perf_counter()
        self.cache[key] = build()
        return self.cache[key], time.perf_counter() - t0


def grid_for(ds: Dataset, n: int = 200) -> np.ndarray | None:
    """An evaluation grid ``(n, 1)`` over the 1-D inputs, else ``None``. It reaches half
    the data's range beyond each end, so that the bands figure shows how each model
    extrapolates (the ReLU kernels' asymptotes: a variance growing with distance)."""
    if ds.task != "regression" or ds.input_shape != (1,):
        return None
    x = np.concatenate([ds.X_train[:, 0], ds.X_test[:, 0]]).astype(np.float64)
    lo, hi = float(x.min()), float(x.max())
    pad = 0.5 * (hi - lo)
    return np.linspace(lo - pad, hi + pad, n)[:, None].astype(ds.X_train.dtype)


def stderr_log(quiet: bool) -> Callable[[str], None]:
    """A progress logger: one line per step on stderr, silent when ``quiet``."""
    if quiet:
        return lambda msg: None

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    return log


def fit_bnn_nuts(model, ctx: Context, X_eval=None):
    """NUTS posterior of a finite network ``model`` on the training split, with this
    run's sampler settings (shared by the regression and classification BNNs and the
    width sweep). Its ``convergence`` is judged on the function values at ``X_eval``
    (default: the test inputs); read ``post.converged`` before trusting it."""
    s, ds = ctx.settings, ctx.ds
    return model.fit_nuts(
        ds.X_train,
        ds.y_train,
        X_eval=ds.X_test if X_eval is None else X_eval,
        num_warmup=s.num_warmup,
        num_samples=s.num_samples,
        num_chains=s.num_chains,
        max_tree_depth=s.max_tree_depth,
        seed=s.seed,
        progress_bar=not s.quiet,
    )
