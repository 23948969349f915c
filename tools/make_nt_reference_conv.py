"""Neural-tangents 0.6.5 values of ConvTranspose, ConvLocal and ImageResize networks.

Run once, in the neural-tangents environment (see ``make_nt_reference.py``; no network)::

    /work/ntvenv/bin/python tools/make_nt_reference_conv.py [--out DIR]

It writes ``tests/data/nt_conv_more.npz``: ``spec`` (JSON: the networks as lists of
``[layer name, keyword arguments]``, the apply cases and versions) and per kernel case
``{name}/x1``, ``{name}/x2`` and the float64 ``{name}/{nngp,ntk}`` (x1 with itself) and
``{name}/{nngp,ntk}12`` (x1 against x2); per apply case ``apply/{name}/x``, ``.../W``,
``.../b`` (neural-tangents' parameters) and ``.../out`` (its ``apply_fn``).

Readouts choose the layout: ``Flatten`` lets neural-tangents keep same-position
covariances only (the diagonal layout), ``GlobalAvgPool`` needs every pair of positions
(the full layout). Inputs are multiples of 1/8 in [-2, 2], so every inner product is
exact in float64 and both libraries start from the same Gram matrix.
"""

from __future__ import annotations

import _nt_cases as cases
import numpy as np

OUT_NAME = "nt_conv_more.npz"
SEED = 20261201


def _ct(f, s, pad, **kw):
    return ["ConvTranspose", {"out_chan": 8, "filter_shape": f, "strides": s, "padding": pad, **kw}]


def _cl(f, s, pad, **kw):
    return ["ConvLocal", {"out_chan": 8, "filter_shape": f, "strides": s, "padding": pad, **kw}]


def _conv(f, pad="SAME", **kw):
    return ["Conv", {"out_chan": 8, "filter_shape": f, "padding": pad, "W_std": 1.2, **kw}]


RELU, FLAT, GAP = ["Relu", {}], ["Flatten", {}], ["GlobalAvgPool", {}]
DENSE = ["Dense", {"out_dim": 1, "W_std": 1.1, "b_std": 0.1}]
WB = {"W_std": 1.3, "b_std": 0.2}
STD = {"W_std": 0.9, "b_std": 0.3, "parameterization": "standard"}

