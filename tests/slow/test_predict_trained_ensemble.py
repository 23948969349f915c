"""Trained wide networks against the analytic GD ensemble's moments."""

import jax
import jax.numpy as jnp
import numpy as np

from ntk_bayes import predict, stax


def test_trained_wide_ensemble_matches_analytic_moments():
    """Ensemble of width-2048 ReLU nets trained by full-batch GD on MSE vs the closed form.

    Gradient descent with a step 200x below the stability edge tracks gradient flow;
    the ensemble mean and variance at test points must agree with the analytic NTK
    ensemble within Monte Carlo error (plus an O(1/width) allowance).
    """
    import optax

    r = np.random.default_rng(0)
    x = r.normal(size=(8, 3))
    y = np.sin(x[:, :1]) + 0.1 * r.normal(size=(8, 1))
    xs = r.normal(size=(4, 3))
    net = stax.serial(
        stax.Dense(2048, W_std=1.5, b_std=0.1), stax.Relu(), stax.Dense(1, W_std=1.5, b_std=0.1)
    )
    init_fn, apply_fn, kernel_fn = net
    theta = np.asarray(kernel_fn(x, None, "ntk"))
    lr = 0.005 * predict.max_learning_rate(theta, y_train_size=y.size)
    steps = 400
    n_nets = 512
    keys = jax.random.split(jax.random.PRNGKey(1), n_nets)
    params = jax.vmap(lambda k: init_fn(k, x.shape)[1])(keys)
    opt = optax.sgd(lr)

    def loss(p):
        return 0.5 * jnp.mean((apply_fn(p, x) - y) ** 2)

    @jax.jit
    def train(p):
        def step(carry, _):
            p, s = carry
            g = jax.grad(loss)(p)
            u, s = opt.update(g, s, p)
            return (optax.apply_updates(p, u), s), None

        (p, _), _ = jax.lax.scan(step, (p, opt.init(p)), None, length=steps)
        return apply_fn(p, xs)[:, 0]

    outs = np.asarray(jax.vmap(train)(params), np.float64)  # (n_nets, 4)
    fn = predict.gradient_descent_mse_ensemble(kernel_fn, x, y, learning_rate=lr)
    ana = fn(t=float(steps), x_test=xs, get="ntk", compute_cov=True)
    mu, var = np.asarray(ana.mean)[:, 0], np.diag(np.asarray(ana.covariance))
    emp_mu, emp_var = outs.mean(0), outs.var(0, ddof=1)
    se_mu = np.sqrt(emp_var / n_nets)
    assert np.all(np.abs(emp_mu - mu) <= 4 * se_mu + 0.02 * np.sqrt(var)), (emp_mu, mu, se_mu)
    se_var = var * np.sqrt(2.0 / (n_nets - 1))
    assert np.all(np.abs(emp_var - var) <= 4 * se_var + 0.02 * var), (emp_var, var)
