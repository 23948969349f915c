r"""Signal propagation in deep random networks: fixed points, χ₁, depth scales, phases.

For pre-activations h^{l+1} = σ_w/sqrt(n) W φ(h^l) + σ_b b of an infinitely wide
network (Poole et al. 2016; Schoenholz et al. 2017), with φ the ``nonlinearity``,
σ_w = ``W_std``, σ_b = ``b_std`` and u, v jointly Gaussian with variance q and
correlation c:

.. math::

    q^{l+1} = σ_w^2\, E[φ(u)^2] + σ_b^2 \quad (\text{fixed point } q^*), \qquad
    c^{l+1} = \frac{σ_w^2\, E[φ(u) φ(v)] + σ_b^2}{q^*},

    χ_1 = σ_w^2\, E[φ'(u)^2] \big|_{q^*}, \qquad
    ξ_q^{-1} = -\log \frac{∂ q^{l+1}}{∂ q^l}\Big|_{q^*}, \qquad
    ξ_c^{-1} = -\log \frac{∂ c^{l+1}}{∂ c^l}\Big|_{c^*}

χ₁ < 1 is the ordered phase (correlations flow to c* = 1, gradients vanish), χ₁ > 1
the chaotic phase (c* < 1, gradients explode); χ₁ = 1 is the order-to-chaos critical
line, where ξ_c diverges. When q* is finite and positive, χ₁ is also the slope of the
correlation map at c = 1. The Gaussian expectations are the closed-form (or quadrature)
dual kernels of the ``stax`` nonlinearity, so every ``stax`` elementwise layer works,
including ``ElementwiseNumerical(jnp.tanh, deg)``. Degenerate cases: q* = 0 (odd φ with
σ_b = 0 in the ordered phase) is evaluated in the limit q → 0; unbounded φ whose
variance diverges report q* = inf and evaluate χ₁ at a very large q.
"""

from __future__ import annotations

import dataclasses
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike

from .. import stax
from .._linalg import NumericalWarning
from .._numerics import POSITIVE_INT, check_int

__all__ = [
    "SignalPropagation",
    "signal_propagation",
    "q_star",
    "correlation_map",
    "chi_1",
    "critical_line",
    "PhaseDiagram",
    "phase_diagram",
    "NTKSpectrum",
    "ntk_spectrum",
]

_Q_FLOOR = 1e-12  # q -> 0 limit of the Gaussian expectations
_Q_CAP = 1e8  # beyond this the variance map is taken to diverge


def _check_phi(phi) -> stax.Elementwise:
    if not isinstance(phi, stax.Elementwise):
        raise TypeError(
            "`nonlinearity` must be a stax elementwise layer such as stax.Erf(), stax.Relu() "
            f"or stax.ElementwiseNumerical(jnp.tanh, deg=64); got {type(phi).__name__}"
        )
    return phi


def _hyper(v, name) -> np.ndarray:
    try:
        arr = np.asarray(0.0 if v is None else v, np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"`{name}` must be a number or an array of numbers, got {v!r}") from None
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ValueError(f"`{name}` must be finite and >= 0, got {v!r}")
    return arr


def _check_not_both_zero(w, b) -> None:
    """σ_w = σ_b = 0 makes every pre-activation 0: the correlation of two of them, c*
    and χ_c, is 0/0, and its limits differ by the path to (0, 0) (σ_w -> 0 at σ_b = 0
    gives χ_c = 1, σ_b -> 0 at σ_w = 0 gives 0), so there is no value to return."""
    both = np.broadcast_arrays(w, b)
    zero = (both[0] == 0) & (both[1] == 0)
    if np.any(zero):
        where = "" if zero.ndim == 0 else f" at index {tuple(int(i) for i in np.argwhere(zero)[0])}"
        raise ValueError(
            f"`W_std` and `b_std` are both 0{where}: every pre-activation is 0, so the "
            "correlation map (c*, chi_c) is 0/0 and has no value; give W_std > 0 or "
            "b_std > 0 (e.g. start a grid at W_std = 0.05)"
        )


