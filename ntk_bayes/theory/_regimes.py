r"""Where a finite network stands: kernel evolution and finite-width corrections.

*Kernel evolution* trains the same architecture in the lazy ("ntk") and rich ("mup")
scalings (:func:`scaled_mlp`) and measures the relative change of the effective NTK

.. math::

    Δ_Θ(n) = \frac{\lVert Θ_T - Θ_0 \rVert_F}{\lVert Θ_0 \rVert_F}

after T steps. In the lazy scaling Δ_Θ = O(n^{-1/2}) (Jacot et al. 2018; Lee et al.
2019; Chizat, Oyallon & Bach 2019); in the maximal-update scaling it stays O(1) (Yang &
Hu 2021).

*Finite-width corrections* compare the empirical NTK \hat Θ_n of S random networks of
width n at initialisation with the analytic Θ:

.. math::

    \text{spread}(n) = \frac{\lVert \operatorname{sd}_s \hat Θ_n \rVert_F}{\lVert Θ \rVert_F}
    = O(n^{-1/2}), \qquad
    \text{bias}(n) = \frac{\lVert \operatorname{mean}_s \hat Θ_n - Θ \rVert_F}{\lVert Θ \rVert_F}
    = O(n^{-1})

(Hanin & Nica 2020; Dyer & Gur-Ari 2020). The bias of a one-hidden-layer network is
exactly zero (its NTK is an average of i.i.d. units); estimated from S seeds it sits at
the Monte Carlo floor spread / sqrt(S), which is reported alongside it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import numpy as np
from jaxtyping import ArrayLike, PRNGKeyArray

from .. import stax
from .._numerics import as_float_array, check_finite, check_int
from ..predict import max_learning_rate
from ..stax._core import outputs_unchecked
from ._linearize import effective_ntk_fn
from ._parameterization import PARAMETERIZATIONS, _check_parameterization, scaled_mlp
from ._training import _positive_float, relative_change, train

__all__ = [
    "LogLogFit",
    "fit_loglog",
    "KernelEvolution",
    "kernel_evolution",
    "FiniteWidthCorrections",
    "finite_width_corrections",
    "default_learning_rate",
]


@dataclasses.dataclass(frozen=True)
class LogLogFit:
    """Least-squares line log y = slope · log x + intercept, with the slope's std. error."""

    slope: float
    intercept: float
    stderr: float

    def __call__(self, x):
        return np.exp(self.intercept) * np.asarray(x, np.float64) ** self.slope


