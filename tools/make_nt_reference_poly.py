"""Neural-tangents 0.6.5 kernels of small networks around the polynomial-type layers
(``Monomial``, ``RectifiedMonomial``, ``Hermite``, ``Polynomial``, ``ExpNormalized``, ``Gabor``).

Run once, in the neural-tangents environment (see ``tools/make_nt_reference.py``)::

    /work/ntvenv/bin/python tools/make_nt_reference_poly.py

It writes ``tests/data/nt_poly.json`` (the cases: a name, a network spec in the format of
``tools/random_architectures.py``'s ``build``, input shapes; and the versions) and
``tests/data/nt_poly.npz`` (per case ``{name}/x1``, ``{name}/x2`` and the float64
``{name}/nngp12``, ``{name}/ntk12`` of x1 against x2, ``{name}/nngp``, ``{name}/ntk`` of x1
with itself). Same-point entries of the latter are stored but not trusted: neural-tangents
recovers them from round-off (``RectifiedMonomial`` divides by sin θ = 0 there); the tests
check them against one-point quadrature instead.

Inputs are multiples of 1/8 in [-2, 2], so the Gram matrices are exact in float64.
"""

from __future__ import annotations

import datetime
import json
import pathlib
import sys
import warnings

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import random_architectures as ra  # noqa: E402

OUT = pathlib.Path(__file__).parent.parent / "tests" / "data"

LAYERS = {
    "monomial0": ["Monomial", {"degree": 0}],
    "monomial1": ["Monomial", {"degree": 1}],
    "monomial2": ["Monomial", {"degree": 2}],
    "monomial3": ["Monomial", {"degree": 3}],
    "monomial5": ["Monomial", {"degree": 5}],
    "rectified0": ["RectifiedMonomial", {"degree": 0}],
    "rectified1": ["RectifiedMonomial", {"degree": 1}],
    "rectified2": ["RectifiedMonomial", {"degree": 2}],
    "rectified3": ["RectifiedMonomial", {"degree": 3}],
    "hermite0": ["Hermite", {"degree": 0}],
    "hermite1": ["Hermite", {"degree": 1}],
    "hermite2": ["Hermite", {"degree": 2}],
    "hermite3": ["Hermite", {"degree": 3}],
    "hermite5": ["Hermite", {"degree": 5}],
    "poly_cubic": ["Polynomial", {"coef": [0.3, -1.0, 0.5, 0.2]}],
    "poly_const": ["Polynomial", {"coef": [0.5]}],
    "poly_even4": ["Polynomial", {"coef": [0.1, 0.0, -0.4, 0.0, 0.05]}],
    "expnorm": ["ExpNormalized", {}],
    "expnorm_clip": ["ExpNormalized", {"gamma": 0.5, "shift": 0.3, "do_clip": True}],
    "gabor": ["Gabor", {}],
}

# Hermite is defined for unit-variance pre-activations in neural-tangents (it computes
# Σ12^d), so its reference cases put LayerNorm first; ntk_bayes also has the general form.
NEEDS_NORM = ("hermite",)
# neural-tangents 0.6.5 returns NaN for the self-covariance ``cov1`` (and same-point
# entries) after a RectifiedMonomial, so a second one after it is all-NaN: no deep cases.
NO_DEEP = ("rectified",)


def dense(n, w, b):
    return ["Dense", {"out_dim": n, "W_std": w, "b_std": b}]


def conv(n, w, b):
    return [
        "Conv",
        {"out_chan": n, "filter_shape": [2, 2], "padding": "SAME", "W_std": w, "b_std": b},
    ]


def networks(layer: list, name: str) -> dict:
    """Small networks around ``layer``: fully connected, after LayerNorm, two layers
    deep, convolutional (the full spatial covariance of the layer's output is used)."""
    norm = ["LayerNorm", {}]
    nets = {
        "ln": [dense(16, 1.3, 0.2), norm, layer, dense(4, 1.1, 0.1)],
        "ln_deep": [
            dense(16, 1.2, 0.1),
            norm,
            layer,
            dense(8, 0.9, 0.1),
            norm,
            layer,
            dense(2, 1.0, 0.05),
        ],
        "conv_ln": [
            conv(4, 1.2, 0.1),
            norm,
            layer,
            conv(4, 1.1, 0.1),
            ["GlobalAvgPool", {}],
            dense(2, 1.0, 0.1),
        ],
    }
    if name.startswith(NO_DEEP):
        del nets["ln_deep"]
    if not name.startswith(NEEDS_NORM):
        nets["fc"] = [dense(16, 1.3, 0.2), layer, dense(4, 1.1, 0.1)]
        nets["deep"] = [dense(16, 0.9, 0.1), layer, dense(8, 0.8, 0.1), layer, dense(2, 1.0, 0.05)]
        nets["conv"] = [
            conv(4, 1.2, 0.1),
            layer,
            conv(4, 1.1, 0.1),
            ["GlobalAvgPool", {}],
            dense(2, 1.0, 0.1),
        ]
    if name.startswith(NO_DEEP):
        del nets["deep"]
    return nets


def cases() -> list[dict]:
    out = []
    for name, layer in LAYERS.items():
        for net_name, layers in networks(layer, name).items():
            image = net_name.startswith("conv")
            shape = [3, 3, 2] if image else [3]
            out.append(
                {
                    "name": f"{name}/{net_name}",
                    "net": ["serial", layers],
                    "x1": [4 if image else 5, *shape],
                    "x2": [3 if image else 4, *shape],
                }
            )
    return out


def inputs(case: dict, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([seed, len(case["name"]), sum(map(ord, case["name"]))])
    return tuple(np.round(rng.normal(size=case[k]) * 8).clip(-16, 16) / 8 for k in ("x1", "x2"))


def main() -> None:
    import jax

    jax.config.update("jax_enable_x64", True)
    import neural_tangents as nt
    from neural_tangents import stax

    arrays, specs = {}, cases()
    for case in specs:
        x1, x2 = inputs(case, seed=15)
        _, _, kernel_fn = ra.build(stax, case["net"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Hermite's unit-norm reminder
            k12 = kernel_fn(x1, x2, ("nngp", "ntk"))
            k11 = kernel_fn(x1, None, ("nngp", "ntk"))
        name = case["name"]
        arrays[f"{name}/x1"], arrays[f"{name}/x2"] = x1, x2
        for key, k in (("12", k12), ("", k11)):
            for g in ("nngp", "ntk"):
                arrays[f"{name}/{g}{key}"] = np.asarray(getattr(k, g), np.float64)
        print(name, float(np.abs(arrays[f"{name}/ntk12"]).max()), flush=True)
    meta = {
        "neural_tangents": nt.__version__,
        "jax": jax.__version__,
        "date": datetime.date.today().isoformat(),
        "seed": 15,
        "cases": specs,
    }
    np.savez_compressed(OUT / "nt_poly.npz", **arrays)
    (OUT / "nt_poly.json").write_text(json.dumps(meta, indent=1) + "\n")


if __name__ == "__main__":
    main()
