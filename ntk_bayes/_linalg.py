"""Cholesky factorisation with a dtype-aware jitter policy.

A kernel matrix that is positive semi-definite in exact arithmetic is often not so in
float32. The policy: add ``jitter * scale`` to the diagonal (``jitter`` default: the
dtype's base jitter; ``scale`` default: the mean diagonal of K), and if the factor is not
finite multiply the jitter by 10, a bounded number of times. A matrix computed as a
difference, such as a posterior covariance ``K_** - V^T V``, carries round-off of the
size of the terms it was computed from, not of its own (possibly tiny) diagonal: its
callers pass the prior's variance as ``scale``. Called eagerly, an escalation warns and
a final failure raises :class:`NotPSDError` naming the smallest eigenvalue; under ``jit``
(e.g. inside NUTS) the ladder still runs and a factor that stays non-finite is returned
as NaN, which NumPyro treats as a rejected proposal.
"""

from __future__ import annotations

import functools
import sys
import warnings

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np
from jaxtyping import Array, ArrayLike

from ._numerics import base_jitter, is_concrete

__all__ = [
    "NotPSDError",
    "NumericalWarning",
    "psd_cholesky",
    "report_factor",
    "first_jitter",
    "batched_psd_cholesky",
    "safe_cholesky",
    "cho_solve",
    "tri_solve",
]


class NotPSDError(ValueError):
    """The kernel matrix is not positive definite even after the jitter ladder."""


class NumericalWarning(UserWarning):
    """A numerical safeguard (jitter escalation) changed the computation."""


@jax.custom_jvp
def safe_cholesky(A):
    """``jnp.linalg.cholesky`` whose derivative is zero, not NaN, where it fails.

    A failed factor is all-NaN; the standard derivative rule would then turn even a
    zero cotangent into NaN, and :func:`psd_cholesky` differentiates through a
    ``lax.cond`` whose untaken branch may hold such a factor.
    """
    return jnp.linalg.cholesky(A)


@safe_cholesky.defjvp
def _safe_cholesky_jvp(primals, tangents):
    (A,), (dA,) = primals, tangents
    L = jnp.linalg.cholesky(A)
    ok = jnp.all(jnp.isfinite(L))
    Ls = jnp.where(ok, L, jnp.eye(A.shape[-1], dtype=A.dtype))
    dA = 0.5 * (dA + jnp.swapaxes(dA, -1, -2))  # cholesky reads a symmetrised input
    # dL = L Φ(L^{-1} dA L^{-T}), Φ: lower triangle with the diagonal halved
    tmp = jsl.solve_triangular(Ls, dA, lower=True)
    tmp = jnp.swapaxes(jsl.solve_triangular(Ls, jnp.swapaxes(tmp, -1, -2), lower=True), -1, -2)
    phi = jnp.tril(tmp) - 0.5 * jnp.diag(jnp.diagonal(tmp))
    return L, jnp.where(ok, Ls @ phi, 0.0)


def _attempt(K, eye, scale, jitter):
    return safe_cholesky(K + (jitter * scale) * eye)


# escalations of the jitter ladder by 10x after the first attempt
_MAX_TRIES = 5
# the longest ladder report_factor counts along (a caller's max_tries may exceed _MAX_TRIES)
_MAX_LADDER = 64


def first_jitter(jitter: float | None, dtype) -> float:
    """The ladder's first relative jitter: ``jitter``, or the dtype's base jitter when
    ``None``; a negative one is refused."""
    j0 = base_jitter(dtype) if jitter is None else float(jitter)
    if j0 < 0:
        raise ValueError(f"`jitter` must be >= 0, got {jitter}")
    return j0


def psd_cholesky(
    K: ArrayLike,
    jitter: float | None = None,
    max_tries: int = _MAX_TRIES,
    name: str = "kernel matrix",
    scale: ArrayLike | None = None,
) -> tuple[Array, Array]:
    """Lower Cholesky factor of a symmetric PSD matrix, escalating jitter if needed.

    Args:
        K: ``(n, n)`` symmetric matrix.
        jitter: first relative jitter (times ``scale``); default by dtype
            (1e-6 float32, 1e-10 float64).
        max_tries: escalations by 10x after the first attempt.
        name: how the matrix is called in messages.
        scale: the variance the relative jitter multiplies (a scalar >= 0); default the
            mean diagonal of ``K``. Pass the prior variance for a matrix computed as a
            difference (a posterior covariance), whose round-off scales with the prior.

    Returns:
        ``(L, jitter_used)`` with ``L @ L.T = K + jitter_used * scale * I``.
    """
    K = jnp.asarray(K)
    if K.ndim != 2 or K.shape[0] != K.shape[1]:
        raise ValueError(f"{name} must be a square matrix, got shape {K.shape}")
    j0 = first_jitter(jitter, K.dtype)
    scale = check_scale(scale, (), K.dtype)
    if is_concrete(K) and is_concrete(scale):
        if not np.all(np.isfinite(np.asarray(K))):
            raise NotPSDError(f"{name} contains NaN or inf; check the inputs and hyperparameters")
        L, j, ok = _factor_program(K, j0, max_tries, scale)
        report_factor(bool(ok), j, j0, name, lambda: K, scale)
        return L, j
    return _ladder_factor(K, j0, max_tries, scale)


