"""``load_csv``: a user's table as a :class:`Dataset`, with errors that say what to fix.

The file is streamed: rows are parsed one at a time and only the used columns are kept,
as float64 blocks (and the target's text), so memory is about ``8 * rows * (features +
1)`` bytes plus the target column, whatever the file's width or size. Every row is
still read, so that each bad value is reported with its line.
"""

from __future__ import annotations

import csv
import dataclasses
import difflib
import itertools
import math
import os
import pathlib

import numpy as np

from .._numerics import NON_NEGATIVE_INT, check_int
from ._base import Dataset, check_fraction, finalize, resolve_dtype, split_indices
from ._embedded import subsample_train

__all__ = ["load_csv", "MISSING_TOKENS", "TEST_CAP_MIN"]

MISSING_TOKENS = frozenset({"", "na", "n/a", "nan", "null", "none", "?", "-"})
#: with ``n_max``, the test split keeps at most ``max(n_max, TEST_CAP_MIN)`` rows
TEST_CAP_MIN = 1000
_SHOW = 8  # how many offending lines an error message lists
_BLOCK = 1 << 15  # rows per parsed block


def _lines(rows: list[int], total: int | None = None) -> str:
    total = len(rows) if total is None else total
    shown = ", ".join(str(r) for r in rows[:_SHOW])
    return shown + (f", ... ({total - _SHOW} more)" if total > _SHOW else "")


def _to_float(s: str) -> float | None:
    try:
        return float(s)
    except ValueError:
        return None


class _Bad:
    """Offending lines of one kind: a count, the first few lines and the first value."""

    def __init__(self, keep_all: bool = False):
        self.count, self.lines, self.first, self.non_numeric = 0, [], None, False
        self.all_lines = [] if keep_all else None

    def add(self, line: int, value: str = "") -> None:
        if self.count == 0:
            self.first = (line, value)
        self.count += 1
        if len(self.lines) < _SHOW:
            self.lines.append(line)
        if self.all_lines is not None:
            self.all_lines.append(line)

    def where(self) -> str:
        return _lines(self.lines, self.count)


def load_csv(
    path: str | os.PathLike,
    target: str,
    *,
    features: list[str] | None = None,
    task: str = "auto",
    test_fraction: float = 0.25,
    seed: int = 0,
    drop_missing: bool = False,
    max_classes: int = 10,
    n_max: int | None = None,
    n_max_test: int | None = None,
    standardize: bool = True,
    delimiter: str | None = None,
    dtype: str | type | np.dtype | None = None,
) -> Dataset:
    """Read a CSV file with a header row into a seeded, standardised train/test split.

    Args:
        path: the CSV file (UTF-8); its first row names the columns.
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
        n_max: keep at most this many training rows (seeded subsample, classes
            stratified); the test split is then capped too, at ``n_max_test``.
        n_max_test: keep at most this many test rows; default, with ``n_max``,
            ``max(n_max, TEST_CAP_MIN)`` (1000), else no cap. The standardisation
            statistics always come from the whole training split.
        standardize: centre and scale the features (and a regression target) with
            statistics of the training split.
        delimiter: the field separator; default sniffed from the header (``,``, ``;``,
            tab).
        dtype: float dtype of the inputs; default JAX's default float.

    Raises:
        FileNotFoundError: no such file.
        ValueError: empty file, not UTF-8, no data rows, unknown or duplicate columns,
            ragged rows, missing values (unless ``drop_missing``), non-numeric or infinite
            feature values, a column too large to standardise, a target with a single
            class, a class with a single row, too few rows. Each names the file, the
            column and the lines.
    """
    path = pathlib.Path(os.fspath(path))
    if not isinstance(target, str) or not target:
        raise TypeError(f"`target` must be a column name (a non-empty string), got {target!r}")
    if task not in ("auto", "regression", "classification"):
        raise ValueError(f"`task` must be 'auto', 'regression' or 'classification', got {task!r}")
    check_fraction(test_fraction)
    seed = check_int(seed, "seed", low=0, message=NON_NEGATIVE_INT)
    n_max = None if n_max is None else check_int(n_max, "n_max", low=2)
    n_max_test = None if n_max_test is None else check_int(n_max_test, "n_max_test", low=2)
    if not path.exists():
        raise FileNotFoundError(f"CSV file {str(path)!r} does not exist")
    if not path.is_file():
        raise ValueError(f"{str(path)!r} is not a file")
    out_dtype = resolve_dtype(dtype)
    try:
        with path.open(encoding="utf-8-sig", errors="strict", newline="") as f:
            parsed = _read(f, path, target, features, delimiter, drop_missing)
    except UnicodeDecodeError:
        line, byte = _first_undecodable(path)
        raise ValueError(
            f"CSV file {str(path)!r} is not UTF-8 text (byte {byte:#04x} on line {line}; "
            "Latin-1 or Windows-1252, perhaps); re-save it as UTF-8, e.g. "
            f"`iconv -f latin1 -t utf-8 {path.name} > {path.stem}-utf8.csv`"
        ) from None
    X, raw_y, lines, features, drop = parsed

    _check_representable(X, lines, features, path.name, standardize, out_dtype)
    y, task, classes = _encode_target(raw_y, lines, target, task, max_classes, path.name)
    del raw_y
    n = len(y)
    if n < 4:
        raise ValueError(f"{path.name} has only {n} usable row(s); need at least 4 to split")
    if task == "regression":
        _check_column(y[:, None], lines, [target], path.name, "target")
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
        extra={"dropped_lines": drop, "path": str(path)},
    )
    del X
    if n_max is not None:
        ds = subsample_train(ds, n_max, seed)
        n_max_test = max(n_max, TEST_CAP_MIN) if n_max_test is None else n_max_test
    if n_max_test is not None and ds.n_test > n_max_test:
        ds = _cap_test(ds, n_max_test, seed)
    return ds


