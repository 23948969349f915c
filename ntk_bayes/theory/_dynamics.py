r"""Analytic gradient-descent dynamics of the infinite-width ensemble against real training.

The mean of the infinitely wide, GD-trained ensemble at step t (Lee et al. 2019, eq. 16)

.. math::

    μ_t(x) = Θ(x, X)\, Θ^{-1} \big(I - e^{-η t Θ / (N K)}\big)\, Y

comes from :func:`ntk_bayes.predict.gradient_descent_mse_ensemble`, with Θ = Θ(X, X)
the analytic NTK, η the learning rate, N K the number of targets. It is compared with
networks of finite width trained by full-batch gradient descent (:func:`train`) from
``n_nets`` random initialisations. With ``center=True`` each network is trained as
g(θ, x) = f(θ, x) - f(θ_0, x), whose linearisation follows μ_t with the *empirical* NTK
exactly, so the gap to μ_t measures the finite-width error alone, O(n^{-1/2}) rather
than the O(1) spread of f(θ_0, ·) over initialisations.

μ_t describes gradient *flow*; gradient descent with step η follows instead
(I - η Θ / (N K))^t, which differs from e^{-η t Θ / (N K)} by O(η λ_max / (N K)) in the
fastest modes. The default learning rate is therefore small (5% of the stable maximum),
and :attr:`DynamicsComparison.discretization_gap` reports the gap between the two
analytic means, the floor below which no width can bring the networks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import equinox as eqx
import jax
import numpy as np
from jaxtyping import ArrayLike, PRNGKeyArray

from .. import stax
from .._numerics import as_float_array, check_finite
from ..predict import gradient_descent_mse_ensemble
from ._regimes import LogLogFit, _check_seeds, _check_widths, default_learning_rate, fit_loglog
from ._training import _positive_float, train

__all__ = ["DynamicsComparison", "dynamics_comparison", "CenteredApply"]


class CenteredApply(eqx.Module):
    """``g(θ, x) = f(θ, x) - f(θ0, x)``: a network that outputs 0 at initialisation."""

    apply_fn: Callable
    params0: Any

    def __call__(self, params, x, **kwargs):
        return self.apply_fn(params, x, **kwargs) - self.apply_fn(self.params0, x, **kwargs)


@dataclasses.dataclass(frozen=True)
class DynamicsComparison:
    """Result of :func:`dynamics_comparison`.

    Attributes:
        steps: ``(T,)`` GD steps (times in units of the learning rate).
        widths: ``(W,)``.
        analytic_train, analytic_test: ``(T, N, K)``, ``(T, M, K)`` ensemble means μ_t.
        network_train, network_test: ``(W, T, N, K)``, ``(W, T, M, K)`` mean outputs of
            the ``n_nets`` trained networks of each width.
        discretization_gap: ``(T,)`` RMS gap on ``x_test`` between μ_t and the mean of
            infinitely wide networks trained by *discrete* GD at this learning rate,
            over RMS(y_train): the error floor of the comparison.
        y_train: targets; learning_rate, center, n_nets: the settings.
    """

    steps: np.ndarray
    widths: np.ndarray
    analytic_train: np.ndarray
    analytic_test: np.ndarray
    network_train: np.ndarray
    network_test: np.ndarray
    discretization_gap: np.ndarray
    y_train: np.ndarray
    learning_rate: float
    center: bool
    n_nets: int

    def error(self, split: str = "test") -> np.ndarray:
        """``(W, T)`` RMS gap between the networks' mean and μ_t, over RMS(y_train)."""
        if split not in ("train", "test"):
            raise ValueError(f"`split` must be 'train' or 'test', got {split!r}")
        net = self.network_test if split == "test" else self.network_train
        ana = self.analytic_test if split == "test" else self.analytic_train
        gap = np.sqrt(np.mean((net - ana[None]) ** 2, axis=(2, 3)))
        return gap / np.sqrt(np.mean(self.y_train**2))

    def fit(self, split: str = "test") -> LogLogFit:
        """Power law of the worst-over-time error against width."""
        return fit_loglog(self.widths, self.error(split).max(axis=1))


