"""Initial outputs of the linearised trajectories: shapes are checked, never broadcast
into a different answer."""

import jax.numpy as jnp
import numpy as np
import pytest

from ntk_bayes import predict, stax


def _kernels():
    net = stax.serial(stax.Dense(64, W_std=1.5, b_std=0.1), stax.Relu(), stax.Dense(1))
    X = jnp.linspace(-1.0, 1.0, 5)[:, None]
    y = jnp.sin(3 * X)  # (5, 1)
    return net.kernel_fn(X, None, "ntk"), net.kernel_fn(X[:2] + 0.1, X, "ntk"), y


@pytest.mark.parametrize("t", [None, 3.0])
def test_fx_test_0_of_the_wrong_shape_is_refused(t):
    """fx_test_0 of shape (2,) against outputs (2, 1) returned a (2, 2) array."""
    k, kt, y = _kernels()
    fn = predict.gradient_descent_mse(k, y)
    with pytest.raises(ValueError, match=r"`fx_test_0`.*\(2, 1\)"):
        fn(t, 0.0, jnp.zeros(2), kt)
    out = fn(t, 0.0, jnp.zeros((2, 1)), kt)[1]
    np.testing.assert_allclose(out, fn(t, 0.0, 0.0, kt)[1])
    assert out.shape == (2, 1)


def test_fx_train_0_of_the_wrong_shape_names_itself():
    k, kt, y = _kernels()
    with pytest.raises(ValueError, match=r"`fx_train_0`.*\(5, 1\)"):
        predict.gradient_descent_mse(k, y)(1.0, jnp.zeros(3))
    with pytest.raises(ValueError, match=r"`fx_train_0`.*\(5, 1\)"):
        predict.gradient_descent(lambda f, y: jnp.mean((f - y) ** 2), k, y)(1.0, jnp.zeros(3))


def test_k_test_train_error_leaves_the_test_size_free():
    """The message asked for (5, 5), as if the 2 test points had to be 5."""
    k, kt, y = _kernels()
    with pytest.raises(ValueError, match=r"\(M, 5\)"):
        predict.gradient_descent_mse(k, y)(1.0, 0.0, 0.0, kt.T)