def _read(f, path, target, features, delimiter, drop_missing):
    """Stream the rows of an open file: header checks, then the used columns as float64
    blocks, the target's text and the line of every kept row, with every bad line
    collected for one error."""
    first = f.readline()
    if not first.strip():
        if not first or not any(line.strip() for line in f):
            raise ValueError(
                f"CSV file {str(path)!r} is empty; it needs a header row and data rows"
            )
    if delimiter is None:
        counts = {d: first.count(d) for d in (",", ";", "\t")}
        delimiter = max(counts, key=counts.get) if max(counts.values()) > 0 else ","
    reader = csv.reader(itertools.chain([first], f), delimiter=delimiter)
    header = [h.strip() for h in next(reader)]
    _check_header(path, header)
    if target not in header:
        close = difflib.get_close_matches(target, header, n=3)
        hint = f"; did you mean {close}?" if close else ""
        raise ValueError(
            f"target column {target!r} is not in the header (line 1) of {path.name}; its "
            f"columns are {header[:20]}{' ...' if len(header) > 20 else ''}{hint}"
        )
    if features is None:
        features = [h for h in header if h != target]
    else:
        if isinstance(features, str):
            raise TypeError("`features` must be a list of column names, not a string")
        features = list(features)
        unknown = [c for c in features if c not in header]
        if unknown:
            raise ValueError(
                f"feature column(s) {unknown} are not in the header (line 1) of {path.name}: "
                f"{header}; pick columns from it (`--features a,b`)"
            )
        if target in features:
            raise ValueError(f"the target {target!r} cannot also be a feature")
    if not features:
        raise ValueError(f"{path.name} has no feature columns besides the target {target!r}")

    width, d = len(header), len(features)
    cols = [header.index(c) for c in features]
    jt = header.index(target)
    used = cols + [jt]
    ragged, missing, missing_cols = _Bad(), _Bad(keep_all=True), set()
    bad = [_Bad() for _ in features]
    blocks, yblocks, lblocks = [], [], []

    def parse(rows, lns):
        """Parse one block: all at once in C when it is clean (the common case), else
        row by row, collecting every missing or bad value with its line."""
        if not rows:
            return
        try:
            F = np.array([[r[j] for j in cols] for r in rows], dtype=np.float64)
            ys = [r[jt].strip() for r in rows]
            if np.isfinite(F).all() and not any(v.lower() in MISSING_TOKENS for v in ys):
                blocks.append(F.reshape(len(rows), d))
                yblocks.append(np.array(ys, dtype=str))
                lblocks.append(np.array(lns, np.int64))
                return
        except ValueError:
            pass
        buf, ybuf, lbuf = np.empty((len(rows), d)), [], []
        for r, line in zip(rows, lns, strict=True):
            gone = [j for j in used if r[j].strip().lower() in MISSING_TOKENS]
            if gone:
                missing.add(line, header[gone[0]])
                missing_cols.update(header[j] for j in gone)
                continue
            for c, j in enumerate(cols):
                v = _to_float(r[j].strip())
                if v is None or not math.isfinite(v):
                    bad[c].add(line, r[j])
                    bad[c].non_numeric |= v is None
                else:
                    buf[len(lbuf), c] = v
            ybuf.append(r[jt].strip())
            lbuf.append(line)
        blocks.append(buf[: len(lbuf)])
        yblocks.append(np.array(ybuf, dtype=str))
        lblocks.append(np.array(lbuf, np.int64))

    pending, plines, n_rows = [], [], 0
    for r in reader:
        if not (r and r[0].strip()) and not any(v.strip() for v in r):
            continue  # a blank line
        n_rows += 1
        if len(r) != width:
            ragged.add(reader.line_num, str(len(r)))
            continue
        if ragged.count:
            continue  # the file will be refused; only count the ragged rows
        pending.append(r)
        plines.append(reader.line_num)
        if len(pending) == _BLOCK:
            parse(pending, plines)
            pending, plines = [], []
    parse(pending, plines)
    del pending, plines

    if n_rows == 0:
        raise ValueError(f"CSV file {str(path)!r} has a header but no data rows")
    if ragged.count:
        line, got = ragged.first
        raise ValueError(
            f"{ragged.count} row(s) of {path.name} do not have {width} fields like the "
            f"header, e.g. line {line} has {got} (lines {ragged.where()}); check the "
            "delimiter and quoting (a field holding the delimiter must be in double quotes)"
        )
    if missing.count and not drop_missing:
        line, col = missing.first
        raise ValueError(
            f"{missing.count} row(s) of {path.name} have missing values (NaN/empty) in "
            f"columns {sorted(missing_cols)}, e.g. column {col!r} at line {line} (lines "
            f"{missing.where()}); impute them, or pass drop_missing=True (--drop-missing) "
            "to drop these rows"
        )
    if missing.count == n_rows:
        raise ValueError(f"every row of {path.name} has a missing value; nothing is left")
    for name, b in zip(features, bad, strict=True):
        if b.count:
            what = "non-numeric" if b.non_numeric else "infinite"
            raise ValueError(
                f"feature column {name!r} of {path.name} has {b.count} {what} value(s), e.g. "
                f"{b.first[1]!r} at line {b.first[0]} (lines {b.where()}); "
                "encode categories as numbers (one-hot) or leave the column out with "
                "`features=[...]` (`--features` on the command line)"
            )
    X = np.concatenate(blocks) if len(blocks) > 1 else blocks[0]
    blocks.clear()  # free the parts: X holds them now
    raw_y = np.concatenate(yblocks)
    lines = np.concatenate(lblocks)
    drop = missing.all_lines
    return X, raw_y, lines, features, drop


