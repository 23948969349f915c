"""Signal propagation: phase diagrams, critical lines and NTK spectra against depth.

1. χ₁ over (σ_w, σ_b) for Erf and ReLU with the computed order-to-chaos line; checks
   the known critical points (Erf at σ_b = 0: σ_w = sqrt(π)/2; tanh: 1; ReLU: sqrt(2)).
2. The condition number of the NTK on 16 random inputs against depth, in the ordered
   phase, on the critical line and in the chaotic phase (Erf, σ_b = 0.3).

Writes theory_phase_erf.png, theory_phase_relu.png and theory_ntk_spectrum.png into --out
(default: a new timestamped directory under ntk_bayes_out/; `--out docs/img` refreshes the
docs' figures).

    python examples/theory_signal.py [--quick] [--out DIR]
"""

from __future__ import annotations

import argparse
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np

from ntk_bayes import stax
from ntk_bayes.theory import (
    critical_line,
    ntk_spectrum,
    phase_diagram,
    plot_ntk_spectrum,
    plot_phase_diagram,
    signal_propagation,
)


def main(quick: bool, out: pathlib.Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    n = 20 if quick else 80
    tanh = stax.ElementwiseNumerical(jnp.tanh, deg=48)
    print(
        f"Erf  critical σ_w at σ_b=0: {critical_line(stax.Erf(), 0.0):.6f} "
        f"(sqrt(pi)/2 = {np.sqrt(np.pi) / 2:.6f})"
    )
    print(f"tanh critical σ_w at σ_b=0: {critical_line(tanh, 0.0):.6f} (1)")
    print(f"ReLU critical σ_w: {critical_line(stax.Relu(), [0.0, 0.5])} (sqrt 2)")
    for name, phi, w in (("erf", stax.Erf(), (0.1, 4.0)), ("relu", stax.Relu(), (0.5, 2.5))):
        pd = phase_diagram(phi, np.linspace(*w, n), np.linspace(0.0, 2.0, n // 2))
        plot_phase_diagram(pd).savefig(out / f"theory_phase_{name}.png", dpi=120)
    b = 0.3
    w_c = critical_line(stax.Erf(), b)
    x = jax.random.normal(jax.random.key(0), (16, 8))
    depths = [1, 2, 4, 8, 16] if quick else [1, 2, 3, 4, 6, 8, 12, 16, 24, 32]
    spectra = {}
    for label, w in (("ordered", 0.8 * w_c), ("critical", w_c), ("chaotic", 2.0 * w_c)):
        sp = signal_propagation(stax.Erf(), w, b)
        s = ntk_spectrum(stax.Erf(), w, b, x, depths)
        key = f"{label}: σ_w={w:.2f}, χ₁={float(sp.chi_1):.2f}, ξ_c={float(sp.xi_c):.1f}"
        spectra[key] = s
        print(key)
        print("   depth " + " ".join(f"{d:>9d}" for d in depths))
        print("   cond  " + " ".join(f"{c:9.3g}" for c in s.condition["ntk"]))
        print("   λ_min " + " ".join(f"{c:9.3g}" for c in s.min_eig["ntk"]))
    plot_ntk_spectrum(spectra).savefig(out / "theory_ntk_spectrum.png", dpi=120)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (CI)")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    ap.add_argument(
        "--out",
        type=pathlib.Path,
        default=pathlib.Path(f"ntk_bayes_out/theory_signal-{stamp}"),
        help="figure directory (default: a new timestamped one; docs/img refreshes the docs)",
    )
    a = ap.parse_args()
    main(a.quick, a.out)
    print(f"figures written to {a.out}")
