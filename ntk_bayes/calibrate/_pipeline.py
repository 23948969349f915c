"""Fit every requested model on one train/test split: :func:`run_calibration`."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence

import jax
import numpy as np

from ..datasets import Dataset
from ..gp import NotPSDError
from ._archs import Architecture
from ._checks import check_kernels
from ._common import Context, ModelResult, Settings, grid_for
from ._kfold import with_kfold
from ._registry import models as registered
from ._registry import spec

__all__ = [
    "CalibrationRun",
    "run_calibration",
    "available_models",
    "check_models",
    "models_on_split",
]

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
    more_splits: list[CalibrationRun] = dataclasses.field(default_factory=list)

    @property
    def splits(self) -> list[CalibrationRun]:
        """This split and the further ones (``Settings.splits`` in all)."""
        return [self, *self.more_splits]


def available_models(task: str) -> tuple[str, ...]:
    """Model names for ``"regression"`` or ``"classification"``, in report order."""
    return registered(task)


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
        is raised. JAX's in-process caches of compiled programs are cleared between
        splits once the process's memory mappings pass half the system's limit
        (:func:`release_compiled`); a caller's own jitted functions then compile again
        on their next call.

    Raises:
        ValueError: ``settings.sampled_splits`` outside 1..``settings.splits``, or below
            it when every model samples.
        KernelOverflowError: (a ``ValueError``) a kernel the models need is non-finite
            or overflows the dtype on the data at ``arch``'s W_std, b_std; checked
            before any fit.
    """
    settings = Settings() if settings is None else settings
    names = check_models(models, ds.task)
    _check_sampled_splits(settings, names, ds.task)  # its other fields: Settings itself
    log = log or (lambda msg: None)
    check_kernels(ds, arch, names, grid_for(ds))  # once, before any compilation
    run = _one_split(ds, arch, names, settings, log)
    for r in range(1, settings.splits):
        release_compiled()
        names_r = models_on_split(names, ds.task, settings, r)
        skipped = "" if names_r == names else f" (sampled models skipped: {_skipped(settings)})"
        log(f"split {r + 1}/{settings.splits}{skipped}")
        s_r = dataclasses.replace(settings, seed=settings.seed + r, quiet=True)
        run.more_splits.append(_one_split(resplit(ds, settings.seed + r), arch, names_r, s_r, log))
    release_compiled()
    return run


def release_compiled(limit: int | None = None) -> bool:
    """Drop JAX's compiled programs when the process's memory mappings near the
    system's limit; return whether it did.

    Each split compiles some programs anew (the fits' jitted closures, kernels whose
    fitted hyperparameters are static), and every XLA:CPU executable holds memory
    mappings that JAX's caches keep alive: about 1,200 per split on mcycle, so
    ``--study`` (100 splits) passed Linux's limit of 65,530 mappings per process after
    42 splits and died in LLVM ("Cannot allocate memory", then SIGSEGV), an hour in.
    Clearing the caches frees them, but clearing after every split also threw away the
    programs later splits reuse (same shapes): concrete's closed-form models then took
    ~88 s per split instead of ~51 s. So the caches are cleared only once the count
    passes ``limit`` (default half of ``/proc/sys/vm/max_map_count``); where the count
    cannot be read (not Linux), after every split.
    """
    import gc

    n = _mappings()
    if n is not None and n < (_mappings_limit() if limit is None else limit):
        return False
    jax.clear_caches()
    gc.collect()
    return True


def _mappings() -> int | None:
    """The process's memory mappings (``None`` where /proc/self/maps is missing)."""
    try:
        with open("/proc/self/maps", "rb") as f:
            return sum(1 for _ in f)
    except OSError:
        return None


def _mappings_limit() -> int:
    """Half the kernel's per-process limit on memory mappings (65,530 by default)."""
    try:
        with open("/proc/sys/vm/max_map_count") as f:
            return int(f.read()) // 2
    except (OSError, ValueError):
        return 65_530 // 2


def _skipped(settings: Settings) -> str:
    return f"--sampled-splits {settings.sampled_splits} of {settings.splits}"


def models_on_split(
    names: Sequence[str], task: str, settings: Settings, split: int
) -> tuple[str, ...]:
    """The models that run on split ``split`` (0-based): all of ``names`` on the first
    ``settings.sampled_splits`` splits, only those that do not sample after them."""
    k = settings.sampled_splits
    if k is None or split < k:
        return tuple(names)
    return tuple(n for n in names if not spec(task, n).is_sampled(settings))


def _check_sampled_splits(settings: Settings, names: Sequence[str], task: str) -> None:
    k = settings.sampled_splits
    if k is None:
        return
    if not 1 <= k <= settings.splits:
        raise ValueError(
            f"`settings.sampled_splits` (--sampled-splits) must be between 1 and the "
            f"splits R = {settings.splits}, got {k}"
        )
    if k < settings.splits and all(spec(task, n).is_sampled(settings) for n in names):
        raise ValueError(
            "`settings.sampled_splits` (--sampled-splits) needs a model that does not "
            f"sample among {', '.join(names)}; with sampled models only, set the splits "
            f"R to {k} instead"
        )


def resplit(ds: Dataset, seed: int) -> Dataset:
    """Another random train/test split of ``ds``'s data with the same test size,
    standardised on its own training part. ``toy1d`` is drawn afresh (its gap points
    always go to test)."""
    from .. import datasets
    from ..datasets._base import finalize

    if ds.name == "toy1d" and "gap" in ds.extra:
        kw = {k: ds.extra[k] for k in ("gap", "domain", "noise_std") if k in ds.extra}
        return datasets.load("toy1d", seed=seed, n=ds.n_train + ds.n_test, **kw)
    X = np.concatenate([ds.unstandardize_x(ds.X_train), ds.unstandardize_x(ds.X_test)])
    y = np.concatenate([ds.y_train, ds.y_test])
    if ds.task == "regression":
        y = ds.unstandardize_y(y)
    perm = np.random.default_rng(seed).permutation(len(y))
    test, train = np.sort(perm[: ds.n_test]), np.sort(perm[ds.n_test :])
    return finalize(
        name=ds.name,
        task=ds.task,
        X=X,
        y=y,
        train=train,
        test=test,
        feature_names=ds.feature_names,
        target_name=ds.target_name,
        classes=ds.classes,
        dtype=ds.X_train.dtype,
        description=ds.description,
    )


def _one_split(ds, arch, names, settings, log) -> CalibrationRun:
    ctx = Context(ds, arch, settings, x_grid=grid_for(ds), log=log)
    results, failures, first_error = [], {}, None
    t0 = time.perf_counter()
    for i, name in enumerate(names, 1):
        model = spec(ds.task, name)
        log(f"[{i}/{len(names)}] {model.label}")
        t = time.perf_counter()
        try:
            res = model.fit(ctx)
        except _MODEL_FAILURES as e:
            failures[name] = f"{type(e).__name__}: {e}"
            first_error = first_error or e
            log(f"  {name} failed: {failures[name]}")
            continue
        try:
            res = with_kfold(ctx, model.fit, res)
        except _MODEL_FAILURES as e:  # keep the PSIS estimate, say why there is no K-fold
            why = f"K-fold failed: {type(e).__name__}: {e}"
            res = dataclasses.replace(res, loo=dataclasses.replace(res.loo, note=why))
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
