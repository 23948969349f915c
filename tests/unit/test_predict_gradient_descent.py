"""predict.gradient_descent (any loss) against the closed form for MSE, and a
cross-entropy flow's known properties."""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import enable_x64

from ntk_bayes import predict, stax


def _setup(dtype):
    x = np.asarray(jax.random.normal(jax.random.PRNGKey(0), (6, 3)), dtype)
    xt = np.asarray(jax.random.normal(jax.random.PRNGKey(1), (4, 3)), dtype)
    net = stax.serial(stax.Dense(8, W_std=1.5, b_std=0.1), stax.Relu(), stax.Dense(1))
    y = np.sin(x[:, :1] * 2).astype(dtype)
    return net.kernel_fn(x, None, "ntk"), net.kernel_fn(xt, x, "ntk"), y


def test_mse_flow_matches_closed_form(dtype):
    k, ktd, y = _setup(dtype)
    mse = lambda f, yy: 0.5 * jnp.mean((f - yy) ** 2)  # noqa: E731
    ts = jnp.asarray([0.0, 0.5, 3.0, 20.0], dtype)
    got = predict.gradient_descent(mse, k, y, learning_rate=0.7)(ts, 0.1, 0.2, ktd)
    want = predict.gradient_descent_mse(k, y, learning_rate=0.7)(ts, 0.1, 0.2, ktd)
    tol = 1e-7 if dtype == np.float64 else 1e-4
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


def test_cross_entropy_flow_decreases_the_loss():
    k, _, y = _setup(np.float32)
    labels = jax.nn.one_hot((y[:, 0] > 0).astype(int), 2)

    def xent(f, yy):
        return -jnp.mean(jnp.sum(yy * jax.nn.log_softmax(f), axis=-1))

    fn = predict.gradient_descent(xent, k, labels)
    f = fn(jnp.asarray([0.0, 1.0, 10.0]), 0.0)
    losses = [float(xent(fi, labels)) for fi in f]
    assert losses[0] == pytest.approx(np.log(2), rel=1e-6)
    assert losses[0] > losses[1] > losses[2]


def _momentum_closed_form(k, ktd, y, f0, g0, lr, m, ts):
    """Heavy-ball flow on L = ½||f - y||², neural-tangents' continuous time: with
    s = sqrt(η), τ = s t, c = (m - 1)/s, u = f - y solves u'' - c u' + Θ u = 0 from rest;
    per eigenvalue λ of Θ, u = A e^{r1 τ} + B e^{r2 τ}, r = (c ± sqrt(c² - 4λ))/2,
    A = -r2 u0/(r1 - r2), B = r1 u0/(r1 - r2). The test outputs: G = g - g0 obeys
    G'' - c G' = -Θ_td u from rest, solved by G = Θ_td Θ⁻¹ (u - u0), i.e.
    g0 + Θ_td V diag((e - 1)/λ) Vᵀ u0 with e = u/u0 per eigenvalue."""
    s = np.sqrt(lr)
    c = (m - 1.0) / s
    lam, V = np.linalg.eigh(np.asarray(k, np.float64))
    u0 = V.T @ (np.asarray(f0, np.float64) - np.asarray(y, np.float64))  # (N, K)
    disc = np.sqrt((c * c - 4 * lam).astype(complex))
    r1, r2 = (c + disc) / 2, (c - disc) / 2
    f_out, g_out = [], []
    for t in np.asarray(ts, np.float64):
        tau = s * t
        e = ((-r2 * np.exp(r1 * tau) + r1 * np.exp(r2 * tau)) / (r1 - r2)).real  # u/u0
        u = V @ (e[:, None] * u0)
        f_out.append(np.asarray(y, np.float64) + u)
        g_out.append(np.asarray(g0, np.float64) + np.asarray(ktd, np.float64) @ V
                     @ (((e - 1) / lam)[:, None] * u0))  # fmt: skip
    return np.stack(f_out), np.stack(g_out)


