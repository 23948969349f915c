r"""``ntk-bayes width-sweep``: a finite BNN's posterior approaching the NNGP posterior.

The NNGP's W_std, b_std and noise σ² are fitted once by type-II maximum likelihood;
then for each width n the finite network with that prior (W ~ N(0, W_std²/fan_in),
sampled as unit normals in the NTK parameterisation, the readout integrated out) and the
same fixed σ² is sampled by NUTS. A width whose chains miss the convergence bar (split
R-hat ≤ 1.01, bulk ESS ≥ 400 on the function values at the evaluation inputs, no
divergences) is marked "not converged": its distance is not evidence either way. As n → ∞ its prior
over functions tends to GP(0, K_nngp) (Neal 1996; Lee et al. 2018; Matthews et al.
2018) and so does its posterior. At evaluation inputs x_1..x_m (a grid for 1-D data,
else the test inputs), with μ, v the latent mean and variance of f under the NNGP
posterior and μ̂_n, v̂_n their estimates from the BNN's draws:

.. math::

    d_μ(n) = \tfrac1m \textstyle\sum_i |μ̂_n(x_i) - μ(x_i)|, \qquad
    d_{\log v}(n) = \tfrac1m \textstyle\sum_i |\log v̂_n(x_i) - \log v(x_i)|.

Both fall with n until they reach the Monte Carlo floor: the same distances for S
independent exact draws from the NNGP posterior (S = chains × draws), reported as the
``floor`` row. MCMC draws are autocorrelated, so the BNN's floor is somewhat higher.

Whether a fall between two widths is more than Monte Carlo error is judged on a
standardised Wasserstein-2 distance over the evaluation inputs inside the data's range
(``I``; the grid's ends extrapolate, where the NNGP's sd s_i is large and says little),
with μ̂, ŝ the BNN's posterior mean and sd:

.. math::

    d_z(n) = \Big(\tfrac1{|I|} \textstyle\sum_{i \in I}
             \big((μ̂_n(x_i) - μ(x_i))^2 + (ŝ_n(x_i) - s(x_i))^2\big) / s(x_i)^2\Big)^{1/2}.

Its Monte Carlo standard error comes from the chains, which are independent replicates
(NUTS chains from independent starts): the leave-one-chain-out jackknife over the C
chains, which carries the autocorrelation within chains and the correlation between
inputs without modelling either. A fall between two widths (independent runs) is
resolved when it exceeds the combined standard error times the one-sided 1e-4 point of
Student's t with C - 1 degrees of freedom (the fewer chains of the two; conservative for
the difference): 4.88 with the default 16 chains, 3183 with 2, so the false-alarm rate
stays below 1e-4 however few chains ran (:func:`fall_is_resolved`).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence

import numpy as np

from .. import bnn
from .. import diagnostics as dg
from .._io import escape_markdown
from ..datasets import Dataset
from ._archs import Architecture, as_floats, hyperparameters
from ._checks import check_kernels
from ._common import Context, Settings, fit_bnn_nuts, grid_for
from ._regression import ml_fit

__all__ = [
    "WidthSweep",
    "width_sweep",
    "sweep_settings",
    "standardised_distance",
    "fall_is_resolved",
    "fall_margin",
    "DEFAULT_WIDTHS",
]

DEFAULT_WIDTHS = (4, 16, 64, 256, 512)


def _w2z(mean, sd, ref_mean, ref_sd) -> np.ndarray:
    return np.sqrt(np.mean(((mean - ref_mean) ** 2 + (sd - ref_sd) ** 2) / ref_sd**2, axis=-1))


def standardised_distance(draws, ref: dg.GaussianPredictive, inside=None) -> dict:
    """``{"z_w2": d_z, "z_w2_se": jackknife se, "z_chains": C}`` of the draws
    ``(chains, draws, m)`` from ``ref`` over the points ``inside`` (a boolean mask;
    default all); see the module docstring. Needs at least 2 chains."""
    f = np.asarray(draws, np.float64)
    if f.ndim != 3 or f.shape[0] < 2 or f.shape[2] != ref.n:
        raise ValueError(
            f"`draws` must be (chains >= 2, draws, {ref.n}) function values, got {f.shape}"
        )
    inside = np.ones(ref.n, bool) if inside is None else np.asarray(inside, bool)
    if inside.shape != (ref.n,) or not inside.any():
        raise ValueError(f"`inside` must be a boolean mask of {ref.n} points with one True")
    f = f[..., inside]
    mu, s = ref.mean[inside], ref.std[inside]
    m1, m2 = f.mean(axis=1), (f**2).mean(axis=1)  # per chain: (C, m)
    C = f.shape[0]

    def dist(a1, a2):
        return _w2z(a1, np.sqrt(np.maximum(a2 - a1**2, 0.0)), mu, s)

    full = float(dist(m1.mean(0), m2.mean(0)))
    loo = dist((m1.sum(0) - m1) / (C - 1), (m2.sum(0) - m2) / (C - 1))  # (C,)
    se = float(np.sqrt((C - 1) / C * np.sum((loo - loo.mean()) ** 2)))
    return {"z_w2": full, "z_w2_se": se, "z_chains": C}


def fall_margin(narrow: dict, wide: dict, alpha: float = 1e-4) -> float:
    """The fall of d_z that :func:`fall_is_resolved` demands: the combined jackknife
    standard error times Student's t at one-sided ``alpha`` with (fewer chains - 1)
    degrees of freedom."""
    from scipy.stats import t

    df = min(narrow["z_chains"], wide["z_chains"]) - 1
    return float(t.isf(alpha, df)) * math.hypot(narrow["z_w2_se"], wide["z_w2_se"])


def fall_is_resolved(narrow: dict, wide: dict, alpha: float = 1e-4) -> bool:
    """Whether d_z fell from the row ``narrow`` to the row ``wide`` by more than
    :func:`fall_margin` (both must have converged): false-alarm rate below ``alpha``
    (module docstring)."""
    if not (narrow["converged"] and wide["converged"]):
        return False
    return narrow["z_w2"] - wide["z_w2"] > fall_margin(narrow, wide, alpha)


def _inside_data(ds: Dataset, x_eval: np.ndarray) -> np.ndarray:
    """The evaluation inputs inside the training inputs' range (all of them unless the
    inputs are 1-D and ``x_eval`` is a grid reaching beyond)."""
    if x_eval.shape[1:] != (1,):
        return np.ones(x_eval.shape[0], bool)
    lo, hi = float(ds.X_train[:, 0].min()), float(ds.X_train[:, 0].max())
    return (x_eval[:, 0] >= lo) & (x_eval[:, 0] <= hi)


def sweep_settings(**changes) -> Settings:
    """NUTS budgets of the sweep: the BNN defaults (:data:`ntk_bayes.bnn.DEFAULT_NUTS`:
    many vectorised chains; the readout, which the data pin hardest, integrated out)."""
    d = bnn.DEFAULT_NUTS
    base = dict(
        num_warmup=d["num_warmup"],
        num_samples=d["num_samples"],
        num_chains=d["num_chains"],
        max_tree_depth=d["max_tree_depth"],
    )
    base.update(changes)
    return Settings(**base)


@dataclasses.dataclass
class WidthSweep:
    """Result of :func:`width_sweep`.

    Attributes:
        dataset, arch, settings: what was run.
        widths: the widths, ascending.
        rows: one dict per width: ``width``, ``mean_abs_diff_mean``,
            ``mean_abs_diff_log_var``, ``w2``, ``z_w2`` and ``z_w2_se`` (standardised,
            inside the data, jackknife over chains; module docstring), ``z_chains``,
            ``max_rhat``, ``min_ess_bulk``, ``divergences``, ``converged``, ``time_s``.
        floor: the distances of S exact NNGP draws (the Monte Carlo floor).
        nngp: the fitted hyperparameters and noise.
        x_eval: evaluation inputs; ``nngp_pred`` the NNGP's latent predictive there and
            ``bnn_preds`` the BNN's (``SamplePredictive`` of f draws) by width.
    """

    dataset: Dataset
    arch: Architecture
    settings: Settings
    widths: list[int]
    rows: list[dict]
    floor: dict
    nngp: dict
    x_eval: np.ndarray
    nngp_pred: dg.GaussianPredictive
    bnn_preds: dict

    def slope(self, key: str = "mean_abs_diff_mean") -> float:
        """Least-squares slope of log(distance) against log(width), over the widths
        whose chains converged."""
        rows = [r for r in self.rows if r["converged"]]
        w = np.log([r["width"] for r in rows])
        d = np.log([max(r[key], 1e-300) for r in rows])
        return float(np.polyfit(w, d, 1)[0]) if len(w) >= 2 else math.nan

    def summary(self) -> dict:
        ds = self.dataset
        return {
            "command": "width-sweep",
            "dataset": {"name": ds.name, "n_train": ds.n_train, "description": ds.description},
            "architecture": self.arch.describe(),
            "settings": self.settings.as_dict(),
            "nngp": self.nngp,
            "evaluation_points": int(self.x_eval.shape[0]),
            "rows": self.rows,
            "not_converged": [r["width"] for r in self.rows if not r["converged"]],
            "floor": self.floor,
            "slopes": {
                "mean_abs_diff_mean": self.slope("mean_abs_diff_mean"),
                "mean_abs_diff_log_var": self.slope("mean_abs_diff_log_var"),
            },
        }


def width_sweep(
    ds: Dataset,
    arch: Architecture,
    widths: Sequence[int] = DEFAULT_WIDTHS,
    settings: Settings | None = None,
    log: Callable[[str], None] | None = None,
) -> WidthSweep:
    """Fit the NNGP once, then the BNN by NUTS at each width, and measure the distance.

    Args:
        ds: a regression dataset.
        arch: architecture; its depth and nonlinearity are used at every width.
        widths: positive hidden widths.
        settings: NUTS and fitting budgets (``width`` is ignored); default
            :func:`sweep_settings`.
        log: progress callback.
    """
    if ds.task != "regression":
        raise ValueError(f"width-sweep needs a regression dataset; {ds.name} is {ds.task}")
    widths = sorted({int(w) for w in widths})
    if not widths or widths[0] < 1:
        raise ValueError(f"`widths` must be positive integers, got {widths}")
    settings = sweep_settings() if settings is None else settings
    log = log or (lambda msg: None)
    check_kernels(ds, arch, ["nngp"], grid_for(ds))  # before any compilation
    ctx = Context(ds, arch, settings, log=log)
    log("[NNGP] type-II maximum likelihood")
    fit, _ = ml_fit(ctx, "nngp")
    x_eval = grid_for(ds)
    x_eval = ds.X_test if x_eval is None else x_eval
    mean, var = (np.asarray(a, np.float64) for a in fit.model.predict(x_eval))
    nngp_pred = dg.GaussianPredictive(mean, np.sqrt(np.maximum(var, 1e-12)))
    n_draws = settings.num_chains * settings.num_samples
    rng = np.random.default_rng(settings.seed)
    exact = dg.SamplePredictive(nngp_pred.sample(rng, max(n_draws, 2)))
    inside = _inside_data(ds, x_eval)
    floor = dg.predictive_distance(exact, nngp_pred)
    chains = max(settings.num_chains, 2)  # the exact draws as as many independent "chains"
    per = exact.samples[: chains * (exact.samples.shape[0] // chains)]
    floor.update(standardised_distance(per.reshape(chains, -1, per.shape[-1]), nngp_pred, inside))
    net = as_floats(fit.net)
    rows, preds = [], {}
    for i, w in enumerate(widths, 1):
        log(f"[{i}/{len(widths)}] BNN width {w} by NUTS")
        t0 = time.perf_counter()
        post = fit_bnn_nuts(bnn.BNN(net, width=w, noise=fit.noise), ctx, X_eval=x_eval)
        f = post.latent(x_eval)
        pred = dg.SamplePredictive(f.reshape(-1, f.shape[-1]))
        conv = post.convergence
        rows.append(
            {
                "width": w,
                **dg.predictive_distance(pred, nngp_pred),
                **standardised_distance(f, nngp_pred, inside),
                "max_rhat": conv.max_rhat,
                "min_ess_bulk": conv.min_ess_bulk,
                "divergences": conv.divergences,
                "converged": conv.converged,
                "mean_tree_depth": post.info["mean_tree_depth"],
                "time_s": time.perf_counter() - t0,
            }
        )
        preds[w] = pred
        log(
            f"  |Δ mean| {rows[-1]['mean_abs_diff_mean']:.3f}, "
            f"|Δ log var| {rows[-1]['mean_abs_diff_log_var']:.3f} ({rows[-1]['time_s']:.0f} s)"
            + ("" if conv.converged else f"; NOT converged: {'; '.join(conv.reasons())}")
        )
    nngp = {"hyperparameters": hyperparameters(net), "noise_var": fit.noise}
    return WidthSweep(ds, arch, settings, widths, rows, floor, nngp, x_eval, nngp_pred, preds)


def sweep_markdown(sweep: WidthSweep) -> str:
    """The sweep as a Markdown report (table, slopes, figures)."""
    s = sweep.summary()
    lines = [
        f"# ntk-bayes width-sweep: {escape_markdown(sweep.dataset.name)}",
        "",
        f"{escape_markdown(sweep.dataset.description)}  ",  # a library user's Dataset
        f"Architecture {sweep.arch.describe()}. NNGP hyperparameters by type-II ML, shared "
        f"by every BNN: {_fmt(s['nngp'])}. NUTS: {sweep.settings.num_chains} chains x "
        f"{sweep.settings.num_samples} draws ({sweep.settings.num_warmup} warmup), "
        f"max tree depth {sweep.settings.max_tree_depth}, seed {sweep.settings.seed}.",
        "",
        f"Distance of the BNN's posterior over the latent function from the NNGP posterior "
        f"at {s['evaluation_points']} evaluation inputs (standardised units):",
        "",
        "| width | mean abs diff of means | mean abs diff of log variances | W2 "
        "| d_z ± se (inside the data) | max R-hat "
        "| min ESS | divergences | converged | time (s) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|:---|---:|",
    ]
    for r in s["rows"]:
        lines.append(
            f"| {r['width']} | {r['mean_abs_diff_mean']:.4f} | {r['mean_abs_diff_log_var']:.4f} "
            f"| {r['w2']:.4f} | {r['z_w2']:.3f} ± {r['z_w2_se']:.3f} "
            f"| {r['max_rhat']:.3f} | {r['min_ess_bulk']:.0f} | "
            f"{r['divergences']} | {'yes' if r['converged'] else '**NOT converged**'} | "
            f"{r['time_s']:.1f} |"
        )
    f = s["floor"]
    lines += [
        f"| floor ({sweep.settings.num_chains * sweep.settings.num_samples} exact NNGP draws) | "
        f"{f['mean_abs_diff_mean']:.4f} | {f['mean_abs_diff_log_var']:.4f} | {f['w2']:.4f} "
        f"| {f['z_w2']:.3f} ± {f['z_w2_se']:.3f} | | | | | |",
        "",
        "d_z is the Wasserstein-2 distance in units of the NNGP's posterior sd over the "
        "evaluation inputs inside the training data's range; ± its Monte Carlo standard "
        "error (leave-one-chain-out jackknife). " + _falls(sweep.rows),
        "",
        f"Log-log slope against width (converged widths only): means "
        f"{s['slopes']['mean_abs_diff_mean']:+.2f}, log variances "
        f"{s['slopes']['mean_abs_diff_log_var']:+.2f} (negative: the BNN approaches the "
        "NNGP). Once a distance reaches the floor, Monte Carlo error, not width, dominates it."
        + (
            f" Widths {s['not_converged']} did not converge: their distances are not evidence."
            if s["not_converged"]
            else ""
        ),
        "",
        "![distance](distance.png)",
        "",
    ]
    if sweep.x_eval.shape[1:] == (1,):
        lines += ["![bands](bands.png)", ""]
    return "\n".join(lines)


def _falls(rows: list[dict]) -> str:
    """One sentence per pair of neighbouring converged widths: is d_z's fall resolved?"""
    ok = [r for r in rows if r["converged"]]
    if len(ok) < 2:
        return "Fewer than two widths converged: no fall can be judged."
    parts = []
    for a, b in zip(ok, ok[1:], strict=False):
        verdict = "resolved" if fall_is_resolved(a, b) else "not resolved"
        parts.append(
            f"{a['width']} -> {b['width']}: {a['z_w2'] - b['z_w2']:+.3f} "
            f"against {fall_margin(a, b):.3f}, {verdict}"
        )
    return (
        "Falls of d_z between converged widths (resolved when larger than the combined "
        "standard error times the t quantile for the chains; false alarm < 1e-4): "
        + "; ".join(parts)
        + "."
    )


