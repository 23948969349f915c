"""``load_csv``: a user's table as a :class:`Dataset`, with errors that say what to fix."""

from __future__ import annotations

import csv
import difflib
import math
import os
import pathlib

import numpy as np

from ._base import Dataset, check_fraction, finalize, split_indices
from ._embedded import subsample_train

__all__ = ["load_csv", "MISSING_TOKENS"]

MISSING_TOKENS = frozenset({"", "na", "n/a", "nan", "null", "none", "?", "-"})
_SHOW = 8  # how many offending lines an error message lists


def _lines(rows: list[int]) -> str:
    shown = ", ".join(str(r) for r in rows[:_SHOW])
    return shown + (f", ... ({len(rows) - _SHOW} more)" if len(rows) > _SHOW else "")


def _to_float(s: str) -> float | None:
    try:
        return float(s)
    except ValueError:
        return None


def load_csv(
    path,
    target: str,
    *,
    features: list[str] | None = None,
    task: str = "auto",
    test_fraction: float = 0.25,
    seed: int = 0,
    drop_missing: bool = False,
    max_classes: int = 10,
    n_max: int | None = None,
    standardize: bool = True,
    delimiter: str | None = None,
    dtype=None,
) -> Dataset:
    """Read a CSV file with a header row into a seeded, standardised train/test split.

    Args:
        path: the CSV file; its first row names the columns.
        target: the column to predict.
        features: the input columns; default every column but ``target``.
        task: ``"regression"``, ``"classification"`` or ``"auto"``: a non-numeric target,
            or an integer-valued one with at most ``max_classes`` distinct values, is a
            classification target; anything else is regression.
        test_fraction: share of rows held out (stratified by class for classification).
        seed: seeds the split.
        drop_missing: drop rows with a missing value (empty, ``NA``, ``nan``, ``?``...)
            in a used column instead of refusing them; how many were dropped is kept in
            ``dataset.extra["dropped_lines"]``.
        max_classes: the largest number of distinct integer values ``"auto"`` still
            reads as classes.
        n_max: keep at most this many training rows (seeded subsample).
        standardize: centre and scale the features (and a regression target) with
            statistics of the training split.
        delimiter: the field separator; default sniffed from the header (``,``, ``;``,
            tab).
        dtype: float dtype of the inputs; default JAX's default float.

    Raises:
        FileNotFoundError: no such file.
        ValueError: empty file, no data rows, unknown or duplicate columns, ragged rows,
            missing values (unless ``drop_missing``), non-numeric or infinite feature
            values, a target with a single class, a class with a single row, too few rows.
    """
    path = pathlib.Path(os.fspath(path))
    if not isinstance(target, str) or not target:
        raise TypeError(f"`target` must be a column name (a non-empty string), got {target!r}")
    if task not in ("auto", "regression", "classification"):
        raise ValueError(f"`task` must be 'auto', 'regression' or 'classification', got {task!r}")
    check_fraction(test_fraction)
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"`seed` must be a non-negative integer, got {seed!r}")
    if not path.exists():
        raise FileNotFoundError(f"CSV file {str(path)!r} does not exist")
    if not path.is_file():
        raise ValueError(f"{str(path)!r} is not a file")
    text = path.read_text(encoding="utf-8-sig", errors="strict")
    if not text.strip():
        raise ValueError(f"CSV file {str(path)!r} is empty; it needs a header row and data rows")

    first = text.splitlines()[0]
    if delimiter is None:
        counts = {d: first.count(d) for d in (",", ";", "\t")}
        delimiter = max(counts, key=counts.get) if max(counts.values()) > 0 else ","
    reader = csv.reader(text.splitlines(), delimiter=delimiter)
    header = [h.strip() for h in next(reader)]
    rows = [(i + 2, r) for i, r in enumerate(reader) if any(f.strip() for f in r)]
    _check_header(path, header)
    if target not in header:
        close = difflib.get_close_matches(target, header, n=3)
        hint = f"; did you mean {close}?" if close else ""
        raise ValueError(
            f"target column {target!r} is not in {path.name}; its columns are "
            f"{header[:20]}{' ...' if len(header) > 20 else ''}{hint}"
        )
    if features is None:
        features = [h for h in header if h != target]
    else:
        if isinstance(features, str):
            raise TypeError("`features` must be a list of column names, not a string")
        unknown = [f for f in features if f not in header]
        if unknown:
            raise ValueError(f"feature column(s) {unknown} are not in {path.name}: {header}")
        if target in features:
            raise ValueError(f"the target {target!r} cannot also be a feature")
    if not features:
        raise ValueError(f"{path.name} has no feature columns besides the target {target!r}")
    if not rows:
        raise ValueError(f"CSV file {str(path)!r} has a header but no data rows")

    ragged = [ln for ln, r in rows if len(r) != len(header)]
    if ragged:
        raise ValueError(
            f"{len(ragged)} row(s) of {path.name} do not have {len(header)} fields like the "
            f"header (lines {_lines(ragged)}); check the delimiter and quoting"
        )
    used = [header.index(f) for f in features] + [header.index(target)]
    missing = [ln for ln, r in rows if any(r[j].strip().lower() in MISSING_TOKENS for j in used)]
    if missing and not drop_missing:
        cols = sorted(
            {header[j] for _, r in rows for j in used if r[j].strip().lower() in MISSING_TOKENS}
        )
        raise ValueError(
            f"{len(missing)} row(s) of {path.name} have missing values (NaN/empty) in columns "
            f"{cols} (lines {_lines(missing)}); impute them, or pass drop_missing=True "
            "(--drop-missing) to drop these rows"
        )
    drop = set(missing)
    rows = [(ln, r) for ln, r in rows if ln not in drop]
    if not rows:
        raise ValueError(f"every row of {path.name} has a missing value; nothing is left")

    X = np.empty((len(rows), len(features)))
    for c, name in enumerate(features):
        j = header.index(name)
        bad = []
        for i, (ln, r) in enumerate(rows):
            v = _to_float(r[j].strip())
            if v is None or not math.isfinite(v):
                bad.append((ln, r[j]))
            else:
                X[i, c] = v
        if bad:
            what = (
                "non-numeric" if any(_to_float(b.strip()) is None for _, b in bad) else "infinite"
            )
            raise ValueError(
                f"feature column {name!r} of {path.name} has {len(bad)} {what} value(s), e.g. "
                f"{bad[0][1]!r} at line {bad[0][0]} (lines {_lines([b[0] for b in bad])}); "
                "encode categories as numbers (one-hot) or leave the column out with `features`"
            )

    raw_y = [r[header.index(target)].strip() for _, r in rows]
    y, task, classes = _encode_target(raw_y, rows, target, task, max_classes, path.name)
    n = len(y)
    if n < 4:
        raise ValueError(f"{path.name} has only {n} usable row(s); need at least 4 to split")
    labels = y if task == "classification" else None
    train, test = split_indices(n, test_fraction, seed, labels)
    ds = finalize(
        name=path.stem,
        task=task,
        X=X,
        y=y,
        train=train,
        test=test,
        feature_names=features,
        target_name=target,
        classes=classes,
        standardize=standardize,
        dtype=dtype,
        description=f"{path.name}: {n} rows, {len(features)} features, target {target!r}",
        extra={"dropped_lines": sorted(drop), "path": str(path)},
    )
    return subsample_train(ds, n_max, seed) if n_max is not None else ds


