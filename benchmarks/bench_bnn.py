"""Sampler set-ups for the default calibrate BNN: time to the convergence bar, ESS/s.

The problem is calibrate's default finite network: 2 hidden ReLU layers of width 16 on
``toy1d`` (62 training points, a gap in the middle), prior scales and noise variance from
the NNGP's type-II maximum likelihood fit, exactly as ``ntk-bayes calibrate`` builds it.
Each method runs once with its budget; convergence is judged on the function values at
the test inputs (split R-hat ≤ 1.01, bulk ESS ≥ 400, no divergences). A method that meets
the bar reports its time as the time to the bar; ESS/s is the smallest bulk ESS over the
test points per second of wall time (compilation included, as a user pays it) and per
second of process CPU time (less sensitive to other jobs on the machine).

    python benchmarks/bench_bnn.py                         # every method
    python benchmarks/bench_bnn.py --methods collapsed-16  # one
    python benchmarks/bench_bnn.py --quick                 # tiny budgets (smoke test)
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import jax

# name: (BNN kwargs, fit_nuts kwargs on top of bnn.DEFAULT_NUTS)
METHODS = {
    # the library default: readout integrated out, many vectorised chains
    "default": ({"parameterization": "ntk"}, {}),
    # the previous default: the same at 500 + 500
    "collapsed-500": ({"parameterization": "ntk"}, {"num_warmup": 500, "num_samples": 500}),
    # a dense mass matrix (adapted per chain) on the collapsed model
    "collapsed-dense": ({"parameterization": "ntk"}, {"dense_mass": True}),
    # shorter trees, same number of iterations
    "collapsed-depth6": ({"parameterization": "ntk"}, {"max_tree_depth": 6}),
    # reparameterisation: W ~ N(0, W_std^2/n) sampled directly (centred scales)
    "collapsed-standard": ({"parameterization": "standard"}, {}),
    # all weights sampled (no readout integrated out), same budgets
    "all-weights": ({"parameterization": "ntk"}, {"marginalize_readout": False}),
    "ntk-32": ({"parameterization": "ntk"}, {"num_chains": 32, "marginalize_readout": False}),
    "standard-8": (
        {"parameterization": "standard"},
        {"num_chains": 8, "marginalize_readout": False},
    ),
    "map-32": (
        {"parameterization": "ntk"},
        {"num_chains": 32, "marginalize_readout": False, "init": "map"},
    ),
}
DEFAULT_METHODS = ("default", "collapsed-standard", "all-weights", "collapsed-depth6")


def problem(seed: int = 0):
    """``(ds, net, noise)``: calibrate's default BNN problem."""
    from ntk_bayes import datasets
    from ntk_bayes.calibrate._archs import as_floats, parse_arch
    from ntk_bayes.calibrate._common import Context, Settings
    from ntk_bayes.calibrate._regression import ml_fit

    ds = datasets.load("toy1d", seed=seed)
    ctx = Context(ds, parse_arch("relu-2x512"), Settings(quiet=True, seed=seed))
    fit, _ = ml_fit(ctx, "nngp")
    return ds, as_floats(fit.net), float(fit.noise)


def settings(name: str, overrides: dict) -> tuple[dict, dict]:
    """``(BNN kwargs, fit_nuts kwargs)`` of method ``name``: ``bnn.DEFAULT_NUTS``, then
    the method's own changes, then the command line's (``None`` keeps the method's)."""
    from ntk_bayes import bnn

    model_kw, fit_kw = METHODS[name]
    kw = {**bnn.DEFAULT_NUTS, **fit_kw}
    kw.update({k: v for k, v in overrides.items() if v is not None})
    return model_kw, kw