def fit_loglog(x, y) -> LogLogFit:
    """Fit a power law y ≈ C x^slope by least squares on log-log axes."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.shape != y.shape or x.ndim != 1 or x.size < 2:
        raise ValueError(f"need two 1-D arrays of equal length >= 2, got {x.shape}, {y.shape}")
    if not (np.all(np.isfinite(x) & (x > 0)) and np.all(np.isfinite(y) & (y > 0))):
        raise ValueError("fit_loglog needs strictly positive, finite x and y")
    lx, ly = np.log(x), np.log(y)
    A = np.stack([lx, np.ones_like(lx)], axis=1)
    coef, *_ = np.linalg.lstsq(A, ly, rcond=None)
    resid = ly - A @ coef
    dof = lx.size - 2
    if dof > 0:
        s2 = float(resid @ resid) / dof
        stderr = float(np.sqrt(s2 / np.sum((lx - lx.mean()) ** 2)))
    else:
        stderr = float("nan")
    return LogLogFit(float(coef[0]), float(coef[1]), stderr)


def _check_widths(widths) -> tuple[int, ...]:
    ws = tuple(widths)
    if not ws or any(isinstance(w, bool) or not isinstance(w, int | np.integer) for w in ws):
        raise ValueError(f"`widths` must be a non-empty sequence of integers, got {widths!r}")
    if min(ws) < 1 or len(set(ws)) != len(ws):
        raise ValueError(f"`widths` must be distinct positive integers, got {ws}")
    return tuple(sorted(int(w) for w in ws))


def _check_seeds(n_seeds, name="n_seeds", minimum=1) -> int:
    return check_int(n_seeds, name, low=minimum)


def default_learning_rate(net: stax.Layer, x, n_outputs: int = 1, fraction: float = 0.5):
    """``fraction`` of the largest stable GD step for the infinite-width NTK on ``x``.

    Gradient descent on the mean squared error of N points and K outputs is stable iff
    η < 2 N K / λ_max(Θ); this returns ``fraction`` times that bound.
    """
    K = net.kernel_fn(x, None, "ntk")
    return fraction * max_learning_rate(K, K.shape[0] * n_outputs)


@dataclasses.dataclass(frozen=True)
class KernelEvolution:
    """Result of :func:`kernel_evolution`.

    Attributes:
        widths: ``(W,)`` hidden widths.
        change: parameterisation -> ``(n_seeds, W)`` relative NTK change after training.
        final_loss: parameterisation -> ``(n_seeds, W)`` training loss at the end.
        initial_loss: parameterisation -> ``(n_seeds, W)`` training loss at step 0.
        learning_rate, steps: the optimisation budget (same for every run).
    """

    widths: np.ndarray
    change: dict
    final_loss: dict
    initial_loss: dict
    learning_rate: float
    steps: int

    def mean_change(self, parameterization: str) -> np.ndarray:
        return self.change[_check_parameterization(parameterization)].mean(axis=0)

    def fit(self, parameterization: str) -> LogLogFit:
        """Power law of the mean relative change against width."""
        return fit_loglog(self.widths, self.mean_change(parameterization))

    def rows(self) -> list[dict]:
        """One row per (parameterisation, width): mean and sd over seeds, losses."""
        out = []
        for p, ch in self.change.items():
            for j, w in enumerate(self.widths):
                out.append(
                    {
                        "experiment": "kernel_evolution",
                        "parameterization": p,
                        "width": int(w),
                        "mean": float(ch[:, j].mean()),
                        "sd": float(ch[:, j].std(ddof=1)) if ch.shape[0] > 1 else float("nan"),
                        "initial_loss": float(self.initial_loss[p][:, j].mean()),
                        "final_loss": float(self.final_loss[p][:, j].mean()),
                    }
                )
        return out


def kernel_evolution(
    x_train: ArrayLike,
    y_train: ArrayLike,
    widths: Sequence[int],
    *,
    key: PRNGKeyArray,
    parameterizations: Sequence[str] = PARAMETERIZATIONS,
    depth: int = 1,
    nonlinearity: stax.Layer | None = None,
    W_std: float = 1.0,
    b_std: float | None = None,
    learning_rate: float | None = None,
    steps: int = 200,
    n_seeds: int = 3,
) -> KernelEvolution:
    """Relative NTK change ||Θ_T - Θ_0||_F / ||Θ_0||_F after ``steps`` of full-batch GD.

    Every (parameterisation, width, seed) trains :func:`scaled_mlp` with the same
    learning rate and number of steps; seed s uses the same initial weights in both
    parameterisations, so both start from the same effective NTK.

    Args:
        x_train: ``(N, d)`` inputs.
        y_train: ``(N, K)`` targets.
        widths: hidden widths to compare.
        key: PRNG key (seed s of width n uses ``fold_in(fold_in(key, n), s)``).
        parameterizations: any of ``"ntk"`` (lazy) and ``"mup"`` (rich).
        depth: hidden layers of the network (see :func:`scaled_mlp`).
        nonlinearity: its nonlinearity (default ``stax.Relu()``).
        W_std: σ_w of every Dense layer.
        b_std: σ_b of every Dense layer (``None``: no biases).
        learning_rate: GD step; default half the stable maximum of the infinite-width
            NTK on ``x_train`` (:func:`default_learning_rate`).
        steps: GD steps.
        n_seeds: random initialisations per width.
    """
    ws = _check_widths(widths)
    n_seeds = _check_seeds(n_seeds)
    ps = tuple(dict.fromkeys(_check_parameterization(p) for p in parameterizations))
    if not ps:
        raise ValueError("`parameterizations` must name at least one of 'ntk', 'mup'")
    x = as_float_array(x_train, "x_train")
    y = as_float_array(y_train, "y_train")
    if y.ndim != 2 or y.shape[0] != x.shape[0]:
        raise ValueError(f"`y_train` must have shape ({x.shape[0]}, K), got {y.shape}")
    check_finite(x, "x_train")
    check_finite(y, "y_train")
    spec = dict(depth=depth, nonlinearity=nonlinearity, W_std=W_std, b_std=b_std)
    spec["out_dim"] = y.shape[1]
    lazy0 = scaled_mlp(ws[0], **spec).lazy_net
    _check_output_scale(lazy0, x, y, spec)
    if learning_rate is None:
        learning_rate = default_learning_rate(lazy0, x, y.shape[1])
    learning_rate = _positive_float(learning_rate, "learning_rate")
    change = {p: np.zeros((n_seeds, len(ws))) for p in ps}
    final = {p: np.zeros((n_seeds, len(ws))) for p in ps}
    initial = {p: np.zeros((n_seeds, len(ws))) for p in ps}
    for j, w in enumerate(ws):
        for p in ps:
            model = scaled_mlp(w, parameterization=p, **spec)
            for s in range(n_seeds):
                k = jax.random.fold_in(jax.random.fold_in(key, w), s)
                _, params = model.init_fn(k, x.shape)
                h = train(
                    model.apply_fn,
                    params,
                    x,
                    y,
                    learning_rate=learning_rate,
                    steps=steps,
                    lr_scales=model.lr_scales(params),
                    linearized=False,
                    record_steps=(0, steps),
                )
                change[p][s, j] = h.kernel_change[-1]
                initial[p][s, j] = h.loss[0]
                final[p][s, j] = h.loss[-1]
    _check_moved(initial, final, float(learning_rate), steps)
    return KernelEvolution(np.asarray(ws), change, final, initial, float(learning_rate), steps)


#: the prior output variance may exceed the targets' second moment at most this much
MAX_OUTPUT_SCALE = 1e6
#: a run "moved" when its loss fell by at least this fraction
MIN_LOSS_DROP = 1e-3


def _check_output_scale(net, x, y, spec) -> None:
    """Refuse an architecture whose initial outputs dwarf the targets.

    Then the stable learning rate underflows (~1/λ_max(Θ)) and training only shrinks
    the random initial function: the kernel change measures that collapse, the same for
    every parameterisation, and says nothing about lazy or rich learning.
    """
    with outputs_unchecked():  # an inf prior gets the message below, which says why
        prior = float(np.mean(np.diag(np.asarray(net.kernel_fn(x, None, "nngp")))))
    scale = max(float(np.mean(np.asarray(y) ** 2)), np.finfo(np.float32).tiny)
    if not np.isfinite(prior) or prior > MAX_OUTPUT_SCALE * scale:
        raise ValueError(
            f"the network's initial outputs have variance {prior:.3g}, {prior / scale:.3g} "
            f"times the targets' mean square (W_std={spec['W_std']}, depth {spec['depth']}): "
            "the stable learning rate underflows and training would only shrink the random "
            "initial function, so the lazy/rich comparison would be meaningless. Lower W_std "
            "(sqrt(2) is critical for ReLU) or the depth"
        )


def _check_moved(initial, final, lr, steps) -> None:
    """Refuse results of training runs that did not reduce their loss."""
    stuck = [p for p in initial if np.all(final[p] > (1.0 - MIN_LOSS_DROP) * initial[p])]
    if stuck:
        raise ValueError(
            f"training did not move in the {', '.join(stuck)} parameterisation(s): after "
            f"{steps} steps at learning rate {lr:.3g} no run reduced its loss by "
            f"{MIN_LOSS_DROP:.0%}; the kernel change would be noise. Raise the learning "
            "rate or the number of steps"
        )


@dataclasses.dataclass(frozen=True)
class FiniteWidthCorrections:
    """Result of :func:`finite_width_corrections` (relative Frobenius norms).

    Attributes:
        widths: ``(W,)``. deviation: ``(n_seeds, W)`` ||Θ̂_s - Θ|| / ||Θ|| per seed.
        spread: ``(W,)`` ||sd_s Θ̂|| / ||Θ||. bias: ``(W,)`` ||mean_s Θ̂ - Θ|| / ||Θ||.
        noise_floor: ``(W,)`` spread / sqrt(n_seeds), the Monte Carlo error of ``bias``.
    """

    widths: np.ndarray
    deviation: np.ndarray
    spread: np.ndarray
    bias: np.ndarray
    noise_floor: np.ndarray

    @property
    def n_seeds(self) -> int:
        return self.deviation.shape[0]

    def fit(self, quantity: str = "spread") -> LogLogFit:
        """Power law of ``"spread"``, ``"deviation"`` (seed mean) or ``"bias"`` vs width."""
        values = {
            "spread": self.spread,
            "deviation": self.deviation.mean(axis=0),
            "bias": self.bias,
        }
        if quantity not in values:
            raise ValueError(f"`quantity` must be one of {tuple(values)}, got {quantity!r}")
        return fit_loglog(self.widths, values[quantity])

    def rows(self) -> list[dict]:
        return [
            {
                "experiment": "finite_width",
                "width": int(w),
                "deviation_mean": float(self.deviation[:, j].mean()),
                "spread": float(self.spread[j]),
                "bias": float(self.bias[j]),
                "noise_floor": float(self.noise_floor[j]),
            }
            for j, w in enumerate(self.widths)
        ]


def finite_width_corrections(
    net_fn: Callable[[int], stax.Layer],
    x: ArrayLike,
    widths: Sequence[int],
    *,
    key: PRNGKeyArray,
    n_seeds: int = 16,
) -> FiniteWidthCorrections:
    """Deviation of the empirical NTK at initialisation from the analytic NTK, by width.

    Args:
        net_fn: ``width -> stax network`` (e.g. ``lambda n: scaled_mlp(n, 2).lazy_net``);
            the analytic kernel is taken from ``net_fn(widths[0]).kernel_fn``.
        x: ``(N, ...)`` inputs on which the ``N x N`` NTK is compared.
        widths: widths n to compare.
        key: PRNG key; seed s of width n uses ``fold_in(fold_in(key, n), s)``.
        n_seeds: random networks per width (>= 2, to estimate the spread).
    """
    if not callable(net_fn):
        raise TypeError("`net_fn` must be a callable width -> stax network")
    ws = _check_widths(widths)
    n_seeds = _check_seeds(n_seeds, minimum=2)
    x = as_float_array(x, "x")
    check_finite(x, "x")
    nets = [net_fn(w) for w in ws]
    for w, net in zip(ws, nets, strict=True):
        if not isinstance(net, stax.Layer):
            raise TypeError(f"net_fn({w}) returned {type(net).__name__}, not a stax network")
    theta = np.asarray(nets[0].kernel_fn(x, None, "ntk"), np.float64)
    norm = np.linalg.norm(theta)
    if not (np.isfinite(norm) and norm > 0):
        raise ValueError(
            f"the analytic NTK on `x` has Frobenius norm {norm:g}, so deviations relative to "
            "it are undefined; give the network nonzero W_std/b_std and inputs that are not "
            "all zero"
        )
    dev = np.zeros((n_seeds, len(ws)))
    spread, bias = np.zeros(len(ws)), np.zeros(len(ws))
    for j, (w, net) in enumerate(zip(ws, nets, strict=True)):
        ntk_fn = effective_ntk_fn(net.apply_fn)
        keys = [jax.random.fold_in(jax.random.fold_in(key, w), s) for s in range(n_seeds)]
        emp = np.stack(
            [np.asarray(ntk_fn(x, None, _init(net, k, x.shape)), np.float64) for k in keys]
        )
        if not np.all(np.isfinite(emp)):
            raise FloatingPointError(f"empirical NTK at width {w} is not finite")
        dev[:, j] = relative_change(emp, theta)
        spread[j] = np.linalg.norm(emp.std(axis=0, ddof=1)) / norm
        bias[j] = np.linalg.norm(emp.mean(axis=0) - theta) / norm
    return FiniteWidthCorrections(np.asarray(ws), dev, spread, bias, spread / np.sqrt(n_seeds))


@eqx.filter_jit
def _init(net, key, shape):
    return net.init_fn(key, shape)[1]