def _check_header(path, header):
    if any(not h for h in header):
        pos = [i + 1 for i, h in enumerate(header) if not h]
        raise ValueError(f"{path.name}: header column(s) {pos} have no name; name every column")
    dup = sorted({h for h in header if header.count(h) > 1})
    if dup:
        raise ValueError(f"{path.name}: duplicate column name(s) {dup}; rename them")


def _encode_target(raw, rows, target, task, max_classes, fname):
    numeric = [_to_float(v) for v in raw]
    all_numeric = all(v is not None for v in numeric)
    if task == "auto":
        if not all_numeric:
            task = "classification"
        else:
            vals = np.array(numeric)
            is_int = np.all(np.isfinite(vals)) and np.all(vals == np.round(vals))
            task = (
                "classification" if is_int and len(np.unique(vals)) <= max_classes else "regression"
            )
    if task == "regression":
        bad = [
            (ln, v)
            for (ln, _), v, num in zip(rows, raw, numeric, strict=True)
            if num is None or not math.isfinite(num)
        ]
        if bad:
            raise ValueError(
                f"regression target {target!r} of {fname} has {len(bad)} non-numeric or "
                f"infinite value(s), e.g. {bad[0][1]!r} at line {bad[0][0]}; fix them or pass "
                "task='classification' if the target names classes"
            )
        return np.array(numeric, np.float64), task, None
    keys = np.array(numeric) if all_numeric else np.array(raw, dtype=object)
    classes, codes = np.unique(keys, return_inverse=True)
    if len(classes) < 2:
        raise ValueError(
            f"classification target {target!r} of {fname} has a single class "
            f"({classes[0]!r}); a classifier needs at least two"
        )
    counts = np.bincount(codes)
    lonely = [str(classes[c]) for c in np.flatnonzero(counts < 2)]
    if lonely:
        raise ValueError(
            f"class(es) {lonely} of target {target!r} have a single row; a stratified split needs "
            "at least two rows per class (merge or drop rare classes)"
        )
    labels = [_label(c) for c in classes]
    return codes.astype(np.int64), task, tuple(labels)


def _label(c) -> str:
    if isinstance(c, float | np.floating) and float(c).is_integer():
        return str(int(c))
    return str(c)