def _fmt(d: dict) -> str:
    hyp = ", ".join(f"{k}={v:.3g}" for k, v in d["hyperparameters"].items())
    return f"{hyp}, noise variance {d['noise_var']:.3g}"


def sweep_figures(sweep: WidthSweep) -> dict:
    """``{"distance.png": Figure, "bands.png": Figure (1-D data only)}``."""
    from matplotlib.figure import Figure

    figs = {}
    fig = Figure(figsize=(6.0, 4.0), layout="constrained")
    ax = fig.add_subplot()
    w = [r["width"] for r in sweep.rows]
    for key, label, color in (
        ("mean_abs_diff_mean", "mean |Δ mean|", "C0"),
        ("mean_abs_diff_log_var", "mean |Δ log variance|", "C1"),
    ):
        ax.loglog(w, [r[key] for r in sweep.rows], "o-", color=color, label=label)
        ax.axhline(sweep.floor[key], color=color, ls=":", lw=1, label=f"{label}: MC floor")
    bad = [r for r in sweep.rows if not r["converged"]]
    if bad:
        for key in ("mean_abs_diff_mean", "mean_abs_diff_log_var"):
            ax.plot(
                [r["width"] for r in bad],
                [r[key] for r in bad],
                "x",
                color="red",
                ms=10,
                label="not converged" if key == "mean_abs_diff_mean" else None,
            )
    ax.set(xlabel="hidden width", ylabel="distance to the NNGP posterior")
    ax.set_title("Finite BNN (NUTS) vs NNGP posterior")
    ax.legend(fontsize="small")
    figs["distance.png"] = fig
    ds = sweep.dataset
    if sweep.x_eval.shape[1:] == (1,):
        x = ds.unstandardize_x(sweep.x_eval)[:, 0]

        def raw(p):
            if isinstance(p, dg.GaussianPredictive):
                return dg.GaussianPredictive(ds.unstandardize_y(p.mean), ds.y_std * p.std)
            return dg.SamplePredictive(ds.unstandardize_y(p.samples))

        shown = {"NNGP": raw(sweep.nngp_pred)}
        for wd in sorted({sweep.widths[0], sweep.widths[-1]}):
            shown[f"BNN width {wd}"] = raw(sweep.bnn_preds[wd])
        figs["bands.png"] = dg.plot_predictive_bands(
            ds.unstandardize_x(ds.X_train),
            ds.unstandardize_y(ds.y_train),
            x,
            shown,
            gap=ds.extra.get("gap"),
        )
        figs["bands.png"].axes[0].set_title("Posterior of the latent function (90% bands)")
    return figs
