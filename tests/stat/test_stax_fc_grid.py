"""Fully connected engine, the heavier checks: gradients at coincident inputs for every
nonlinearity (a parity grid), tiles against one block, empirical kernels of an Equinox
model, a deep chaotic network in float32, packed segments against unpacked layers for
each nonlinearity (a parity grid; the unit tier checks the packed programs' structure).
Moved from tests/unit to keep the edit-test loop under two minutes (each of these takes
seconds, not milliseconds)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _nets import KEY, NONLINEARITIES, RELU_ERF_NET, fc_inputs

import ntk_bayes as nb
from ntk_bayes import stax


@pytest.mark.parametrize("name", sorted(NONLINEARITIES))
def test_gradients_finite_at_coincident_inputs(name, dtype):
    """x1 == x2 puts every angle at 0: arccos/sqrt derivatives must not blow up."""
    x = jnp.concatenate([fc_inputs(2), fc_inputs(2)]).astype(dtype)  # duplicate rows too

    def loss(w, b):
        net = stax.serial(
            stax.Dense(8, W_std=w, b_std=b),
            NONLINEARITIES[name],
            stax.Dense(8, W_std=w, b_std=b),
            NONLINEARITIES[name],
            stax.Dense(1, W_std=w, b_std=b),
        )
        k = net.kernel_fn(x, None, ("nngp", "ntk"))
        return jnp.sum(k.nngp) + jnp.sum(k.ntk)

    g = jax.grad(loss, argnums=(0, 1))(jnp.asarray(1.4, dtype), jnp.asarray(0.1, dtype))
    assert all(bool(jnp.isfinite(v)) for v in g), g
    gx = jax.grad(lambda x: jnp.sum(RELU_ERF_NET.kernel_fn(x, None, "ntk")))(x)
    assert bool(jnp.all(jnp.isfinite(gx)))


def test_tiles_equal_single_block(tol):
    x1, x2 = fc_inputs(37, seed=7), fc_inputs(23, seed=8)
    full = RELU_ERF_NET.kernel_fn(x1, x2, ("nngp", "ntk"))
    rows = RELU_ERF_NET.kernel_fn(x1, x2, ("nngp", "ntk"), block_size=8)
    tiny = RELU_ERF_NET.kernel_fn(x1, x2, ("nngp", "ntk", "cov1", "cov2"), memory_budget=4000)
    for a, b in ((full, rows), (full, tiny)):
        np.testing.assert_allclose(a.nngp, b.nngp, **tol)
        np.testing.assert_allclose(a.ntk, b.ntk, **tol)
    assert tiny.cov1.shape == (37,) and tiny.cov2.shape == (23,)
    np.testing.assert_allclose(tiny.cov1, np.diag(RELU_ERF_NET.kernel_fn(x1, None, "nngp")), **tol)


def test_empirical_kernels_of_an_equinox_model(tol):
    # The empirical kernels run the model at full matmul precision (TF32 on a GPU would
    # cost ~1e-3); the reference is computed likewise.
    with jax.default_matmul_precision("highest"):
        _check_empirical_kernels_of_an_equinox_model(tol)


def _check_empirical_kernels_of_an_equinox_model(tol):
    mlp = eqx.nn.MLP(3, 1, 16, 2, key=KEY)
    params, static = eqx.partition(mlp, eqx.is_array)
    f = lambda p, x: jax.vmap(eqx.combine(p, static))(x)
    x1, x2 = fc_inputs(4), fc_inputs(2, seed=2)
    ntk = nb.empirical_ntk_fn(f)(x1, x2, params)
    flat = lambda p, x: f(jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(params), p), x)
    J1 = jax.jacobian(lambda p: flat(p, x1))(jax.tree_util.tree_leaves(params))
    J2 = jax.jacobian(lambda p: flat(p, x2))(jax.tree_util.tree_leaves(params))
    want = sum(
        np.einsum("ikp,jkp->ij", a.reshape(4, 1, -1), b.reshape(2, 1, -1))
        for a, b in zip(J1, J2, strict=True)
    )
    np.testing.assert_allclose(ntk, want, **tol)
    nngp = nb.empirical_nngp_fn(f)(x1, x2, params)
    np.testing.assert_allclose(nngp, f(params, x1) @ f(params, x2).T, **tol)


def test_deep_chaotic_network_stays_finite_in_float32():
    """Round-off pushes |Σ12| past sqrt(q1 q2) by χ₁ per layer; the duals clip it."""
    layers = []
    # Without the clip, float32 gives an infinite NTK here (depth 16, W_std=4).
    for _ in range(16):
        layers += [stax.Dense(8, W_std=4.0, b_std=0.1), stax.Erf()]
    k = stax.serial(*layers, stax.Dense(1)).kernel_fn(fc_inputs(4), None, ("nngp", "ntk"))
    assert np.all(np.isfinite(k.nngp)) and np.all(np.isfinite(k.ntk))
    c = np.asarray(k.nngp) / np.sqrt(np.outer(np.diag(k.nngp), np.diag(k.nngp)))
    assert np.all(np.abs(c) <= 1 + 1e-6)


@pytest.mark.parametrize("name", ["relu", "abrelu", "erf", "gelu", "sin", "sign", "rbf"])
def test_segments_pack_nngp_and_ntk(name, dtype, monkeypatch):
    """On CPU, serial materialises the NNGP and the NTK after each nonlinearity as one
    complex array (one fusion per layer, see ``_core._segment``): the kernel, its
    derivatives in the hyperparameters and its vmap over them are those of the unpacked
    layers to round-off; the NNGP alone and spatial kernels are not packed."""
    from ntk_bayes.stax import _core

    phi = NONLINEARITIES[name]
    x = fc_inputs(80, seed=7).astype(dtype)  # 6400 pairs: above the packing threshold

    def net(w):
        return stax.serial(
            stax.Dense(64, W_std=w, b_std=0.05),
            phi,
            stax.Dense(64, W_std=1.3, b_std=0.1),
            phi,
            stax.Dense(1, W_std=w, b_std=0.05),
        )

    def ntk(w, a):
        return net(w).kernel_fn(a, None, "ntk")

    def results():
        # x is an argument: closed over, it would be a constant, and XLA would fold
        # the first segment's conditional away
        jax.clear_caches()
        f = jax.jit(ntk)
        k = f(1.4, x)
        hlo = f.lower(1.4, x).compile().as_text()
        grad = jax.jit(jax.grad(lambda w, a: ntk(w, a).sum()))(1.4, x)
        batch = jax.jit(jax.vmap(ntk, (0, None)))(jnp.asarray([0.9, 1.6], dtype), x)
        nngp_hlo = jax.jit(lambda a: net(1.4).kernel_fn(a, None, "nngp")).lower(x)
        return k, hlo, grad, batch, nngp_hlo.compile().as_text()

    k, hlo, grad, batch, nngp_hlo = results()
    monkeypatch.setattr(_core, "_packs", lambda k: False)
    k0, hlo0, grad0, batch0, _ = results()
    jax.clear_caches()

    complex_type = "c64[" if dtype == np.float32 else "c128["
    if jax.default_backend() == "cpu":
        # one conditional per nonlinearity, each ending in a packed array
        assert hlo.count("conditional(") == 2
        assert complex_type in hlo
        assert complex_type not in nngp_hlo
    assert complex_type not in hlo0  # the check above fails with the mechanism off
    eps = np.finfo(dtype).eps
    np.testing.assert_allclose(k, k0, rtol=64 * eps, atol=64 * eps * float(jnp.abs(k0).max()))
    np.testing.assert_allclose(grad, grad0, rtol=64 * eps * 100)
    np.testing.assert_allclose(
        batch, batch0, rtol=64 * eps, atol=64 * eps * float(jnp.abs(batch0).max())
    )