# ---- Gaussian expectations (elementwise in q, c) -------------------------------------
def _qmap(phi, w2, b2, q):
    return w2 * phi.dual_diag(q) + b2


def _dphi2(phi, q, c=None):
    """E[φ'(u)φ'(v)] for variance q and correlation c (default c = 1)."""
    s = q if c is None else c * q
    return phi.dual(s, q, q, jnp.ones_like(s))[1]


def _cmap(phi, w2, b2, q, c):
    cov = w2 * phi.dual(c * q, q, q, None)[0] + b2
    return cov / _qmap(phi, w2, b2, q)


def _cmap_slope(phi, w2, b2, q, c):
    # Price's theorem: dE[φ(u)φ(v)]/dΣ12 = E[φ'(u)φ'(v)]; normalised by the variance map.
    return w2 * q * _dphi2(phi, q, c) / _qmap(phi, w2, b2, q)


def _newton(g, x, lo, hi, n_steps):
    """Safeguarded Newton on elementwise g: keep a step only if it stays in [lo, hi]
    and does not increase |g|."""

    def body(_, x):
        val, slope = jax.jvp(g, (x,), (jnp.ones_like(x),))
        xn = x - val / jnp.where(slope == 0, 1.0, slope)
        ok = jnp.isfinite(xn) & (xn >= lo) & (xn <= hi) & (slope != 0)
        xn = jnp.where(ok, xn, x)
        return jnp.where(jnp.abs(g(xn)) <= jnp.abs(val), xn, x)

    return jax.lax.fori_loop(0, n_steps, body, x)


def _variance_part(phi, w2, b2, q0, n_iter):
    q = jax.lax.fori_loop(0, n_iter, lambda _, q: jnp.minimum(_qmap(phi, w2, b2, q), _Q_CAP), q0)
    q = _newton(lambda q: _qmap(phi, w2, b2, q) - q, q, 0.0, _Q_CAP, 60)
    diverged = q >= _Q_CAP
    qe = jnp.clip(q, _Q_FLOOR, _Q_CAP)
    chi1 = w2 * _dphi2(phi, qe)
    chi_q = jax.jvp(lambda q: _qmap(phi, w2, b2, q), (qe,), (jnp.ones_like(qe),))[1]
    return q, qe, diverged, chi1, chi_q


@eqx.filter_jit
def _solve_chi1(phi, w2, b2, q0, n_iter):
    return _variance_part(phi, w2, b2, q0, n_iter)[3]


@eqx.filter_jit
def _solve(phi, w2, b2, q0, n_iter):
    """Fixed points and slopes on flat arrays (w2, b2, q0): one compiled pass."""
    q, qe, diverged, chi1, chi_q = _variance_part(phi, w2, b2, q0, n_iter)

    def cstep(_, c):
        return jnp.clip(_cmap(phi, w2, b2, qe, c), -1.0, 1.0)

    # Few plain steps (each costs a 2-D expectation), then Newton does the rest.
    c = jax.lax.fori_loop(0, min(n_iter, 100), cstep, jnp.zeros_like(qe))
    c = _newton(lambda c: _cmap(phi, w2, b2, qe, c) - c, c, -1.0, 1.0, 40)
    c_star = jnp.where(chi1 <= 1, 1.0, c)
    chi_c = _cmap_slope(phi, w2, b2, qe, c_star)
    nan = jnp.full_like(q, jnp.nan)
    return (
        jnp.where(diverged, jnp.inf, q),
        chi1,
        jnp.where(diverged, nan, chi_q),
        jnp.where(diverged, nan, c_star),
        jnp.where(diverged, nan, chi_c),
    )