def dynamics_comparison(
    net_fn: Callable[[int], stax.Layer],
    x_train: ArrayLike,
    y_train: ArrayLike,
    x_test: ArrayLike,
    widths: Sequence[int],
    *,
    steps: Sequence[int],
    key: PRNGKeyArray,
    learning_rate: float | None = None,
    n_nets: int = 2,
    center: bool = True,
) -> DynamicsComparison:
    """Analytic ensemble mean μ_t against GD training of finite networks, over time.

    Args:
        net_fn: ``width -> stax network`` (``ntk`` parameterisation); the analytic
            kernel is ``net_fn(widths[0]).kernel_fn``.
        x_train: ``(N, d)`` training inputs.
        y_train: ``(N, K)`` training targets.
        x_test: ``(M, d)`` inputs at which predictions are compared.
        widths: widths of the trained networks.
        steps: GD steps at which to compare (0 is allowed).
        key: PRNG key; network s of width n uses ``fold_in(fold_in(key, n), s)``.
        learning_rate: η (default: 5% of the stable maximum for the analytic NTK, so that
            discrete GD tracks the gradient flow that μ_t describes).
        n_nets: trained networks averaged per width.
        center: train g = f - f(θ_0) (see the module docstring) instead of f.
    """
    if not callable(net_fn):
        raise TypeError("`net_fn` must be a callable width -> stax network")
    ws = _check_widths(widths)
    n_nets = _check_seeds(n_nets, "n_nets")
    x = as_float_array(x_train, "x_train")
    y = as_float_array(y_train, "y_train").astype(x.dtype)
    xt = as_float_array(x_test, "x_test").astype(x.dtype)
    if y.ndim != 2 or y.shape[0] != x.shape[0]:
        raise ValueError(f"`y_train` must have shape ({x.shape[0]}, K), got {y.shape}")
    for a, name in ((x, "x_train"), (y, "y_train"), (xt, "x_test")):
        check_finite(a, name)
    if not np.any(np.asarray(y) != 0):
        raise ValueError(
            "`y_train` is all zeros: the gaps are reported relative to RMS(y_train), which is "
            "0, and every trained network stays at its initial function"
        )
    if learning_rate is not None:
        learning_rate = _positive_float(learning_rate, "learning_rate")
    ts = sorted({int(s) for s in steps})
    if not ts or ts[0] < 0:
        raise ValueError(f"`steps` must be non-negative integers, got {list(steps)}")
    nets = [net_fn(w) for w in ws]
    for w, net in zip(ws, nets, strict=True):
        if not isinstance(net, stax.Layer):
            raise TypeError(f"net_fn({w}) returned {type(net).__name__}, not a stax network")
    if learning_rate is None:
        learning_rate = default_learning_rate(nets[0], x, y.shape[1], fraction=0.05)
    predict_fn = gradient_descent_mse_ensemble(nets[0].kernel_fn, x, y, learning_rate)
    t = np.asarray(ts, np.float64)
    ana_train = np.asarray(predict_fn(t=t, x_test=None, get="ntk"), np.float64)
    ana_test = np.asarray(predict_fn(t=t, x_test=xt, get="ntk"), np.float64)
    disc = _discrete_gd_mean(
        nets[0].kernel_fn(x, None, "ntk"), nets[0].kernel_fn(xt, x, "ntk"), y, learning_rate, ts
    )
    y_rms = float(np.sqrt(np.mean(np.asarray(y, np.float64) ** 2)))
    disc_gap = np.sqrt(np.mean((disc - ana_test) ** 2, axis=(1, 2))) / y_rms

    net_train = np.zeros((len(ws),) + ana_train.shape)
    net_test = np.zeros((len(ws),) + ana_test.shape)
    for j, (w, net) in enumerate(zip(ws, nets, strict=True)):
        for s in range(n_nets):
            k = jax.random.fold_in(jax.random.fold_in(key, w), s)
            _, params = net.init_fn(k, x.shape)
            fn = CenteredApply(net.apply_fn, params) if center else net.apply_fn
            h = train(
                fn,
                params,
                x,
                y,
                x_test=xt,
                learning_rate=learning_rate,
                steps=ts[-1],
                linearized=False,
                record_steps=ts,
            )
            net_train[j] += h.f_train / n_nets
            net_test[j] += h.f_test / n_nets
    return DynamicsComparison(
        steps=np.asarray(ts),
        widths=np.asarray(ws),
        analytic_train=ana_train,
        analytic_test=ana_test,
        network_train=net_train,
        network_test=net_test,
        discretization_gap=disc_gap,
        y_train=np.asarray(y, np.float64),
        learning_rate=float(learning_rate),
        center=bool(center),
        n_nets=n_nets,
    )


def _discrete_gd_mean(k_dd, k_td, y, lr, steps) -> np.ndarray:
    """``(T, M, K)`` mean of infinitely wide networks after ``steps`` of discrete GD:
    Θ(x, X) Θ^{-1} (I - (I - η Θ / (N K))^t) Y, in Θ's eigenbasis (float64)."""
    k_dd = np.asarray(k_dd, np.float64)
    k_td = np.asarray(k_td, np.float64)
    y = np.asarray(y, np.float64)
    lam, V = np.linalg.eigh(0.5 * (k_dd + k_dd.T))
    lam = np.maximum(lam, 0.0)
    a = lr * lam / y.size
    proj = V.T @ y
    out = []
    for t in steps:
        decay = (1.0 - a) ** t
        # (1 - (1 - a)^t) / λ, with its λ -> 0 limit t η / (N K).
        small = lam <= 1e-12 * max(lam.max(), 1e-300)
        gain = np.where(small, t * lr / y.size, (1.0 - decay) / np.where(small, 1.0, lam))
        out.append(k_td @ (V @ (gain[:, None] * proj)))
    return np.stack(out)