def check_scale(scale, shape: tuple, dtype):
    """``scale`` as an array of ``shape`` (or ``None``); a concrete one must be finite and
    >= 0 (0 acts as the dtype's ``tiny``), else a ``ValueError`` naming ``scale``."""
    if scale is None:
        return None
    scale = jnp.asarray(scale, dtype)
    if scale.shape not in ((), tuple(shape)):
        raise ValueError(
            f"`scale` must be a scalar{f' or shape {tuple(shape)}' if shape else ''}, got "
            f"shape {scale.shape}"
        )
    if is_concrete(scale):
        v = np.asarray(scale)
        if not np.all(np.isfinite(v) & (v >= 0)):
            raise ValueError(
                "`scale` (the variance the relative jitter multiplies) must be finite and "
                f">= 0, got {v}"
            )
    return scale


def _scale_of(K, scale):
    """The jitter's scale: ``scale``, or the mean diagonal of ``K``; at least ``tiny``."""
    s = jnp.mean(jnp.diagonal(K, axis1=-2, axis2=-1), axis=-1) if scale is None else scale
    return jnp.maximum(jnp.broadcast_to(s, K.shape[:-2]), jnp.finfo(K.dtype).tiny)


def _ladder_factor(K, j0: float, max_tries: int, scale=None):
    # Traced (jit/grad/vmap): one differentiable attempt at the first jitter; only if it
    # fails, a while_loop searches the ladder on stop_gradient(K) and the factor is
    # recomputed at the jitter found. while_loop is not reverse-differentiable, so it
    # must never see K's tangents: the final factor is an ordinary (differentiable)
    # Cholesky at a constant jitter. The search sits in a cond of its own whose operands
    # carry no tangents, so grad neither linearises nor transposes it (tracing a model's
    # log density under grad, as NUTS does a dozen times per run, costs half as much as
    # with the whole ladder inside one differentiated cond).
    eye = jnp.eye(K.shape[0], dtype=K.dtype)
    scale = _scale_of(K, scale)
    j0 = jnp.asarray(j0, K.dtype)
    L0 = _attempt(K, eye, scale, j0)
    ok = jnp.all(jnp.isfinite(L0))
    j = jax.lax.cond(
        ok,
        lambda: j0,
        lambda: _ladder_jitter(
            jax.lax.stop_gradient(K), eye, jax.lax.stop_gradient(scale), j0, max_tries
        ),
    )
    L = jax.lax.cond(ok, lambda: L0, lambda: _attempt(K, eye, scale, j))
    return L, j


@functools.partial(jax.jit, static_argnums=(1, 2))
def _factor_program(K, j0: float, max_tries: int, scale=None):
    """Eagerly: the traced ladder as one compiled program, and whether its factor is
    finite (one flag comes back to the host, not the factor)."""
    L, j = _ladder_factor(K, j0, max_tries, scale)
    return L, j, jnp.all(jnp.isfinite(L))


def report_factor(ok: bool, jitter_used, j0: float, name: str, matrix, scale=None):
    """After an eager factorisation: raise :class:`NotPSDError` when the factor stayed
    non-finite (``matrix()`` gives the matrix, for its smallest eigenvalue), warn with
    :class:`NumericalWarning` when the ladder went past the first jitter ``j0`` (the
    warning names the user's line: the first caller outside ntk_bayes, equinox and jax).
    ``scale`` is the variance the jitter multiplied when it was not the mean diagonal."""
    j = float(jitter_used)
    if scale is None:
        times = "mean diagonal"
    else:
        times = f"`scale` {float(np.max(np.asarray(scale))):.3e}"
    if not ok:
        K = np.asarray(matrix(), dtype=np.float64)
        if not np.all(np.isfinite(K)):
            raise NotPSDError(f"{name} contains NaN or inf; check the inputs and hyperparameters")
        lam = float(np.linalg.eigvalsh(K)[0])
        diag = max(float(np.mean(np.diag(K))), float(np.finfo(np.float64).tiny))
        raise NotPSDError(
            f"{name} is not positive definite: smallest eigenvalue {lam:.3e} (mean diagonal "
            f"{diag:.3e}) even with jitter {j:.1e} x {times}. Use float64 "
            "(jax.config.update('jax_enable_x64', True)), add observation noise, or remove "
            "duplicate inputs."
        )
    steps, rung = 0, j0
    while not np.isclose(rung, j, rtol=1e-3, atol=0.0) and steps < _MAX_LADDER:
        rung, steps = max(rung * 10.0, 1e-12), steps + 1
    if steps:
        warnings.warn(
            f"{name} was not numerically positive definite; factorised with "
            f"jitter {j:.1e} x {times} after {steps} escalation(s). Consider "
            "float64 (jax_enable_x64) or a larger noise variance.",
            NumericalWarning,
            stacklevel=_caller_level(),
        )


