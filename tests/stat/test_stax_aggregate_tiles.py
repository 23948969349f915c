"""``stax.Aggregate`` through the tiler: edge lists decoded tile by tile equal the dense
graphs in one block (moved from tests/unit/test_stax_aggregate.py to keep the edit-test
loop under two minutes)."""

import numpy as np
from _nt_aggregate import decode, edges_and_dense, points, rel

from ntk_bayes import stax


def test_tiles_slice_graphs_with_their_points():
    x = points(5)
    edges, dense = edges_and_dense(5, 4, 7, seed=3)
    net = lambda agg: stax.serial(
        stax.Dense(8, W_std=1.3, b_std=0.2),
        stax.Relu(),
        agg,
        stax.Dense(8),
        stax.Erf(),
        agg,
        stax.GlobalAvgPool(),
    )
    dense_net, edge_net = net(stax.Aggregate()), net(stax.Aggregate(to_dense=decode))
    # Untiled against the edge lists decoded tile by tile (x2 equal to x in value: the
    # same self-pairs, computed without the symmetric path).
    get = ("nngp", "ntk", "cov2")
    whole = dense_net.kernel_fn(x, x.copy(), get, pattern=(dense, dense.copy()))
    tiled = edge_net.kernel_fn(x, None, get[:2] + ("cov1",), pattern=(edges, None), block_size=2)
    for g in ("nngp", "ntk"):
        assert rel(getattr(tiled, g), np.asarray(getattr(whole, g))) < 1e-6
    assert rel(tiled.cov1, np.asarray(whole.cov2)) < 1e-6
    np.testing.assert_allclose(tiled.ntk, tiled.ntk.T, rtol=1e-6)
