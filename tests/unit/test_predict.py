"""ntk_bayes.predict: neural-tangents reference values, closed-form identities, dynamics."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _predict_ref import ref_net, ref_tol, rel

from ntk_bayes import predict, stax
from ntk_bayes.gp import trainable_floats


def _small_net():
    return stax.serial(
        stax.Dense(256, W_std=1.5, b_std=0.1), stax.Relu(), stax.Dense(1, W_std=1.2, b_std=0.1)
    )


def _data(n=12, m=5, d=3, k=2, seed=0):
    r = np.random.default_rng(seed)
    return r.normal(size=(n, d)), r.normal(size=(n, k)), r.normal(size=(m, d))


# --- rung 1: neural-tangents reference values ---------------------------------------


@pytest.mark.parametrize("get", ["nngp", "ntk", "ntkgp"])
def test_gp_inference_matches_neural_tangents(nt_predict_reference, dtype, get):
    d = nt_predict_reference
    net = ref_net()
    xtr, xte = d["x_train"].astype(dtype), d["x_test"].astype(dtype)
    k_dd = net.kernel_fn(xtr, None, ("nngp", "ntk"))
    k_td = net.kernel_fn(xte, xtr, ("nngp", "ntk"))
    k_tt = net.kernel_fn(xte, None, ("nngp", "ntk"))
    fn = predict.gp_inference(k_dd, d["y_train"].astype(dtype), diag_reg=0.01)
    out = fn(get, k_td, k_tt)
    assert rel(out.mean, d[f"gp/{get}/mean"]) <= ref_tol(dtype)
    assert rel(out.covariance, d[f"gp/{get}/cov"]) <= ref_tol(dtype)
    both = fn(("ntkgp", "nngp"), k_td, k_tt)
    assert both._fields == ("ntkgp", "nngp")
    assert np.allclose(
        getattr(both, get if get != "ntk" else "ntkgp").mean,
        fn("ntkgp" if get == "ntk" else get, k_td, k_tt).mean,
    )
    means = fn(None, k_td)  # no k_test_test: means only, both default modes
    assert means._fields == ("nngp", "ntk") and means.ntk.shape == (7, 2)


# --- closed-form identities -----------------------------------------------------------


def test_infinite_time_is_ntk_kernel_regression(tol, dtype):
    x, y, xs = _data()
    net = _small_net()
    fn = predict.gradient_descent_mse_ensemble(net.kernel_fn, x, y, learning_rate=0.7)
    theta = np.asarray(net.kernel_fn(x, None, "ntk"), np.float64)
    theta_td = np.asarray(net.kernel_fn(xs, x, "ntk"), np.float64)
    direct = theta_td @ np.linalg.solve(theta, y)
    inf = fn(t=None, x_test=xs, get="ntk")
    rtol = 1e3 * tol["rtol"] if dtype == np.float32 else 1e-7
    assert rel(inf, direct) <= rtol
    # a finite time long enough for the slowest mode to decay by e^-40 gives the same
    lam_min = np.linalg.eigvalsh(theta)[0]
    t_long = 40.0 * y.size / (0.7 * lam_min)
    late = fn(t=t_long, x_test=xs, get="ntk", compute_cov=True)
    conv = fn(t=None, x_test=xs, get="ntk", compute_cov=True)
    assert rel(late.mean, conv.mean) <= rtol
    assert rel(late.covariance, conv.covariance) <= rtol


def test_time_zero_is_the_prior(tol):
    x, y, xs = _data()
    net = _small_net()
    fn = predict.gradient_descent_mse_ensemble(net.kernel_fn, x, y)
    k_tt = net.kernel_fn(xs, None, "nngp")
    out = fn(t=0.0, x_test=xs, compute_cov=True)
    for g in ("nngp", "ntk"):
        assert np.all(np.asarray(getattr(out, g).mean) == 0)
        np.testing.assert_allclose(getattr(out, g).covariance, k_tt, **tol)


def test_time_arrays_add_leading_axes(tol):
    x, y, xs = _data()
    fn = predict.gradient_descent_mse_ensemble(_small_net().kernel_fn, x, y, learning_rate=2.0)
    ts = np.array([[0.0, 0.3, 1.0], [2.0, 5.0, 50.0]])
    out = fn(t=ts, x_test=xs, get="ntk", compute_cov=True)
    assert out.mean.shape == (2, 3, 5, 2) and out.covariance.shape == (2, 3, 5, 5)
    one = fn(t=5.0, x_test=xs, get="ntk", compute_cov=True)
    np.testing.assert_allclose(out.mean[1, 1], one.mean, **tol)
    np.testing.assert_allclose(out.covariance[1, 1], one.covariance, **tol)
    # covariances are symmetric, and variances shrink as training proceeds on this data
    np.testing.assert_allclose(out.covariance, np.swapaxes(out.covariance, -1, -2), **tol)


def test_train_set_predictions(tol, dtype):
    x, y, _ = _data()
    net = _small_net()
    fn = predict.gradient_descent_mse_ensemble(net.kernel_fn, x, y, learning_rate=1.0)
    inf = fn(t=None, x_test=None, get="nngp", compute_cov=True)
    np.testing.assert_allclose(inf.mean, y.astype(dtype), **tol)
    assert np.all(np.asarray(inf.covariance) == 0)
    theta = np.asarray(net.kernel_fn(x, None, "ntk"), np.float64)
    lam, v = np.linalg.eigh(theta)
    t = 3.0
    expected = v @ np.diag(-np.expm1(-lam * t / y.size)) @ v.T @ y
    got = fn(t=t, x_test=None, get="ntk")
    np.testing.assert_allclose(got, expected, rtol=50 * tol["rtol"], atol=50 * tol["atol"])


def test_linearised_trajectory_matches_euler_integration(tol):
    x, y, xs = _data(n=8, m=3, k=1)
    net = _small_net()
    theta = np.asarray(net.kernel_fn(x, None, "ntk"), np.float64)
    theta_td = np.asarray(net.kernel_fn(xs, x, "ntk"), np.float64)
    f0 = np.random.default_rng(3).normal(size=y.shape)
    g0 = np.random.default_rng(4).normal(size=(3, 1))
    lr, t = 0.5, 4.0
    fn = predict.gradient_descent_mse(theta, y, lr)
    # an adaptive ODE solver on df/dt = -lr/|Y| Θ (f - y), dg/dt = -lr/|Y| Θ_*D (f - y)
    from scipy.integrate import solve_ivp

    def rhs(_, z):
        r = z[:8] - y[:, 0]
        return np.concatenate([-lr / y.size * theta @ r, -lr / y.size * theta_td @ r])

    sol = solve_ivp(rhs, (0.0, t), np.concatenate([f0[:, 0], g0[:, 0]]), rtol=1e-10, atol=1e-12)
    f, g = sol.y[:8, -1:], sol.y[8:, -1:]
    ft, gt = fn(t, f0, g0, theta_td)
    np.testing.assert_allclose(ft, f, rtol=20 * tol["rtol"], atol=1e-5)
    np.testing.assert_allclose(gt, g, rtol=20 * tol["rtol"], atol=1e-5)
    # infinite time: train outputs hit the targets; test outputs by kernel regression
    fi, gi = predict.gradient_descent_mse(theta, y, lr)(None, f0, g0, theta_td)
    np.testing.assert_allclose(fi, y, **tol)
    expected = g0 + theta_td @ np.linalg.solve(theta, y - f0)
    np.testing.assert_allclose(gi, expected, rtol=100 * tol["rtol"], atol=1e-5)


def test_ensemble_mean_is_trajectory_from_zero(tol):
    x, y, xs = _data()
    net = _small_net()
    k_dd = net.kernel_fn(x, None, "ntk")
    k_td = net.kernel_fn(xs, x, "ntk")
    ens = predict.gradient_descent_mse_ensemble(net.kernel_fn, x, y, learning_rate=0.3)
    traj = predict.gradient_descent_mse(k_dd, y, learning_rate=0.3)
    for t in (0.5, 7.0, None):
        got = traj(t, None, 0.0, k_td)
        np.testing.assert_allclose(got, ens(t, xs, "ntk"), rtol=20 * tol["rtol"], atol=1e-5)


def test_max_learning_rate_is_the_stability_edge():
    x, y, _ = _data(n=10, k=1)
    theta = np.asarray(_small_net().kernel_fn(x, None, "ntk"), np.float64)
    lr_max = predict.max_learning_rate(theta, y_train_size=y.size)

    def final_residual(lr, steps=400):
        r = -y.copy()
        for _ in range(steps):
            r = r - lr / y.size * theta @ r
        return np.linalg.norm(r)

    assert final_residual(0.95 * lr_max) < np.linalg.norm(y)
    assert final_residual(1.05 * lr_max) > 1e3 * np.linalg.norm(y)
    assert predict.max_learning_rate(theta, momentum=0.9) == pytest.approx(1.9 * lr_max)


def test_untraced_outputs_equal_traced_kron_kernel(tol):
    """trace_axes=() with Θ ⊗ I in neural-tangents' (N, N, K, K) layout."""
    x, y, xs = _data(k=3)
    net = _small_net()

    def kron_kernel_fn(x1, x2, get):
        k = net.kernel_fn(x1, x2, get)
        eye = jnp.eye(3)
        if isinstance(get, str):
            return jnp.einsum("ij,ab->ijab", k, eye)
        return type(k)(*(jnp.einsum("ij,ab->ijab", v, eye) for v in k))

    traced = predict.gradient_descent_mse_ensemble(net.kernel_fn, x, y, 0.5, diag_reg=0.1)
    full = predict.gradient_descent_mse_ensemble(
        kron_kernel_fn, x, y, 0.5, diag_reg=0.1, trace_axes=()
    )
    for t in (1.5, None):
        a = traced(t, xs, "ntk", compute_cov=True)
        b = full(t, xs, "ntk", compute_cov=True)
        assert b.covariance.shape == (5, 5, 3, 3)
        np.testing.assert_allclose(b.mean, a.mean, rtol=10 * tol["rtol"], atol=1e-5)
        np.testing.assert_allclose(
            b.covariance,
            np.einsum("ij,ab->ijab", a.covariance, np.eye(3)),
            rtol=10 * tol["rtol"],
            atol=1e-5,
        )


