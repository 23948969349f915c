"""``stax.Elementwise(fn, nngp_fn, d_nngp_fn)``: neural-tangents' layer from a user's dual."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.special import erf

from ntk_bayes import stax


def erf_nngp(cov12, var1, var2):  # Williams (1997), as in neural-tangents' docstring
    prod = (1 + 2 * var1) * (1 + 2 * var2)
    return jnp.arcsin(2 * cov12 / jnp.sqrt(prod)) * 2 / jnp.pi


def erf_d_nngp(cov12, var1, var2):
    prod = (1 + 2 * var1) * (1 + 2 * var2)
    return 4 / (jnp.pi * jnp.sqrt(prod - 4 * cov12**2))


def _net(act):
    return stax.serial(stax.Dense(8, W_std=1.3, b_std=0.2), act, stax.Dense(1, W_std=0.9))


@pytest.mark.parametrize("derivative", ["given", "autodiff"])
def test_user_dual_equals_the_built_in_layer(dtype, derivative):
    x1 = jax.random.normal(jax.random.PRNGKey(0), (5, 3), dtype)
    x2 = jax.random.normal(jax.random.PRNGKey(1), (4, 3), dtype)
    d = erf_d_nngp if derivative == "given" else None
    custom = _net(stax.Elementwise(erf, erf_nngp, d))
    builtin = _net(stax.Erf())
    rtol = 1e-12 if dtype == jnp.float64 else 2e-5
    for args in ((x1, None), (x1, x2)):
        got = custom.kernel_fn(*args, ("nngp", "ntk"))
        want = builtin.kernel_fn(*args, ("nngp", "ntk"))
        for name in ("nngp", "ntk"):
            np.testing.assert_allclose(getattr(got, name), getattr(want, name), rtol=rtol)
    params = custom.init_fn(jax.random.PRNGKey(2), x1.shape)[1]
    np.testing.assert_allclose(custom.apply_fn(params, x1), builtin.apply_fn(params, x1), rtol=rtol)


def test_is_an_elementwise_layer_and_subclasses_construct_as_before():
    layer = stax.Elementwise(fn=erf, nngp_fn=erf_nngp)
    assert isinstance(layer, stax.Elementwise) and isinstance(layer, stax.CustomElementwise)
    assert stax.Erf(2.0).a == 2.0  # subclasses keep their own positional fields
    k = jax.jit(lambda x: _net(layer).kernel_fn(x, None, "ntk"))(jnp.ones((2, 3)))
    assert bool(jnp.all(jnp.isfinite(k)))


def test_missing_functions_are_named():
    with pytest.raises(ValueError, match="give `fn`"):
        stax.Elementwise()
    with pytest.raises(TypeError, match="`nngp_fn` must be callable"):
        stax.Elementwise(erf, 3.0)
    x = jnp.ones((2, 3))
    with pytest.raises(NotImplementedError, match="without `nngp_fn`"):
        _net(stax.Elementwise(fn=erf)).kernel_fn(x, None, "nngp")
    net = _net(stax.Elementwise(nngp_fn=erf_nngp))
    params = net.init_fn(jax.random.PRNGKey(0), x.shape)[1]
    with pytest.raises(NotImplementedError, match="without `fn`"):
        net.apply_fn(params, x)
