"""Embedded datasets: a generated 1-D toy problem, real tables shipped as CSV in
``ntk_bayes/datasets/data/`` (each with a ``.NOTICE.txt`` of provenance and licence), and
sklearn's bundled copies.

Nothing here touches the network: ``toy1d`` is generated from a seed, the CSVs are part
of the package, the others are the copies that scikit-learn installs with itself.

The UCI regression sets (``concrete``, ``boston``) hold out 10% by default: the protocol of
Hernández-Lobato & Adams (2015), 20 random 90/10 splits, standardised on the training
part (``calibrate`` with ``Settings(splits=20)``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from .._numerics import NON_NEGATIVE_INT, check_int
from ._base import Dataset, check_fraction, finalize, split_indices

__all__ = ["load", "available", "toy1d_function"]


@dataclasses.dataclass(frozen=True)
class _Entry:
    task: str
    description: str
    build: Callable
    test_fraction: float = 0.25
    options: tuple[str, ...] = ()  # the keyword options its loader takes


def _packaged_csv(name: str, target: str, drop: tuple[str, ...] = (), file: str | None = None):
    """A regression table shipped as ``data/<file>.csv`` (all columns numeric)."""

    def build(seed, test_fraction, **kw):
        from importlib import resources

        path = resources.files("ntk_bayes.datasets") / "data" / f"{file or name}.csv"
        with path.open() as fh:
            header = fh.readline().strip().split(",")
            table = np.loadtxt(fh, delimiter=",", dtype=np.float64, ndmin=2)
        cols = [c for c in header if c != target and c not in drop]
        X = table[:, [header.index(c) for c in cols]]
        y = table[:, header.index(target)]
        train, test = split_indices(len(y), test_fraction, seed)
        return finalize(
            name=name,
            task="regression",
            X=X,
            y=y,
            train=train,
            test=test,
            feature_names=cols,
            target_name=target,
            description=_REGISTRY[name].description,
            **kw,
        )

    return build


def toy1d_function(x) -> np.ndarray:
    """The noiseless function of ``toy1d`` in raw units: ``sin(2x) + 0.3 x``."""
    x = np.asarray(x, np.float64)
    return np.sin(2.0 * x) + 0.3 * x


def _toy1d(
    seed, test_fraction, *, n=120, noise_std=0.15, domain=(-3.0, 3.0), gap=(-1.0, 1.0), **kw
):
    if "noise" in kw:  # `noise` is a variance everywhere else: never guess which was meant
        raise TypeError(
            "toy1d takes `noise_std`, the standard deviation of the noise (`noise` means a "
            f"variance in ntk_bayes); got noise={kw['noise']!r}: pass noise_std=... instead"
        )
    n = check_int(
        n, "n", low=8, message="toy1d: `{name}` must be an integer >= {low}, got {value!r}"
    )
    if isinstance(noise_std, bool) or not (
        isinstance(noise_std, int | float | np.floating) and noise_std > 0
    ):
        raise ValueError(f"toy1d: `noise_std` must be a positive number, got {noise_std!r}")
    noise = float(noise_std)
    lo, hi = map(float, domain)
    g_lo, g_hi = map(float, gap)
    if not lo < g_lo < g_hi < hi:
        raise ValueError(
            f"toy1d: need domain[0] < gap[0] < gap[1] < domain[1], got domain={domain}, gap={gap}"
        )
    rng = np.random.default_rng(seed)
    x = np.sort(rng.uniform(lo, hi, size=n))
    y = toy1d_function(x) + noise * rng.standard_normal(n)
    in_gap = (x > g_lo) & (x < g_hi)
    if in_gap.all() or (~in_gap).sum() < 3:
        raise ValueError("toy1d: the gap covers almost all of the domain; make it narrower")
    # points in the gap never reach training: that is where uncertainty must grow
    outside = np.flatnonzero(~in_gap)
    tr, te = split_indices(outside.size, test_fraction, seed + 1)
    train, test = outside[tr], np.sort(np.concatenate([outside[te], np.flatnonzero(in_gap)]))
    return finalize(
        name="toy1d",
        task="regression",
        X=x[:, None],
        y=y,
        train=train,
        test=test,
        feature_names=("x",),
        target_name="y",
        description=(
            f"1-D regression, y = sin(2x) + 0.3x + N(0, {noise:g}^2) on [{lo:g}, {hi:g}]; "
            f"no training points in the gap ({g_lo:g}, {g_hi:g})"
        ),
        extra={
            "gap": (g_lo, g_hi),
            "domain": (lo, hi),
            "noise_std": float(noise),
            "test_in_gap": in_gap[test],
        },
        **kw,
    )


def _sklearn_tabular(loader_name: str, name: str, task: str):
    def build(seed, test_fraction, **kw):
        from sklearn import datasets as skd

        bunch = getattr(skd, loader_name)()
        X, y = np.asarray(bunch.data, np.float64), np.asarray(bunch.target)
        labels = y.astype(np.int64) if task == "classification" else None
        train, test = split_indices(len(y), test_fraction, seed, labels)
        classes = tuple(str(c) for c in bunch.target_names) if task == "classification" else None
        return finalize(
            name=name,
            task=task,
            X=X,
            y=y,
            train=train,
            test=test,
            feature_names=bunch.feature_names,
            target_name="target",
            classes=classes,
            description=_REGISTRY[name].description,
            **kw,
        )

    return build


def _digits(seed, test_fraction, *, flatten=False, n_class=10, **kw):
    from sklearn.datasets import load_digits

    n_class = check_int(
        n_class,
        "n_class",
        low=2,
        high=10,
        message="digits: `{name}` must be an integer in {low}..{high}, got {value!r}",
    )
    bunch = load_digits(n_class=n_class)
    X = np.asarray(bunch.images, np.float64)[..., None]  # NHWC, one channel
    if flatten:
        X = X.reshape(len(X), -1)
    y = np.asarray(bunch.target, np.int64)
    train, test = split_indices(len(y), test_fraction, seed, y)
    names = [f"pixel_{i}_{j}" for i in range(8) for j in range(8)]
    return finalize(
        name="digits",
        task="classification",
        X=X,
        y=y,
        train=train,
        test=test,
        feature_names=names,
        target_name="digit",
        classes=tuple(str(c) for c in range(n_class)),
        per_feature=False,
        description=_REGISTRY["digits"].description,
        **kw,
    )


_REGISTRY: dict[str, _Entry] = {
    "toy1d": _Entry(
        "regression",
        "1-D regression, y = sin(2x) + 0.3x + N(0, 0.15^2) on [-3, 3]; no training points in "
        "the gap (-1, 1), where a good posterior's uncertainty must grow",
        _toy1d,
        options=("n", "noise_std", "domain", "gap"),
    ),
    "concrete": _Entry(
        "regression",
        "UCI concrete compressive strength (Yeh 1998): 1,030 mixtures, 8 inputs, strength in "
        "MPa (CC BY 4.0; copy from R modeldata)",
        _packaged_csv("concrete", "compressive_strength"),
        0.1,
    ),
    "boston": _Entry(
        "regression",
        "Boston housing (Harrison & Rubinfeld 1978): 506 tracts, 13 inputs, median value "
        "medv; its input `black` encodes a racial-segregation assumption (see "
        "data/boston.NOTICE.txt); copy from R MASS",
        _packaged_csv("boston", "medv"),
        0.1,
    ),
    "boston_nob": _Entry(
        "regression",
        "Boston housing without the controversial `black` input: 506 tracts, 12 inputs",
        _packaged_csv("boston_nob", "medv", drop=("black",), file="boston"),
        0.1,
    ),
    "mcycle": _Entry(
        "regression",
        "motorcycle impact data (Silverman 1985): 133 head accelerations (g) against time "
        "(ms); strongly heteroscedastic; copy from R MASS",
        _packaged_csv("mcycle", "accel"),
    ),
    "diabetes": _Entry(
        "regression",
        "sklearn's diabetes data (Efron et al. 2004): 442 patients, 10 features, disease "
        "progression after one year",
        _sklearn_tabular("load_diabetes", "diabetes", "regression"),
    ),
    "breast_cancer": _Entry(
        "classification",
        "sklearn's Wisconsin breast cancer data: 569 tumours, 30 features, malignant/benign",
        _sklearn_tabular("load_breast_cancer", "breast_cancer", "classification"),
    ),
    "digits": _Entry(
        "classification",
        "sklearn's 8x8 handwritten digits: 1797 images (N, 8, 8, 1), 10 classes",
        _digits,
        options=("flatten", "n_class"),
    ),
}


def available() -> dict[str, str]:
    """Embedded dataset names mapped to ``"task: description"``."""
    return {k: f"{v.task}: {v.description}" for k, v in _REGISTRY.items()}


def load(
    name: str,
    *,
    seed: int = 0,
    test_fraction: float | None = None,
    n_max: int | None = None,
    standardize: bool = True,
    dtype: DTypeLike | None = None,
    **options: Any,
) -> Dataset:
    """Load an embedded dataset as a seeded, standardised train/test split.

    Args:
        name: one of :func:`available` (``"toy1d"``, ``"concrete"``, ``"boston"``,
            ``"boston_nob"``, ``"mcycle"``, ``"diabetes"``, ``"breast_cancer"``,
            ``"digits"``).
        seed: seeds the split (and the data themselves for ``toy1d``).
        test_fraction: share of points held out (stratified by class for
            classification); default 0.1 for the UCI sets ``concrete``, ``boston`` and
            ``boston_nob`` (their benchmark protocol), 0.25 otherwise. ``toy1d`` always
            adds the points of its gap to the test set.
        n_max: keep at most this many training points (a seeded subsample), for
            quick runs of O(n^3) models.
        standardize: centre and scale inputs (and regression targets) with statistics
            of the training split.
        dtype: float dtype of the inputs; default JAX's default float.
        **options: loader options: ``toy1d(n=120, noise_std=0.15, domain=(-3, 3),
            gap=(-1, 1))`` (``noise_std`` the noise's standard deviation),
            ``digits(flatten=False, n_class=10)``.

    Returns:
        A :class:`Dataset`.
    """
    if not isinstance(name, str):
        raise TypeError(f"`name` must be a string, got {type(name).__name__}")
    key = name.strip().lower().replace("-", "_")
    if key not in _REGISTRY:
        raise ValueError(
            f"unknown dataset {name!r}; choose one of {sorted(_REGISTRY)} or use load_csv(path, "
            "target) for your own data"
        )
    seed = check_int(seed, "seed", low=0, message=NON_NEGATIVE_INT)
    _check_options(key, options)
    if test_fraction is None:
        test_fraction = _REGISTRY[key].test_fraction
    check_fraction(test_fraction)
    ds = _REGISTRY[key].build(
        seed, float(test_fraction), standardize=standardize, dtype=dtype, **options
    )
    return subsample_train(ds, n_max, seed) if n_max is not None else ds


def _check_options(key: str, options: dict) -> None:
    """Refuse loader options the dataset does not take, naming the ones it does."""
    valid = _REGISTRY[key].options
    unknown = [o for o in options if o not in valid]
    if not unknown:
        return
    if "noise" in unknown and "noise_std" in valid:
        # `noise` is a variance everywhere else: never guess which was meant
        raise TypeError(
            f"{key} takes `noise_std`, the standard deviation of the noise (`noise` means a "
            f"variance in ntk_bayes); got noise={options['noise']!r}: pass noise_std=... instead"
        )
    takes = f"its options are {', '.join(valid)}" if valid else "it takes no options"
    raise TypeError(
        f"{key}: unknown option(s) {', '.join(f'`{o}`' for o in unknown)}; {takes} "
        "(besides seed, test_fraction, n_max, standardize and dtype)"
    )


def subsample_train(ds: Dataset, n_max: int, seed: int) -> Dataset:
    """Keep a seeded subset of at most ``n_max`` training points (classes stratified).

    The standardisation statistics are kept from the full training split, so the test
    data stay on the same scale.
    """
    n_max = check_int(n_max, "n_max", low=2)
    if ds.n_train <= n_max:
        return ds
    rng = np.random.default_rng([int(seed), 7])
    if ds.task == "classification":
        # proportional allocation, at least one point per class
        counts = np.bincount(ds.y_train, minlength=ds.n_classes)
        quota = np.maximum(1, np.floor(counts * n_max / ds.n_train).astype(int))
        keep = np.concatenate(
            [
                rng.permutation(np.flatnonzero(ds.y_train == c))[: quota[c]]
                for c in range(ds.n_classes)
            ]
        )
    else:
        keep = rng.permutation(ds.n_train)[:n_max]
    keep = np.sort(keep)
    return dataclasses.replace(ds, X_train=ds.X_train[keep], y_train=ds.y_train[keep])