def test_singular_kernel_falls_back_to_jitter():
    x, y, xs = _data(n=6, k=1)
    x = np.concatenate([x, x[:2]])  # duplicate inputs: singular NNGP
    y = np.concatenate([y, y[:2]])
    fn = predict.gradient_descent_mse_ensemble(_small_net().kernel_fn, x, y)
    out = fn(None, xs, "nngp")
    assert np.all(np.isfinite(out))


# --- differentiability ------------------------------------------------------------------


def test_gradients_through_the_ensemble_are_finite():
    x, y, xs = _data(n=6, k=1)
    net = trainable_floats(_small_net())

    def f(net):
        fn = predict.gradient_descent_mse_ensemble(net.kernel_fn, x, y)
        out = fn(2.0, xs, "ntk", compute_cov=True)
        return jnp.sum(out.mean) + jnp.trace(out.covariance)

    g = eqx.filter_jit(eqx.filter_grad(f))(net)
    leaves = jax.tree_util.tree_leaves(g)
    assert leaves and all(np.all(np.isfinite(v)) for v in leaves)
    assert float(jnp.abs(g.layers[0].W_std)) > 0


# --- bad input ----------------------------------------------------------------------------


def test_errors_are_clear():
    x, y, xs = _data()
    kf = _small_net().kernel_fn
    with pytest.raises(ValueError, match="x_train"):
        predict.gradient_descent_mse_ensemble(kf, x[:-1], y)
    bad = y.copy()
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match="y_train"):
        predict.gradient_descent_mse_ensemble(kf, x, bad)
    with pytest.raises(ValueError, match="diag_reg"):
        predict.gradient_descent_mse_ensemble(kf, x, y, diag_reg=-1.0)
    with pytest.raises(ValueError, match="learning_rate"):
        predict.gradient_descent_mse_ensemble(kf, x, y, learning_rate=0.0)
    with pytest.raises(ValueError, match="batch axis"):
        predict.gradient_descent_mse_ensemble(kf, x, y, trace_axes=(0,))
    fn = predict.gradient_descent_mse_ensemble(kf, x, y)
    with pytest.raises(ValueError, match="unknown mode"):
        fn(None, xs, "ntkgp")
    with pytest.raises(ValueError, match="`t`"):
        fn(-1.0, xs, "ntk")
    with pytest.raises(TypeError, match="`get`"):
        fn(None, xs, 3)
    k = kf(x, None, ("nngp", "ntk"))
    with pytest.raises(ValueError, match="k_test_train"):
        predict.gp_inference(k, y)("nngp", kf(xs, x[:-1], ("nngp", "ntk")))
    with pytest.raises(ValueError, match="'nngp'"):
        predict.gp_inference(k.ntk, y)("ntk", kf(xs, x, "ntk"), kf(xs, None, "ntk"))
    with pytest.raises(ValueError, match="nothing to predict"):
        predict.gradient_descent_mse(k.ntk, y)(1.0, None, None)
    with pytest.raises(ValueError, match="square"):
        predict.max_learning_rate(np.ones((3, 4)))


# --- rung 2: a real ensemble of wide networks trained by gradient descent -------------


def test_shape_errors_name_the_users_arguments():
    x, y, xs = _data()
    kf = _small_net().kernel_fn
    fn = predict.gradient_descent_mse_ensemble(kf, x, y)
    with pytest.raises(ValueError, match=r"`x_test` has per-point shape \(2,\) but `x_train`"):
        fn(None, xs[:, :2], "ntk")
    k = kf(x, None, ("nngp", "ntk"))
    ktd = kf(xs, x, ("nngp", "ntk"))
    # k_test_train transposed: the expected shape is (M, N), M free
    with pytest.raises(ValueError, match=r"shape \(12, 5\) but the targets need \(M, 12\)"):
        predict.gp_inference(k, y)("nngp", ktd.nngp.T)
