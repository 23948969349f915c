"""``ntk-bayes regimes``: kernel evolution and finite-width experiments at small sizes.

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

__all__ = ["add_regimes_parser", "run_regimes"]

_NONLINEARITIES = ("relu", "erf", "gelu", "tanh")


def _int_list(text: str) -> list[int]:
    try:
        vals = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if len(vals) < 2 or min(vals) < 1 or len(set(vals)) != len(vals):
        raise argparse.ArgumentTypeError(
            f"need at least two distinct positive widths, got {text!r}"
        )
    return sorted(vals)


def _positive(kind, allow_zero=False):
    def parse(text):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if v < 0 or (v == 0 and not allow_zero) or v != v:
            raise argparse.ArgumentTypeError(f"must be {'>=' if allow_zero else '>'} 0, got {text}")
        return v

    return parse


def add_regimes_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``regimes`` subcommand on an ``argparse`` subparsers object."""
    p = subparsers.add_parser(
        "regimes",
        help="lazy vs rich training and finite-width NTK corrections (plots + table)",
        description=(
            "Train wide MLPs in the NTK (lazy) and maximal-update (rich) scalings and "
            "measure how far their NTK moves, and measure the spread of the empirical NTK "
            "at initialisation around the analytic one, both against width."
        ),
    )
    p.add_argument("--out", type=Path, default=Path("ntk_bayes_out/regimes"),
                   help="output directory (default: %(default)s)")  # fmt: skip
    p.add_argument("--force", action="store_true", help="replace an existing --out")
    p.add_argument("--widths", type=_int_list, default=[64, 128, 256, 512],
                   help="comma-separated widths (default: 64,128,256,512)")  # fmt: skip
    p.add_argument("--depth", type=_positive(int), default=1, help="hidden layers")
    p.add_argument("--nonlinearity", choices=_NONLINEARITIES, default="relu")
    p.add_argument("--W-std", dest="W_std", type=_positive(float), default=1.5)
    p.add_argument("--b-std", dest="b_std", type=_positive(float, allow_zero=True), default=0.1)
    p.add_argument("--n-train", dest="n_train", type=_positive(int), default=16)
    p.add_argument("--input-dim", dest="input_dim", type=_positive(int), default=4)
    p.add_argument("--steps", type=_positive(int), default=200, help="GD steps")
    p.add_argument("--seeds", type=_positive(int), default=2,
                   help="trainings per (scaling, width)")  # fmt: skip
    p.add_argument("--init-seeds", dest="init_seeds", type=int, default=16,
                   help="random networks per width for the finite-width spread (>= 2)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="PRNG seed of data and networks")
    p.add_argument("--quick", action="store_true",
                   help="tiny sizes for a smoke test (widths 32,64,128; 30 steps)")  # fmt: skip
    p.set_defaults(func=run_regimes)
    return p


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


def _main(argv=None) -> int:  # standalone entry point until the lead wires ntk_bayes.cli
    parser = argparse.ArgumentParser(prog="ntk-bayes")
    sub = parser.add_subparsers(dest="command", required=True)
    add_regimes_parser(sub)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(_main())
