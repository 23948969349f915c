"""After a constant layer (``Monomial(degree=0)``) every point has the same features, so
every pair is evaluated as a self-pair, from the structure and not from round-off
(issue 15; random-architecture case 170, minimised here)."""

import math

import numpy as np
import pytest
from _nets import fc_inputs, images

from ntk_bayes import stax

A, B = 1.874, 0.349  # the Conv after the constant layer (case 170's)
ALPHA = 0.454  # LeakyRelu's slope (case 170's)
W, C = 1.517, 0.377  # the readout (case 170's)


def _case_170_minimised():
    """Case 170 cut down to the layers that lost exactness: after Monomial(0), a Conv
    whose window sums three entries made Σ12 and q differ by one ulp (ρ = 1 ± 1 ulp),
    and LeakyRelu's arc-cosine turned that into a 6e-10 spread of the NTK."""
    return stax.serial(
        stax.Conv(4, (1, 1)),
        stax.Monomial(degree=0),
        stax.Conv(4, (1, 3), padding="VALID", W_std=A, b_std=B),
        stax.LeakyRelu(ALPHA),
        stax.Flatten(),
        stax.Dense(1, W_std=W, b_std=C),
    )


def _closed_form():
    """Σ and Θ of the minimised case, the same for every pair: after Monomial(0) Σ = 1,
    Θ = 0; the Conv gives q = A² + B² (Θ = q, NTK parameterisation); LeakyRelu at ρ = 1
    multiplies both by (1 + α²)/2; Flatten averages equal positions; the readout."""
    q = A * A + B * B
    s = (1 + ALPHA**2) / 2 * q
    nngp = W * W * s + C * C
    return nngp, nngp + W * W * s


def test_case_170_minimised_is_one_constant(dtype):
    # Two 1x3 images suffice (before the fix: a 6.2e-10 spread in float64).
    x = np.asarray(images(2, (1, 3, 1), seed=3), dtype)
    x2 = np.asarray(images(3, (1, 3, 1), seed=4), dtype)
    net = _case_170_minimised()
    nngp, ntk = _closed_form()
    rtol = 1e-14 if dtype == np.float64 else 1e-6
    for k in (net.kernel_fn(x, None, ("nngp", "ntk")), net.kernel_fn(x, x2, ("nngp", "ntk"))):
        assert k.nngp.dtype == dtype
        np.testing.assert_allclose(k.nngp, nngp, rtol=rtol)
        np.testing.assert_allclose(k.ntk, ntk, rtol=rtol)
        if dtype == np.float64:  # one value everywhere, not a spread of round-offs
            assert np.ptp(np.asarray(k.ntk)) <= 2 * np.finfo(dtype).eps * ntk


@pytest.mark.parametrize(
    "constant", [stax.Monomial(degree=0), stax.Hermite(degree=0), stax.Polynomial([0.7])]
)
def test_constant_layers_make_points_alike(constant):
    net = stax.serial(stax.Dense(3), constant, stax.Dense(3, W_std=A, b_std=B), stax.Sign())
    k = net.kernel_fn(fc_inputs(4, d=3), None)
    assert k.points_alike
    # Sign of one shared Gaussian: every pair has E[sign(u)²] = 1 exactly.
    np.testing.assert_array_equal(k.nngp, 1.0)


def _leaky_dual(rho):
    """E[φ(u)φ(v)] / sqrt(q1 q2) of LeakyRelu(α) at correlation ρ (Cho & Saul 2009)."""
    theta = math.acos(rho)
    c = (ALPHA - 1) ** 2 / (2 * math.pi)
    return c * math.sin(theta) + ((1 + ALPHA**2) / 2 - c * theta) * rho


def test_train_dropout_tells_alike_points_apart(x64):
    """Dropout's masks are drawn per point: after it, distinct points correlate by the
    keep rate, and the next nonlinearity must use the general form for them."""
    rate = 0.6
    net = stax.serial(
        stax.Dense(3),
        stax.Monomial(degree=0),
        stax.Dense(3, W_std=A, b_std=B),
        stax.Dropout(rate),
        stax.Dense(3, W_std=1.0, b_std=0.0),
        stax.LeakyRelu(ALPHA),
    )
    k = net.kernel_fn(fc_inputs(3), None, "nngp")
    q = A * A + B * B
    rtol = 1e-12 if x64 else 1e-5
    np.testing.assert_allclose(np.diag(k), (1 + ALPHA**2) / 2 * q / rate, rtol=rtol)
    off = k[~np.eye(3, dtype=bool)]
    np.testing.assert_allclose(off, q / rate * _leaky_dual(rate), rtol=rtol)


def test_fan_in_with_an_input_branch_is_not_alike(x64):
    x = fc_inputs(3, d=4, seed=1)
    net = stax.serial(
        stax.FanOut(2),
        stax.parallel(
            stax.serial(stax.Dense(3), stax.Monomial(degree=0), stax.Dense(3, W_std=A, b_std=B)),
            stax.Dense(3, W_std=1.0, b_std=0.0),
        ),
        stax.FanInSum(),
        stax.LeakyRelu(ALPHA),
    )
    k = np.asarray(net.kernel_fn(x, None, "nngp"), np.float64)
    x = np.asarray(x, np.float64)
    s = A * A + B * B + x @ x.T / x.shape[1]
    q = np.diag(s)
    want = np.sqrt(np.outer(q, q)) * np.vectorize(_leaky_dual)(
        np.clip(s / np.sqrt(np.outer(q, q)), -1, 1)
    )
    np.testing.assert_allclose(k, want, rtol=1e-12 if x64 else 1e-5)


def test_masks_stop_a_constant_layer_from_making_points_alike(dtype):
    """Masked positions are zero after a constant layer, so points with different masks
    differ there: the next Conv mixes that into unmasked positions and the pairs are no
    longer one point twice. Monomial(0) must equal the same constant written as a user
    dual (which carries no structural flag) and stay symmetric; with the flag kept, the
    kernel came out asymmetric and 7% off a Monte Carlo of 4,000 width-256 twins."""
    import jax.numpy as jnp

    x = np.full((3, 6, 1), 0.5, dtype)
    x[0, 4:], x[1, 5:] = -7.0, -7.0  # three masks: two positions, one, none

    def kernel(const):
        net = stax.serial(
            stax.Conv(2, (1,), W_std=1.1, b_std=0.3),
            const,
            stax.Conv(2, (3,), padding="SAME", W_std=1.2, b_std=0.4),
            stax.Relu(),
            stax.Flatten(),
            stax.Dense(1, W_std=1.3, b_std=0.2),
        )
        return net.kernel_fn(x, None, ("nngp", "ntk"), mask_constant=-7.0)

    one = stax.Elementwise(
        fn=jnp.ones_like,
        nngp_fn=lambda c, q1, q2: jnp.ones_like(c),
        d_nngp_fn=lambda c, q1, q2: jnp.zeros_like(c),
    )
    got, want = kernel(stax.Monomial(0)), kernel(one)
    for g in ("nngp", "ntk"):
        a, b = np.asarray(getattr(got, g)), np.asarray(getattr(want, g))
        rtol = 1e-12 if dtype == np.float64 else 1e-5
        np.testing.assert_allclose(a, a.T, rtol=rtol)
        np.testing.assert_allclose(a, b, rtol=rtol)
    assert abs(float(got.nngp[1, 0]) - float(got.nngp[0, 0])) > 1e-3  # the masks matter