def test_momentum_flow_matches_its_closed_form(dtype):
    # a linear second-order ODE for MSE: solved per eigenvalue of Θ (complex roots where
    # it oscillates), against the ODE solver's answer on train and test outputs
    k, ktd, y = _setup(dtype)
    sse = lambda f, yy: 0.5 * jnp.sum((f - yy) ** 2)  # noqa: E731
    ts = jnp.asarray([0.0, 0.3, 2.0, 9.0], dtype)
    for lr, m in ((0.5, 0.9), (0.2, 0.0), (1.0, 0.5)):
        fn = predict.gradient_descent(sse, k, y, learning_rate=lr, momentum=m)
        got_f, got_g = fn(ts, 0.1, 0.2, ktd)
        want_f, want_g = _momentum_closed_form(k, ktd, y, 0.1, 0.2 + 0 * ktd[:, :1], lr, m, ts)
        tol = 1e-6 if dtype == np.float64 else 2e-3
        np.testing.assert_allclose(got_f, want_f, rtol=tol, atol=tol)
        np.testing.assert_allclose(got_g, want_g, rtol=tol, atol=tol)
    # momentum 0 is not gradient flow at the same η: it is the heavy ball with full
    # friction 1/sqrt(η), which moves slower at first (from rest)
    f_flow = predict.gradient_descent(sse, k, y, learning_rate=0.5)(0.3, 0.1)
    f_m0 = predict.gradient_descent(sse, k, y, learning_rate=0.5, momentum=0.0)(0.3, 0.1)
    assert np.linalg.norm(f_m0 - 0.1) < np.linalg.norm(f_flow - 0.1)


def test_momentum_matches_neural_tangents_on_a_logistic_loss():
    # tools/make_nt_reference_momentum.py (neural-tangents 0.6.5, float64): a loss without
    # a closed form; both solve the same ODE to their own tolerances (theirs rtol 1.4e-8)
    ref = np.load(pathlib.Path(__file__).parents[1] / "data" / "nt_momentum.npz")
    with enable_x64(True):
        loss = lambda f, y: jnp.sum(jnp.logaddexp(0.0, -f * y))  # noqa: E731
        fn = predict.gradient_descent(loss, ref["k"], ref["y"], learning_rate=0.3, momentum=0.8)
        f, g = fn(jnp.asarray(ref["ts"]), 0.05, 0.1, ref["ktd"])
        np.testing.assert_allclose(f, ref["f"], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(g, ref["g"], rtol=1e-6, atol=1e-6)


def test_errors_are_explained():
    k, _, y = _setup(np.float32)
    for bad in (1.0, -0.1, "0.9", True, [0.5]):
        with pytest.raises(ValueError, match="momentum"):
            predict.gradient_descent(lambda f, yy: 0.0, k, y, momentum=bad)
    with pytest.raises(ValueError, match="needs finite times"):
        predict.gradient_descent(lambda f, yy: jnp.sum(f), k, y)(None)
    with pytest.raises(ValueError, match=r"`k_train_train` must be \(6, 6\)"):
        predict.gradient_descent(lambda f, yy: jnp.sum(f), k[:3], y)


def test_untraced_output_axes_couple_the_units(dtype):
    """trace_axes=(): the kernel (N, N, K, K) between output units. Θ ⊗ I gives the
    traced flow; a kernel that couples the units is checked against the MSE flow's
    closed form on the flattened (N K, N K) kernel, f_t = y + expm(-η t Θ / (N K))(f_0 - y)
    (the loss is the mean over N K entries)."""
    from scipy.linalg import expm

    k, ktd, _ = _setup(dtype)
    k = np.asarray(k, np.float64)
    y = np.stack([np.sin(np.arange(6.0)), np.cos(np.arange(6.0))], axis=1).astype(dtype)
    mse = lambda f, yy: 0.5 * jnp.mean((f - yy) ** 2)  # noqa: E731
    eye = np.eye(2)
    k4 = np.einsum("ij,ab->ijab", k, eye).astype(dtype)
    ktd4 = np.einsum("ij,ab->ijab", np.asarray(ktd), eye).astype(dtype)
    traced = predict.gradient_descent(mse, k, y)(2.0, 0.1, 0.0, ktd)
    full = predict.gradient_descent(mse, k4, y, trace_axes=())(2.0, 0.1, 0.0, ktd4)
    tol = 1e-9 if dtype == np.float64 else 1e-5
    for a, b in zip(full, traced, strict=True):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)
    mix = np.array([[1.0, 0.4], [0.4, 0.7]])  # a positive definite coupling of the units
    kc = np.einsum("ij,ab->ijab", k, mix)
    f_t = predict.gradient_descent(mse, kc.astype(dtype), y, learning_rate=0.5, trace_axes=())(
        3.0, 0.2
    )
    flat = kc.transpose(0, 2, 1, 3).reshape(12, 12)
    want = y.reshape(-1) + expm(-0.5 * 3.0 * flat / 12) @ (0.2 - y.reshape(-1))
    np.testing.assert_allclose(np.asarray(f_t).reshape(-1), want, rtol=tol, atol=tol)
    with pytest.raises(ValueError, match=r"trace_axes=\(\) `y_train` must be \(N, K\)"):
        predict.gradient_descent(mse, k, y, trace_axes=())
