"""Neural-tangents 0.6.5 values of networks with ``stax.Aggregate`` (graph layers).

Run once, in the neural-tangents environment (see ``make_nt_reference.py``; no network)::

    /work/ntvenv/bin/python tools/make_nt_reference_aggregate.py [--out DIR]

It writes ``tests/data/nt_aggregate.npz``: ``spec`` (JSON: the networks as lists of
``[layer name, keyword arguments]``, the apply cases and versions) and per kernel case
``{name}/x1``, ``{name}/x2``, the graphs ``{name}/p1``, ``{name}/p2`` (in the format of
the case's ``implementation``) and the float64 ``{name}/{nngp,ntk}`` (x1 with itself,
``pattern=(p1, p1)``) and ``{name}/{nngp,ntk}12`` (x1 against x2, ``pattern=(p1, p2)``);
per apply case ``apply/{name}/x``, ``.../p`` and ``.../out`` (its ``apply_fn``).

Inputs are multiples of 1/8 in [-2, 2] and edge weights multiples of 1/4, so every
inner product and aggregation of the inputs is exact in float64.
"""

from __future__ import annotations

import _nt_cases as cases
import numpy as np
from make_nt_reference_conv import _inputs, build  # same inputs grid and builder

OUT_NAME = "nt_aggregate.npz"
SEED = 20261201

RELU, ERF, GAP, FLAT = ["Relu", {}], ["Erf", {}], ["GlobalAvgPool", {}], ["Flatten", {}]
WB = {"W_std": 1.3, "b_std": 0.2}
DENSE1 = ["Dense", {"out_dim": 1, "W_std": 1.1, "b_std": 0.1}]


def _dense(**kw):
    return ["Dense", {"out_dim": 8, **kw}]


def _agg(**kw):
    return ["Aggregate", kw]


def _conv(f, **kw):
    return ["Conv", {"out_chan": 8, "filter_shape": f, "padding": "SAME", **kw}]


# name: (input shape per point, graph kind, layers). x1 has three points, x2 two.
# Graph kinds: "binary" / "weighted" adjacency arrays over every aggregated vertex,
# "edges" integer edge lists with padding rows of -1 (implementation="SPARSE").
CASES = {
    "fc1d_binary": ((5, 2), "binary", [_dense(**WB), RELU, _agg(), _dense(), RELU, GAP, DENSE1]),
    "fc1d_weighted_twice": (
        (4, 3),
        "weighted",
        [_dense(**WB), RELU, _agg(), _dense(W_std=0.9), ERF, _agg(), _dense(b_std=0.1), GAP],
    ),
    "agg_first_flat": ((4, 2), "weighted", [_agg(), _dense(**WB), RELU, FLAT, DENSE1]),
    "standard_flat": (
        (4, 2),
        "binary",
        [
            _dense(W_std=1.2, b_std=0.3, parameterization="standard"),
            RELU,
            _agg(aggregate_axis=1),
            _dense(W_std=0.8, parameterization="standard"),
            FLAT,
        ],
    ),
    "conv2d_all": (
        (3, 3, 2),
        "binary",
        [_conv((2, 2), **WB), RELU, _conv((2, 1)), _agg(), _conv((1, 2)), RELU, GAP],
    ),
    "conv2d_odd_all": ((3, 2, 2), "weighted", [_conv((2, 2), **WB), RELU, _agg(), GAP, DENSE1]),
    "fc2d_axis2": (
        (4, 3, 2),
        "binary",
        [_dense(**WB), RELU, _agg(aggregate_axis=2), _dense(), RELU, GAP],
    ),
    "fc2d_axes_negative": (
        (3, 2, 2),
        "weighted",
        [_dense(**WB), RELU, _agg(aggregate_axis=(-2, -3)), _dense(), ERF, FLAT, DENSE1],
    ),
    "sparse1d": (
        (5, 2),
        "edges",
        [_dense(**WB), RELU, _agg(implementation="SPARSE"), _dense(), RELU, GAP],
    ),
    "sparse2d": (
        (3, 2, 2),
        "edges",
        [_dense(**WB), RELU, _agg(aggregate_axis=(1, 2), implementation="SPARSE"), GAP],
    ),
}

