"""Monomial, RectifiedMonomial, Hermite, Polynomial, ExpNormalized, Gabor: closed forms
against neural-tangents 0.6.5 (``tools/make_nt_reference_poly.py``, stored in
``tests/data/nt_poly.{json,npz}``), exact self-pairs against one-point quadrature,
jit/grad through the hyperparameters, and the errors for bad arguments."""

import math

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest
from _nt_poly import RTOL, case_names, errors, reference, rel_err
from conftest import enable_x64
from scipy import integrate

from ntk_bayes import stax


@pytest.mark.parametrize("name", case_names(networks=("ln",)))
def test_matches_neural_tangents(name):
    """Dense → LayerNorm → layer → Dense per layer, float64 (every other network of the
    reference, fully connected, deep, convolutional, is in the slow tier)."""
    err = errors(name)
    assert max(err.values()) <= RTOL, err


@pytest.mark.parametrize(
    "name",
    ["monomial3/fc", "rectified2/fc", "hermite3/ln", "poly_cubic/fc", "expnorm/fc", "gabor/fc"],
)
def test_matches_neural_tangents_float32(name):
    """float32 inputs give float32 kernels within float32 round-off of the reference."""
    err = errors(name, np.float32)
    assert max(err.values()) <= 2e-6, err


# Numpy twins of each layer's function and derivative, written independently of the
# library, for one-point quadrature: E[φ(u)²] and E[φ'(u)²], u ~ N(0, q).
def _he(d, x):
    return np.polynomial.hermite_e.hermeval(x, [0] * d + [1]) / math.sqrt(math.factorial(d))


NUMPY_TWINS = {
    "monomial3": (stax.Monomial(3), lambda x: x**3, lambda x: 3 * x**2, False),
    "rectified2": (
        stax.RectifiedMonomial(2),
        lambda x: np.where(x >= 0, x * x, 0.0),
        lambda x: np.where(x >= 0, 2 * x, 0.0),
        False,
    ),
    "rectified0": (
        stax.RectifiedMonomial(0),
        lambda x: np.where(x >= 0, 1.0, 0.0),
        lambda x: 0 * x,
        False,
    ),
    "hermite3": (stax.Hermite(3), lambda x: _he(3, x), lambda x: math.sqrt(3) * _he(2, x), True),
    "poly_cubic": (
        stax.Polynomial([0.3, -1.0, 0.5, 0.2]),
        lambda x: 0.3 - x + 0.5 * x**2 + 0.2 * x**3,
        lambda x: -1 + x + 0.6 * x**2,
        False,
    ),
    "gabor": (
        stax.Gabor(),
        lambda x: np.exp(-x * x) * np.sin(x),
        lambda x: np.exp(-x * x) * (np.cos(x) - 2 * x * np.sin(x)),
        False,
    ),
}


def _gauss_mean(f, q):
    """E[f(u)], u ~ N(0, q), to ~1e-14 (split at 0, where rectified functions kink)."""
    pdf = lambda x: f(x) * math.exp(-x * x / (2 * q)) / math.sqrt(2 * math.pi * q)  # noqa: E731
    lim = 40 * math.sqrt(q)
    return sum(
        integrate.quad(pdf, a, b, epsabs=0, epsrel=1e-13, limit=200)[0]
        for a, b in ((-lim, 0), (0, lim))
    )


def _one_point(x, phi2, dphi2, norm):
    """Dense(16, 1.3, 0.2) [→ LayerNorm] → φ → Dense(4, 1.1, 0.1) for one point, given
    q ↦ E[φ²], q ↦ E[φ'²]: the recursion written out in float64 numpy."""
    q = 1.3**2 * float(np.dot(x, x)) / len(x) + 0.2**2
    ntk = q
    if norm:
        q, ntk = q / (1e-12 + q), ntk / (1e-12 + q)
    nngp = 1.1**2 * phi2(q) + 0.1**2
    return nngp, nngp + 1.1**2 * dphi2(q) * ntk


