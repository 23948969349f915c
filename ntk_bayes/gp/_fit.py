"""Fitting loops: optax on the negative ELBO / marginal likelihood, with progress and
convergence stopping.

:func:`optimize` is the generic loop. Steps run in rounds compiled as one
``lax.scan`` (an epoch of shuffled minibatches when ``data`` is given, else
``steps_per_round`` full-batch steps); after each round the mean loss is shown and
the loop stops once the relative improvement of the best loss stays below ``tol``
for ``patience`` rounds. A non-finite loss *or gradient* stops it, the round discarded,
with an explanation naming the step and the parameters: a finite loss with a NaN
gradient turns the parameters NaN through the update, so checking losses alone reports
it a step late, or, on the last step of the last round, returns NaN parameters silently.

:func:`fit_exact`, :func:`fit_sgpr` and :func:`fit_svgp` build the trainable pytree
(log noise variance, inducing inputs, kernel hyperparameters) and call it. Kernel
hyperparameters are optimised unconstrained (a network's ``W_std``/``b_std`` enter as
squares, so their sign is irrelevant); only the noise variance is log-transformed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, ArrayLike, PRNGKeyArray

from ._checks import check_jitter, check_X, check_y
from ._exact import ExactGP
from ._likelihoods import Gaussian
from ._sgpr import SGPR
from ._svgp import SVGP, SVGPParams

if TYPE_CHECKING:
    from ..stax import Layer
    from ._kernels import GPKernel

__all__ = ["FitResult", "optimize", "fit_exact", "fit_sgpr", "fit_svgp", "trainable_floats"]


class FitResult(NamedTuple):
    """Outcome of :func:`optimize`: final ``params``, per-round mean ``losses``,
    whether the convergence criterion was met, the number of optimiser steps and the
    wall time of each round (the first includes compilation)."""

    params: Any
    losses: np.ndarray
    converged: bool
    num_steps: int
    round_times: np.ndarray


def trainable_floats(
    tree: Any, dtype: Any = None, names: tuple[str, ...] | None = ("W_std", "b_std")
) -> Any:
    """Turn Python-float leaves called ``names`` into JAX arrays so optax trains them.

    A network written ``Dense(512, W_std=1.5)`` holds a Python float, which JAX
    transformations treat as a constant; only array leaves are optimised. Other float
    leaves (e.g. a nonlinearity's slopes) stay fixed unless given as arrays.
    """
    dtype = jnp.result_type(float) if dtype is None else dtype

    def conv(path, x):
        last = path[-1] if path else None
        name = getattr(last, "name", None)
        if isinstance(x, float) and not isinstance(x, bool) and (names is None or name in names):
            return jnp.asarray(x, dtype)
        return x

    return jax.tree_util.tree_map_with_path(conv, tree)


def optimize(
    loss_fn: Callable[..., Array],
    params: Any,
    *,
    optimizer: optax.GradientTransformation | None = None,
    max_rounds: int = 100,
    steps_per_round: int | None = None,
    data: tuple | None = None,
    batch_size: int | None = None,
    key: PRNGKeyArray | None = None,
    tol: float = 1e-5,
    patience: int = 3,
    quiet: bool = False,
    desc: str = "optimising",
) -> FitResult:
    """Minimise ``loss_fn`` over the inexact-array leaves of ``params`` with optax.

    Args:
        loss_fn: ``loss_fn(params)``, or with ``data`` ``loss_fn(params, batch, key)``
            where ``batch`` is a tuple of minibatch arrays.
        params: pytree; its floating-point array leaves are trained, the rest is fixed.
        optimizer: an optax optimiser (default ``optax.adam(1e-2)``).
        max_rounds: at most this many rounds (epochs when ``data`` is given).
        steps_per_round: full-batch steps per round (default 10); with ``data``, one
            epoch of ``len(data[0]) // batch_size`` steps.
        data: tuple of arrays sharing their first axis, shuffled every epoch.
        batch_size: minibatch size with ``data``.
        key: PRNG key for shuffling and stochastic losses (required with ``data``).
        tol: relative improvement of the best round loss below which a round counts as
            stalled.
        patience: stalled rounds in a row that end the loop.
        quiet: no progress display.
        desc: label of the progress display.

    Raises:
        FloatingPointError: when a step's loss or gradient is not finite (the message
            names the step and, for a gradient, the parameters concerned).
    """
    optimizer = optax.adam(1e-2) if optimizer is None else optimizer
    diff, static = eqx.partition(params, eqx.is_inexact_array)
    if not jax.tree_util.tree_leaves(diff):
        raise ValueError("`params` has no floating-point array leaves to optimise")
    if data is not None:
        if key is None:
            raise ValueError("`key` is required with `data` (minibatches are shuffled)")
        n = data[0].shape[0]
        if any(a.shape[0] != n for a in data):
            raise ValueError("all arrays in `data` must share their first axis")
        if batch_size is None or not 1 <= int(batch_size) <= n:
            raise ValueError(f"`batch_size` must be in [1, {n}], got {batch_size!r}")
        steps = n // int(batch_size)
    else:
        steps = 10 if steps_per_round is None else int(steps_per_round)
        key = jax.random.PRNGKey(0) if key is None else key
    if steps < 1 or max_rounds < 1:
        raise ValueError("`steps_per_round` and `max_rounds` must be >= 1")
    opt_state = optimizer.init(diff)
    names = [jax.tree_util.keystr(path) for path, _ in jax.tree_util.tree_leaves_with_path(diff)]

    @eqx.filter_jit
    def run_round(diff, opt_state, key, data):
        def loss_of(d, batch, k):
            p = eqx.combine(d, static)
            return loss_fn(p) if batch is None else loss_fn(p, batch, k)

        if data is not None:
            key, sub = jax.random.split(key)
            perm = jax.random.permutation(sub, data[0].shape[0])[: steps * batch_size]
            idx = perm.reshape(steps, batch_size)
        else:
            idx = jnp.zeros((steps, 0), jnp.int32)
        keys = jax.random.split(key, steps)

        def step(carry, inp):
            d, s = carry
            i, k = inp
            batch = None if data is None else tuple(a[i] for a in data)
            loss, g = eqx.filter_value_and_grad(loss_of)(d, batch, k)
            grad_ok = jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(g)])
            updates, s = optimizer.update(g, s, d)
            return (eqx.apply_updates(d, updates), s), (loss, grad_ok)

        (diff, opt_state), (losses, grad_ok) = jax.lax.scan(step, (diff, opt_state), (idx, keys))
        return diff, opt_state, losses, grad_ok

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    history, times, best, stalled, converged, done = [], [], math.inf, 0, False, 0
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} rounds  loss {task.fields[loss]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, disable=quiet, transient=False) as progress:
        task = progress.add_task(desc, total=max_rounds, loss="-")
        for r in range(max_rounds):
            key, sub = jax.random.split(key)
            t0 = time.perf_counter()
            new_diff, new_state, losses, grad_ok = run_round(diff, opt_state, sub, data)
            losses, grad_ok = np.asarray(losses), np.asarray(grad_ok)
            times.append(time.perf_counter() - t0)
            step_ok = np.isfinite(losses) & grad_ok.all(axis=1)
            if not step_ok.all():
                raise FloatingPointError(
                    _non_finite_message(
                        desc,
                        done,
                        step_ok,
                        losses,
                        grad_ok,
                        names,
                        history[-1] if history else None,
                    )
                )
            diff, opt_state = new_diff, new_state
            done += steps
            round_loss = float(np.mean(losses))
            history.append(round_loss)
            progress.update(task, advance=1, loss=f"{round_loss:.6g}")
            improvement = (best - round_loss) / max(abs(best), 1e-12) if r else math.inf
            best = min(best, round_loss)
            stalled = stalled + 1 if improvement < tol else 0
            if stalled >= patience:
                converged = True
                break
    return FitResult(
        eqx.combine(diff, static), np.asarray(history), converged, done, np.asarray(times)
    )


def _non_finite_message(desc, done, step_ok, losses, grad_ok, names, last) -> str:
    bad = int(np.argmin(step_ok))  # the first step whose loss or gradient failed
    if np.isfinite(losses[bad]):
        leaves = ", ".join(
            n or "params" for n, ok in zip(names, grad_ok[bad], strict=True) if not ok
        )
        what = f"the gradient in {leaves} became non-finite (loss {losses[bad]:.6g})"
    else:
        what = "the loss became non-finite"
    return (
        f"{desc}: {what} at step {done + bad + 1} (last finite round loss "
        f"{'n/a' if last is None else f'{last:.6g}'}); lower the learning rate, use float64 "
        "(jax_enable_x64), or check the data for outliers and the initial hyperparameters"
    )


def _positive(log_v):
    return jnp.exp(log_v)


def _fit_full_batch(build, loss_of_model, theta, *, optimizer, max_iters, tol, quiet, desc):
    """Minimise ``loss_of_model(build(theta))`` with :func:`optimize` (ten steps per
    round) and return ``(build(fitted theta), FitResult)``: the shared tail of
    :func:`fit_exact` and :func:`fit_sgpr`."""
    res = optimize(
        lambda th: loss_of_model(build(th)),
        theta,
        optimizer=optimizer,
        max_rounds=max(1, max_iters // 10),
        tol=tol,
        quiet=quiet,
        desc=desc,
    )
    return build(res.params), res


def fit_exact(
    kernel: Layer | GPKernel | Callable[..., Array],
    X: ArrayLike,
    y: ArrayLike,
    noise: ArrayLike,
    *,
    mean: ArrayLike | Callable[[Array], Array] = 0.0,
    jitter: float | None = None,
    optimize_kernel: bool = True,
    optimize_noise: bool = True,
    kind: str = "nngp",
    optimizer: optax.GradientTransformation | None = None,
    max_iters: int = 500,
    tol: float = 1e-6,
    quiet: bool = False,
) -> tuple[ExactGP, FitResult]:
    """Type-II maximum likelihood of an :class:`ExactGP`'s hyperparameters.

    ``mean``, ``jitter`` and ``kind`` are as for :class:`ExactGP` and are kept by every
    model the loop builds.

    Returns:
        ``(ExactGP at the fitted hyperparameters, FitResult)``.
    """
    from ._kernels import as_kernel

    jitter = check_jitter(jitter)
    # ExactGP's own checks run inside the traced loss, where they cannot see values
    check_y(y, check_X(X, "X").shape[0], "y")
    k0 = trainable_floats(as_kernel(kernel, kind))
    theta = {}
    if optimize_noise:
        theta["log_noise"] = jnp.log(jnp.asarray(noise, jnp.result_type(float)))
    if optimize_kernel:
        theta["kernel"] = k0
    n_out = int(np.prod(np.shape(y)))

    def build(th):
        k = th.get("kernel", k0)
        s2 = _positive(th["log_noise"]) if "log_noise" in th else noise
        return ExactGP(k, X, y, s2, mean=mean, jitter=jitter)

    return _fit_full_batch(
        build,
        lambda gp: -gp.log_marginal_likelihood() / n_out,
        theta,
        optimizer=optimizer,
        max_iters=max_iters,
        tol=tol,
        quiet=quiet,
        desc="ExactGP",
    )


def fit_sgpr(
    model: SGPR,
    *,
    optimize_Z: bool = True,
    optimize_noise: bool = True,
    optimize_kernel: bool = True,
    optimizer: optax.GradientTransformation | None = None,
    max_iters: int = 500,
    tol: float = 1e-6,
    quiet: bool = False,
) -> tuple[SGPR, FitResult]:
    """Maximise the Titsias bound of ``model`` over Z, the noise and the kernel.

    Returns:
        ``(SGPR at the fitted values, FitResult)``.
    """
    if not isinstance(model, SGPR):
        raise TypeError(f"`model` must be an SGPR, got {type(model).__name__}")
    k0 = trainable_floats(model.kernel, model.Z.dtype)
    theta = {}
    if optimize_noise:
        theta["log_noise"] = jnp.log(model.noise.astype(model.Z.dtype))
    if optimize_kernel:
        theta["kernel"] = k0
    if optimize_Z:
        theta["Z"] = model.Z
    y = model.y[:, 0] if model.squeeze else model.y

    def build(th):
        s2 = _positive(th["log_noise"]) if "log_noise" in th else model.noise
        return SGPR(
            th.get("kernel", k0),
            model.X,
            y,
            th.get("Z", model.Z),
            s2,
            mean=model.mean,
            jitter=model.jitter,
            chunk_size=model.chunk_size,
        )

    return _fit_full_batch(
        build,
        lambda gp: -gp.elbo() / model.y.size,
        theta,
        optimizer=optimizer,
        max_iters=max_iters,
        tol=tol,
        quiet=quiet,
        desc="SGPR",
    )


def fit_svgp(
    model: SVGP,
    params: SVGPParams | None,
    X: ArrayLike,
    y: ArrayLike,
    *,
    key: PRNGKeyArray,
    batch_size: int = 256,
    num_epochs: int = 20,
    optimizer: optax.GradientTransformation | None = None,
    optimize_Z: bool = True,
    optimize_kernel: bool = False,
    optimize_likelihood: bool = True,
    tol: float = 1e-4,
    patience: int = 5,
    quiet: bool = False,
) -> tuple[SVGP, SVGPParams, FitResult]:
    """Minibatch Adam on the SVGP ELBO, one round per epoch.

    Args:
        model: the :class:`SVGP` (its ``num_data`` must equal ``len(X)``).
        params: initial variational parameters (``None``: ``model.init_params()``).
        X: inputs of the full data set; only minibatches enter each step, so memory
            per step is O(batch_size M + M²) whatever N.
        y: targets of the full data set.
        key: PRNG key (shuffling, Monte Carlo expectations).
        batch_size: minibatch size.
        num_epochs: the epoch budget.
        optimize_Z: also train the inducing inputs.
        optimize_kernel: also train the kernel hyperparameters.
        optimize_likelihood: also train the likelihood (a Gaussian likelihood's noise).
        optimizer: an optax optimiser (default ``optax.adam(1e-2)``).
        tol: relative improvement per epoch below which an epoch counts as stalled.
        patience: stalled epochs in a row that end training.
        quiet: no progress display.

    Returns:
        ``(model, params, FitResult)`` at the end of training.
    """
    if not isinstance(model, SVGP):
        raise TypeError(f"`model` must be an SVGP, got {type(model).__name__}")
    X = jnp.asarray(X)
    y = jnp.asarray(y)
    if X.shape[0] != model.num_data:
        raise ValueError(
            f"`X` has {X.shape[0]} points but the model was built with num_data="
            f"{model.num_data}; they must match for an unbiased ELBO"
        )
    if y.shape[0] != X.shape[0]:
        raise ValueError(f"`y` has {y.shape[0]} rows but `X` has {X.shape[0]}")
    # the model's own checks, on the whole data set and before the first compile:
    # inside the compiled loop they see only traced minibatches and cannot run
    check_X(X, "X")
    model.likelihood.check_y(y, model.num_latent)
    params = model.init_params() if params is None else params
    base = eqx.tree_at(lambda m: m.kernel, model, trainable_floats(model.kernel, model.Z.dtype))
    theta: dict[str, Any] = {"q": params}
    if optimize_Z:
        theta["Z"] = model.Z
    if optimize_kernel:
        theta["kernel"] = base.kernel
    gauss = isinstance(model.likelihood, Gaussian) and optimize_likelihood
    if gauss:
        theta["log_noise"] = jnp.log(model.likelihood.noise.astype(model.Z.dtype))

    def build(th):
        m = base
        if "Z" in th:
            m = eqx.tree_at(lambda t: t.Z, m, th["Z"])
        if "kernel" in th:
            m = eqx.tree_at(lambda t: t.kernel, m, th["kernel"])
        if "log_noise" in th:
            m = eqx.tree_at(lambda t: t.likelihood.noise, m, _positive(th["log_noise"]))
        return m

    def loss(th, batch, k):
        return -build(th).elbo(th["q"], batch[0], batch[1], key=k) / model.num_data

    res = optimize(
        loss,
        theta,
        optimizer=optimizer,
        max_rounds=num_epochs,
        data=(X, y),
        batch_size=batch_size,
        key=key,
        tol=tol,
        patience=patience,
        quiet=quiet,
        desc="SVGP",
    )
    return build(res.params), res.params["q"], res