# Single Aggregate layers whose apply_fn is compared: (input shape, graph kind, layer).
APPLY = {
    "dense_1d": ((5, 3), "weighted", _agg()),
    "dense_2d_axis1": ((4, 3, 2), "binary", _agg(aggregate_axis=1)),
    "dense_2d_axes_21": ((3, 2, 2), "weighted", _agg(aggregate_axis=(-2, 1))),  # sorted
    "sparse_1d": ((5, 3), "edges", _agg(implementation="SPARSE")),
    "sparse_2d": ((3, 2, 2), "edges", _agg(implementation="SPARSE")),
}


def agg_shape(shape, layers):
    """Sizes of the aggregated axes of the (first) Aggregate layer; shapes are kept by
    every layer used here except the channel axis."""
    for name, kw in layers:
        if name == "Aggregate":
            axis = kw.get("aggregate_axis")
            ndim = len(shape) + 1
            if axis is None:
                axes = range(1, ndim - 1)
            else:
                # neural-tangents sorts the axes: the pattern lists them in that order
                axes = sorted(a % ndim for a in ((axis,) if isinstance(axis, int) else axis))
            return tuple(shape[a - 1] for a in axes)
    raise ValueError("no Aggregate layer")


def _graphs(kind, n, vshape, rng):
    V = int(np.prod(vshape))
    if kind == "edges":
        n_edges = 2 * V
        edges = rng.integers(0, vshape, size=(n, n_edges, 2, len(vshape)))
        edges = np.swapaxes(edges, 2, 3)  # (n, E, K, 2): (tail, head) per axis
        edges[:, -2:] = -1  # padding
        return edges.astype(np.int32)
    a = (rng.random((n, V, V)) < 0.5).astype(np.float64)
    if kind == "weighted":
        a *= rng.integers(1, 8, size=a.shape) / 4
    return a.reshape((n,) + vshape + vshape)


def main() -> None:
    import warnings

    import jax

    jax.config.update("jax_enable_x64", True)
    from neural_tangents import stax

    warnings.simplefilter("ignore")  # SPARSE warns that negative indices are padding
    rng = np.random.default_rng(SEED)
    arrays = {}
    for name, (shape, kind, layers) in CASES.items():
        x1, x2 = _inputs(shape, 3, rng), _inputs(shape, 2, rng)
        vshape = agg_shape(shape, layers)
        p1, p2 = _graphs(kind, 3, vshape, rng), _graphs(kind, 2, vshape, rng)
        _, _, kernel_fn = build(stax, layers)
        cases.add_kernels(
            arrays,
            name,
            kernel_fn,
            x1,
            x2,
            inputs={"p1": p1, "p2": p2},
            kw11={"pattern": (p1, p1)},
            kw12={"pattern": (p1, p2)},
        )
    for name, (shape, kind, layer) in APPLY.items():
        x = _inputs(shape, 3, rng)
        p = _graphs(kind, 3, agg_shape(shape, [layer]), rng)
        _, apply_fn, _ = build(stax, [layer])
        arrays[f"apply/{name}/x"], arrays[f"apply/{name}/p"] = x, p
        arrays[f"apply/{name}/out"] = np.asarray(apply_fn(((),), x, pattern=p), np.float64)
    cases.check_finite(arrays)
    spec = {
        "cases": {
            n: {"shape": list(s), "graph": g, "layers": lay} for n, (s, g, lay) in CASES.items()
        },
        "apply": {
            n: {"shape": list(s), "graph": g, "layer": lay} for n, (s, g, lay) in APPLY.items()
        },
        "seed": SEED,
        **cases.spec_versions(),
    }
    cases.save(cases.out_path(OUT_NAME), arrays, spec=spec)


if __name__ == "__main__":
    main()