def run(name, ds, net, noise, *, width, seed, **overrides):
    """Fit method ``name`` once; one row of the table (times include compilation)."""
    from ntk_bayes import bnn

    model_kw, fit_kw = settings(name, overrides)
    model = bnn.BNN(net, width=width, noise=noise, **model_kw)
    t0, c0 = time.perf_counter(), time.process_time()
    post = model.fit_nuts(
        ds.X_train, ds.y_train, X_eval=ds.X_test, seed=seed, progress_bar=False, **fit_kw
    )
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    c = post.convergence
    return {
        "method": name,
        "parameterization": model.parameterization,
        "marginalize_readout": post.info["marginalize_readout"],
        "chains": post.num_chains,
        "warmup": fit_kw["num_warmup"],
        "draws": fit_kw["num_samples"],
        "max_tree_depth": fit_kw["max_tree_depth"],
        "wall_s": round(wall, 1),
        "cpu_s": round(cpu, 1),
        "max_rhat": round(c.max_rhat, 4),
        "min_ess_bulk": round(c.min_ess_bulk, 1),
        "divergences": c.divergences,
        "tree_depth_saturation": round(c.tree_depth_saturation, 3),
        "converged": c.converged,
        "wall_to_bar_s": round(wall, 1) if c.converged else None,
        "cpu_to_bar_s": round(cpu, 1) if c.converged else None,
        "ess_per_s": round(c.min_ess_bulk / wall, 2),
        "ess_per_cpu_s": round(c.min_ess_bulk / cpu, 2),
        "gradient_evaluations": post.info["gradient_evaluations"],
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS), choices=list(METHODS))
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--chains", type=int, default=None, help="default: each method's own")
    p.add_argument("--warmup", type=int, default=None, help="default: each method's own")
    p.add_argument("--samples", type=int, default=None, help="default: each method's own")
    p.add_argument("--depth", type=int, default=None, help="default: each method's own")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--float32",
        action="store_true",
        help="sample in float32 (default float64, as `ntk-bayes calibrate` without --float32)",
    )
    p.add_argument("--quick", action="store_true", help="width 4, 4 chains, 30 + 30, depth 4")
    p.add_argument("--json", default=None, help="also write the rows to this file")
    a = p.parse_args(argv)
    if a.quick:
        a.width, a.chains, a.warmup, a.samples, a.depth = 4, 4, 30, 30, 4
    jax.config.update("jax_enable_x64", not a.float32)
    ds, net, noise = problem(a.seed)
    print(
        f"device: {jax.devices()[0].platform} ({jax.device_count()}); {ds.X_train.dtype}; "
        f"toy1d n={ds.n_train}; noise var {noise:.4g}; "
        f"bar: split R-hat <= 1.01, bulk ESS >= 400 at {ds.X_test.shape[0]} test inputs, "
        "0 divergences; times include compilation",
        flush=True,
    )
    rows = []
    for name in a.methods:
        print(f"[{name}] ...", file=sys.stderr, flush=True)
        r = run(
            name,
            ds,
            net,
            noise,
            width=a.width,
            seed=a.seed,
            num_chains=a.chains,
            num_warmup=a.warmup,
            num_samples=a.samples,
            max_tree_depth=a.depth,
        )
        rows.append(r)
        bar = f"{r['cpu_to_bar_s']} cpu-s / {r['wall_to_bar_s']} s" if r["converged"] else "not met"
        print(
            f"{name:<18} {r['chains']:>3} x ({r['warmup']}+{r['draws']}) depth "
            f"{r['max_tree_depth']}  wall {r['wall_s']:>6.1f} s  cpu {r['cpu_s']:>6.1f} s  "
            f"R-hat {r['max_rhat']:.3f}  ESS {r['min_ess_bulk']:>6.0f}  div {r['divergences']:>3}"
            f"  depth-sat {r['tree_depth_saturation']:.2f}  ESS/s {r['ess_per_s']:.2f}  "
            f"ESS/cpu-s {r['ess_per_cpu_s']:.2f}  time to bar: {bar}",
            flush=True,
        )
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(rows, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
