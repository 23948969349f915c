"""Aggregate (graph layers) against Monte Carlo estimates of wide finite networks: the
analytic NNGP/NTK with per-point graphs against the layers' own init_fn/apply_fn."""

import types

import jax
import numpy as np
import pytest
from _mc import mc_z_scores

from ntk_bayes import stax

WB = {"W_std": 1.3, "b_std": 0.2}

# One nonlinearity after the first affine layer (aggregations are linear): its
# pre-activations are exactly Gaussian, so the Monte Carlo mean is unbiased at any width
# and the tolerance is purely statistical.
MC_NETS = {
    "relu_then_graph": lambda: stax.serial(
        stax.Dense(32, **WB),
        stax.Relu(),
        stax.Aggregate(),
        stax.Dense(4, W_std=1.1, b_std=0.1),
        stax.GlobalAvgPool(),
    ),
    "graph_twice_2d_axis": lambda: stax.serial(
        stax.Aggregate(aggregate_axis=2),
        stax.Dense(32, **WB),
        stax.Erf(),
        stax.Aggregate(aggregate_axis=2),
        stax.Flatten(),
        stax.Dense(4, b_std=0.1),
    ),
    "sparse_edges": lambda: stax.serial(
        stax.Dense(32, W_std=1.2, b_std=0.1, parameterization="standard"),
        stax.Relu(),
        stax.Aggregate(implementation="SPARSE"),
        stax.GlobalSumPool(),
        stax.Dense(4, parameterization="standard"),
    ),
}
SHAPES = {"relu_then_graph": (4, 2), "graph_twice_2d_axis": (2, 3, 2), "sparse_edges": (5, 2)}


def _graphs(name, n, seed=0):
    r = np.random.default_rng(seed)
    if name == "sparse_edges":
        edges = r.integers(0, 5, (n, 8, 2)).astype(np.int32)
        edges[:, -1] = -1  # padding
        return edges
    V = SHAPES[name][-2]
    return (r.random((n, V, V)) < 0.5) * r.uniform(0.5, 1.5, (n, V, V))


def _with_graphs(net, pattern):
    """The network as mc_z_scores sees it: ``pattern`` bound to every call (x2=None)."""
    return types.SimpleNamespace(
        init_fn=net.init_fn,
        apply_fn=lambda params, x, **kw: net.apply_fn(params, x, pattern=pattern, **kw),
        kernel_fn=lambda x1, x2, get: net.kernel_fn(x1, x2, get, pattern=(pattern, None)),
    )


# The SPARSE path is DENSE after decoding (checked exactly in tests/unit): slow tier.
@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.slow) if n == "sparse_edges" else n for n in MC_NETS],
)
def test_aggregate_matches_monte_carlo(name):
    x = np.asarray(jax.random.normal(jax.random.PRNGKey(1), (5, *SHAPES[name])))
    p = _graphs(name, 5)
    net = MC_NETS[name]()
    z, _, mean, se = mc_z_scores(_with_graphs(net, p), x, None, n_samples=64)
    worst = {g: float(v.max()) for g, v in z.items()}
    # 5 sd over 2 x 25 entries, t with 63 dof: false alarm < 2.5e-4 per test (union bound).
    assert max(worst.values()) < 5, worst
    if name == "relu_then_graph":
        # The estimate rejects a plausible wrong kernel: arcs read head-to-tail (Aᵀ).
        wrong = net.kernel_fn(x, None, "ntk", pattern=(np.swapaxes(p, 1, 2), None))
        z_wrong = np.max(np.abs(np.asarray(mean.ntk) - np.asarray(wrong)) / np.asarray(se.ntk))
        assert z_wrong > 10, z_wrong
