"""Helpers shared by test modules (moved out so both tiers can import them)."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from _mc import mc_z_scores

import ntk_bayes as nb
from ntk_bayes import stax

KEY = jax.random.PRNGKey(0)


def fc_inputs(n, d=3, seed=0):
    return jax.random.normal(jax.random.PRNGKey(seed), (n, d))


NONLINEARITIES = {
    "relu": stax.Relu(),
    "leaky": stax.LeakyRelu(0.2),
    "abrelu": stax.ABRelu(-0.5, 1.5),
    "abs": stax.Abs(),
    "erf": stax.Erf(a=1.3, b=0.7, c=0.2),
    "gelu": stax.Gelu(),
    "sin": stax.Sin(a=1.2, b=0.8, c=0.3),
    "cos": stax.Cos(),
    "rbf": stax.Rbf(gamma=0.6),
    "sign": stax.Sign(),
    "identity": stax.Identity(),
    # Saturating tanh with q ~ 3 needs many nodes: sech^2 is narrow against N(0, q).
    "numerical_tanh": stax.ElementwiseNumerical(jnp.tanh, deg=100),
}


# Relu then Erf: the fully connected network of the transform and tiling tests.
RELU_ERF_NET = stax.serial(
    stax.Dense(64, W_std=1.5, b_std=0.05),
    stax.Relu(),
    stax.Dense(64, W_std=1.5, b_std=0.05),
    stax.Erf(),
    stax.Dense(1, W_std=1.5, b_std=0.05),
)


def images(n, shape=(4, 4, 2), seed=0):
    return jax.random.normal(jax.random.PRNGKey(seed), (n,) + shape)


def conv_net(width=128, **kw):
    kw = {"padding": "SAME", "W_std": 1.3, "b_std": 0.2} | kw
    return stax.Conv(width, kw.pop("filter_shape", (3, 3)), **kw)


def tokens(n, t=4, c=3, seed=0):
    return jax.random.normal(jax.random.PRNGKey(seed), (n, t, c))


# GlobalSelfAttention with wide keys, values and heads, for Monte Carlo tests: at this
# width the logits of linear_scaling=True concentrate at their limit, a bias of
# O(1/(C_in n_chan_key)) far below the Monte Carlo error of 64 networks.
WIDE_ATTENTION = dict(
    n_chan_out=4,
    n_chan_key=128,
    n_chan_val=64,
    n_heads=8,
    W_key_std=0.9,
    W_query_std=1.1,
    W_value_std=1.2,
    W_out_std=0.8,
    b_std=0.2,
)


def wide_attention(dense=True, **overrides):
    """``[Dense(128)] → GlobalSelfAttention(WIDE_ATTENTION | overrides) → GlobalAvgPool``;
    ``dense=False`` feeds the raw tokens to the attention."""
    head = [stax.Dense(128, W_std=1.2, b_std=0.1)] if dense else []
    attention = stax.GlobalSelfAttention(**(WIDE_ATTENTION | overrides))
    return stax.serial(*head, attention, stax.GlobalAvgPool())


def dropout_inputs(n, shape=(3,), seed=0):
    return jax.random.normal(jax.random.PRNGKey(seed), (n, *shape))


def dropout_fc(rate, mode="train", width=256):
    return stax.serial(
        stax.Dense(width, W_std=1.3, b_std=0.3),
        stax.Relu(),
        stax.Dropout(rate, mode),
        stax.Dense(8, W_std=1.1, b_std=0.2),
    )


def bnn_mlp(width=512, depth=1, out=1, act=stax.Relu, W_std=1.5, b_std=0.1):
    layers = []
    for _ in range(depth):
        layers += [stax.Dense(width, W_std=W_std, b_std=b_std), act()]
    return stax.serial(*layers, stax.Dense(out, W_std=W_std, b_std=b_std))


def relu_net(w=1.5, b=0.1, depth=2):
    layers = []
    for _ in range(depth):
        layers += [stax.Dense(512, W_std=w, b_std=b), stax.Relu()]
    return stax.serial(*layers, stax.Dense(1, W_std=w, b_std=b))


def priors_data(n=12, d=2, seed=0):
    X = jax.random.normal(jax.random.PRNGKey(seed), (n, d))
    y = jnp.sin(X[:, 0]) + 0.3 * X[:, 1]
    return X, y


def hyper_model(X, y=None, num_outputs=None):
    w = numpyro.sample("W_std", dist.LogNormal(0.3, 0.4))
    b = numpyro.sample("b_std", dist.HalfNormal(0.5))
    noise = numpyro.sample("noise", dist.HalfNormal(0.5))
    net = relu_net(w=w, b=b)
    numpyro.sample("y", nb.GaussianProcess(net, X, noise=noise, num_outputs=num_outputs), obs=y)


def erf_mlp(width, act=stax.Erf, b_std=0.5):
    return stax.serial(
        stax.Dense(width, W_std=1.5, b_std=b_std), act(), stax.Dense(1, W_std=1.5, b_std=b_std)
    )


def toy_data(n=8, seed=0):
    rng = np.random.default_rng(seed)
    X = np.linspace(-1.5, 1.5, n)[:, None]
    y = np.sin(2 * X[:, 0]) + 0.3 * rng.normal(size=n)
    Xt = np.linspace(-2, 2, 5)[:, None]
    return X, y, Xt, np.sin(2 * Xt[:, 0])


def conv_mc_z(net, x1, x2, n_samples=64):
    """Largest |analytic - MC| / (MC standard error) over the entries of each kernel.

    Every network below has one nonlinearity after its first affine layer, so its
    pre-activations are exactly Gaussian and the Monte Carlo mean is unbiased at any
    width: the tolerance is purely statistical and two-sided.
    """
    z, k, mean, se = mc_z_scores(net, x1, x2, n_samples, key=KEY)
    return {name: float(v.max()) for name, v in z.items()}, k, mean, se
