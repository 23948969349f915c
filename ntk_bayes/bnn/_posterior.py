"""Posterior draws of a finite BNN: predictions, log-likelihoods and ArviZ data."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

from ..diagnostics import (
    SamplePredictive,
    from_class_probs,
    from_latent_samples,
)
from ._convergence import Convergence
from ._likelihood import log_probs

if TYPE_CHECKING:
    import arviz
    import xarray

__all__ = ["BNNPosterior"]

_WEIGHTS_IN_IDATA = 20_000  # numbers per draw above which weights stay out of ArviZ data


@dataclasses.dataclass
class BNNPosterior:
    """Draws ``{site: (chain, draw, ...)}`` of a :class:`BNN` fitted by NUTS or SVI.

    Attributes:
        bnn: the model (a :class:`~ntk_bayes.bnn.BNN`).
        samples: posterior draws of every latent site (weights, noise).
        info: settings and run summary (method, time, divergences, ...).
        sample_stats: per-draw sampler statistics ``(chain, draw)`` (NUTS only).
        X_train, y_train: the data it was fitted on.
        losses: the SVI loss trace (SVI only).
        convergence: split R-hat, bulk ESS, divergences and tree-depth saturation on
            function values, with the ``converged`` verdict (NUTS fits; ``None`` for SVI,
            whose draws are independent but not from the posterior).
    """

    bnn: Any
    samples: dict[str, np.ndarray]
    info: dict[str, Any]
    sample_stats: dict[str, np.ndarray]
    X_train: np.ndarray
    y_train: np.ndarray
    losses: np.ndarray | None = None
    convergence: Convergence | None = None

    @property
    def converged(self) -> bool:
        """Whether the sampler met the convergence bar (False without diagnostics)."""
        return self.convergence is not None and self.convergence.converged

    @property
    def num_chains(self) -> int:
        return int(next(iter(self.samples.values())).shape[0])

    @property
    def num_draws(self) -> int:
        return int(next(iter(self.samples.values())).shape[1])

    def _flat(self) -> dict[str, np.ndarray]:
        return {k: v.reshape((-1,) + v.shape[2:]) for k, v in self.samples.items()}

    def noise(self) -> np.ndarray:
        """Noise variance σ² per draw ``(chain, draw)`` (Gaussian likelihood)."""
        if self.bnn.likelihood != "gaussian":
            raise ValueError(f"a {self.bnn.likelihood} likelihood has no noise")
        site = f"{self.bnn.name}_noise"
        if site in self.samples:
            return np.asarray(self.samples[site], np.float64)
        return np.full((self.num_chains, self.num_draws), float(self.bnn.noise))

    def noise_std(self) -> np.ndarray:
        """Noise standard deviation σ per draw ``(chain, draw)`` (Gaussian likelihood)."""
        return np.sqrt(self.noise())

    def outputs(self, X: ArrayLike, *, batch_size: int = 256) -> np.ndarray:
        """Network outputs ``(chain, draw, n, K)`` at inputs ``X``, one per draw."""
        if np.ndim(X) >= 2 and tuple(np.shape(X)[1:]) != tuple(self.X_train.shape[1:]):
            raise ValueError(
                f"`X` points have shape {tuple(np.shape(X)[1:])} but the network was fitted "
                f"on points of shape {tuple(self.X_train.shape[1:])}; pass inputs like the "
                "training data"
            )
        out = self.bnn.outputs(self._flat(), X, batch_size=batch_size)
        return out.reshape((self.num_chains, self.num_draws) + out.shape[1:])

    def latent(self, X: ArrayLike, *, batch_size: int = 256) -> np.ndarray:
        """Latent regression function draws ``(chain, draw, n)`` (Gaussian likelihood)."""
        if self.bnn.likelihood != "gaussian":
            raise ValueError("latent() is for regression; use probs() for classifiers")
        return self.outputs(X, batch_size=batch_size)[..., 0]

    def probs(self, X: ArrayLike, *, batch_size: int = 256) -> np.ndarray:
        """Class probabilities per draw ``(chain, draw, n, K)`` (classification)."""
        if self.bnn.likelihood == "gaussian":
            raise ValueError("probs() is for classifiers; use predictive() for regression")
        return np.exp(log_probs(self.bnn.likelihood, self.outputs(X, batch_size=batch_size)))

    def predictive(self, X: ArrayLike, *, batch_size: int = 256) -> SamplePredictive | np.ndarray:
        """The posterior predictive at ``X``.

        Returns:
            Regression: a :class:`~ntk_bayes.diagnostics.SamplePredictive` (latent draws
                with their noise). Classification: mean class probabilities ``(n, K)``.
        """
        if self.bnn.likelihood == "gaussian":
            f = self.latent(X, batch_size=batch_size)
            return SamplePredictive(f.reshape(-1, f.shape[-1]), self.noise_std().reshape(-1))
        return self.probs(X, batch_size=batch_size).mean(axis=(0, 1))

    def log_likelihood(self, X: ArrayLike, y: ArrayLike) -> np.ndarray:
        """Pointwise log p(y_i | draw) ``(chain, draw, n)``."""
        X, y_checked = self.bnn.check_data(X, y)
        out = self.outputs(X).astype(np.float64)
        if self.bnn.likelihood == "gaussian":
            y = np.asarray(y, np.float64).reshape(-1)  # the targets as given, not rounded
            sd = self.noise_std()[..., None]
            z = (y - out[..., 0]) / sd
            return -0.5 * z * z - np.log(sd) - 0.5 * np.log(2 * np.pi)
        lp = log_probs(self.bnn.likelihood, out)
        codes = np.asarray(y_checked).astype(np.int64)
        return np.take_along_axis(lp, codes[None, None, :, None], -1)[..., 0]

    def to_inference_data(
        self,
        X_test: ArrayLike | None = None,
        y_test: ArrayLike | None = None,
        *,
        include_weights: bool | None = None,
        seed: int = 0,
        attrs: dict | None = None,
    ) -> arviz.InferenceData | xarray.DataTree:
        """ArviZ data in the layout of :mod:`ntk_bayes.diagnostics` (y on the training
        data, y_test on the test data).

        Args:
            X_test: held-out inputs (optional, with ``y_test``).
            y_test: held-out targets.
            include_weights: store weight draws in ``posterior``; by default only when a
                draw has at most 20,000 numbers (wide networks would make files of GBs).
                The noise is always stored.
            seed: seeds the noise of predictive draws.
            attrs: extra global attributes.
        """
        per_draw = sum(int(np.prod(v.shape[2:])) for v in self.samples.values())
        if include_weights is None:
            include_weights = per_draw <= _WEIGHTS_IN_IDATA
        posterior = {
            k: v for k, v in self.samples.items() if include_weights or not self.bnn.is_weight(k)
        }
        meta = {
            "model": "bnn",
            "inference": self.info.get("method", ""),
            "width": -1 if self.bnn.width is None else int(self.bnn.width),
            "likelihood": self.bnn.likelihood,
            **{k: v for k, v in self.info.items() if np.ndim(v) == 0 and k != "convergence"},
            **({} if self.convergence is None else {"converged": self.convergence.converged}),
            **(attrs or {}),
        }
        if (X_test is None) != (y_test is None):
            raise ValueError("pass `X_test` and `y_test` together (or neither)")
        if self.bnn.likelihood == "gaussian":
            f_test = None if X_test is None else self.latent(X_test)
            if y_test is not None:
                self.bnn.check_data(X_test, y_test)
                # function-space draws: R-hat/ESS that weight-space symmetries do not spoil
                posterior["f_test"] = f_test
            return from_latent_samples(
                f_train=self.latent(self.X_train),
                y_train=self.y_train,
                f_test=f_test,
                y_test=None if y_test is None else np.asarray(y_test, np.float64),
                noise_std=self.noise_std(),
                posterior=posterior or None,
                sample_stats=self.sample_stats or None,
                seed=seed,
                attrs=meta,
            )
        if y_test is not None:
            self.bnn.check_data(X_test, y_test)
        return from_class_probs(
            probs_train=self.probs(self.X_train),
            y_train=self.y_train,
            probs_test=None if X_test is None else self.probs(X_test),
            y_test=y_test,
            posterior=posterior or None,
            sample_stats=self.sample_stats or None,
            seed=seed,
            attrs=meta,
        )

    def sampler_report(self) -> str:
        """A short account of the run: time, divergences, tree depth (NUTS), loss (SVI)."""
        i = self.info
        if i.get("method") == "svi":
            return (
                f"SVI (AutoNormal): {i['num_steps']} steps in {i['time_s']:.1f} s, loss "
                f"{i['initial_loss']:.4g} -> {i['final_loss']:.4g}"
            )
        div = i["divergences_per_chain"]
        sat = i["max_tree_depth_fraction_per_chain"]
        lines = [
            f"NUTS: {i['num_chains']} chains x {i['num_samples']} draws "
            f"({i['num_warmup']} warmup) in {i['time_s']:.1f} s; mean tree depth "
            f"{i['mean_tree_depth']:.1f}, mean acceptance {i['mean_acceptance']:.2f}"
        ]
        for c, (d, s) in enumerate(zip(div, sat, strict=True)):
            flag = []
            if d:
                flag.append(f"{d} divergent transitions")
            if s > 0:
                flag.append(f"{100 * s:.0f}% of draws hit max_tree_depth={i['max_tree_depth']}")
            lines.append(f"  chain {c}: " + ("; ".join(flag) if flag else "ok"))
        if sum(div):
            lines.append(
                "  divergences bias the posterior: raise target_accept_prob or simplify the model"
            )
        if self.convergence is not None:
            lines.append(f"  function space: {self.convergence}")
        return "\n".join(lines)