def _first_undecodable(path) -> tuple[int, int]:
    """Line number and value of the first byte that is not UTF-8."""
    with open(path, "rb") as f:
        for i, raw in enumerate(f, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as e:
                return i, raw[e.start]
    return 0, 0  # pragma: no cover - only called after a decode error


def _check_header(path, header):
    if any(not h for h in header):
        pos = [i + 1 for i, h in enumerate(header) if not h]
        raise ValueError(
            f"{path.name}, line 1 (the header): column(s) {pos} have no name; name every column"
        )
    dup = sorted({h for h in header if header.count(h) > 1})
    if dup:
        raise ValueError(
            f"{path.name}, line 1 (the header): duplicate column name(s) {dup}; rename them"
        )


def _check_column(X, lines, names, fname, kind="feature"):
    """Refuse a column whose mean or spread overflows float64 (values near 1e300):
    standardising it would turn it into zeros or NaN without a word."""
    with np.errstate(over="ignore", invalid="ignore"):
        ok = np.isfinite(X.mean(axis=0)) & np.isfinite(X.std(axis=0))
    for c in np.flatnonzero(~ok):
        i = int(np.argmax(np.abs(X[:, c])))
        raise ValueError(
            f"{kind} column {names[c]!r} of {fname} is too large to standardise (|value| up "
            f"to {X[i, c]:.3g}, line {int(lines[i])}): its variance overflows float64. Rescale "
            "it in the file (e.g. divide by a power of ten, or take log10 of a positive "
            "column)"
        )


def _check_representable(X, lines, names, fname, standardize, dtype):
    if standardize:
        _check_column(X, lines, names, fname)
        return
    big = np.finfo(dtype).max
    over = np.abs(X) > big
    if over.any():
        i, c = (int(v) for v in np.argwhere(over)[0])
        raise ValueError(
            f"feature column {names[c]!r} of {fname} has {X[i, c]:.3g} at line {int(lines[i])}, "
            f"beyond {dtype.name}'s range; rescale it, pass standardize=True, or use float64"
        )


def _cap_test(ds: Dataset, cap: int, seed: int) -> Dataset:
    """Keep a seeded, class-stratified subset of at most ``cap`` test rows."""
    swapped = dataclasses.replace(ds, X_train=ds.X_test, y_train=ds.y_test)
    kept = subsample_train(swapped, cap, seed + 1)
    extra = {**ds.extra, "n_test_full": ds.n_test}
    return dataclasses.replace(
        ds,
        X_test=kept.X_train,
        y_test=kept.y_train,
        description=f"{ds.description}; test split capped at {kept.n_train} of {ds.n_test} "
        "rows (n_max)",
        extra=extra,
    )


def _encode_target(raw, lines, target, task, max_classes, fname):
    numeric = np.full(len(raw), np.nan)
    all_numeric = True
    for i, v in enumerate(raw):
        x = _to_float(v)
        if x is None:
            all_numeric = False
        else:
            numeric[i] = x
    if task == "auto":
        if not all_numeric:
            task = "classification"
        else:
            is_int = np.all(np.isfinite(numeric)) and np.all(numeric == np.round(numeric))
            task = (
                "classification"
                if is_int and len(np.unique(numeric)) <= max_classes
                else "regression"
            )
    if task == "regression":
        bad = np.flatnonzero(~np.isfinite(numeric))
        if bad.size:
            raise ValueError(
                f"regression target {target!r} of {fname} has {bad.size} non-numeric or "
                f"infinite value(s), e.g. {str(raw[bad[0]])!r} at line {lines[bad[0]]}; fix "
                "them or pass task='classification' if the target names classes"
            )
        return numeric, task, None
    keys = numeric if all_numeric else raw.astype(object)
    classes, codes = np.unique(keys, return_inverse=True)
    if len(classes) < 2:
        raise ValueError(
            f"classification target {target!r} of {fname} has a single class "
            f"({classes[0]!r}); a classifier needs at least two"
        )
    counts = np.bincount(codes)
    lonely = np.flatnonzero(counts < 2)
    if lonely.size:
        where = ", ".join(
            f"{_label(classes[c])!r} at line {int(lines[np.argmax(codes == c)])}"
            for c in lonely[:_SHOW]
        )
        more = f" and {lonely.size - _SHOW} more" if lonely.size > _SHOW else ""
        names = [_label(classes[c]) for c in lonely]
        raise ValueError(
            f"class(es) {names} of target column {target!r} of {fname} have a single row "
            f"({where}{more}); a stratified split needs at least two rows per class: merge "
            "rare classes, drop those rows, or pass task='regression' (--task regression) "
            "if the target is a number"
        )
    labels = [_label(c) for c in classes]
    return codes.astype(np.int64), task, tuple(labels)


def _label(c) -> str:
    if isinstance(c, float | np.floating) and float(c).is_integer():
        return str(int(c))
    return str(c)
