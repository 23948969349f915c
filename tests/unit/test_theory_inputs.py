"""Kernel-regime tools: bad inputs get a clear error naming the argument, before work;
degenerate cases raise instead of returning NaN."""

import jax
import numpy as np
import pytest

from ntk_bayes import stax, theory

KEY = jax.random.PRNGKey(0)
X = np.random.default_rng(0).normal(size=(6, 3))
Y = np.sin(X[:, :1])
MODEL = theory.scaled_mlp(8, W_std=1.5, b_std=0.1)
PARAMS = MODEL.init_fn(KEY, X.shape)[1]


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(learning_rate="a"), TypeError, "`learning_rate` must be a number"),
        (dict(learning_rate=None), TypeError, "`learning_rate` must be a number"),
        (dict(learning_rate=-0.1), ValueError, "`learning_rate` must be a positive"),
        (dict(momentum="a"), TypeError, "`momentum` must be a number"),
        (dict(record_steps=[1.5]), ValueError, "`record_steps` must be integer steps"),
    ],
)
def test_train_arguments(kwargs, exc, match):
    args = {"learning_rate": 0.5, "steps": 3, **kwargs}
    with pytest.raises(exc, match=match):
        theory.train(MODEL.apply_fn, PARAMS, X, Y, **args)


def test_trajectory_gap_of_zero_targets_is_an_error_not_nan():
    h = theory.train(MODEL.apply_fn, PARAMS, X, 0 * Y, learning_rate=0.5, steps=2)
    with pytest.raises(ValueError, match="targets are all zero"):
        h.trajectory_gap()


def test_scaled_mlp_takes_numpy_integers():
    m = theory.scaled_mlp(np.int64(4), depth=np.int32(1), parameterization="mup")
    assert m.width == 4 and type(m.width) is int


def test_finite_width_corrections_of_a_zero_kernel_is_an_error_not_nan():
    def net_fn(n):
        return stax.serial(stax.Dense(n, W_std=0.0, b_std=None), stax.Relu(), stax.Dense(1))

    with pytest.raises(ValueError, match="analytic NTK on `x` has Frobenius norm 0"):
        theory.finite_width_corrections(net_fn, X, [4, 8], key=KEY, n_seeds=2)


def test_learning_rates_are_checked_before_training(monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("training started before the arguments were checked")

    monkeypatch.setattr(theory._regimes, "train", no_training)
    monkeypatch.setattr(theory._dynamics, "train", no_training)
    with pytest.raises(TypeError, match="`learning_rate`"):
        theory.kernel_evolution(X, Y, [4, 8], key=KEY, learning_rate="fast", steps=2)
    net_fn = lambda n: theory.scaled_mlp(n).lazy_net  # noqa: E731
    with pytest.raises(ValueError, match="`learning_rate`"):
        theory.dynamics_comparison(
            net_fn, X, Y, X[:2], [4, 8], steps=[0, 2], key=KEY, learning_rate=-1.0
        )
    with pytest.raises(ValueError, match="`y_train` is all zeros"):
        theory.dynamics_comparison(net_fn, X, 0 * Y, X[:2], [4, 8], steps=[0, 2], key=KEY)


@pytest.mark.parametrize("phi", [stax.Relu(), stax.Erf()])
def test_signal_propagation_at_zero_weights_and_biases_is_an_error_not_nan(phi):
    # every pre-activation is 0: c* and chi_c are 0/0 (they were NaN)
    with pytest.raises(ValueError, match=r"`W_std` and `b_std` are both 0:"):
        theory.signal_propagation(phi, 0.0, 0.0)
    with pytest.raises(ValueError, match=r"both 0 at index \(1, 0\)"):
        theory.signal_propagation(phi, [0.0, 1.0], [[0.1], [0.0]])
    # either one alone is fine, with its limits: chi_c = 0 (constant outputs), 1 (tiny W)
    assert float(theory.signal_propagation(phi, 0.0, 0.1).chi_c) == 0.0
    sp = theory.signal_propagation(phi, 1e-3, 0.0)
    assert np.all(np.isfinite([sp.q_star, sp.chi_1, sp.chi_q, sp.c_star, sp.chi_c]))