def _solve64(phi, w, b, q0, n_iter, chi1_only=False):
    """Run the solver in float64 whatever the global setting (near the critical line
    χ₁ - 1 is second order in the distance to it, below float32 resolution), on inputs
    flattened and padded to a power-of-two length so that calls share compilations."""
    w, b, q0 = np.broadcast_arrays(*(np.asarray(a, np.float64) for a in (w, b, q0)))
    shape, size = w.shape, w.size
    padded = max(8, 1 << (size - 1).bit_length())

    def flat(a):
        return np.concatenate([a.ravel(), np.ones(padded - size)])

    with jax.enable_x64(True):
        w, b, q0 = (jnp.asarray(flat(a)) for a in (w, b, q0))
        fn = _solve_chi1 if chi1_only else _solve
        out = fn(phi, w * w, b * b, q0, n_iter)
        out = (out,) if chi1_only else out
        res = tuple(np.asarray(a, np.float64)[:size].reshape(shape) for a in out)
    return res[0] if chi1_only else res


def _depth_scale(chi):
    chi = np.asarray(chi, np.float64)
    safe = np.where(chi < 1, chi, 0.5)
    with np.errstate(divide="ignore"):
        xi = np.where(chi < 1, -1.0 / np.log(safe), np.inf)
    return np.where(np.isnan(chi), np.nan, xi)


@dataclasses.dataclass(frozen=True)
class SignalPropagation:
    """Mean-field signal-propagation quantities at (W_std, b_std) (arrays broadcast).

    Attributes:
        q_star: fixed-point pre-activation variance (inf where it diverges).
        chi_1: σ_w² E[φ'(u)²] at q*; < 1 ordered, > 1 chaotic.
        chi_q: slope of the variance map at q*.
        c_star: stable fixed point of the correlation map (1 in the ordered phase).
        chi_c: slope of the correlation map at c*.
        xi_q, xi_c: depth scales -1/log χ (inf where χ >= 1: no exponential decay).
    """

    q_star: np.ndarray
    chi_1: np.ndarray
    chi_q: np.ndarray
    c_star: np.ndarray
    chi_c: np.ndarray
    xi_q: np.ndarray
    xi_c: np.ndarray

    @property
    def phase(self):
        """``"ordered"``, ``"chaotic"`` or ``"critical"`` (|χ₁ - 1| < 1e-3), elementwise."""
        chi = np.asarray(self.chi_1)
        out = np.where(chi < 1, "ordered", "chaotic")
        out = np.where(np.abs(chi - 1) < 1e-3, "critical", out)
        return out.item() if out.ndim == 0 else out


def signal_propagation(
    nonlinearity: stax.Layer,
    W_std: ArrayLike,
    b_std: ArrayLike = 0.0,
    *,
    q0: ArrayLike = 1.0,
    n_iter: int = 1000,
) -> SignalPropagation:
    """Fixed points, χ₁ and depth scales of a deep fully connected network.

    Args:
        nonlinearity: a ``stax`` elementwise layer (``stax.Erf()``, ``stax.Relu()``...).
        W_std: σ_w, a scalar or an array (broadcast with ``b_std``).
        b_std: σ_b, a scalar or an array.
        q0: the input variance the variance map starts from (selects the stable fixed
            point q* reached from it).
        n_iter: fixed-point iterations before Newton polishing.
    """
    phi = _check_phi(nonlinearity)
    w, b = _hyper(W_std, "W_std"), _hyper(b_std, "b_std")
    q0 = _hyper(q0, "q0")
    n_iter = check_int(n_iter, "n_iter", low=1, message=POSITIVE_INT)
    _check_not_both_zero(w, b)
    q, chi1, chi_q, c_star, chi_c = _solve64(phi, w, b, q0, n_iter)
    return SignalPropagation(
        q, chi1, chi_q, c_star, chi_c, _depth_scale(chi_q), _depth_scale(chi_c)
    )


def q_star(nonlinearity, W_std, b_std=0.0, *, q0=1.0) -> np.ndarray:
    """The stable fixed point q* of the variance map reached from ``q0``."""
    return signal_propagation(nonlinearity, W_std, b_std, q0=q0).q_star


def chi_1(nonlinearity, W_std, b_std=0.0, *, q0=1.0) -> np.ndarray:
    """χ₁ = σ_w² E[φ'(u)²], u ~ N(0, q*)."""
    return signal_propagation(nonlinearity, W_std, b_std, q0=q0).chi_1


