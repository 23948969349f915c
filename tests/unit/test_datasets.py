"""Embedded datasets and the CSV loader: splits, standardisation and clear errors."""

import numpy as np
import pytest

from ntk_bayes import datasets


@pytest.mark.parametrize("name", ["toy1d", "diabetes", "breast_cancer", "digits"])
def test_embedded_split_is_seeded_and_standardised(name, dtype):
    a = datasets.load(name, seed=3)
    b = datasets.load(name, seed=3)
    c = datasets.load(name, seed=4)
    np.testing.assert_array_equal(a.X_train, b.X_train)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    assert not np.array_equal(a.y_train, c.y_train)
    assert a.X_train.dtype == dtype
    assert a.X_train.shape[1:] == a.X_test.shape[1:] == a.input_shape
    # training statistics are used: the training inputs are centred and scaled
    per_feature = a.X_train.reshape(a.n_train, -1).astype(np.float64)
    assert abs(per_feature.mean()) < 1e-4
    if name != "digits":
        np.testing.assert_allclose(per_feature.mean(0), 0.0, atol=1e-4)
        np.testing.assert_allclose(per_feature.std(0), 1.0, rtol=1e-3)
    if a.task == "regression":
        assert a.classes is None and a.n_classes == 0
        np.testing.assert_allclose(a.y_train.mean(), 0.0, atol=1e-4)
        np.testing.assert_allclose(a.y_train.std(), 1.0, rtol=1e-3)
    else:
        assert a.y_train.dtype == np.int32
        assert set(np.unique(a.y_train)) == set(range(a.n_classes))


def test_sizes_and_tasks():
    d = datasets.load("diabetes")
    assert (d.task, d.n_train + d.n_test, d.input_shape) == ("regression", 442, (10,))
    assert d.feature_names[:3] == ("age", "sex", "bmi")
    b = datasets.load("breast_cancer")
    assert (b.task, b.n_classes, b.n_train + b.n_test) == ("classification", 2, 569)
    g = datasets.load("digits")
    assert g.input_shape == (8, 8, 1) and g.n_classes == 10
    assert datasets.load("digits", flatten=True).input_shape == (64,)
    assert datasets.load("digits", n_class=3).n_classes == 3
    assert set(datasets.available()) == {
        "toy1d", "concrete", "boston", "boston_nob", "mcycle", "diabetes", "breast_cancer",
        "digits",
    }  # fmt: skip


def test_stratified_split_keeps_class_proportions():
    b = datasets.load("breast_cancer", test_fraction=0.3, seed=1)
    p_train, p_test = b.y_train.mean(), b.y_test.mean()
    assert abs(p_train - p_test) < 0.02
    assert b.n_test == pytest.approx(0.3 * 569, abs=2)


def test_toy1d_gap_is_only_in_test():
    ds = datasets.load("toy1d", seed=0, n=200, gap=(-1.0, 1.0))
    x_train = ds.unstandardize_x(ds.X_train)[:, 0]
    x_test = ds.unstandardize_x(ds.X_test)[:, 0]
    assert not np.any((x_train > -1) & (x_train < 1))
    in_gap = (x_test > -1) & (x_test < 1)
    assert in_gap.sum() > 20
    np.testing.assert_array_equal(in_gap, ds.extra["test_in_gap"])
    # the targets are the documented function plus noise of the documented size
    y_raw = ds.unstandardize_y(ds.y_test)
    resid = y_raw - datasets.toy1d_function(x_test)
    assert resid.std() == pytest.approx(0.15, rel=0.25)
    assert ds.unstandardize_y(ds.y_train).mean() == pytest.approx(ds.y_mean, abs=1e-5)


def test_toy1d_noise_std_is_a_standard_deviation_and_noise_is_refused():
    from ntk_bayes.calibrate._pipeline import resplit

    ds = datasets.load("toy1d", seed=0, n=2000, noise_std=0.5)
    assert ds.extra["noise_std"] == 0.5
    x = np.concatenate([ds.unstandardize_x(ds.X_train), ds.unstandardize_x(ds.X_test)])[:, 0]
    y = np.concatenate([ds.unstandardize_y(ds.y_train), ds.unstandardize_y(ds.y_test)])
    resid = y - datasets.toy1d_function(x)
    # sd of a sample sd of n=2000 normals is 0.5/sqrt(2n) ~ 0.008: 5 sd is 0.04
    assert abs(resid.std() - 0.5) < 0.04
    # another split keeps the noise's standard deviation (drawn afresh from the seed)
    other = resplit(ds, 3)
    assert other.extra["noise_std"] == 0.5
    xo = np.concatenate([other.unstandardize_x(other.X_train), other.unstandardize_x(other.X_test)])
    yo = np.concatenate([other.unstandardize_y(other.y_train), other.unstandardize_y(other.y_test)])
    assert abs((yo - datasets.toy1d_function(xo[:, 0])).std() - 0.5) < 0.04
    # `noise` is a variance everywhere in ntk_bayes: the loader refuses to guess
    with pytest.raises(TypeError, match="noise_std"):
        datasets.load("toy1d", seed=0, noise=0.25)
    with pytest.raises(ValueError, match="noise_std"):
        datasets.load("toy1d", seed=0, noise_std=-1.0)


