r"""Train a finite network and its linearisation side by side with optax.

Both minimise the same mean squared error (neural-tangents' normalisation)

.. math::

    L(θ) = \frac{1}{2 N K} \sum_{i,k} (f_k(θ, x_i) - y_{ik})^2

by (stochastic) gradient descent with step ``learning_rate`` (optionally per-leaf
multipliers ``lr_scales`` and heavy-ball ``momentum``). Step t of gradient descent
corresponds to time t of ``predict.gradient_descent_mse`` with the same learning rate,
where the linearised model follows f_t - y = exp(-η t Θ / (N K)) (f_0 - y) exactly in
the continuous-time limit (Lee et al. 2019).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import ArrayLike, PRNGKeyArray

from .._numerics import as_float_array, check_finite, check_int
from ._linearize import _check_apply_fn, _check_params, check_lr_scales, effective_ntk_fn
from ._linearize import linearize as _linearize

__all__ = ["TrainingHistory", "train", "mse_loss", "relative_change"]


def mse_loss(f, y):
    """``0.5 * mean((f - y)**2)``: the loss whose gradient flow the predict module solves."""
    return 0.5 * jnp.mean((f - y) ** 2)


def relative_change(K_t, K_0) -> np.ndarray:
    """``||K_t - K_0||_F / ||K_0||_F`` over the last two axes (any leading axes)."""
    K_t, K_0 = np.asarray(K_t, np.float64), np.asarray(K_0, np.float64)
    return np.linalg.norm(K_t - K_0, axis=(-2, -1)) / np.linalg.norm(K_0, axis=(-2, -1))


@dataclasses.dataclass(frozen=True)
class TrainingHistory:
    """Recorded trajectory of :func:`train` (NumPy arrays, float64 where derived).

    Attributes:
        steps: ``(T,)`` recorded step numbers (time in units of the learning rate).
        loss, loss_lin: ``(T,)`` full-batch training loss of the network / linearisation.
        f_train, f_lin_train: ``(T, N, K)`` outputs on the training inputs.
        f_test, f_lin_test: ``(T, M, K)`` outputs on ``x_test`` (``None`` without it).
        ntk_steps: ``(S,)`` steps at which the effective NTK was recorded.
        ntk: ``(S, P, P)`` the network's effective NTK on the first P training inputs.
        y_train: the targets. params, params_lin: final parameters.
    """

    steps: np.ndarray
    loss: np.ndarray
    f_train: np.ndarray
    f_test: np.ndarray | None
    loss_lin: np.ndarray | None
    f_lin_train: np.ndarray | None
    f_lin_test: np.ndarray | None
    ntk_steps: np.ndarray
    ntk: np.ndarray
    y_train: np.ndarray
    learning_rate: float
    params: Any = dataclasses.field(repr=False)
    params_lin: Any = dataclasses.field(repr=False)

    @property
    def kernel_change(self) -> np.ndarray:
        """``(S,)`` relative Frobenius change ||Θ_t - Θ_0|| / ||Θ_0|| of the NTK."""
        return relative_change(self.ntk, self.ntk[0])

    def trajectory_gap(self, split: str = "train") -> np.ndarray:
        """``(T,)`` RMS distance between network and linearisation outputs, relative to
        the RMS of the targets (``split`` is ``"train"`` or ``"test"``)."""
        if self.f_lin_train is None:
            raise ValueError("this run had linearized=False; train again with linearized=True")
        if split not in ("train", "test"):
            raise ValueError(f"`split` must be 'train' or 'test', got {split!r}")
        f, g = (
            (self.f_train, self.f_lin_train) if split == "train" else (self.f_test, self.f_lin_test)
        )
        if f is None:
            raise ValueError("no test outputs were recorded; pass x_test to train()")
        diff = np.asarray(f, np.float64) - np.asarray(g, np.float64)
        scale = np.sqrt(np.mean(np.asarray(self.y_train, np.float64) ** 2))
        if not scale > 0:
            raise ValueError(
                "the targets are all zero, so a gap relative to RMS(y_train) is undefined; "
                "compare f_train and f_lin_train directly"
            )
        return np.sqrt(np.mean(diff**2, axis=(1, 2))) / scale


def _number(v, name) -> float:
    if isinstance(v, bool | str | bytes) or np.ndim(v) != 0:
        raise TypeError(f"`{name}` must be a number, got {v!r}")
    try:
        return float(v)
    except (TypeError, ValueError):
        raise TypeError(f"`{name}` must be a number, got {v!r}") from None


def _positive_float(v, name) -> float:
    x = _number(v, name)
    if not math.isfinite(x) or x <= 0:
        raise ValueError(f"`{name}` must be a positive finite number, got {v!r}")
    return x


def _positive_int(v, name, allow_zero=False):
    return check_int(v, name, low=0 if allow_zero else 1)


def _record_grid(steps, record_every, record_steps, name):
    if record_steps is not None:
        for s in record_steps:
            if isinstance(s, bool) or not isinstance(s, int | np.integer):
                raise ValueError(f"`{name}` must be integer steps, got {list(record_steps)}")
        grid = sorted({int(s) for s in record_steps})
        if not grid or grid[0] < 0 or grid[-1] > steps:
            raise ValueError(f"`{name}` must lie in [0, steps={steps}], got {list(record_steps)}")
        return grid
    every = max(1, steps // 100) if record_every is None else _positive_int(record_every, name)
    return sorted(set(range(0, steps + 1, every)) | {0, steps})


def train(
    apply_fn: Callable,
    params: Any,
    x_train: ArrayLike,
    y_train: ArrayLike,
    *,
    learning_rate: float,
    steps: int,
    x_test: ArrayLike | None = None,
    batch_size: int | None = None,
    momentum: float | None = None,
    key: PRNGKeyArray | None = None,
    lr_scales: Any = None,
    linearized: bool = True,
    record_every: int | None = None,
    record_steps: Sequence[int] | None = None,
    ntk_steps: Sequence[int] | None = None,
    ntk_points: int | None = None,
) -> TrainingHistory:
    """Train ``apply_fn`` from ``params`` (and, if ``linearized``, its linearisation).

    Args:
        apply_fn: ``apply_fn(params, x)`` returning ``(N, K)`` outputs.
        params: initial parameters θ0 (also the linearisation point).
        x_train: ``(N, ...)`` inputs.
        y_train: ``(N, K)`` targets.
        learning_rate: step size η > 0 (use ``scaled_mlp(...).lr_scales`` for
            per-parameter rates).
        steps: number of optimisation steps.
        x_test: optional ``(M, ...)`` inputs whose outputs are recorded.
        batch_size: ``None`` for full-batch GD, else SGD minibatches of this size
            (drawn without replacement each step from ``key``).
        momentum: heavy-ball momentum of ``optax.sgd`` (``None``: plain GD/SGD).
        key: PRNG key, required for SGD.
        lr_scales: per-leaf multipliers of ``learning_rate`` (pytree like ``params``).
        linearized: also train the linearised model from the same θ0.
        record_every: record outputs and loss every this many steps (default: about
            100 evenly spaced steps, always including 0 and ``steps``).
        record_steps: the steps at which to record instead (takes precedence over
            ``record_every``).
        ntk_steps: when to record the effective NTK (default ``(0, steps)``).
        ntk_points: NTK on the first ``ntk_points`` training inputs (default all).

    Returns:
        A :class:`TrainingHistory`.
    """
    _check_apply_fn(apply_fn)
    _check_params(params)
    lr = _positive_float(learning_rate, "learning_rate")
    steps = _positive_int(steps, "steps", allow_zero=True)
    x = as_float_array(x_train, "x_train")
    y = as_float_array(y_train, "y_train").astype(x.dtype)
    if y.ndim != 2 or y.shape[0] != x.shape[0]:
        raise ValueError(
            f"`y_train` must have shape (N, K) with N = {x.shape[0]} (the rows of x_train), "
            f"got {y.shape}; reshape a vector with y[:, None]"
        )
    check_finite(x, "x_train")
    check_finite(y, "y_train")
    n = x.shape[0]
    f0 = jax.eval_shape(lambda p: apply_fn(p, x), params)
    if f0.shape != y.shape:
        raise ValueError(
            f"apply_fn(params, x_train) has shape {f0.shape} but `y_train` has {y.shape}"
        )
    xt = None
    if x_test is not None:
        xt = as_float_array(x_test, "x_test").astype(x.dtype)
        if xt.shape[1:] != x.shape[1:]:
            raise ValueError(f"`x_test` points have shape {xt.shape[1:]}, x_train's {x.shape[1:]}")
        check_finite(xt, "x_test")
    if batch_size is not None:
        batch_size = _positive_int(batch_size, "batch_size")
        if batch_size > n:
            raise ValueError(f"`batch_size` ({batch_size}) exceeds the {n} training points")
        if key is None:
            raise ValueError("SGD (batch_size given) needs a PRNG `key`, e.g. jax.random.key(0)")
    if momentum is not None and not 0 <= _number(momentum, "momentum") < 1:
        raise ValueError(f"`momentum` must be in [0, 1), got {momentum}")
    lr_scales = check_lr_scales(lr_scales, params)
    m = n if ntk_points is None else _positive_int(ntk_points, "ntk_points")
    if m > n:
        raise ValueError(f"`ntk_points` ({m}) exceeds the {n} training points")
    rec = _record_grid(steps, record_every, record_steps, "record_steps")
    ntk_at = (0, steps) if ntk_steps is None else ntk_steps
    ntk_grid = _record_grid(steps, None, ntk_at, "ntk_steps")
    boundaries = sorted(set(rec) | set(ntk_grid))

    cfg = _Config(batch_size, None if momentum is None else float(momentum), bool(linearized))
    lr_arr = jnp.asarray(lr, x.dtype)
    key = jax.random.key(0) if key is None else key
    ntk_fn = effective_ntk_fn(apply_fn, lr_scales)
    xs_ntk = x[:m]
    opt = cfg.optimizer(lr_arr)
    carry = (params, opt.init(params), params, opt.init(params))
    records, ntks, done = [], [], 0
    for b in boundaries:
        if b > done:
            carry = _advance(
                apply_fn, lr_scales, cfg, params, carry, jnp.asarray(done), jnp.asarray(b),
                x, y, lr_arr, key,
            )  # fmt: skip
            done = b
        if b in rec:
            out = _outputs(apply_fn, cfg, params, carry[0], carry[2], x, y, xt)
            out = {k: np.asarray(v) for k, v in out.items()}
            if not np.isfinite(out["loss"]) or (
                "loss_lin" in out and not np.isfinite(out["loss_lin"])
            ):
                raise FloatingPointError(_diverged_message(b, lr, ntks, y.size, m == n))
            records.append(out)
        if b in ntk_grid:
            ntks.append(np.asarray(ntk_fn(xs_ntk, None, carry[0])))

    def stack(name):
        if name not in records[0]:
            return None
        return np.stack([r[name] for r in records])

    return TrainingHistory(
        steps=np.asarray(rec),
        loss=stack("loss"),
        f_train=stack("f"),
        f_test=stack("ft"),
        loss_lin=stack("loss_lin"),
        f_lin_train=stack("g"),
        f_lin_test=stack("gt"),
        ntk_steps=np.asarray(ntk_grid),
        ntk=np.stack(ntks),
        y_train=np.asarray(y),
        learning_rate=lr,
        params=carry[0],
        params_lin=carry[2] if linearized else None,
    )


def _diverged_message(step, lr, ntks, y_size, full) -> str:
    msg = f"training diverged by step {step} (non-finite loss) at learning_rate={lr:g}"
    if ntks and full:
        lam = float(np.linalg.eigvalsh(np.asarray(ntks[0], np.float64))[-1])
        msg += (
            f"; gradient descent on this loss is stable only for learning_rate < "
            f"2 N K / λ_max(Θ_0) = {2 * y_size / lam:.3g}"
        )
    return msg + ". Lower the learning rate."


class _Config(NamedTuple):
    """Static training options (hashed by the jit cache)."""

    batch_size: int | None
    momentum: float | None
    linearized: bool

    def optimizer(self, lr):
        return optax.sgd(lr, momentum=self.momentum)


def _scale(g, lr_scales):
    if lr_scales is None:
        return g
    return jax.tree_util.tree_map(lambda gi, si: gi * si, g, lr_scales)


# Module-level jits keyed on (apply_fn, static options): repeated runs of networks of the
# same structure (seeds, widths already seen) reuse the compiled loop.
@eqx.filter_jit
def _advance(apply_fn, lr_scales, cfg, params0, carry, lo, hi, x, y, lr, key):
    opt = cfg.optimizer(lr)
    f_lin = _linearize(apply_fn, params0) if cfg.linearized else None
    n = x.shape[0]

    def update(fn, p, s, xb, yb):
        g = _scale(jax.grad(lambda q: mse_loss(fn(q, xb), yb))(p), lr_scales)
        upd, s = opt.update(g, s, p)
        return optax.apply_updates(p, upd), s

    def body(i, c):
        p, s, pl, sl = c
        if cfg.batch_size is None:
            xb, yb = x, y
        else:
            idx = jax.random.choice(jax.random.fold_in(key, i), n, (cfg.batch_size,), False)
            xb, yb = x[idx], y[idx]
        p, s = update(apply_fn, p, s, xb, yb)
        if f_lin is not None:
            pl, sl = update(f_lin, pl, sl, xb, yb)
        return p, s, pl, sl

    return jax.lax.fori_loop(lo, hi, body, carry)


@eqx.filter_jit
def _outputs(apply_fn, cfg, params0, p, pl, x, y, xt):
    out = {"f": apply_fn(p, x)}
    out["loss"] = mse_loss(out["f"], y)
    if xt is not None:
        out["ft"] = apply_fn(p, xt)
    if cfg.linearized:
        f_lin = _linearize(apply_fn, params0)
        out["g"] = f_lin(pl, x)
        out["loss_lin"] = mse_loss(out["g"], y)
        if xt is not None:
            out["gt"] = f_lin(pl, xt)
    return out
