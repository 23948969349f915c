"""The :class:`Dataset` container and the split/standardise step every loader shares."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from .._numerics import default_float

__all__ = ["Dataset", "TASKS", "finalize"]

TASKS = ("regression", "classification")


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A train/test split, standardised with statistics of the training part only.

    Attributes:
        name: the dataset's name (or the CSV file's stem).
        task: ``"regression"`` or ``"classification"``.
        X_train: inputs ``(n_train, *input_shape)``, standardised.
        y_train: regression targets ``(n_train,)`` (standardised) or class codes
            ``0..K-1`` (int32).
        X_test: inputs ``(n_test, *input_shape)``, standardised with the training statistics.
        y_test: targets of the test points, coded as ``y_train``.
        feature_names: one name per feature (per pixel for images).
        target_name: the target's name.
        classes: the original class labels, ``classes[code]``; ``None`` for regression.
        x_mean: subtracted from the raw inputs (broadcasts against one input).
        x_std: raw inputs were divided by this after centring.
        y_mean: subtracted from raw regression targets (0 for classification).
        y_std: raw regression targets were divided by this (1 for classification).
        description: a one-line account of the data and its source.
        extra: loader-specific facts, e.g. the gap of ``toy1d`` in raw units.
    """

    name: str
    task: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    feature_names: tuple[str, ...]
    target_name: str
    classes: tuple | None
    x_mean: np.ndarray
    x_std: np.ndarray
    y_mean: float = 0.0
    y_std: float = 1.0
    description: str = ""
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"`task` must be one of {TASKS}, got {self.task!r}")
        if len(self.X_train) != len(self.y_train) or len(self.X_test) != len(self.y_test):
            raise ValueError("inputs and targets must have the same number of rows")
        if self.X_train.shape[1:] != self.X_test.shape[1:]:
            raise ValueError("train and test inputs must share their per-point shape")

    @property
    def n_train(self) -> int:
        return int(self.X_train.shape[0])

    @property
    def n_test(self) -> int:
        return int(self.X_test.shape[0])

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input, e.g. ``(10,)`` or ``(8, 8, 1)``."""
        return tuple(self.X_train.shape[1:])

    @property
    def n_classes(self) -> int:
        """Number of classes (0 for regression)."""
        return 0 if self.classes is None else len(self.classes)

    def standardize_x(self, X) -> np.ndarray:
        """Map raw inputs to the model's (standardised) scale."""
        return ((np.asarray(X, np.float64) - self.x_mean) / self.x_std).astype(self.X_train.dtype)

    def unstandardize_x(self, X) -> np.ndarray:
        """Map standardised inputs back to raw units."""
        return np.asarray(X, np.float64) * self.x_std + self.x_mean

    def unstandardize_y(self, y, *, scale_only: bool = False) -> np.ndarray:
        """Map standardised targets (or, with ``scale_only``, standard deviations) to raw units."""
        y = np.asarray(y, np.float64)
        return y * self.y_std if scale_only else y * self.y_std + self.y_mean

    def summary(self) -> str:
        """One line: name, task, sizes and shape."""
        kind = f"{self.n_classes} classes" if self.task == "classification" else "regression"
        return (
            f"{self.name}: {kind}, {self.n_train} train / {self.n_test} test points, "
            f"input shape {self.input_shape}"
        )


def split_indices(
    n: int, test_fraction: float, seed: int, labels: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Random train/test indices; stratified by ``labels`` when given.

    Every class keeps at least one training point, and at least one point goes to
    test overall, so both parts are usable.
    """
    check_fraction(test_fraction)
    rng = np.random.default_rng(seed)
    if labels is None:
        perm = rng.permutation(n)
        n_test = min(max(1, round(test_fraction * n)), n - 1)
        return np.sort(perm[n_test:]), np.sort(perm[:n_test])
    train, test = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_test = min(round(test_fraction * len(idx)), len(idx) - 1)
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    train, test = np.concatenate(train), np.concatenate(test)
    if test.size == 0:  # tiny data: move one point of the largest class to test
        big = np.bincount(labels[train]).argmax()
        j = np.flatnonzero(labels[train] == big)[0]
        test, train = train[j : j + 1], np.delete(train, j)
    return np.sort(train), np.sort(test)


def check_fraction(test_fraction) -> None:
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, int | float):
        raise TypeError(f"`test_fraction` must be a number, got {type(test_fraction).__name__}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"`test_fraction` must lie strictly between 0 and 1, got {test_fraction}")


def resolve_dtype(dtype) -> np.dtype:
    dtype = np.dtype(default_float() if dtype is None else dtype)
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"`dtype` must be float32 or float64, got {dtype}")
    return dtype


def finalize(
    *,
    name: str,
    task: str,
    X: np.ndarray,
    y: np.ndarray,
    train: np.ndarray,
    test: np.ndarray,
    feature_names,
    target_name: str,
    classes=None,
    standardize: bool = True,
    per_feature: bool = True,
    dtype=None,
    description: str = "",
    extra: dict | None = None,
) -> Dataset:
    """Standardise with training statistics and package a :class:`Dataset`.

    Args:
        per_feature: centre and scale each feature on its own (tabular data); ``False``
            uses one mean and one scale for all features (images keep their contrast).
    """
    dtype = resolve_dtype(dtype)
    X = np.asarray(X, np.float64)
    Xtr = X[train]
    if standardize:
        axes = 0 if per_feature else None
        x_mean = Xtr.mean(axis=axes)
        x_std = Xtr.std(axis=axes)
        # constant features (e.g. blank border pixels) carry no information: leave them at 0
        x_std = np.where(x_std > 1e-12 * max(1.0, float(np.max(np.abs(x_mean)))), x_std, 1.0)
    else:
        x_mean, x_std = np.zeros(X.shape[1:]), np.ones(X.shape[1:])
    x_mean, x_std = np.broadcast_to(x_mean, X.shape[1:]), np.broadcast_to(x_std, X.shape[1:])
    Xs = (X - x_mean) / x_std
    if task == "regression":
        y = np.asarray(y, np.float64)
        y_mean, y_std = (float(y[train].mean()), float(y[train].std())) if standardize else (0, 1)
        if y_std <= 0:
            raise ValueError(
                f"the target `{target_name}` is constant on the training split; "
                "there is nothing to regress"
            )
        ys = ((y - y_mean) / y_std).astype(dtype)
    else:
        y_mean, y_std = 0.0, 1.0
        ys = np.asarray(y, np.int32)
    return Dataset(
        name=name,
        task=task,
        X_train=Xs[train].astype(dtype),
        y_train=ys[train],
        X_test=Xs[test].astype(dtype),
        y_test=ys[test],
        feature_names=tuple(str(f) for f in feature_names),
        target_name=str(target_name),
        classes=None if classes is None else tuple(classes),
        x_mean=np.array(x_mean),
        x_std=np.array(x_std),
        y_mean=float(y_mean),
        y_std=float(y_std),
        description=description,
        extra=dict(extra or {}),
    )
