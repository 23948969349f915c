"""Aggregate (graph layers) against Monte Carlo estimates of wide finite networks: the
analytic NNGP/NTK with per-point graphs against the layers' own init_fn/apply_fn."""

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


# The SPARSE path is DENSE after decoding (checked exactly in tests/unit): slow tier.
@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.slow) if n == "sparse_edges" else n for n in MC_NETS],
)
def test_aggregate_matches_monte_carlo(name):
    x = np.asarray(jax.random.normal(jax.random.PRNGKey(1), (5, *SHAPES[name])))
    p = _graphs(name, 5)
    net = MC_NETS[name]()
    # The graphs go to both kernel functions by neural-tangents' keyword rule.
    z, _, mean, se = mc_z_scores(net, x, None, n_samples=64, pattern=(p, None))
    worst = {g: float(v.max()) for g, v in z.items()}
    # 5 sd over 2 x 25 entries, t with 63 dof: false alarm < 2.5e-4 per test (union bound).
    assert max(worst.values()) < 5, worst
    if name == "relu_then_graph":
        # The estimate rejects a plausible wrong kernel: arcs read head-to-tail (Aᵀ).
        wrong = net.kernel_fn(x, None, "ntk", pattern=(np.swapaxes(p, 1, 2), None))
        z_wrong = np.max(np.abs(np.asarray(mean.ntk) - np.asarray(wrong)) / np.asarray(se.ntk))
        assert z_wrong > 10, z_wrong


def test_two_sets_of_graphs_match_monte_carlo():
    # x1 with its graphs against x2 with others: pattern=(p1, p2) in both the analytic
    # kernel and the Monte Carlo one (each side's networks read their own graphs).
    name = "relu_then_graph"
    x1 = np.asarray(jax.random.normal(jax.random.PRNGKey(1), (4, *SHAPES[name])))
    x2 = np.asarray(jax.random.normal(jax.random.PRNGKey(2), (3, *SHAPES[name])))
    p1, p2 = _graphs(name, 4), _graphs(name, 3, seed=1)
    net = MC_NETS[name]()
    z, _, mean, se = mc_z_scores(net, x1, x2, n_samples=64, pattern=(p1, p2))
    worst = {g: float(v.max()) for g, v in z.items()}
    # 5 sd over 2 x 12 entries, t with 63 dof: false alarm < 1.2e-4 (union bound).
    assert max(worst.values()) < 5, worst
    # Power: x2 read with x1's first three graphs (a split that gave both sides the
    # first element) is rejected by the same estimate (NTK: z 13.7 at these seeds; the
    # NNGP, averaged by the pooling, only 2.9).
    wrong = net.kernel_fn(x1, x2, "ntk", pattern=(p1, p1[:3]))
    z_wrong = np.max(np.abs(np.asarray(mean.ntk) - np.asarray(wrong)) / np.asarray(se.ntk))
    assert z_wrong > 10, z_wrong
