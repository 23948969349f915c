"""Convergence of a sampled BNN, judged on function values (weights have symmetries).

The bar (Vehtari et al. 2021, "Rank-normalization, folding, and localization"): split
R-hat ≤ 1.01 and bulk ESS ≥ 400 at every evaluation input, no divergent transitions, and
every function value finite (a NaN at one point would otherwise drop out of the worst case
unseen). Split R-hat needs at least 2 chains (ArviZ's rule), so one chain never meets it.
Tree-depth saturation is reported but does not fail the bar on its own (it costs time,
not correctness).
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np

__all__ = ["Convergence", "RHAT_BAR", "ESS_BAR", "function_convergence"]

RHAT_BAR = 1.01
ESS_BAR = 400.0


@dataclasses.dataclass(frozen=True)
class Convergence:
    """Diagnostics of one sampled fit.

    Attributes:
        max_rhat: worst rank-normalised split R-hat over the function values.
        min_ess_bulk: smallest bulk effective sample size over the function values.
        divergences: divergent transitions after warmup (all chains).
        tree_depth_saturation: fraction of draws that hit ``max_tree_depth``.
        n_chains, n_draws: draws the diagnostics come from.
        n_points: evaluation inputs (function values per draw).
        rhat_bar, ess_bar: the bar.
        non_finite: function values that are NaN or infinite (any fails the bar).
    """

    max_rhat: float
    min_ess_bulk: float
    divergences: int
    tree_depth_saturation: float
    n_chains: int
    n_draws: int
    n_points: int
    rhat_bar: float = RHAT_BAR
    ess_bar: float = ESS_BAR
    non_finite: int = 0

    @property
    def converged(self) -> bool:
        """Split R-hat ≤ bar, bulk ESS ≥ bar, no divergences and every function value
        finite (NaN fails)."""
        return bool(
            self.max_rhat <= self.rhat_bar
            and self.min_ess_bulk >= self.ess_bar
            and self.divergences == 0
            and self.non_finite == 0
        )

    def reasons(self) -> list[str]:
        """Why the bar fails (empty when converged)."""
        out = []
        if self.non_finite:
            out.append(f"{self.non_finite} non-finite function values (NaN/inf)")
        if self.n_chains < 2:
            out.append(f"split R-hat needs at least 2 chains, got {self.n_chains}")
        elif not self.max_rhat <= self.rhat_bar:
            out.append(f"max split R-hat {self.max_rhat:.3f} > {self.rhat_bar}")
        if not self.min_ess_bulk >= self.ess_bar:
            out.append(f"min bulk ESS {self.min_ess_bulk:.0f} < {self.ess_bar:.0f}")
        if self.divergences:
            out.append(f"{self.divergences} divergent transitions")
        return out

    def as_dict(self) -> dict:
        return {**dataclasses.asdict(self), "converged": self.converged}

    def __str__(self) -> str:
        head = "converged" if self.converged else "NOT converged: " + "; ".join(self.reasons())
        return (
            f"{head} (split R-hat {self.max_rhat:.3f}, bulk ESS {self.min_ess_bulk:.0f}, "
            f"{self.divergences} divergences, {100 * self.tree_depth_saturation:.0f}% at max "
            f"tree depth; {self.n_chains} chains x {self.n_draws} draws, {self.n_points} points)"
        )


def function_convergence(
    f, *, divergences: int = 0, tree_depth_saturation: float = 0.0
) -> Convergence:
    """Diagnostics from function draws ``f`` of shape ``(chains, draws, ...)``: ArviZ's
    rank-normalised split R-hat and bulk ESS (Vehtari et al. 2021) at every point, worst
    case taken."""
    from .. import diagnostics as dg

    f = np.asarray(f, np.float64)
    if f.ndim < 2:
        raise ValueError(f"`f` must be (chains, draws, ...), got shape {f.shape}")
    c, d = f.shape[:2]
    if d < 4:
        raise ValueError(f"need at least 4 draws per chain for split R-hat, got {d}")
    x = f.reshape(c, d, -1)
    non_finite = int(np.sum(~np.isfinite(x)))
    if non_finite:  # diagnose the finite part; the count fails the bar on its own
        x = np.where(np.isfinite(x), x, np.nan)
    if non_finite == x.size:
        conv = {"max_rhat": math.nan, "min_ess_bulk": math.nan}
    else:
        idata = dg.to_inference_data(posterior={"f": x}, dims={"f": ["point"]})
        with warnings.catch_warnings():
            # one chain: ArviZ gives every R-hat as NaN; reasons() says why
            warnings.filterwarnings("ignore", "All-NaN slice", RuntimeWarning)
            conv = dg.convergence(idata, var_names=["f"])
    return Convergence(
        max_rhat=_nan_to(conv["max_rhat"], math.inf),
        min_ess_bulk=_nan_to(conv["min_ess_bulk"], 0.0),
        divergences=int(divergences),
        tree_depth_saturation=float(tree_depth_saturation),
        n_chains=int(c),
        n_draws=int(d),
        n_points=int(x.shape[-1]),
        non_finite=non_finite,
    )


def _nan_to(v: float, fill: float) -> float:
    return fill if math.isnan(v) else float(v)