def correlation_map(nonlinearity, W_std, b_std, c, *, q=None) -> np.ndarray:
    """One layer's map of input correlation ``c`` to output correlation, at variance ``q``
    (default q*; values of q* = 0 or inf are replaced by the limits described above)."""
    phi = _check_phi(nonlinearity)
    w, b = _hyper(W_std, "W_std"), _hyper(b_std, "b_std")
    c = np.asarray(c, np.float64)
    if np.any(np.abs(c) > 1):
        raise ValueError("`c` is a correlation and must lie in [-1, 1]")
    if q is None:
        q = signal_propagation(phi, W_std, b_std).q_star
    qe = np.clip(np.asarray(q, np.float64), _Q_FLOOR, _Q_CAP)
    with jax.enable_x64(True):
        out = _cmap(phi, jnp.asarray(w * w), jnp.asarray(b * b), jnp.asarray(qe), jnp.asarray(c))
        return np.asarray(out, np.float64)


def critical_line(
    nonlinearity,
    b_std,
    *,
    W_range=(0.05, 6.0),
    n_grid: int = 48,
    n_bisect: int = 60,
    n_iter: int = 1000,
) -> np.ndarray:
    """σ_w on the order-to-chaos line χ₁(σ_w, σ_b) = 1 for each σ_b in ``b_std``.

    Scans ``n_grid`` log-spaced σ_w in ``W_range`` for the first crossing of χ₁ = 1
    from below (the onset of chaos), then bisects it; NaN where χ₁ never crosses 1
    upwards in the range. Returns a float for scalar ``b_std``, else an array.
    """
    phi = _check_phi(nonlinearity)
    b = np.atleast_1d(_hyper(b_std, "b_std"))
    lo_w, hi_w = (float(v) for v in W_range)
    if not 0 < lo_w < hi_w:
        raise ValueError(f"`W_range` must be (low, high) with 0 < low < high, got {W_range}")
    n_grid = check_int(n_grid, "n_grid", low=2)
    n_iter = check_int(n_iter, "n_iter", low=1, message=POSITIVE_INT)

    def chi(w, bb):
        return _solve64(phi, w, bb, 1.0, n_iter, chi1_only=True)

    grid = np.geomspace(lo_w, hi_w, n_grid)
    above = chi(grid[None, :], b[:, None]) >= 1
    first = np.argmax(above, axis=1)
    valid = above.any(axis=1) & (first > 0)
    lo = grid[np.maximum(first - 1, 0)]
    hi = grid[first]
    for _ in range(n_bisect):
        mid = 0.5 * (lo + hi)
        below = chi(mid, b) < 1
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
    out = np.where(valid, 0.5 * (lo + hi), np.nan)
    return out.reshape(np.shape(b_std)) if np.ndim(b_std) else float(out[0])


@dataclasses.dataclass(frozen=True)
class PhaseDiagram:
    """χ₁, q* and ξ_c on a (b_std, W_std) grid, with the critical line.

    Attributes:
        W_std: ``(nw,)``; b_std: ``(nb,)``; chi_1, q_star, xi_c: ``(nb, nw)``;
        critical_W: ``(nb,)`` σ_w on χ₁ = 1 for each σ_b (NaN if outside the range).
    """

    W_std: np.ndarray
    b_std: np.ndarray
    chi_1: np.ndarray
    q_star: np.ndarray
    xi_c: np.ndarray
    critical_W: np.ndarray


def phase_diagram(nonlinearity, W_std, b_std) -> PhaseDiagram:
    """Evaluate :func:`signal_propagation` on the grid ``b_std x W_std`` (1-D arrays)."""
    w = np.asarray(W_std, np.float64)
    b = np.asarray(b_std, np.float64)
    if w.ndim != 1 or b.ndim != 1 or w.size < 2 or b.size < 1:
        raise ValueError("`W_std` and `b_std` must be 1-D grids (W_std with >= 2 points)")
    sp = signal_propagation(nonlinearity, w[None, :], b[:, None])
    crit = critical_line(nonlinearity, b, W_range=(max(w.min(), 1e-3), w.max()))
    return PhaseDiagram(w, b, sp.chi_1, sp.q_star, sp.xi_c, np.atleast_1d(crit))


