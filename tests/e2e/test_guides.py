"""The prose claims of the guides that no code block runs.

``test_docs.py`` runs the ```python blocks of the guides; this file checks the statements
of their tables (``docs/guides/from-neural-tangents.md``, "Renamed, moved or missing", and
the Pareto k threshold of ``docs/guides/numpyro-priors.md``), so that a change of the code
that makes one false fails here rather than misleading a user porting neural-tangents code.
"""

import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import enable_x64

import ntk_bayes as nb
from ntk_bayes import diagnostics as dg
from ntk_bayes import predict, stax

DOCS = Path(__file__).resolve().parents[2] / "docs"
X = jax.random.normal(jax.random.PRNGKey(0), (5, 3))


def _net():
    return stax.serial(stax.Dense(8, W_std=1.3, b_std=0.1), stax.Relu(), stax.Dense(1))


def test_nt_batch_shim_only_sets_the_tiles():
    kernel_fn = _net().kernel_fn
    batched = stax.batch(kernel_fn, batch_size=2, device_count=0, store_on_device=False)
    np.testing.assert_array_equal(batched(X, None, "ntk"), kernel_fn(X, None, "ntk"))


def test_empirical_keywords_as_the_guide_lists_them():
    init_fn, apply_fn, _ = _net()
    _, params = init_fn(jax.random.PRNGKey(1), X.shape)
    plain = nb.empirical_ntk_fn(apply_fn)(X, None, params)
    for impl in (1, 2, 3):  # accepted and ignored: one Jacobian contraction
        ntk = nb.empirical_ntk_fn(apply_fn, vmap_axes=0, implementation=impl)(X, None, params)
        np.testing.assert_array_equal(ntk, plain)
    for kw in ({"vmap_axes": 0}, {"implementation": 2}):
        with pytest.raises(TypeError):
            nb.empirical_kernel_fn(apply_fn, **kw)


def test_monte_carlo_takes_neural_tangents_arguments():
    """batch_size cuts the inputs (as there), a list of sample counts gives a generator,
    samples_per_step counts networks evaluated together."""
    init_fn, apply_fn, _ = _net()
    key = jax.random.PRNGKey(2)
    mc = nb.monte_carlo_kernel_fn(init_fn, apply_fn, key, n_samples=4, samples_per_step=2)
    whole = mc(X, None, "nngp")
    assert whole.shape == (5, 5)
    blocked = nb.monte_carlo_kernel_fn(init_fn, apply_fn, key, 4, batch_size=2)(X, None, "nngp")
    np.testing.assert_allclose(blocked, whole, rtol=1e-5, atol=1e-6)
    gen = nb.monte_carlo_kernel_fn(init_fn, apply_fn, key, n_samples=[2, 4])(X, None, "nngp")
    assert [k.shape for k in gen] == [(5, 5), (5, 5)]
    with pytest.raises(ValueError, match="multiple of `samples_per_step`"):
        nb.monte_carlo_kernel_fn(init_fn, apply_fn, key, n_samples=5, samples_per_step=2)


def test_gradient_descent_takes_momentum():
    k = _net().kernel_fn(X, None, "ntk")
    loss = lambda fx, y: 0.5 * jnp.sum((fx - y) ** 2)  # noqa: E731
    y = jnp.ones((5, 1))
    flow = predict.gradient_descent(loss, k, y, learning_rate=1.0)(2.0, 0.0)
    heavy = predict.gradient_descent(loss, k, y, learning_rate=1.0, momentum=0.9)(2.0, 0.0)
    assert flow.shape == heavy.shape == (5, 1)
    assert not np.allclose(flow, heavy)  # a different ODE, not the flow under a new name


def test_kernel_fields_listed_in_the_guide():
    k = _net().kernel_fn(X, None)
    assert isinstance(k, stax.Kernel)
    has = "nngp ntk cov1 cov2 shape1 shape2 is_gaussian is_reversed is_input diagonal_spatial"
    lacks = "x1_is_x2 diagonal_batch batch_axis channel_axis mask1 mask2"
    assert all(hasattr(k, f) for f in has.split())
    assert not any(hasattr(k, f) for f in lacks.split())
    assert not any(hasattr(stax, f) for f in ("layer", "requires", "supports_masking"))


def test_layout_keywords_are_refused_by_name():
    with pytest.raises(ValueError, match="dimension_numbers"):
        stax.Conv(3, (2, 2), dimension_numbers=("NCHW", "OIHW", "NCHW"))
    stax.Conv(3, (2, 2), dimension_numbers=("NHWC", "HWIO", "NHWC"))
    with pytest.raises(ValueError, match="channel_axis"):
        stax.Dense(3, channel_axis=1)
    with pytest.raises(ValueError, match="s="):
        stax.Dense(3, s=(2, 1))


def test_fan_in_sum_refuses_correlated_branches():
    net = stax.serial(
        stax.Dense(8), stax.FanOut(2), stax.parallel(stax.Relu(), stax.Erf()), stax.FanInSum()
    )
    with pytest.raises(ValueError, match="own Dense or Conv"):
        net.kernel_fn(X, None, "nngp")


def test_hermite_is_exact_at_any_input_variance():
    """Var He₃(u)/√3! for u ~ N(0, q) is (15q³ − 18q² + 9q)/6, not neural-tangents' q³."""
    with enable_x64():
        x = np.random.default_rng(0).normal(size=(3, 4))
        x *= np.sqrt(4) / np.linalg.norm(x, axis=1, keepdims=True)  # ‖x‖² = d
        for w in (1.0, 1.3):
            net = stax.serial(stax.Dense(8, W_std=w), stax.Hermite(3), stax.Dense(1))
            q = w**2
            want = (15 * q**3 - 18 * q**2 + 9 * q) / 6
            np.testing.assert_allclose(np.diag(net.kernel_fn(x, None, "nngp")), want, rtol=1e-12)


def test_pareto_k_threshold_numbers_of_the_guide():
    assert dg.pareto_k_threshold(100) == pytest.approx(0.5)  # 2 chains of 50 draws
    assert dg.pareto_k_threshold(2200) == pytest.approx(0.7)
    assert dg.pareto_k_threshold(2000) < 0.7
    assert dg.pareto_k_threshold(10_000) == 0.7


def test_architectures_first_example_runs():
    page = (DOCS / "architectures.md").read_text()
    first = re.search(r"^```python[ \t]*\n(.*?)^```[ \t]*$", page, re.M | re.S).group(1)
    scope: dict = {}
    exec(first, scope)  # noqa: S102 - the page's own example
    assert scope["k"].nngp.shape == scope["k"].ntk.shape == (4, 2)
