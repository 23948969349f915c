"""predict.gradient_descent (any loss) against the closed form for MSE, and a
cross-entropy flow's known properties."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

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


def test_errors_are_explained():
    k, _, y = _setup(np.float32)
    with pytest.raises(NotImplementedError, match="momentum"):
        predict.gradient_descent(lambda f, yy: 0.0, k, y, momentum=0.9)
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