def _caller_level() -> int:
    """``stacklevel`` (for a warning issued by the caller of this function) of the first
    frame outside this library and the libraries it runs through."""
    frame, level = sys._getframe(2), 2
    while frame is not None and frame.f_globals.get("__name__", "").partition(".")[0] in (
        "ntk_bayes",
        "equinox",
        "jax",
    ):
        frame, level = frame.f_back, level + 1
    return level


def _ladder_jitter(K, eye, scale, j0, max_tries: int):
    """The first jitter of the ladder above ``j0`` whose factor is finite (the last rung if
    none is), searched by a while_loop: call it on ``stop_gradient`` inputs only."""

    def cond(state):
        i, _, ok = state
        return (i < max_tries) & ~ok

    def body(state):
        i, j, _ = state
        j = jnp.maximum(j * 10.0, jnp.asarray(1e-12, K.dtype))
        return i + 1, j, jnp.all(jnp.isfinite(_attempt(K, eye, scale, j)))

    _, j, _ = jax.lax.while_loop(cond, body, (0, j0, jnp.asarray(False)))
    return j


@functools.partial(jax.jit, static_argnums=1)
def _batched_factor_program(flat, j0: float, scale):
    """Eagerly: each matrix's ladder (vmapped) as one compiled program."""
    return jax.vmap(lambda k, s: _ladder_factor(k, j0, _MAX_TRIES, s))(flat, scale)


def batched_psd_cholesky(K, jitter=None, name: str = "kernel matrix", scale=None):
    """:func:`psd_cholesky` over leading batch axes ``(..., n, n)``.

    Each matrix gets its own jitter ladder (vmapped, so the traced policy). When ``K``
    is concrete a factor that stays non-finite raises :class:`NotPSDError` naming the
    batch index, as the unbatched eager path does. ``scale`` (scalar or one per matrix,
    shape ``K.shape[:-2]``) is the variance the relative jitter multiplies, as in
    :func:`psd_cholesky`; default each matrix's mean diagonal.
    """
    K = jnp.asarray(K)
    if K.ndim == 2:
        return psd_cholesky(K, jitter, name=name, scale=scale)
    if K.ndim < 2 or K.shape[-1] != K.shape[-2]:
        raise ValueError(f"{name} must be (..., n, n) square matrices, got shape {K.shape}")
    batch = K.shape[:-2]
    flat = K.reshape((-1,) + K.shape[-2:])
    j0 = first_jitter(jitter, K.dtype)
    scale = check_scale(scale, batch, K.dtype)
    flat_scale = _scale_of(K, scale).reshape(-1)
    if is_concrete(flat) and is_concrete(flat_scale):
        if not np.all(np.isfinite(np.asarray(flat))):
            raise NotPSDError(f"{name} contains NaN or inf; check the inputs and hyperparameters")
        L, j = _batched_factor_program(flat, j0, flat_scale)
    else:
        # One batched attempt; the per-matrix ladder (on stop_gradient inputs, in a cond
        # without tangents, as in psd_cholesky) runs only if some factor failed, and
        # only the failed matrices get a new jitter (a vmapped ladder alone would turn
        # its cond into a select and always run it).
        j0 = jnp.asarray(j0, K.dtype)
        eye = jnp.eye(K.shape[-1], dtype=K.dtype)
        attempt = jax.vmap(lambda k, s, jj: _attempt(k, eye, s, jj))
        L0 = attempt(flat, flat_scale, jnp.broadcast_to(j0, flat.shape[:1]))
        ok_each = jnp.all(jnp.isfinite(L0), axis=(-1, -2))
        ok = jnp.all(ok_each)

        def search():
            found = jax.vmap(lambda k, s: _ladder_jitter(k, eye, s, j0, _MAX_TRIES))(
                jax.lax.stop_gradient(flat), jax.lax.stop_gradient(flat_scale)
            )
            return jnp.where(ok_each, j0, found)

        j = jax.lax.cond(ok, lambda: jnp.broadcast_to(j0, flat.shape[:1]), search)
        L = jax.lax.cond(ok, lambda: L0, lambda: attempt(flat, flat_scale, j))
    if is_concrete(L):
        bad = ~np.all(np.isfinite(np.asarray(L)), axis=(-1, -2))
        if bad.any():
            g = np.unravel_index(int(np.argmax(bad)), batch)
            sg = None if scale is None else flat_scale[int(np.argmax(bad))]
            # raises, with the eigenvalue
            psd_cholesky(K[g], jitter, name=f"{name} of group {g}", scale=sg)
            raise NotPSDError(f"{name} of group {g} is not positive definite")  # pragma: no cover
    return L.reshape(K.shape), j.reshape(batch)


def tri_solve(L, B, lower: bool = True, trans: bool = False):
    """Solve ``L X = B`` (or ``L^T X = B`` with ``trans``) for triangular ``L``."""
    return jsl.solve_triangular(L, B, lower=lower, trans=1 if trans else 0)


def cho_solve(L, B):
    """Solve ``(L L^T) X = B`` given the lower Cholesky factor ``L``."""
    return jsl.cho_solve((L, True), B)