def test_subsample_train_and_float64():
    ds = datasets.load("digits", n_max=100, seed=0, dtype=np.float64)
    assert ds.n_train <= 100 and ds.X_train.dtype == np.float64
    assert set(np.unique(ds.y_train)) == set(range(10))
    full = datasets.load("digits", seed=0)
    assert ds.n_test == full.n_test


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"name": "mnist"}, ValueError, "unknown dataset"),
        ({"name": "toy1d", "test_fraction": 1.0}, ValueError, "strictly between"),
        ({"name": "toy1d", "seed": -1}, ValueError, "non-negative"),
        ({"name": "toy1d", "gap": (2.0, 5.0)}, ValueError, "domain"),
        ({"name": "toy1d", "n": 3}, ValueError, ">= 8"),
        ({"name": "digits", "n_class": 11}, ValueError, "2..10"),
        ({"name": "diabetes", "dtype": np.int32}, ValueError, "float32 or float64"),
        ({"name": "toy1d", "n_max": 1}, ValueError, "n_max"),
    ],
)
def test_load_errors(kwargs, exc, match):
    name = kwargs.pop("name")
    with pytest.raises(exc, match=match):
        datasets.load(name, **kwargs)


# ---- CSV --------------------------------------------------------------------------


def _write(tmp_path, text, name="data.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


def _table(n=40, seed=0, target_fn=None):
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=n), rng.normal(size=n)
    y = (2 * a - b + 0.1 * rng.normal(size=n)) if target_fn is None else target_fn(a, b)
    rows = ["a,b,y"] + [f"{x:.6f},{z:.6f},{t}" for x, z, t in zip(a, b, y, strict=True)]
    return "\n".join(rows) + "\n", a, b, y


def test_csv_regression_roundtrip(tmp_path):
    text, a, b, y = _table()
    ds = datasets.load_csv(_write(tmp_path, text), target="y", seed=1)
    assert ds.task == "regression" and ds.feature_names == ("a", "b")
    assert ds.n_train + ds.n_test == 40
    raw = ds.unstandardize_x(np.concatenate([ds.X_train, ds.X_test]))
    assert np.allclose(np.sort(raw[:, 0]), np.sort(a), atol=1e-5)


def test_csv_classification_labels_and_auto_task(tmp_path):
    text, *_ = _table(target_fn=lambda a, b: np.where(a > 0, "spam", "ham"))
    ds = datasets.load_csv(_write(tmp_path, text), target="y")
    assert ds.task == "classification" and ds.classes == ("ham", "spam")
    text, *_ = _table(target_fn=lambda a, b: (a > 0).astype(int) + (b > 0).astype(int))
    ds = datasets.load_csv(_write(tmp_path, text, "int.csv"), target="y")
    assert ds.task == "classification" and ds.classes == ("0", "1", "2")
    ds = datasets.load_csv(_write(tmp_path, text, "int2.csv"), target="y", task="regression")
    assert ds.task == "regression"


def test_csv_semicolon_and_feature_selection(tmp_path):
    text, *_ = _table()
    p = _write(tmp_path, text.replace(",", ";"))
    ds = datasets.load_csv(p, target="y", features=["b"])
    assert ds.feature_names == ("b",)


