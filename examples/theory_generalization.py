"""The data-dependent bound of Arora et al. (2019) with kernel-regression test error.

On sklearn's breast-cancer data (unit-norm standardised features, ±1 labels) and on
digits 3 vs 5, corrupts a growing fraction of the training labels and reports, for the
two-layer ReLU Gram matrix H^∞ of Arora et al. and for the NTK of a 3-layer ReLU network,
the bound sqrt(2 yᵀ K⁻¹ y / n) and the test error of the kernel regressor. Both grow
together with the label noise (their Fig. 1).

Writes theory_generalization.png into --out (default: a new timestamped directory under
ntk_bayes_out/; `--out docs/img` refreshes the docs' figure).

    python examples/theory_generalization.py [--quick] [--out DIR]
"""

from __future__ import annotations

import argparse
import pathlib
import time

import numpy as np
from matplotlib.figure import Figure
from sklearn.datasets import load_breast_cancer, load_digits

from ntk_bayes import stax
from ntk_bayes.theory import generalization_report


def dataset(name):
    if name == "breast cancer":
        X, y = load_breast_cancer(return_X_y=True)
        y = 2.0 * y - 1.0
    else:
        X, y = load_digits(return_X_y=True)
        keep = (y == 3) | (y == 5)
        X, y = X[keep], np.where(y[keep] == 3, 1.0, -1.0)
    X = (X - X.mean(0)) / np.maximum(X.std(0), 1e-12)
    X = X / np.linalg.norm(X, axis=1, keepdims=True)
    idx = np.random.default_rng(0).permutation(len(y))
    cut = len(y) // 2
    return X[idx[:cut]], y[idx[:cut]], X[idx[cut:]], y[idx[cut:]]


def main(quick: bool, out: pathlib.Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    net = stax.serial(
        stax.Dense(512, W_std=np.sqrt(2)),
        stax.Relu(),
        stax.Dense(512, W_std=np.sqrt(2)),
        stax.Relu(),
        stax.Dense(1, W_std=1.0),
    )
    fractions = [0.0, 0.5, 1.0] if quick else [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0]
    fig = Figure(figsize=(10, 3.8), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, name in zip(axes, ("breast cancer", "digits 3 vs 5"), strict=True):
        xtr, ytr, xte, yte = dataset(name)
        rng = np.random.default_rng(1)
        print(f"{name}: n_train={len(ytr)}, n_test={len(yte)}")
        rows = {"arora": [], "ntk": []}
        for frac in fractions:
            flip = rng.random(len(ytr)) < frac
            noisy = np.where(flip, rng.choice([-1.0, 1.0], len(ytr)), ytr)
            for get, model in (("arora", None), ("ntk", net)):
                r = generalization_report(model, xtr, noisy, xte, yte, get=get, diag_reg=1e-6)
                rows[get].append(r)
                print(
                    f"  labels randomised {frac:4.0%} {get:>5}: bound {r.bound:7.3f}  "
                    f"test error {r.test_error:.3f}  test MSE {r.test_mse:.3f}"
                )
        for get, style in (("arora", "o-"), ("ntk", "s--")):
            ax.plot(
                [r.test_error for r in rows[get]],
                [r.bound for r in rows[get]],
                style,
                label=f"{get}: bound vs test error",
            )
        ax.set(
            title=name,
            xlabel="kernel regression test error",
            ylabel=r"$\sqrt{2 y^\top K^{-1} y / n}$",
            yscale="log",
        )
        ax.legend(fontsize=8)
    fig.savefig(out / "theory_generalization.png", dpi=120)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (CI)")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    ap.add_argument(
        "--out",
        type=pathlib.Path,
        default=pathlib.Path(f"ntk_bayes_out/theory_generalization-{stamp}"),
        help="figure directory (default: a new timestamped one; docs/img refreshes the docs)",
    )
    a = ap.parse_args()
    main(a.quick, a.out)
    print(f"figures written to {a.out}")