def _network(layer, norm):
    ln = [stax.LayerNorm()] if norm else []
    return stax.serial(
        stax.Dense(16, W_std=1.3, b_std=0.2), *ln, layer, stax.Dense(4, W_std=1.1, b_std=0.1)
    )


@pytest.mark.parametrize("name", sorted(NUMPY_TWINS) + ["expnorm"])
def test_self_pairs_exact(name, dtype, tol):
    """The diagonal of K(x1, x1) is the one-point value, not a round-off recovery."""
    x1 = np.asarray(reference()[1]["gabor/fc/x1"], dtype)
    if name == "expnorm":
        layer, norm = stax.ExpNormalized(gamma=0.5, shift=0.3), False
        e = math.exp(0.5 * 1.3)  # Σ' = q e^{γ(1 + s)}, Σ̇ = γ e^{γ(1 + s)}

        def phi2(q):
            return q * e

        def dphi2(q):
            return 0.5 * e
    else:
        layer, f, df, norm = NUMPY_TWINS[name]

        def phi2(q):
            return _gauss_mean(lambda x: f(x) ** 2, q)

        def dphi2(q):
            return _gauss_mean(lambda x: df(x) ** 2, q)

    k = _network(layer, norm).kernel_fn(x1, None, ("nngp", "ntk"))
    want = np.array([_one_point(x.astype(np.float64), phi2, dphi2, norm) for x in x1])
    rtol = 1e-13 if dtype == np.float64 else tol["rtol"]
    np.testing.assert_allclose(np.diag(k.nngp), want[:, 0], rtol=rtol, atol=0)
    np.testing.assert_allclose(np.diag(k.ntk), want[:, 1], rtol=rtol, atol=0)


@pytest.mark.parametrize("name", sorted(NUMPY_TWINS))
def test_finite_twin(name, dtype):
    """``apply_fn`` is the function whose kernel the layer computes."""
    layer, f, _, _ = NUMPY_TWINS[name]
    x = np.linspace(-2.5, 2.5, 11).astype(dtype)
    out = layer.apply_fn((), x)
    assert out.dtype == dtype
    np.testing.assert_allclose(out, f(x.astype(np.float64)), rtol=1e-5, atol=1e-6)


def test_exp_normalized_finite_twin():
    """r e^{γ(s-1)/2} exp(√γ x / r), r the root mean square over channels; 0 at x = 0."""
    x = jnp.array([[0.5, -1.0, 2.0], [0.0, 0.0, 0.0]])
    out = stax.ExpNormalized(gamma=0.5, shift=0.3).apply_fn((), x)
    r = np.sqrt(np.mean(np.asarray(x[0]) ** 2))
    want = r * np.exp(0.5 * (0.3 - 1) / 2) * np.exp(np.sqrt(0.5) * np.asarray(x[0]) / r)
    np.testing.assert_allclose(out[0], want, rtol=1e-6)
    np.testing.assert_array_equal(out[1], 0.0)


@pytest.mark.parametrize(
    "layer",
    [stax.Hermite(4), stax.Polynomial([0.2, 0.0, -1.0, 0.3])],
    ids=["hermite4", "poly"],
)
def test_polynomials_any_variance(layer):
    """Without LayerNorm (variances far from 1): the closed forms against Gauss–Hermite
    quadrature, which is exact for polynomials of degree < 2·deg."""
    x1, x2 = (reference()[1]["poly_cubic/fc/" + k] for k in ("x1", "x2"))
    with enable_x64(True):
        num = stax.ElementwiseNumerical(layer.fn, deg=8)
        for b in (x2, None):
            a, n = (_network(p, False).kernel_fn(x1, b, ("nngp", "ntk")) for p in (layer, num))
            for g in ("nngp", "ntk"):
                assert rel_err(getattr(a, g), getattr(n, g)) < 1e-13, g


def test_rectified_monomial_one_is_relu():
    x1 = reference()[1]["gabor/fc/x1"]
    with enable_x64(True):
        a = _network(stax.RectifiedMonomial(1), False).kernel_fn(x1, None, ("nngp", "ntk"))
        b = _network(stax.Relu(), False).kernel_fn(x1, None, ("nngp", "ntk"))
        for g in ("nngp", "ntk"):
            assert rel_err(getattr(a, g), getattr(b, g)) < 1e-14