def test_csv_drop_missing_reports_lines(tmp_path):
    text, *_ = _table(n=30)
    lines = text.splitlines()
    lines[3] = "NA," + lines[3].split(",", 1)[1]
    lines[7] = lines[7].rsplit(",", 1)[0] + ","
    p = _write(tmp_path, "\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"2 row\(s\).*missing.*\['a', 'y'\].*lines 4, 8"):
        datasets.load_csv(p, target="y")
    ds = datasets.load_csv(p, target="y", drop_missing=True)
    assert ds.n_train + ds.n_test == 28 and ds.extra["dropped_lines"] == [4, 8]


@pytest.mark.parametrize(
    "text, kwargs, exc, match",
    [
        ("", {}, ValueError, "is empty"),
        ("   \n\n", {}, ValueError, "is empty"),
        ("a,b,y\n", {}, ValueError, "no data rows"),
        ("a,b,y\n1,2,3\n", {"target": "z"}, ValueError, r"not in .*columns are \['a', 'b', 'y'\]"),
        ("a,b,yy\n1,2,3\n", {}, ValueError, r"did you mean \['yy'\]"),
        ("a,a,y\n1,2,3\n", {}, ValueError, "duplicate column"),
        ("a,,y\n1,2,3\n", {}, ValueError, "no name"),
        ("a,b,y\n1,2,3\n4,5\n", {}, ValueError, "do not have 3 fields"),
        ("y\n1\n2\n", {}, ValueError, "no feature columns"),
        (
            "a,b,y\n1,x,3\n2,3,4\n3,4,5\n5,6,7\n",
            {},
            ValueError,
            r"'b'.*1 non-numeric.*'x' at line 2.*one-hot",
        ),
        ("a,b,y\n1,inf,3\n2,3,4\n3,4,5\n5,6,7\n", {}, ValueError, "infinite"),
        ("a,b,y\n1,2,c\n2,3,c\n3,4,c\n5,6,c\n", {}, ValueError, "single class"),
        ("a,b,y\n1,2,c\n2,3,c\n3,4,c\n5,6,d\n", {}, ValueError, r"\['d'\].*single row"),
        ("a,b,y\n1,2,3.5\n2,3,4.5\n", {}, ValueError, "at least 4"),
        ("a,b,y\n1,2,3\n2,3,3\n3,4,3\n5,6,3\n", {"task": "regression"}, ValueError, "constant"),
        ("a,b,y\n1,2,x\n2,3,4\n", {"task": "regression"}, ValueError, "non-numeric"),
        ("a,b,y\n1,2,3\n", {"task": "ordinal"}, ValueError, "`task`"),
        ("a,b,y\n1,2,3\n", {"features": ["q"]}, ValueError, r"\['q'\] are not in"),
        ("a,b,y\n1,2,3\n", {"features": ["a", "y"]}, ValueError, "cannot also be a feature"),
        ("a,b,y\n1,2,3\n", {"features": "a"}, TypeError, "list of column names"),
        ("a,b,y\n1,2,3\n", {"target": 3}, TypeError, "column name"),
    ],
)
def test_csv_errors(tmp_path, text, kwargs, exc, match):
    p = _write(tmp_path, text)
    kwargs = {"target": "y", **kwargs}
    with pytest.raises(exc, match=match):
        datasets.load_csv(p, **kwargs)


def test_csv_missing_file_and_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        datasets.load_csv(tmp_path / "nope.csv", target="y")
    with pytest.raises(ValueError, match="not a file"):
        datasets.load_csv(tmp_path, target="y")


@pytest.mark.parametrize(
    "name, n, d, target, frac",
    [
        ("concrete", 1030, 8, "compressive_strength", 0.1),
        ("boston", 506, 13, "medv", 0.1),
        ("boston_nob", 506, 12, "medv", 0.1),
        ("mcycle", 133, 1, "accel", 0.25),
    ],
)
def test_packaged_real_datasets(name, n, d, target, frac):
    from importlib import resources

    ds = datasets.load(name, seed=1)
    assert ds.n_train + ds.n_test == n and ds.input_shape == (d,)
    assert ds.target_name == target and ds.task == "regression"
    assert ds.n_test == pytest.approx(frac * n, abs=1)  # UCI protocol: 90/10
    # standardised on the training part only
    np.testing.assert_allclose(ds.X_train.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(ds.y_train.std(), 1.0, atol=1e-5)
    assert np.all(np.isfinite(ds.X_test)) and np.all(np.isfinite(ds.y_test))
    raw = ds.unstandardize_y(np.concatenate([ds.y_train, ds.y_test]))
    assert np.all(np.isfinite(raw))
    if name == "boston_nob":
        assert "black" not in ds.feature_names
    stem = "boston" if name.startswith("boston") else name
    notice = resources.files("ntk_bayes.datasets") / "data" / f"{stem}.NOTICE.txt"
    assert "licence" in notice.read_text().lower() or "GPL" in notice.read_text()
    # another seed gives another split of the same rows
    other = datasets.load(name, seed=2)
    assert not np.array_equal(other.y_test, ds.y_test)


def test_concrete_raw_values_are_the_published_table():
    ds = datasets.load("concrete", seed=0, standardize=False, test_fraction=0.1)
    y = np.sort(np.concatenate([ds.y_train, ds.y_test]).astype(np.float64))
    # compressive strength ranges 2.33-82.6 MPa with mean 35.82 in Yeh's data
    assert y[0] == pytest.approx(2.33, abs=1e-3) and y[-1] == pytest.approx(82.6, abs=1e-2)
    assert y.mean() == pytest.approx(35.818, abs=1e-2)