@dataclasses.dataclass(frozen=True)
class NTKSpectrum:
    """Extreme eigenvalues of the analytic NTK/NNGP on fixed inputs, by depth.

    Attributes:
        depths: ``(D,)`` numbers of hidden layers.
        min_eig, max_eig, condition: dict ``"ntk"``/``"nngp"`` -> ``(D,)`` (float64
            eigenvalues of the kernel matrices).
    """

    depths: np.ndarray
    min_eig: dict
    max_eig: dict
    condition: dict

    def positive_definite(self, get: str = "ntk") -> np.ndarray:
        """Whether λ_min exceeds the round-off level n · eps · λ_max of the kernel dtype."""
        return self.min_eig[get] > self._floor * self.max_eig[get]

    _floor: float = 0.0


def ntk_spectrum(nonlinearity, W_std, b_std, x, depths) -> NTKSpectrum:
    """Spectrum of the NTK (and NNGP) of ``depth`` hidden layers on inputs ``x``.

    The network is ``serial(*[Dense(n, W_std, b_std), nonlinearity] * depth,
    Dense(1, W_std, b_std))``. A positive-definite NTK on the training inputs is the
    condition under which gradient descent on the squared loss converges to zero
    training error in the infinite-width limit (Jacot et al. 2018; Du et al. 2019);
    the condition number λ_max/λ_min sets how many steps it takes (Xiao, Pennington &
    Schoenholz 2020). One pass of the layer recursion serves every depth. Kernels with
    non-finite entries give NaN and a :class:`NumericalWarning`: they overflow when they
    grow like χ₁^depth, and in the chaotic phase round-off in the self-correlation c = 1
    (an unstable fixed point there) grows by χ₁ per layer, which in float32 breaks the
    recursion after about 7 / log10(χ₁) layers (float64: 16 / log10(χ₁)).
    """
    phi = _check_phi(nonlinearity)
    ds = tuple(depths)
    if not ds or any(isinstance(d, bool) or not isinstance(d, int) or d < 0 for d in ds):
        raise ValueError(f"`depths` must be non-negative integers, got {depths!r}")
    hidden = stax.Dense(1, W_std=W_std, b_std=b_std)  # the kernel ignores the width
    block = eqx.filter_jit(lambda k: phi.kernel(hidden.kernel(k)))
    readout = eqx.filter_jit(lambda k: hidden.kernel(k))
    k = stax.Identity().kernel_fn(x, None)  # the input kernel state, NTK included
    names = ("ntk", "nngp")
    lo, hi, cond = ({g: np.full(len(ds), np.nan) for g in names} for _ in range(3))
    want = {d: [i for i, e in enumerate(ds) if e == d] for d in ds}
    bad, dtype = [], np.dtype(k.nngp.dtype)
    for depth in range(max(ds) + 1):
        if depth > 0:
            k = block(k)
        if depth not in want:
            continue
        out = readout(k)
        for g in names:
            mat = np.asarray(getattr(out, g), np.float64)
            if not np.all(np.isfinite(mat)):
                bad.append(depth)
                continue
            ev = np.linalg.eigvalsh(mat)
            for i in want[depth]:
                lo[g][i], hi[g][i] = ev[0], ev[-1]
                cond[g][i] = ev[-1] / ev[0] if ev[0] > 0 else np.inf
    if bad:
        warnings.warn(
            f"the kernel has non-finite entries at depth(s) {sorted(set(bad))}; their spectra "
            "are NaN. Deep kernels overflow when they grow like chi_1**depth, and in the "
            "chaotic phase (chi_1 > 1) round-off in the self-correlation c = 1, an unstable "
            "fixed point there, grows by chi_1 per layer. Use float64 (jax_enable_x64) or "
            "smaller depths.",
            NumericalWarning,
            stacklevel=2,
        )
    floor = float(len(x) * np.finfo(dtype).eps)
    return NTKSpectrum(np.asarray(ds), lo, hi, cond, floor)
