"""predict.gradient_descent_mse_ensemble against neural-tangents 0.6.5 over the grid of
regularisation, training time, kernel and dtype (a parity grid, moved from tests/unit; the
unit tier keeps the GP-inference reference values)."""

import pytest
from _predict_ref import ref_net, ref_tol, rel

from ntk_bayes import predict


@pytest.mark.parametrize("reg", ["0", "0.01"])
@pytest.mark.parametrize("t", ["None", "0.5", "5.0"])
@pytest.mark.parametrize("get", ["nngp", "ntk"])
def test_ensemble_matches_neural_tangents(nt_predict_reference, dtype, reg, t, get):
    d = nt_predict_reference
    fn = predict.gradient_descent_mse_ensemble(
        ref_net().kernel_fn,
        d["x_train"].astype(dtype),
        d["y_train"].astype(dtype),
        learning_rate=0.5,
        diag_reg=float(reg),
    )
    out = fn(
        t=None if t == "None" else float(t),
        x_test=d["x_test"].astype(dtype),
        get=get,
        compute_cov=True,
    )
    assert out.mean.shape == (7, 2) and out.covariance.shape == (7, 7)
    assert out.mean.dtype == dtype
    k_train = ref_net().kernel_fn(d["x_train"].astype(dtype), None, get)
    tol = ref_tol(dtype, k_train if reg == "0" else None)
    assert rel(out.mean, d[f"gd/reg{reg}/t{t}/{get}/mean"]) <= tol
    assert rel(out.covariance, d[f"gd/reg{reg}/t{t}/{get}/cov"]) <= tol
