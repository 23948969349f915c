"""Signal propagation: fixed points, χ₁, depth scales, critical lines, NTK spectra."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntk_bayes import stax
from ntk_bayes._linalg import NumericalWarning
from ntk_bayes.theory import (
    chi_1,
    correlation_map,
    critical_line,
    ntk_spectrum,
    phase_diagram,
    plot_ntk_spectrum,
    plot_phase_diagram,
    q_star,
    signal_propagation,
)

TANH = stax.ElementwiseNumerical(jnp.tanh, deg=32)


def test_erf_critical_point_without_bias_is_closed_form():
    # erf'(0) = 2/sqrt(pi) and q* = 0 below criticality: chi_1 = W^2 4/pi, so W_c = sqrt(pi)/2.
    w_c = np.sqrt(np.pi) / 2
    np.testing.assert_allclose(critical_line(stax.Erf(), 0.0), w_c, rtol=1e-6)
    below, above = signal_propagation(stax.Erf(), [0.9 * w_c, 1.1 * w_c], 0.0).phase
    assert (below, above) == ("ordered", "chaotic")
    np.testing.assert_allclose(chi_1(stax.Erf(), 0.5, 0.0), 0.25 * 4 / np.pi, rtol=1e-9)


def test_tanh_critical_point_without_bias_is_one():
    np.testing.assert_allclose(critical_line(TANH, 0.0), 1.0, rtol=1e-5)


def test_relu_critical_line_is_he_initialisation():
    b = np.array([0.0, 0.05, 0.3, 1.0])
    np.testing.assert_allclose(critical_line(stax.Relu(), b), np.sqrt(2.0), rtol=1e-9)
    np.testing.assert_allclose(chi_1(stax.Relu(), [1.0, 1.2], 0.1), [0.5, 0.72], rtol=1e-9)


def test_relu_fixed_point_closed_form():
    # q* = σ_w² q*/2 + σ_b²  =>  q* = σ_b² / (1 - σ_w²/2) below σ_w² = 2.
    w, b = np.array([0.5, 1.0, 1.3]), 0.2
    np.testing.assert_allclose(q_star(stax.Relu(), w, b), b**2 / (1 - w**2 / 2), rtol=1e-9)
    assert np.isinf(q_star(stax.Relu(), 1.6, 0.2))  # variance explodes above He init
    sp = signal_propagation(stax.Relu(), 1.6, 0.2)
    assert np.isnan(sp.xi_q) and sp.chi_1 == pytest.approx(1.28)


def test_erf_fixed_point_and_correlation_map_identities():
    w, b = np.array([0.7, 1.6, 2.5]), 0.3
    sp = signal_propagation(stax.Erf(), w, b)
    q = sp.q_star
    rhs = w**2 * (2 / np.pi) * np.arcsin(2 * q / (1 + 2 * q)) + b**2
    np.testing.assert_allclose(q, rhs, rtol=1e-10)
    # c = 1 is always fixed; c* is a fixed point of the map.
    np.testing.assert_allclose(correlation_map(stax.Erf(), w, b, 1.0), 1.0, rtol=1e-10)
    np.testing.assert_allclose(correlation_map(stax.Erf(), w, b, sp.c_star), sp.c_star, atol=1e-8)
    # chi_1 is the slope of the correlation map at c = 1 (finite difference).
    h = 1e-6
    slope = (1 - correlation_map(stax.Erf(), w, b, 1 - h)) / h
    np.testing.assert_allclose(slope, sp.chi_1, rtol=1e-4)
    assert list(sp.phase) == ["ordered", "chaotic", "chaotic"]
    assert sp.c_star[0] == 1 and np.all(sp.c_star[1:] < 1)


def test_correlation_depth_scale_diverges_at_the_critical_line():
    b = 0.2
    w_c = critical_line(stax.Erf(), b)
    xi = signal_propagation(stax.Erf(), w_c * np.array([0.8, 0.95, 0.995, 1.005, 1.05, 1.2]), b)
    # xi_c grows towards w_c from both sides.
    assert xi.xi_c[0] < xi.xi_c[1] < xi.xi_c[2]
    assert xi.xi_c[3] > xi.xi_c[4] > xi.xi_c[5]
    assert xi.xi_c[2] > 50 and xi.xi_c[3] > 50
    assert np.all(np.isfinite(xi.xi_q))


def test_phase_diagram_agrees_with_its_critical_line():
    w = np.linspace(0.2, 3.0, 15)
    b = np.array([0.0, 0.5, 1.0])
    pd = phase_diagram(stax.Erf(), w, b)
    assert pd.chi_1.shape == (3, 15) and pd.critical_W.shape == (3,)
    for i in range(3):
        chaotic = pd.chi_1[i] > 1
        np.testing.assert_array_equal(chaotic, w > pd.critical_W[i])
    assert np.all(np.diff(pd.critical_W) > 0)  # bias pushes the line to larger σ_w
    assert plot_phase_diagram(pd).axes


def test_signal_functions_validate_arguments():
    with pytest.raises(TypeError, match="elementwise"):
        signal_propagation(stax.Dense(1), 1.0)
    with pytest.raises(TypeError, match="elementwise"):
        signal_propagation(jnp.tanh, 1.0)
    with pytest.raises(ValueError, match="W_std"):
        signal_propagation(stax.Erf(), -1.0)
    with pytest.raises(ValueError, match="c"):
        correlation_map(stax.Erf(), 1.0, 0.1, 1.5)
    with pytest.raises(ValueError, match="W_range"):
        critical_line(stax.Erf(), 0.1, W_range=(2.0, 1.0))
    with pytest.raises(ValueError, match="depths"):
        ntk_spectrum(stax.Erf(), 1.0, 0.1, np.ones((3, 2)), [-1])


def test_critical_line_is_nan_without_a_crossing():
    assert np.isnan(critical_line(stax.Erf(), 0.1, W_range=(0.05, 0.3)))


def test_ntk_spectrum_against_depth():
    x = jax.random.normal(jax.random.key(0), (8, 4))
    depths = [1, 2, 4, 8, 16]
    ordered = ntk_spectrum(stax.Erf(), 0.9, 0.3, x, depths)
    chaotic = ntk_spectrum(stax.Erf(), 2.5, 0.3, x, depths)
    he = ntk_spectrum(stax.Relu(), np.sqrt(2.0), 0.0, x, depths)
    for s in (ordered, chaotic, he):
        assert np.all(s.positive_definite("ntk"))
        assert np.all(s.min_eig["ntk"] > 0)
    # Ordered phase: correlations flow to 1, the NTK tends to a constant matrix and its
    # condition number blows up with depth; chaotic phase: it stays bounded.
    assert np.all(np.diff(ordered.condition["ntk"][1:]) > 0)
    assert ordered.condition["ntk"][-1] > 30 * ordered.condition["ntk"][0]
    assert chaotic.condition["ntk"][-1] < chaotic.condition["ntk"][0]
    assert plot_ntk_spectrum({"ordered": ordered, "chaotic": chaotic}).axes
    # The depth-1 NTK equals stax's.
    net = stax.serial(stax.Dense(4, W_std=0.9, b_std=0.3), stax.Erf(), stax.Dense(1, 0.9, 0.3))
    ev = np.linalg.eigvalsh(np.asarray(net.kernel_fn(x, None, "ntk"), np.float64))
    np.testing.assert_allclose(ordered.max_eig["ntk"][0], ev[-1], rtol=1e-5)


def test_ntk_spectrum_reports_overflow():
    x = jax.random.normal(jax.random.key(0), (6, 4))
    # The NTK grows like (σ_w²/2)^depth = 5e9^depth: finite at depth 1, inf by depth 40.
    with pytest.warns(NumericalWarning, match="non-finite"):
        s = ntk_spectrum(stax.Relu(), 1e5, 0.0, x, [1, 40])
    assert np.isfinite(s.condition["ntk"][0]) and np.isnan(s.condition["ntk"][1])
