"""Figures of the theory instruments (matplotlib, no pyplot state).

Each function returns a :class:`matplotlib.figure.Figure` (save it with
``fig.savefig(path)``); pass ``ax`` to draw into an existing axes instead.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "plot_kernel_evolution",
    "plot_finite_width",
    "plot_training",
    "plot_dynamics",
    "plot_phase_diagram",
    "plot_ntk_spectrum",
]

_COLORS = {"ntk": "tab:blue", "mup": "tab:red"}
_LABELS = {"ntk": "NTK scaling (lazy)", "mup": "maximal-update scaling (rich)"}


def _axes(ax, ncols=1, figsize=(5.0, 3.8)):
    if ax is not None:
        return ax.figure, ax
    from matplotlib.figure import Figure

    fig = Figure(figsize=(figsize[0] * ncols, figsize[1]), layout="constrained")
    return fig, fig.subplots(1, ncols)


def plot_kernel_evolution(result, ax=None):
    """Relative NTK change after training against width, both scalings, log-log."""
    fig, ax = _axes(ax)
    w = result.widths
    for p, ch in result.change.items():
        mean = ch.mean(axis=0)
        err = ch.std(axis=0, ddof=1) if ch.shape[0] > 1 else None
        ax.errorbar(w, mean, yerr=err, fmt="o", color=_COLORS.get(p), label=_LABELS.get(p, p))
        fit = result.fit(p)
        ax.plot(w, fit(w), "-", color=_COLORS.get(p), alpha=0.6, label=f"slope {fit.slope:+.2f}")
    ref = result.mean_change("ntk")[0] if "ntk" in result.change else 1.0
    ax.plot(w, ref * (w / w[0]) ** -0.5, ":", color="gray", label="width$^{-1/2}$")
    ax.plot(w, ref * (w / w[0]) ** -1.0, "--", color="gray", label="width$^{-1}$")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="width n",
        ylabel=r"$\|\Theta_T-\Theta_0\|_F / \|\Theta_0\|_F$",
        title=f"NTK change after {result.steps} GD steps",
    )
    ax.legend(fontsize=7)
    return fig


def plot_finite_width(result, ax=None):
    """Spread, mean deviation and bias of the empirical NTK at init against width."""
    fig, ax = _axes(ax)
    w = result.widths
    fit = result.fit("spread")
    ax.plot(w, result.spread, "o", color="tab:blue", label="spread over seeds")
    ax.plot(w, fit(w), "-", color="tab:blue", alpha=0.6, label=f"fit: slope {fit.slope:+.2f}")
    ax.plot(w, result.deviation.mean(axis=0), "s", color="tab:green", label="mean deviation")
    ax.plot(w, result.bias, "^", color="tab:red", label="bias of the seed mean")
    ax.plot(w, result.noise_floor, ":", color="tab:red", label="Monte Carlo floor of the bias")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="width n",
        ylabel=r"relative to $\|\Theta\|_F$",
        title=f"Empirical vs analytic NTK at init ({result.n_seeds} seeds)",
    )
    ax.legend(fontsize=7)
    return fig


def plot_training(history, ax=None):
    """Training loss of the network and its linearisation over steps."""
    fig, ax = _axes(ax)
    t = np.maximum(history.steps, 1)
    ax.plot(t, history.loss, "-", label="network")
    if history.loss_lin is not None:
        ax.plot(t, history.loss_lin, "--", label="linearised")
    ax.set(xscale="log", yscale="log", xlabel="step", ylabel="training loss")
    ax.legend(fontsize=8)
    return fig


def plot_dynamics(result, point: int = 0, axes=None):
    """Left: the analytic mean μ_t and the trained networks at one test point over t.
    Right: RMS gap to μ_t against t for every width, with the discretisation floor."""
    fig, axes = _axes(axes, ncols=2)
    t = np.maximum(result.steps, 1)
    ax = axes[0]
    ax.plot(t, result.analytic_test[:, point, 0], "k-", lw=2, label="analytic mean (NTK)")
    for j, w in enumerate(result.widths):
        ax.plot(t, result.network_test[j, :, point, 0], "o--", ms=3, label=f"width {w}")
    ax.set(xscale="log", xlabel="step t", ylabel=f"f_t(x_test[{point}])")
    ax.legend(fontsize=7)
    ax = axes[1]
    err = result.error("test")
    for j, w in enumerate(result.widths):
        ax.plot(t[1:], err[j, 1:], "o-", ms=3, label=f"width {w}")
    ax.plot(t[1:], result.discretization_gap[1:], "k:", label="floor: discrete GD vs flow")
    ax.set(xscale="log", yscale="log", xlabel="step t", ylabel="RMS gap to μ_t / RMS(y)")
    ax.legend(fontsize=7)
    return fig


def plot_phase_diagram(diagram, ax=None):
    """log10 χ₁ over (σ_w, σ_b) with the computed order-to-chaos line."""
    fig, ax = _axes(ax)
    with np.errstate(divide="ignore"):
        z = np.log10(diagram.chi_1)
    lim = np.nanmax(np.abs(z[np.isfinite(z)])) if np.isfinite(z).any() else 1.0
    mesh = ax.pcolormesh(
        diagram.W_std, diagram.b_std, z, cmap="RdBu_r", vmin=-lim, vmax=lim, shading="auto"
    )
    fig.colorbar(mesh, ax=ax, label=r"$\log_{10}\chi_1$")
    ax.plot(diagram.critical_W, diagram.b_std, "k-", lw=2, label=r"critical line $\chi_1=1$")
    ax.text(0.05, 0.9, "ordered", transform=ax.transAxes)
    ax.text(0.75, 0.1, "chaotic", transform=ax.transAxes)
    ax.set(xlabel=r"$\sigma_w$ (W_std)", ylabel=r"$\sigma_b$ (b_std)")
    ax.legend(fontsize=8, loc="upper right")
    return fig


def plot_ntk_spectrum(spectra: dict, ax=None):
    """Condition number of the NTK against depth; ``spectra`` maps a label to an
    :class:`NTKSpectrum`."""
    fig, ax = _axes(ax)
    for label, s in spectra.items():
        ax.plot(s.depths, s.condition["ntk"], "o-", ms=3, label=label)
    ax.set(yscale="log", xlabel="depth (hidden layers)", ylabel=r"cond($\Theta$)")
    ax.legend(fontsize=7)
    return fig