# name: (input shape of x1 per point, layers). x2 has two points, x1 three.
CASES = {
    # -- ConvTranspose, 1-D
    "ct1d_valid_s2_flat": (
        (5, 2),
        [_ct((3,), (2,), "VALID", **WB), RELU, _ct((2,), (1,), "SAME"), FLAT, DENSE],
    ),
    "ct1d_same_s2_gap": (
        (5, 2),
        [_ct((3,), (2,), "SAME", **WB), RELU, _ct((2,), (3,), "VALID"), GAP, DENSE],
    ),
    "ct1d_circ_s3_flat": (
        (4, 2),
        [_ct((4,), (3,), "CIRCULAR", **WB), RELU, _ct((5,), (1,), "CIRCULAR"), FLAT],
    ),
    "ct1d_circ_s2_gap": (
        (4, 2),
        [_ct((3,), (2,), "CIRCULAR", **WB), RELU, _ct((7,), (2,), "CIRCULAR", b_std=0.1), GAP],
    ),
    "ct1d_standard_gap": (
        (4, 2),
        [_ct((2,), (2,), "VALID", **STD), RELU, _ct((3,), (1,), "SAME", **STD), GAP],
    ),
    # -- ConvTranspose, 2-D
    "ct2d_valid_s21_gap": (
        (3, 3, 2),
        [_ct((3, 2), (2, 1), "VALID", **WB), RELU, _ct((2, 2), (1, 2), "SAME"), GAP, DENSE],
    ),
    "ct2d_same_s12_flat": (
        (3, 3, 2),
        [_ct((2, 3), (1, 2), "SAME", **WB), RELU, _ct((3, 1), (2, 1), "VALID"), FLAT, DENSE],
    ),
    "ct2d_circ_s2_gap": (
        (3, 2, 2),
        [_ct((3, 3), (2, 2), "CIRCULAR", **WB), RELU, _ct((2, 4), (1, 2), "CIRCULAR"), GAP],
    ),
    "ct2d_circ_flat_standard": (
        (3, 2, 2),
        [
            _ct((4, 2), (2, 1), "CIRCULAR", **STD),
            RELU,
            _ct((3, 3), (1, 1), "CIRCULAR", **STD),
            FLAT,
        ],
    ),
    # -- ConvLocal, 1-D
    "cl1d_same_flat": (
        (6, 2),
        [_cl((3,), (1,), "SAME", **WB), RELU, _cl((2,), (2,), "VALID"), FLAT, DENSE],
    ),
    "cl1d_circ_gap": (
        (6, 2),
        [
            _cl((3,), (2,), "CIRCULAR", **WB),
            RELU,
            _conv((2,)),
            RELU,
            _cl((2,), (1,), "SAME", b_std=0.1),
            GAP,
        ],
    ),
    "cl1d_standard_gap": (
        (5, 2),
        [_conv((2,)), RELU, _cl((3,), (1,), "VALID", **STD), RELU, _conv((3,), "CIRCULAR"), GAP],
    ),
    # -- ConvLocal, 2-D
    "cl2d_valid_s21_flat": (
        (5, 4, 2),
        [_cl((3, 2), (2, 1), "VALID", **WB), RELU, _cl((2, 2), (1, 1), "SAME"), FLAT, DENSE],
    ),
    "cl2d_same_gap": ((4, 3, 2), [_cl((2, 3), (1, 2), "SAME", **WB), RELU, _conv((2, 2)), GAP]),
    "cl2d_circ_standard_gap": (
        (4, 3, 2),
        [
            _cl((3, 2), (1, 1), "CIRCULAR", **STD),
            RELU,
            _cl((2, 2), (2, 1), "SAME", **STD),
            RELU,
            _conv((2, 1), "SAME"),
            GAP,
        ],
    ),
    # -- ImageResize, 1-D
    "ir1d_linear_up_gap": (
        (4, 2),
        [
            _conv((3,), **WB),
            RELU,
            ["ImageResize", {"shape": [-1, 7, -1], "method": "linear"}],
            _conv((2,)),
            GAP,
        ],
    ),
    "ir1d_linear_down_gap": (
        (7, 2),
        [_conv((3,), **WB), RELU, ["ImageResize", {"shape": [-1, 3, -1], "method": "linear"}], GAP],
    ),
    "ir1d_linear_down_noaa_gap": (
        (7, 2),
        [
            _conv((3,), **WB),
            RELU,
            ["ImageResize", {"shape": [-1, 3, -1], "method": "bilinear", "antialias": False}],
            GAP,
        ],
    ),
    "ir1d_nearest_flat": (
        (5, 2),
        [
            _conv((3,), **WB),
            RELU,
            ["ImageResize", {"shape": [-1, 8, -1], "method": "nearest"}],
            _conv((2,)),
            RELU,
            FLAT,
            DENSE,
        ],
    ),
    # -- ImageResize, 2-D. An even number of Convs comes first: after an odd number,
    # neural-tangents stores the spatial axes of full-layout kernels in reverse order
    # (`is_reversed`) and its ImageResize resizes the wrong axes (0.06-0.4 relative off;
    # Monte Carlo sides with ntk_bayes, tests/stat/test_stax_conv_more_mc.py).
    "ir2d_linear_gap": (
        (4, 3, 2),
        [
            _conv((2, 2), **WB),
            RELU,
            _conv((2, 1)),
            ["ImageResize", {"shape": [-1, 6, 2, -1], "method": "linear"}],
            _conv((2, 1)),
            RELU,
            GAP,
        ],
    ),
    "ir2d_linear_flat": (
        (3, 4, 2),
        [
            _conv((2, 2), **WB),
            RELU,
            _conv((2, 2)),
            ["ImageResize", {"shape": [-1, -1, 6, -1], "method": "trilinear"}],
            _conv((3, 3)),
            FLAT,
        ],
    ),
    "ir2d_nearest_flat": (
        (4, 3, 2),
        [
            _conv((2, 2), **WB),
            RELU,
            _conv((1, 2)),
            ["ImageResize", {"shape": [-1, 2, 5, -1], "method": "nearest"}],
            FLAT,
            DENSE,
        ],
    ),
    "ir2d_nearest_gap": (
        (4, 3, 2),
        [
            _conv((2, 2), **WB),
            RELU,
            _conv((2, 1)),
            ["ImageResize", {"shape": [-1, 7, 2, -1], "method": "nearest"}],
            GAP,
        ],
    ),
}

