"""load_csv on hostile files: encodings, values too large to standardise, the test cap
of ``n_max`` and the streamed reader's block boundaries."""

import numpy as np
import pytest

from ntk_bayes import datasets
from ntk_bayes.datasets import _csv


def _write(tmp_path, text, name="data.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


def _rows(n, seed=0, big_col=None, classes=False):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n)
    lines = ["a,b,y"]
    for i, x in enumerate(a):
        b = repr(float(1e300 * (1 + abs(x)))) if big_col == "b" else f"{x**2:.6f}"
        y = int(x > 0) if classes else f"{2 * x + 0.1 * i:.6f}"
        y = repr(float(1e300 * (1 + abs(x)))) if big_col == "y" else y
        lines.append(f"{x:.6f},{b},{y}")
    return "\n".join(lines) + "\n"


def test_latin1_file_names_the_file_and_the_line(tmp_path):
    p = tmp_path / "caf.csv"
    p.write_bytes("a,b,y\n1,2,3\n1,2,caf\xe9\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"'.*caf\.csv' is not UTF-8.*0xe9 on line 3.*iconv"):
        datasets.load_csv(p, target="y")


@pytest.mark.parametrize("col, kind", [("b", "feature"), ("y", "target")])
def test_values_too_large_to_standardise_are_refused(tmp_path, col, kind):
    p = _write(tmp_path, _rows(30, big_col=col))
    with pytest.raises(ValueError, match=rf"{kind} column '{col}' of data\.csv.*line \d+.*Rescale"):
        datasets.load_csv(p, target="y")


def test_unstandardised_values_beyond_float32_are_refused(tmp_path):
    p = _write(tmp_path, _rows(30, big_col="b"))
    with pytest.raises(ValueError, match=r"'b'.*line 2, beyond float32"):
        datasets.load_csv(p, target="y", standardize=False, dtype=np.float32)


def test_n_max_caps_train_and_test(tmp_path):
    p = _write(tmp_path, _rows(5000, classes=True))
    full = datasets.load_csv(p, target="y")
    assert full.n_test == 1250
    ds = datasets.load_csv(p, target="y", n_max=50)
    assert ds.n_train <= 50 and ds.n_test <= _csv.TEST_CAP_MIN
    assert ds.extra["n_test_full"] == 1250 and "capped" in ds.description
    assert set(np.unique(ds.y_test)) == {0, 1}  # stratified
    np.testing.assert_array_equal(ds.x_mean, full.x_mean)  # statistics of the full split
    ds = datasets.load_csv(p, target="y", n_max=50, n_max_test=100)
    assert ds.n_test <= 100
    with pytest.raises(ValueError, match="n_max_test"):
        datasets.load_csv(p, target="y", n_max_test=1)


def test_block_boundaries_do_not_change_the_data(tmp_path, monkeypatch):
    text = _rows(40).splitlines()
    text[9] = "NA" + text[9][text[9].index(",") :]  # line 10 has a missing value
    p = _write(tmp_path, "\n".join(text) + "\n")
    whole = datasets.load_csv(p, target="y", drop_missing=True)
    monkeypatch.setattr(_csv, "_BLOCK", 7)
    blocks = datasets.load_csv(p, target="y", drop_missing=True)
    np.testing.assert_array_equal(whole.X_train, blocks.X_train)
    np.testing.assert_array_equal(whole.y_test, blocks.y_test)
    assert blocks.extra["dropped_lines"] == [10]


def test_errors_report_lines_across_blocks(tmp_path, monkeypatch):
    text = _rows(40).splitlines()
    text[25] = text[25].replace(text[25].split(",")[1], "x", 1)
    monkeypatch.setattr(_csv, "_BLOCK", 4)
    with pytest.raises(ValueError, match=r"'b'.*1 non-numeric.*'x' at line 26"):
        datasets.load_csv(_write(tmp_path, "\n".join(text) + "\n"), target="y")


# ---- every data error names the file, the column, the 1-based line and the fix ----------
_GOOD = "".join(f"{i},{i % 3},{2 * i + 1}\n" for i in range(8))


@pytest.mark.parametrize(
    "text, kwargs, match",
    [
        # a non-numeric feature: line 10 is the 9th data row (the header is line 1)
        (
            "a,b,y\n" + _GOOD + "1,abc,3\n",
            {},
            r"feature column 'b' of data\.csv .*'abc' at line 10.*one-hot",
        ),
        # an empty cell: the column and the line of the first one, then every line
        (
            "a,b,y\n" + _GOOD + "1,,3\n2,3,nan\n",
            {},
            r"data\.csv have missing values.*column 'b' at line 10 \(lines 10, 11\).*"
            r"--drop-missing",
        ),
        # a row with too few fields: its line and how many fields it has
        (
            "a,b,y\n" + _GOOD + "1,2\n",
            {},
            r"data\.csv do not have 3 fields.*line 10 has 2 \(lines 10\).*delimiter",
        ),
        # a class with a single row: the class, the column and its line
        (
            "a,b,y\n1,2,c\n2,3,c\n3,4,c\n5,6,d\n",
            {},
            r"\['d'\] of target column 'y' of data\.csv have a single row \('d' at line 5\)"
            r".*merge",
        ),
        (
            "a,b,y\n" + _GOOD + "1,2,x\n",
            {"task": "regression"},
            r"target 'y' of data\.csv .*'x' at line 10.*classification",
        ),
        ("a,a,y\n" + _GOOD, {}, r"data\.csv, line 1 \(the header\): duplicate.*rename"),
        ("a,,y\n" + _GOOD, {}, r"data\.csv, line 1 \(the header\): column\(s\) \[2\].*name"),
        ("a,b,y\n" + _GOOD, {"target": "z"}, r"'z' is not in the header \(line 1\) of data\.csv"),
        ("a,b,y\n" + _GOOD, {"features": ["q"]}, r"\['q'\].*line 1.*data\.csv.*--features"),
    ],
    ids=["non-numeric", "empty-cell", "ragged", "single-row-class", "bad-target", "dup-header",
         "unnamed-header", "no-target", "no-feature"],
)  # fmt: skip
def test_every_data_error_names_file_column_line_and_fix(tmp_path, text, kwargs, match):
    p = _write(tmp_path, text)
    with pytest.raises(ValueError, match=match):
        datasets.load_csv(p, **{"target": "y", **kwargs})


def test_line_numbers_count_quoted_line_breaks(tmp_path):
    # a quoted field spanning two physical lines: the next row's number is its own line
    text = 'a,b,y\n1,2,"3"\n"4\n",5,6\n7,8,9\n1,zz,2\n3,4,5\n'
    with pytest.raises(ValueError, match=r"'zz' at line 6"):
        datasets.load_csv(_write(tmp_path, text), target="y")
