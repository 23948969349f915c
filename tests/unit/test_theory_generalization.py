"""The Arora et al. (2019) bound with kernel-regression test error."""

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer

from ntk_bayes import stax
from ntk_bayes._linalg import NotPSDError
from ntk_bayes.theory import arora_bound, arora_gram, generalization_report


@pytest.fixture(scope="module")
def cancer():
    X, y = load_breast_cancer(return_X_y=True)
    X = (X - X.mean(0)) / X.std(0)
    X = X / np.linalg.norm(X, axis=1, keepdims=True)
    y = 2.0 * y - 1.0
    idx = np.random.default_rng(0).permutation(len(y))
    tr, te = idx[:250], idx[250:]
    return X[tr], y[tr], X[te], y[te]


def test_arora_gram_is_the_hidden_layer_ntk(tol):
    x = np.random.default_rng(1).normal(size=(7, 5))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    net = stax.serial(stax.Dense(64, W_std=1.0), stax.Relu(), stax.Dense(1, W_std=1.0))
    k = net.kernel_fn(x, None, ("nngp", "ntk"))
    H = arora_gram(x)
    got = x.shape[1] * (np.asarray(k.ntk, np.float64) - np.asarray(k.nngp, np.float64))
    # stax takes the angle as arctan2(sqrt(q1 q2 - s^2), s): at coincident points the
    # cancellation costs half the digits, so the diagonal agrees to sqrt(eps) only.
    sqrt_eps = float(np.sqrt(np.finfo(np.asarray(k.ntk).dtype).eps))
    np.testing.assert_allclose(got, H, rtol=tol["rtol"], atol=x.shape[1] * sqrt_eps)
    off = ~np.eye(len(x), dtype=bool)
    np.testing.assert_allclose(got[off], H[off], rtol=tol["rtol"], atol=tol["atol"] * x.shape[1])
    np.testing.assert_allclose(np.diag(H), 0.5, rtol=1e-15)  # x·x = 1: the angle is 0


def test_bound_separates_true_from_random_labels(cancer):
    xtr, ytr, xte, yte = cancer
    rng = np.random.default_rng(2)
    net = stax.serial(stax.Dense(512, W_std=1.0), stax.Relu(), stax.Dense(1, W_std=1.0))
    for get, model in (("arora", None), ("ntk", net)):
        true = generalization_report(model, xtr, ytr, xte, yte, get=get)
        rand = generalization_report(model, xtr, rng.permutation(ytr), xte, yte, get=get)
        # Arora et al. Fig. 1: random labels need a far larger RKHS norm, and fail to
        # generalise; true labels generalise (breast cancer: ~95% accuracy).
        assert rand.bound > 2 * true.bound
        assert true.test_error < 0.1 and rand.test_error > 0.3
        assert true.train_size == 250 and true.lambda_min > 0
    report = generalization_report(None, xtr, ytr, xte, yte, get="arora")
    assert report.bound == pytest.approx(arora_bound(arora_gram(xtr), ytr), rel=1e-10)
    assert set(report.as_dict()) >= {"bound", "test_mse", "test_error"}


def test_regression_targets_report_mse_only(cancer):
    xtr, ytr, xte, yte = cancer
    net = stax.serial(stax.Dense(8), stax.Erf(), stax.Dense(1))
    r = generalization_report(net, xtr[:50], 0.5 * ytr[:50], xte, 0.5 * yte, diag_reg=1e-3)
    assert np.isnan(r.test_error) and r.test_mse < 0.25


def test_singular_kernels_and_bad_inputs_are_explained(cancer):
    xtr, ytr, xte, yte = cancer
    dup = np.concatenate([xtr[:5], xtr[:1]])
    with pytest.raises(NotPSDError, match="diag_reg"):
        generalization_report(None, dup, ytr[:6], xte, yte, get="arora")
    r = generalization_report(None, dup, ytr[:6], xte, yte, get="arora", diag_reg=1e-3)
    assert np.isfinite(r.bound)
    with pytest.raises(ValueError, match="unit norm"):
        arora_gram(2 * xtr[:3])
    with pytest.raises(ValueError, match="get"):
        generalization_report(None, xtr, ytr, xte, yte, get="rbf")
    with pytest.raises(TypeError, match="stax network"):
        generalization_report(None, xtr, ytr, xte, yte, get="ntk")
    with pytest.raises(ValueError, match="y_train"):
        generalization_report(None, xtr, ytr[:-1], xte, yte, get="arora")
    with pytest.raises(ValueError, match="square"):
        arora_bound(np.ones((3, 2)), np.ones(3))