# Single layers whose finite apply_fn is compared on neural-tangents' own parameters.
APPLY = {
    "ct_valid": ((5, 4, 3), _ct((3, 2), (2, 1), "VALID", **WB)),
    "ct_same": ((5, 4, 3), _ct((2, 3), (1, 2), "SAME", **WB)),
    "ct_circ": ((5, 4, 3), _ct((4, 3), (2, 2), "CIRCULAR", **WB)),
    "ct_circ_1d": ((3, 2), _ct((7,), (2,), "CIRCULAR", **STD)),
    "cl_valid": ((5, 4, 3), _cl((3, 2), (2, 1), "VALID", **WB)),
    "cl_same": ((5, 4, 3), _cl((2, 3), (1, 2), "SAME", **STD)),
    "cl_circ": ((5, 4, 3), _cl((3, 3), (2, 2), "CIRCULAR", **WB)),
    "ir_linear": ((5, 4, 3), ["ImageResize", {"shape": [-1, 8, 3, -1], "method": "linear"}]),
    "ir_nearest": ((5, 4, 3), ["ImageResize", {"shape": [-1, 3, 7, -1], "method": "nearest"}]),
    "ir_cubic": ((5, 4, 3), ["ImageResize", {"shape": [-1, 7, 2, -1], "method": "cubic"}]),
}


def _inputs(shape, n, rng):
    return np.round(rng.normal(size=(n, *shape)) * 8).clip(-16, 16) / 8


def build(stax, layers):
    """A network from ``[name, kwargs]`` pairs, in either library."""
    out = []
    for name, kw in layers:
        kw = {k: tuple(v) if isinstance(v, list) else v for k, v in kw.items()}
        out.append(getattr(stax, name)(**kw))
    return stax.serial(*out)


def main() -> None:
    import jax

    jax.config.update("jax_enable_x64", True)
    from neural_tangents import stax

    rng = np.random.default_rng(SEED)
    arrays = {}
    for name, (shape, layers) in CASES.items():
        x1, x2 = _inputs(shape, 3, rng), _inputs(shape, 2, rng)
        _, _, kernel_fn = build(stax, layers)
        cases.add_kernels(arrays, name, kernel_fn, x1, x2)
    for name, (shape, layer) in APPLY.items():
        x = _inputs(shape, 2, rng)
        init_fn, apply_fn, _ = build(stax, [layer])
        _, (params,) = init_fn(jax.random.PRNGKey(len(arrays)), x.shape)
        arrays[f"apply/{name}/x"] = x
        if params:
            W, b = params
            arrays[f"apply/{name}/W"] = np.asarray(W)
            arrays[f"apply/{name}/b"] = np.asarray(b)
        arrays[f"apply/{name}/out"] = np.asarray(apply_fn((params,), x), np.float64)
    cases.check_finite(arrays)
    spec = {
        "cases": {n: {"shape": list(s), "layers": lay} for n, (s, lay) in CASES.items()},
        "apply": {n: {"shape": list(s), "layer": lay} for n, (s, lay) in APPLY.items()},
        "seed": SEED,
        **cases.spec_versions(),
    }
    cases.save(cases.out_path(OUT_NAME), arrays, spec=spec)


if __name__ == "__main__":
    main()
