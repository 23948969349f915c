"""``check_int``: the one integer-argument check, and public entry points that now take
NumPy integers (as they arrive from arrays, ``np.arange`` or argument grids) as ints."""

import numpy as np
import pytest

from ntk_bayes import diagnostics, stax, theory
from ntk_bayes._numerics import check_int


@pytest.mark.parametrize(
    "value", [3, np.int8(3), np.int32(3), np.int64(3), np.uint16(3), np.array(3, np.int64)]
)
def test_accepts_ints_and_numpy_integers_and_returns_a_python_int(value):
    out = check_int(value, "n", low=1)
    assert out == 3 and type(out) is int


@pytest.mark.parametrize(
    "value",
    [True, False, np.bool_(True), 3.0, np.float64(3.0), "3", None, [3], np.array([3]), 3 + 0j],
)
def test_refuses_non_integers(value):
    with pytest.raises(ValueError, match="`n` must be an integer, got"):
        check_int(value, "n")


@pytest.mark.parametrize(
    "value, low, high, match",
    [
        (0, 1, None, r"`n` must be an integer >= 1, got 0"),
        (np.int64(-2), 0, None, r"`n` must be an integer >= 0, got np.int64\(-2\)"),
        (11, 2, 10, r"`n` must be an integer in \[2, 10\], got 11"),
        (1, 2, 10, r"`n` must be an integer in \[2, 10\], got 1"),
        (6, None, 5, r"`n` must be an integer <= 5, got 6"),
    ],
)
def test_refuses_values_out_of_range(value, low, high, match):
    with pytest.raises(ValueError, match=match):
        check_int(value, "n", low=low, high=high)


def test_bounds_are_inclusive():
    assert check_int(2, "n", low=2, high=2) == 2
    assert check_int(-1, "n", low=-1) == -1


def test_message_template_and_exception_type():
    msg = "Layer: `{name}` must be in {low}..{high}, got {value!r}"
    with pytest.raises(TypeError, match=r"^Layer: `k` must be in 2\.\.4, got 'a'$"):
        check_int("a", "k", low=2, high=4, message=msg, exc=TypeError)
    # braces in the refused value's repr are not format fields
    with pytest.raises(ValueError, match=r"got \{1: 2\}"):
        check_int({1: 2}, "k")


# ---- converted entry points: NumPy integers accepted, flow on as Python ints -----------


def test_signal_propagation_takes_numpy_n_iter():
    # n_iter is a static argument of a filter_jit'ed solver: a NumPy integer would be
    # traced (and break `min(n_iter, 100)`) if it were not turned into an int
    got = theory.signal_propagation(stax.Relu(), 1.0, 0.1, n_iter=np.int64(10))
    want = theory.signal_propagation(stax.Relu(), 1.0, 0.1, n_iter=10)
    np.testing.assert_array_equal(got.q_star, want.q_star)
    np.testing.assert_array_equal(got.chi_1, want.chi_1)
    with pytest.raises(ValueError, match="`n_iter` must be a positive integer"):
        theory.signal_propagation(stax.Relu(), 1.0, 0.1, n_iter=10.0)


def test_stax_layers_take_numpy_integers():
    d = stax.Dense(np.int64(4))
    assert d.out_dim == 4 and type(d.out_dim) is int
    c = stax.Conv(np.int32(2), (3, 3))
    assert type(c.out_chan) is int
    r = stax.repeat(stax.Dense(3), np.int64(2))
    assert r.n == 2 and type(r.n) is int
    f = stax.FanOut(np.int64(2))
    assert f.num == 2 and type(f.num) is int
    x = np.random.default_rng(0).normal(size=(3, 2))
    k1 = stax.serial(stax.Dense(np.int64(4)), stax.Relu(), stax.repeat(stax.Dense(4), np.int64(2)))
    k2 = stax.serial(stax.Dense(4), stax.Relu(), stax.repeat(stax.Dense(4), 2))
    np.testing.assert_array_equal(k1.kernel_fn(x, None, "nngp"), k2.kernel_fn(x, None, "nngp"))


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: stax.Dense(True), "Dense: `out_dim` must be a positive integer"),
        (lambda: stax.Dense(4.0), "Dense: `out_dim` must be a positive integer"),
        (lambda: stax.FanOut(0), "FanOut: `num` must be a positive integer"),
        (lambda: stax.FanOut(np.bool_(True)), "FanOut: `num` must be a positive integer"),
        (lambda: stax.repeat(stax.Dense(3), 0), "repeat: `n` must be a positive integer"),
    ],
)
def test_stax_layers_still_refuse_non_integers(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_reliability_takes_numpy_n_bins():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 40)
    p = rng.uniform(size=40)
    got = diagnostics.reliability(y, p, n_bins=np.int64(5))
    want = diagnostics.reliability(y, p, n_bins=5)
    np.testing.assert_array_equal(got.counts, want.counts)
    assert len(got.counts) == 5
    with pytest.raises(ValueError, match="`n_bins` must be a positive integer"):
        diagnostics.reliability(y, p, n_bins=5.0)
