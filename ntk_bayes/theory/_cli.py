"""``ntk-bayes regimes``: kernel evolution and finite-width experiments at small sizes.

The flags are parsed in :mod:`ntk_bayes.cli` (which imports this module only when the
command runs).

Writes to ``--out`` (atomically: everything goes to a temporary sibling directory that
is renamed into place at the end, so an interrupted run leaves nothing half-written):

* ``kernel_evolution.png``, ``finite_width.png``: the figures;
* ``regimes.csv``: one row per (experiment, parameterisation, width);
* ``regimes.md``: the same as Markdown tables, with the fitted log-log slopes;
* ``summary.json``: settings and slopes.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

from .._io import atomic_output_dir, output_problem, sigterm_as_exit

__all__ = ["run_regimes"]


def _nonlinearity(name: str):
    import jax.numpy as jnp

    from .. import stax

    return {
        "relu": stax.Relu,
        "erf": stax.Erf,
        "gelu": stax.Gelu,
        "tanh": lambda: stax.ElementwiseNumerical(jnp.tanh, deg=32),
    }[name]()


def run_regimes(args: argparse.Namespace) -> int:
    """Run the experiments of ``ntk-bayes regimes``; returns the process exit code."""
    out = Path(args.out)
    problem = output_problem(out, args.force)
    if problem is None and args.init_seeds < 2:
        problem = f"--init-seeds must be >= 2, got {args.init_seeds}"
    if problem is not None:
        print(f"ntk-bayes regimes: error: {problem}", file=sys.stderr)
        return 1

    import jax
    import numpy as np

    from ._parameterization import scaled_mlp
    from ._plots import plot_finite_width, plot_kernel_evolution
    from ._regimes import finite_width_corrections, kernel_evolution

    widths = [32, 64, 128] if args.quick else args.widths
    steps = 30 if args.quick else args.steps
    seeds = 1 if args.quick else args.seeds
    init_seeds = 4 if args.quick else args.init_seeds
    phi = _nonlinearity(args.nonlinearity)
    key = jax.random.key(args.seed)
    kx, kw, kn = jax.random.split(key, 3)
    x = jax.random.normal(kx, (args.n_train, args.input_dim))
    x = x / jax.numpy.linalg.norm(x, axis=1, keepdims=True) * np.sqrt(args.input_dim)
    y = jax.numpy.sin(x @ jax.random.normal(kw, (args.input_dim, 1)))
    spec = dict(depth=args.depth, nonlinearity=phi, W_std=args.W_std, b_std=args.b_std)

    t0 = time.perf_counter()
    evo = kernel_evolution(x, y, widths, key=kn, steps=steps, n_seeds=seeds, **spec)
    t1 = time.perf_counter()
    fw = finite_width_corrections(
        lambda n: scaled_mlp(n, **spec).lazy_net,
        x,
        widths,
        key=jax.random.fold_in(kn, 1),
        n_seeds=init_seeds,
    )
    t2 = time.perf_counter()

    summary = {
        "settings": {
            "widths": list(widths),
            "depth": args.depth,
            "nonlinearity": args.nonlinearity,
            "W_std": args.W_std,
            "b_std": args.b_std,
            "n_train": args.n_train,
            "input_dim": args.input_dim,
            "steps": steps,
            "learning_rate": evo.learning_rate,
            "seeds": seeds,
            "init_seeds": init_seeds,
            "seed": args.seed,
        },
        "slopes": {
            "kernel_change_ntk": evo.fit("ntk").slope,
            "kernel_change_mup": evo.fit("mup").slope,
            "init_spread": fw.fit("spread").slope,
            "init_deviation": fw.fit("deviation").slope,
        },
        "seconds": {"kernel_evolution": t1 - t0, "finite_width": t2 - t1},
    }
    rows = evo.rows() + fw.rows()
    with sigterm_as_exit(), atomic_output_dir(out, force=args.force) as tmp:
        plot_kernel_evolution(evo).savefig(tmp / "kernel_evolution.png", dpi=120)
        plot_finite_width(fw).savefig(tmp / "finite_width.png", dpi=120)
        _write_csv(tmp / "regimes.csv", rows)
        (tmp / "regimes.md").write_text(_markdown(evo, fw, summary))
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(_markdown(evo, fw, summary))
    print(f"wrote {out}/")
    return 0


def _write_csv(path: Path, rows: list[dict]) -> None:
    fields = list(dict.fromkeys(k for r in rows for k in r))
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)


def _markdown(evo, fw, summary) -> str:
    s = summary["slopes"]
    lines = [
        "# NTK regimes",
        "",
        f"Relative NTK change after {evo.steps} GD steps (learning rate "
        f"{evo.learning_rate:.3g}), mean over seeds:",
        "",
        "| width | NTK scaling (lazy) | maximal-update scaling (rich) |",
        "|---:|---:|---:|",
    ]
    for j, w in enumerate(evo.widths):
        lines.append(
            f"| {w} | {evo.change['ntk'][:, j].mean():.4f} | {evo.change['mup'][:, j].mean():.4f} |"
        )
    lines += [
        "",
        f"Fitted log-log slope: lazy {s['kernel_change_ntk']:+.2f}, "
        f"rich {s['kernel_change_mup']:+.2f}.",
        "",
        f"Empirical NTK at initialisation vs analytic ({fw.n_seeds} networks per width):",
        "",
        "| width | spread | mean deviation | bias | Monte Carlo floor |",
        "|---:|---:|---:|---:|---:|",
    ]
    for r in fw.rows():
        lines.append(
            f"| {r['width']} | {r['spread']:.4f} | {r['deviation_mean']:.4f} | "
            f"{r['bias']:.4f} | {r['noise_floor']:.4f} |"
        )
    lines += ["", f"Fitted log-log slope of the spread: {s['init_spread']:+.2f}.", ""]
    return "\n".join(lines)