def test_grad_and_jit_through_hyperparameters():
    """Gradients w.r.t. ExpNormalized's gamma/shift and Polynomial's coefficients match
    central differences, are finite at coincident inputs, and jit changes nothing."""
    x1 = reference()[1]["gabor/fc/x1"]
    with enable_x64(True):

        def loss(theta):
            g, s, c = theta
            net = stax.serial(
                stax.Dense(8, W_std=1.2, b_std=0.1),
                stax.ExpNormalized(gamma=g, shift=s),
                stax.Dense(8, W_std=1.1, b_std=0.1),
                stax.Polynomial(c),
                stax.Dense(1),
            )
            k = net.kernel_fn(x1, None, ("nngp", "ntk"))
            return jnp.sum(k.nngp) + jnp.sum(k.ntk)

        theta = (0.7, -0.4, jnp.array([0.1, -0.5, 0.3]))
        grad = jax.grad(loss)(theta)
        jgrad = jax.jit(jax.grad(loss))(theta)
        flat, _ = jax.flatten_util.ravel_pytree(grad)
        jflat, unravel = jax.flatten_util.ravel_pytree(jgrad)
        assert np.all(np.isfinite(flat))
        np.testing.assert_allclose(jflat, flat, rtol=1e-12)
        x0, _ = jax.flatten_util.ravel_pytree(theta)
        h = 1e-6
        jloss = jax.jit(lambda x: loss(unravel(x)))  # one compiled program for every step
        for i in range(len(x0)):
            e = jnp.zeros_like(x0).at[i].set(h)
            fd = (jloss(x0 + e) - jloss(x0 - e)) / (2 * h)
            assert abs(fd - flat[i]) < 1e-6 * max(1.0, abs(fd)), (i, fd, flat[i])


def test_pytree_roundtrip():
    net = stax.serial(stax.Dense(4), stax.Polynomial([1.0, 2.0]), stax.ExpNormalized(0.5))
    leaves, tree = jax.tree_util.tree_flatten(net)
    assert jax.tree_util.tree_unflatten(tree, leaves) == net
    assert 1.0 in leaves and 2.0 in leaves and 0.5 in leaves


@pytest.mark.parametrize(
    "make, error, words",
    [
        (lambda: stax.Monomial(-1), ValueError, "`degree` must be >= 0"),
        (lambda: stax.Monomial(2.5), TypeError, "`degree` must be a non-negative int"),
        (lambda: stax.Hermite(True), TypeError, "`degree`"),
        (lambda: stax.RectifiedMonomial("2"), TypeError, "`degree`"),
        (lambda: stax.Polynomial("1, 2"), TypeError, "`coef` must be a sequence"),
        (lambda: stax.Polynomial(3.0), TypeError, "`coef` must be a sequence"),
        (lambda: stax.Polynomial(np.ones((1, 2))), ValueError, "one-dimensional"),
        (lambda: stax.Polynomial([1.0, [2.0, 3.0]]), TypeError, "`coef[1]` must be a real scalar"),
        (lambda: stax.Polynomial([1.0, float("nan")]), ValueError, "`coef[1]` must be finite"),
        (lambda: stax.Polynomial([1.0, "x"]), TypeError, "`coef[1]`"),
        (lambda: stax.ExpNormalized(gamma=-0.5), ValueError, "not a covariance for gamma < 0"),
        (lambda: stax.ExpNormalized(shift=float("inf")), ValueError, "`shift` must be finite"),
        (lambda: stax.ExpNormalized(do_clip="yes"), TypeError, "`do_clip` must be a bool"),
    ],
)
def test_bad_arguments(make, error, words):
    with pytest.raises(error, match=words.replace("[", r"\[").replace("(", r"\(")):
        make()


def test_needs_gaussian_input():
    net = stax.serial(stax.Dense(4), stax.Relu(), stax.Hermite(2))
    with pytest.raises(ValueError, match="Gaussian pre-activations"):
        net.kernel_fn(np.ones((2, 3)), None, "nngp")
