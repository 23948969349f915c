r"""Elementwise nonlinearities and their dual kernels.

For a nonlinearity φ after a Gaussian layer with covariance
``[[q1, Σ12], [Σ12, q2]]`` (q1 = Σ(x1,x1), q2 = Σ(x2,x2)):

.. math::

    Σ'_{12} = E[φ(u) φ(v)], \qquad Θ'_{12} = E[φ'(u) φ'(v)]\, Θ_{12}

(Cho & Saul 2009; Neal 1996; Jacot et al. 2018). Each layer states its closed form.
Gradients stay finite where x1 = x2: square roots and angles use custom derivatives
that are zero where the argument is at its boundary.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import erf

from .._numerics import check_int
from ._batching import APART_MIN_PAIRS, apart, in_fused_segment
from ._core import Layer, check_hyper

__all__ = [
    "ABRelu",
    "Relu",
    "LeakyRelu",
    "Abs",
    "Erf",
    "Gelu",
    "Sin",
    "Cos",
    "Rbf",
    "Sign",
    "ElementwiseNumerical",
    "Exp",
    "Gaussian",
    "Sigmoid_like",
    "safe_sqrt",
]

_TINY = 1e-30


@jax.custom_jvp
def safe_sqrt(x):
    """sqrt(max(x, 0)) whose derivative is 0 (not inf/NaN) where x <= 0."""
    return jnp.sqrt(jnp.maximum(x, 0.0))


@safe_sqrt.defjvp
def _safe_sqrt_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    y = safe_sqrt(x)
    ok = x > _TINY
    # The factor is formed in the forward pass from the guarded input alone, and the
    # tangent is a plain product. Two forms that are equal on paper were miscompiled on
    # XLA CPU into NaN gradients where x <= 0: the guarded division inside the tangent
    # (jaxlib 0.9.2, float32), and 0.5 / where(ok, y, 1) with y = sqrt(max(x, 0)) shared
    # with the primal (jaxlib 0.12, float64, AVX-512 host; finite when run eagerly).
    scale = jnp.where(ok, 0.5 * rsqrt(jnp.where(ok, x, 1.0)), 0.0)
    return y, dx * scale


# A difference q1 q2 - Σ12² this many ulp of q1 q2 or less is round-off (:func:`sin_root`).
_COLLINEAR_ULPS = 8


@jax.custom_jvp
def sin_root(prod, s12):
    """sqrt(max(q1 q2 - Σ12², 0)) = sqrt(q1 q2) sin θ, with a derivative that is zero
    where the difference is round-off (≤ 64 ulp of q1 q2), e.g. at coincident inputs:
    the plain 1/(2 sqrt) derivative of rounding noise is huge and turns gradients NaN.

    In float64 a difference of at most ``_COLLINEAR_ULPS`` ulp of q1 q2 is taken as 0:
    inputs that are exactly proportional (x and 2x through layers without bias) have
    correlation exactly 1, but Σ12² and q1 q2 reach the subtraction by different
    roundings (3-4 ulp apart), and the square root of that is an angle of ~1e-8, which
    every `Sign` layer after it amplifies (8.8% off after four `Dense`-`Sign` blocks) and
    which put the ReLU NTK of x and 2x 1.5e-8 off 2 Θ(x, x), where neural-tangents is
    exact. Genuine angles below that cut (θ < 4.2e-8) are resolved no better without it.
    Not in float32: there the cut would be θ < 1e-3, and near-collinear distinct points
    are common (a dense 1-D grid): the quickstart's posterior variance on its grid went
    from +0.014 to -0.014 with the cut, so float32 keeps the plain difference."""
    d = prod - s12 * s12
    if d.dtype != jnp.float64:
        return jnp.sqrt(jnp.maximum(d, 0.0))
    return jnp.sqrt(jnp.where(d > _COLLINEAR_ULPS * jnp.finfo(d.dtype).eps * jnp.abs(prod), d, 0.0))


@sin_root.defjvp
def _sin_root_jvp(primals, tangents):
    (prod, s12), (dprod, ds12) = primals, tangents
    r = sin_root(prod, s12)
    tol = 64 * jnp.finfo(r.dtype).eps * jnp.abs(prod)
    ok = r * r > tol
    scale = jnp.where(ok, 0.5 / jnp.where(ok, r, 1.0), 0.0)  # a product, as in safe_sqrt
    return r, (dprod - 2 * s12 * ds12) * scale


def _chebyshev_fit(g, deg, domain):
    """Power-series coefficients, in the original variable, of the Chebyshev interpolant
    of ``g`` on ``domain`` (near-minimax). Fitted in the variable mapped to [-1, 1],
    where high degrees stay well conditioned, then expanded in the original one, which
    saves the mapping's two operations per evaluation; on [0, 0.5] with the degrees
    below the expansion loses nothing measurable (1.3e-7 and 1.3e-15 relative for
    asin in float32 and float64, as the mapped form)."""
    cheb = np.polynomial.Chebyshev.interpolate(g, deg, domain=domain)
    poly = cheb.convert(kind=np.polynomial.Polynomial, domain=domain, window=domain)
    return tuple(float(c) for c in poly.coef)


def _horner(coef, x):
    p = jnp.full_like(x, coef[-1])
    for c in coef[-2::-1]:
        p = p * x + c
    return p


@functools.cache
def _asin_coefficients(dtype_name: str) -> tuple[float, ...]:
    """asin(m) ≈ m P(m²) on 0 <= m <= sin(π/4); the degree gives round-off accuracy for
    the dtype (1.4e-8 for float32, ~1e-15 relative for float64)."""
    deg = 19 if dtype_name == "float64" else 7

    def g(s):
        t = np.sqrt(s)
        return np.where(s > 0, np.arcsin(t) / np.where(t > 0, t, 1.0), 1.0)

    return _chebyshev_fit(g, deg, [0.0, 0.5])


def unit_angle(sn, cs, nonnegative_sn: bool = False):
    """atan2(sn, cs) for a point on the unit circle (sn² + cs² = 1 up to round-off),
    with atan2(0, 0) = π/2, from a polynomial: no division and no libm call, so it
    fuses into one cheap pass (the hot spot of every arc-cosine-type kernel).
    ``nonnegative_sn``: the caller knows sn >= 0 (an angle in [0, π]), which saves the
    sign's operations.

    With m = min(|sn|, |cs|) <= sin(π/4): the angle to the nearer axis is asin(m); it is
    measured from the sine's axis where |sn| >= |cs|, which at (0, 0) gives π/2 (and
    where |sn| = |cs| both forms are π/4).
    Derivatives follow by AD; they are those of atan2 along the circle, which is where
    callers' (sn, cs) move when the kernel's inputs change.
    """
    asn, acs = (sn if nonnegative_sn else jnp.abs(sn)), jnp.abs(cs)
    m = jnp.minimum(asn, acs)
    coef = _asin_coefficients(jnp.dtype(m.dtype).name)
    r = m * _horner(coef, m * m)
    r = jnp.where(asn >= acs, jnp.pi / 2 - r, r)
    r = jnp.where(cs < 0, jnp.pi - r, r)
    if not nonnegative_sn:
        r = jnp.where(sn < 0, -r, r)
    return r.astype(m.dtype)


def rsqrt(x):
    """1/sqrt(x) as sqrt(1/x): XLA's CPU rsqrt (which 1/sqrt(x) is rewritten to) is not
    vectorised and costs ~6x a division plus a square root, which fuse and vectorise."""
    return jnp.sqrt(1 / x)


def rsqrt_pos(q):
    """1/sqrt(q) where q > 0 and 0 where q <= 0, with finite derivatives everywhere."""
    ok = q > 0
    return jnp.where(ok, rsqrt(jnp.where(ok, q, 1.0)), 0.0)


class _ElementwiseMeta(type(Layer)):
    """``Elementwise(fn, nngp_fn, d_nngp_fn)`` builds a layer from user functions, as in
    neural-tangents; subclasses of :class:`Elementwise` construct as usual."""

    def __call__(cls, *args, **kwargs):
        if cls is Elementwise:
            return CustomElementwise(*args, **kwargs)
        return super().__call__(*args, **kwargs)


class Elementwise(Layer, metaclass=_ElementwiseMeta):
    """Base of nonlinearities: subclasses give ``fn`` and ``dual``.

    Called directly, ``Elementwise(fn=None, nngp_fn=None, d_nngp_fn=None)`` is
    neural-tangents' layer from a scalar nonlinearity and its dual (see
    :class:`CustomElementwise`).
    """

    def __check_init__(self):
        # Every scalar hyperparameter (a, b, c, gamma, ...) finite when concrete: a NaN
        # slope gave an all-NaN kernel without an error. Signs and ranges are each
        # layer's own check; arrays (Polynomial's coefficients) are validated there.
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.metadata.get("static") or v is None or callable(v) or isinstance(v, bool):
                continue
            if isinstance(v, int | float | np.generic) or (
                hasattr(v, "dtype") and jnp.ndim(v) == 0
            ):
                check_hyper(v, f.name, type(self).__name__, signed=True)

    def fn(self, x):  # pragma: no cover - abstract
        raise NotImplementedError

    def dual(self, s12, q1, q2, ntk):
        """Return ``(E[φ(u)φ(v)], E[φ'(u)φ'(v)] * ntk)`` (ntk may be None)."""
        raise NotImplementedError  # pragma: no cover

    def dual_diag(self, q):
        """``E[φ(u)^2]`` for u ~ N(0, q); override when it simplifies."""
        return self.dual(q, q, q, None)[0]

    def dot_diag(self, q):
        """``E[φ'(u)^2]`` for u ~ N(0, q): the NTK factor of a point paired with itself."""
        return self.dual(q, q, q, jnp.ones_like(q))[1]

    # Whether dual() needs Σ12 clipped to the Cauchy-Schwarz bound (see _cauchy_schwarz).
    _clips = True

    def ends_segment(self) -> bool:
        return True

    def is_constant(self) -> bool:
        """Whether φ is a constant (known from the layer's structure): its outputs are
        then the same for every point (``Kernel.points_alike``)."""
        return False

    def apply(self, params, x, **kwargs):
        return self.fn(x)

    def uses_point_ids(self) -> bool:
        return True

    def kernel(self, k):
        if not k.is_gaussian:
            raise ValueError(
                f"{type(self).__name__} needs Gaussian pre-activations: put a Dense or Conv "
                "layer (a random affine map) before every nonlinearity"
            )
        q1, q2 = k.pair_vars()
        s12 = _cauchy_schwarz(k.nngp, q1, q2) if self._clips else k.nngp
        nngp, ntk = self.dual(s12, q1, q2, k.ntk)
        same = k.self_pair_mask()
        if same is not None:
            # A point paired with itself (or a copy) has Σ12 = q1 = q2 exactly; from the
            # general form the one-ulp gap of q1 q2 - Σ12² becomes ~1e-8 after the square
            # root, which Sign and the NTK factors of ABRelu amplify layer after layer.
            # The mean of the two sides' values is the same number, and its derivative
            # in x1 alone is the one-sided ∂k/∂x1 (half the derivative along both
            # points), which the value of one side alone would double.
            # (halved per point: one operation per pair fewer than halving the sum)
            nngp = jnp.where(same, 0.5 * self.dual_diag(q1) + 0.5 * self.dual_diag(q2), nngp)
            if ntk is not None:
                dot = 0.5 * (self.dot_diag(q1) + self.dot_diag(q2))
                ntk = jnp.where(same, dot * k.ntk, ntk)
        if k.diagonal_spatial:
            cov1, cov2 = self.dual_diag(k.cov1), self.dual_diag(k.cov2)
        else:
            cov1, cov2 = self._own(k, k.cov1), self._own(k, k.cov2)
        return k.replace(
            nngp=nngp,
            ntk=ntk,
            cov1=cov1,
            cov2=cov2,
            is_gaussian=False,
            independent=False,
            points_alike=k.points_alike or self.is_constant(),
        )

    def _own(self, k, cov):
        """Σ'(x, x) between all pairs of positions of each point; same positions exact."""
        qa, qb = k.self_vars(cov)
        out = self.dual(_cauchy_schwarz(cov, qa, qb), qa, qb, None)[0]
        return jnp.where(k.position_eye(), self.dual_diag(qa), out)


def computed_once(fn, x):
    """``fn(x)``, a pairwise value that several fusions read (the NNGP's next layer and
    the NTK's, or the next layer's own several passes), computed once.

    XLA's CPU backend has no multi-output loop fusion: a value read by two fusions is
    recomputed in each of them unless it is "expensive" (a square root, a division),
    and an angle from :func:`unit_angle` is a polynomial, which XLA copies into every
    reader. So the NTK of a deep ReLU network ended in one fusion that re-derived every
    layer's angle, and in a chain of Erf or Sign layers each layer's fusions re-derived
    the angles of the layers before it, so the cost per layer grew with depth.
    On CPU the value is materialised (:func:`_batching.apart`), one cache-resident pass
    per layer and tile. Measured at n = 2048, 3 layers, one process, interleaved: ReLU
    NNGP and NTK 20.0 -> 17.7-18.1 ms, Erf NNGP and NTK 31.5 -> 19.0 ms (NNGP alone 17.2
    -> 12.8), Sign 26.4 -> 15.0 ms, each bit for bit the same; Gabor (both its forms)
    57.6 -> 42.2 ms, equal to float32 round-off. Other backends (which fuse several
    outputs), small arrays and per-point values are computed in place, and so is
    everything inside a packed segment of ``serial`` (``_core._segment``: the NTK
    program of a fully connected network), which is one fusion already.
    """
    if (
        jnp.ndim(x) < 2
        or jnp.size(x) < APART_MIN_PAIRS
        or jax.default_backend() != "cpu"
        or in_fused_segment()
    ):
        return fn(x)
    return apart(fn, x, jax.eval_shape(fn, x))


def _angle_between(root, s12, q1, q2):
    """θ = atan2(sqrt(q1 q2 - Σ12²), Σ12) (π/2 for a zero-variance input), from the
    per-point 1/sqrt(q): the angle between two Gaussian inputs, division-free."""
    rq = rsqrt_pos(q1) * rsqrt_pos(q2)
    return unit_angle(root * rq, s12 * rq, nonnegative_sn=True)


def _cauchy_schwarz(s12, q1, q2):
    """Clip Σ12 to ±sqrt(q1 q2). Round-off lets |Σ12| drift past the bound in deep chaotic
    networks (by χ₁ per layer), which puts correlations above 1 and makes Erf's Σ̇ infinite.
    """
    bound = safe_sqrt(q1) * safe_sqrt(q2)  # per-point roots: no pairwise square root
    return jnp.clip(s12, -bound, bound)


class ABRelu(Elementwise):
    r"""``a * min(x, 0) + b * max(x, 0)``; the arc-cosine kernel of order 1.

    With θ = arccos(Σ12 / sqrt(q1 q2)) (Cho & Saul 2009):

    .. math::

        Σ' = \frac{(a-b)^2}{2π} \sqrt{q_1 q_2 - Σ_{12}^2}
             + \Big(\frac{a^2+b^2}{2} - \frac{(a-b)^2 θ}{2π}\Big) Σ_{12}, \qquad
        \dot Σ = \frac{a^2+b^2}{2} - \frac{(a-b)^2 θ}{2π}
    """

    a: Any = 0.0
    b: Any = 1.0
    # Σ12 past the bound by round-off gives sqrt(max(q1 q2 - Σ12², 0)) = 0 and θ = 0 or
    # π, the values at the bound: no clip, which saves two operations per pair and layer
    # (and avoids a jax 0.9.2 miscompilation of the clip's forward-mode derivative:
    # test_reverse_mode_through_materialised_layers).
    _clips = False

    def __check_init__(self):
        for name in ("a", "b"):
            v = getattr(self, name)
            if isinstance(v, str) or v is None:
                raise TypeError(f"{type(self).__name__}: `{name}` must be a number, got {v!r}")

    def fn(self, x):
        return self.a * jnp.minimum(x, 0) + self.b * jnp.maximum(x, 0)

    def dual(self, s12, q1, q2, ntk):
        root = sin_root(q1 * q2, s12)
        c = (self.a - self.b) ** 2 / (2 * jnp.pi)

        def factor(root):
            return (self.a**2 + self.b**2) / 2 - c * _angle_between(root, s12, q1, q2)

        # The angle feeds the NNGP and the NTK factor: computed once when both are wanted
        # (see ``computed_once``). For the NNGP alone the square root that the next layer
        # takes already splits XLA's fusions: materialised there too, the angle saved
        # 12.5 -> 11.8 ms on fc3 but added conditionals (compile time) to every
        # convolutional ReLU network's per-position covariances.
        dot = factor(root) if ntk is None else computed_once(factor, root)
        return c * root + dot * s12, (None if ntk is None else dot * ntk)

    def dual_diag(self, q):
        return (self.a**2 + self.b**2) / 2 * q

    def dot_diag(self, q):
        return jnp.full_like(q, (self.a**2 + self.b**2) / 2)


def Relu(do_stabilize: bool = False) -> ABRelu:
    """ReLU, ``max(x, 0)``: ``ABRelu(0, 1)``.

    ``do_stabilize`` is accepted for neural-tangents' signature and changes nothing:
    there it rescales huge variances before the angle; here the angle is formed from
    normalised factors, and inputs large enough to lose precision are refused by
    ``kernel_fn`` with the safe bound named."""
    return ABRelu(0.0, 1.0)


def LeakyRelu(alpha, do_stabilize: bool = False) -> ABRelu:
    """Leaky ReLU, ``alpha * min(x, 0) + max(x, 0)``: ``ABRelu(alpha, 1)``
    (``do_stabilize`` as in :func:`Relu`)."""
    check_hyper(alpha, "alpha", "LeakyRelu", signed=True)
    return ABRelu(alpha, 1.0)


def Abs(do_stabilize: bool = False) -> ABRelu:
    """Absolute value, ``|x|``: ``ABRelu(-1, 1)`` (``do_stabilize`` as in :func:`Relu`)."""
    return ABRelu(-1.0, 1.0)


class Erf(Elementwise):
    r"""``a * erf(b * x) + c`` (Williams 1997).

    With p_i = 1 + 2 b² q_i:

    .. math::

        Σ' = \frac{2a^2}{π} \arcsin\frac{2b^2 Σ_{12}}{\sqrt{p_1 p_2}} + c^2, \qquad
        \dot Σ = \frac{4 a^2 b^2}{π \sqrt{p_1 p_2 - 4 b^4 Σ_{12}^2}}
    """

    a: Any = 1.0
    b: Any = 1.0
    c: Any = 0.0

    def fn(self, x):
        return self.a * erf(self.b * x) + self.c

    def dual(self, s12, q1, q2, ntk):
        # p1 p2 - (2b²Σ12)² = d = 1 + 2b²(q1 + q2) + 4b⁴(q1 q2 - Σ12²) >= 1: written this
        # way it has no cancellation and no singularity; its root gives the angle's cosine
        # (with the per-point 1/sqrt(p1 p2)) and its inverse root Σ̇, without a division.
        b2 = self.b**2
        p1, p2 = 1 + 2 * b2 * q1, 1 + 2 * b2 * q2
        d = p1 + p2 - 1 + 4 * b2 * b2 * jnp.maximum(q1 * q2 - s12 * s12, 0.0)
        r = rsqrt(d)
        rp = rsqrt(p1) * rsqrt(p2)
        sn = 2 * b2 * s12 * rp
        # The cosine as sqrt(d) rp, not d r rp: with the latter XLA materialised d by a
        # pass of its own ("operand can not be duplicated"), 0.5 ms of 16 at n = 2048,
        # 3 layers; the outputs were bit for bit the same in float32 and float64
        # (docs/kernels.md).
        # The next layer reads the NNGP in several fusions (see ``computed_once``).
        angle = computed_once(lambda cs: unit_angle(sn, cs), jnp.sqrt(d) * rp)
        nngp = (2 * self.a**2 / jnp.pi) * angle + self.c**2
        if ntk is not None:
            ntk = ntk * ((4 * self.a**2 * b2 / jnp.pi) * r)
        return nngp, ntk

    def dual_diag(self, q):
        b2 = self.b**2
        return (2 * self.a**2 / jnp.pi) * jnp.arcsin(2 * b2 * q / (1 + 2 * b2 * q)) + self.c**2

    def dot_diag(self, q):
        b2 = self.b**2
        return (4 * self.a**2 * b2 / jnp.pi) * rsqrt(1 + 4 * b2 * q)


class Gelu(Elementwise):
    r"""``x Φ(x)`` (Hendrycks & Gimpel 2016); kernel from Tsuchida et al. (2020).

    With δ² = (1 + q1)(1 + q2) - Σ12², P = q1 q2, ψ = arctan2(Σ12, δ):

    .. math::

        Σ' = \frac{Σ_{12}}{4} + \frac{1}{2π}\Big(\frac{Σ_{12}^2 + P δ^2}{(1+q_1)(1+q_2) δ}
             + Σ_{12} ψ\Big), \quad
        \dot Σ = \frac14 + \frac{ψ}{2π}
                 + \frac{Σ_{12}}{2π δ}\Big(\frac{1}{δ^2} + \frac{1 - P}{(1+q_1)(1+q_2)} + 1\Big)
    """

    approximate: bool = eqx.field(static=True, default=False)

    def fn(self, x):
        return jax.nn.gelu(x, approximate=self.approximate)

    def dual(self, s12, q1, q2, ntk):
        # δ² = (1 + q1)(1 + q2) - Σ12² = 1 + q1 + q2 + (q1 q2 - Σ12²) >= 1 (written so, it
        # stays >= 1 when round-off puts Σ12² past q1 q2; q1 + q2 first, so that a pair and
        # its swap round alike), and (Σ12, δ) / sqrt((1+q1)(1+q2))
        # is a point on the unit circle: ψ from the division-free polynomial of
        # :func:`unit_angle`, 1/δ from one inverse root, and 1/((1+q1)(1+q2)) from the
        # per-point roots, instead of an arctangent and five pairwise divisions.
        prod = q1 * q2
        rp = rsqrt(1 + q1) * rsqrt(1 + q2)
        rp2 = rp * rp
        delta2 = 1 + (q1 + q2) + jnp.maximum(prod - s12 * s12, 0.0)
        inv = rsqrt(delta2)
        psi = unit_angle(s12 * rp, delta2 * inv * rp)
        # (Σ12² + P δ²) / ((1+q1)(1+q2) δ) as (Σ12 rp)² / δ + (P rp²) δ: P δ² grows as q⁴
        # and overflowed float32 from q ~ 1e9 (inputs ~5e4), where every factor here is
        # at most of the order of q
        sr = s12 * rp
        nngp = s12 / 4 + (sr * sr * inv + prod * rp2 * (delta2 * inv) + s12 * psi) / (2 * jnp.pi)
        if ntk is not None:
            first = (inv * inv + (1 - prod) * rp2 + 1) * s12 * inv / (2 * jnp.pi)
            ntk = ntk * (first + 0.25 + psi / (2 * jnp.pi))
        return nngp, ntk

    def dual_diag(self, q):
        root = jnp.sqrt(1 + 2 * q)
        return q * (0.25 + (q / ((q + 1) * root) + jnp.arctan2(q, root) / 2) / jnp.pi)

    def dot_diag(self, q):
        # Σ̇ at Σ12 = q1 = q2 = q, where δ² = 1 + 2q exactly.
        delta2 = 1 + 2 * q
        delta = jnp.sqrt(delta2)
        first = (1 / delta2 + (1 - q) / (1 + q) + 1) * q / (delta * 2 * jnp.pi)
        return first + 0.25 + jnp.arctan2(q, delta) / (2 * jnp.pi)


class Sin(Elementwise):
    r"""``a * sin(b * x + c)``.

    .. math::

        Σ' = \frac{a^2}{2}\big(e^{-b^2(q_1+q_2-2Σ_{12})/2}
             - \cos(2c)\, e^{-b^2(q_1+q_2+2Σ_{12})/2}\big), \quad
        \dot Σ = \frac{a^2 b^2}{2}\big(e^{-b^2(q_1+q_2-2Σ_{12})/2}
             + \cos(2c)\, e^{-b^2(q_1+q_2+2Σ_{12})/2}\big)
    """

    a: Any = 1.0
    b: Any = 1.0
    c: Any = 0.0

    def fn(self, x):
        return self.a * jnp.sin(self.b * x + self.c)

    def dual(self, s12, q1, q2, ntk):
        b2 = self.b**2
        half = -0.5 * b2 * (q1 + q2)
        s1 = jnp.exp(half + b2 * s12)
        s2 = jnp.exp(half - b2 * s12) * jnp.cos(2 * self.c)
        nngp = self.a**2 / 2 * (s1 - s2)
        if ntk is not None:
            ntk = ntk * (self.a**2 * b2 / 2 * (s1 + s2))
        return nngp, ntk

    def dual_diag(self, q):
        return self.a**2 / 2 * (1 - jnp.exp(-2 * self.b**2 * q) * jnp.cos(2 * self.c))

    def dot_diag(self, q):
        b2 = self.b**2
        return self.a**2 * b2 / 2 * (1 + jnp.exp(-2 * b2 * q) * jnp.cos(2 * self.c))


def Cos(a=1.0, b=1.0, c=0.0) -> Sin:
    """``a * cos(b * x + c)`` = ``Sin(a, b, c + π/2)``."""
    return Sin(a, b, c + math.pi / 2)


class Rbf(Elementwise):
    r"""``sqrt(2) sin(sqrt(2γ) x + π/4)``, whose NNGP is the RBF kernel of the pre-activations.

    .. math::

        Σ' = \exp(-γ (q_1 + q_2 - 2 Σ_{12})), \qquad \dot Σ = 2γ Σ'
    """

    gamma: Any = 1.0

    def __check_init__(self):
        check_hyper(self.gamma, "gamma", "Rbf", positive=True)

    def fn(self, x):
        return math.sqrt(2) * jnp.sin(jnp.sqrt(2 * self.gamma) * x + jnp.pi / 4)

    def dual(self, s12, q1, q2, ntk):
        nngp = jnp.exp(-self.gamma * (q1 + q2 - 2 * s12))
        return nngp, (None if ntk is None else ntk * (2 * self.gamma * nngp))

    def dual_diag(self, q):
        return jnp.ones_like(q)

    def dot_diag(self, q):
        return jnp.full_like(q, 2 * self.gamma)


class Sign(Elementwise):
    r"""``sign(x)``: Σ' = 1 - 2θ/π (θ the angle between the inputs); Θ' = 0, since the
    derivative vanishes almost everywhere (as in neural-tangents)."""

    def fn(self, x):
        return jnp.sign(x)

    def dual(self, s12, q1, q2, ntk):
        # The next layer reads the NNGP in several fusions (see ``computed_once``).
        theta = computed_once(lambda r: _angle_between(r, s12, q1, q2), sin_root(q1 * q2, s12))
        return 1 - 2 * theta / jnp.pi, (None if ntk is None else jnp.zeros_like(ntk))

    def dual_diag(self, q):
        return jnp.where(q == 0, 0.0, 1.0).astype(q.dtype)

    def dot_diag(self, q):
        return jnp.zeros_like(q)


class Exp(Elementwise):
    r"""``a * exp(b * x)`` (neural-tangents' ``Exp``); a log-normal moment:

    .. math::

        Σ' = a^2 e^{b^2 (q_1 + q_2 + 2 Σ_{12}) / 2}, \qquad \dot Σ = b^2 Σ'
    """

    a: Any = 1.0
    b: Any = 1.0

    def fn(self, x):
        return self.a * jnp.exp(self.b * x)

    def dual(self, s12, q1, q2, ntk):
        nngp = self.a**2 * jnp.exp(self.b**2 * (0.5 * (q1 + q2) + s12))
        return nngp, (None if ntk is None else ntk * (self.b**2 * nngp))

    def dual_diag(self, q):
        return self.a**2 * jnp.exp(2 * self.b**2 * q)

    def dot_diag(self, q):
        return self.b**2 * self.dual_diag(q)


class Gaussian(Elementwise):
    r"""``a * exp(b * x²)`` (neural-tangents' ``Gaussian``; ``b < 0`` for a bump).

    With D = (1 - 2b q_1)(1 - 2b q_2) - 4 b² Σ12² (the determinant of I - 2bΣ, which
    must stay positive: ``b <= 0`` always works):

    .. math::

        Σ' = a^2 D^{-1/2}, \qquad \dot Σ = 4 a^2 b^2 Σ_{12} D^{-3/2}
    """

    a: Any = 1.0
    b: Any = -1.0

    def fn(self, x):
        return self.a * jnp.exp(self.b * x * x)

    def dual(self, s12, q1, q2, ntk):
        b = self.b
        d = (1 - 2 * b * q1) * (1 - 2 * b * q2) - 4 * b * b * s12 * s12
        r = rsqrt(d)
        nngp = self.a**2 * r
        if ntk is not None:
            ntk = ntk * (4 * self.a**2 * b * b * s12 * r * r * r)
        return nngp, ntk

    def dual_diag(self, q):
        return self.a**2 * rsqrt(1 - 4 * self.b * q)

    def dot_diag(self, q):
        r = rsqrt(1 - 4 * self.b * q)
        return 4 * self.a**2 * self.b**2 * q * r * r * r


def Sigmoid_like() -> Erf:
    """neural-tangents' ``Sigmoid_like``: ``0.5 * erf(x / 2.4020563531719796) + 0.5``, the
    Erf that best matches the logistic sigmoid."""
    return Erf(a=0.5, b=1 / 2.4020563531719796, c=0.5)


class CustomElementwise(Elementwise):
    r"""A nonlinearity given by its dual: neural-tangents' ``stax.Elementwise``.

    Built by ``stax.Elementwise(fn, nngp_fn, d_nngp_fn)``. With (u, v) bivariate normal
    with variances q1, q2 and covariance Σ12, ``nngp_fn(Σ12, q1, q2)`` must return
    E[fn(u) fn(v)] and ``d_nngp_fn(Σ12, q1, q2)`` E[fn'(u) fn'(v)]; without
    ``d_nngp_fn`` the latter is ∂ nngp_fn / ∂Σ12 by automatic differentiation (Price's
    theorem), which can lose precision where the dual has a root-type singularity
    (ReLU-like kinks at Σ12² = q1 q2). All three are scalar functions; they are
    vectorised here. A point paired with itself uses ``nngp_fn(q, q, q)``.

    Args:
        fn: the nonlinearity, for ``apply_fn``; ``None`` makes ``apply_fn`` raise.
        nngp_fn: the dual, for ``kernel_fn``; ``None`` makes ``kernel_fn`` raise.
        d_nngp_fn: the derivative's dual (optional).
    """

    fn_: Callable | None = eqx.field(static=True)
    nngp_fn: Callable | None = eqx.field(static=True)
    d_nngp_fn: Callable | None = eqx.field(static=True)

    def __init__(
        self,
        fn: Callable | None = None,
        nngp_fn: Callable | None = None,
        d_nngp_fn: Callable | None = None,
    ):
        if fn is None and nngp_fn is None:
            raise ValueError(
                "Elementwise: give `fn` (the nonlinearity, for apply_fn) and/or `nngp_fn` "
                "(its dual E[fn(u) fn(v)], for kernel_fn); with neither the layer does nothing"
            )
        for name, f in (("fn", fn), ("nngp_fn", nngp_fn), ("d_nngp_fn", d_nngp_fn)):
            if f is not None and not callable(f):
                raise TypeError(f"Elementwise: `{name}` must be callable or None, got {type(f)}")
        self.fn_ = fn
        self.nngp_fn = nngp_fn
        self.d_nngp_fn = d_nngp_fn

    def fn(self, x):
        if self.fn_ is None:
            raise NotImplementedError(
                "Elementwise was built without `fn`: pass fn= to use the finite network"
            )
        return jnp.vectorize(self.fn_)(x)

    def dual(self, s12, q1, q2, ntk):
        if self.nngp_fn is None:
            raise NotImplementedError(
                "Elementwise was built without `nngp_fn`: pass nngp_fn= (E[fn(u) fn(v)] for "
                "covariance, var1, var2) or use stax.ElementwiseNumerical(fn, deg) for the kernel"
            )
        s12, q1, q2 = jnp.broadcast_arrays(s12, q1, q2)
        nngp = jnp.vectorize(self.nngp_fn)(s12, q1, q2)
        if ntk is not None:
            d = self.d_nngp_fn or jax.grad(self.nngp_fn, argnums=0)
            ntk = ntk * jnp.vectorize(d)(s12, q1, q2)
        return nngp, ntk


class ElementwiseNumerical(Elementwise):
    r"""Any nonlinearity ``fn`` by 2-D Gauss–Hermite quadrature of degree ``deg``.

    Writes u = sqrt(qa) z1, v = (Σ12/sqrt(qa)) z1 + sqrt(qb - Σ12²/qa) z2 for
    independent standard normals, with qa the larger of the pair's two variances and qb
    the other, and sums ``deg``² nodes; the NTK uses ``df`` (default: ``jax.grad(fn)``).
    E[fn(u) fn(v)] is symmetric in the pair, and so is the choice of qa, so a pair and
    its swap take the same arithmetic and the kernel of one set of points is exactly
    symmetric (with u from the first point's variance, the quadrature's error differed
    between them: 8e-4 relative for two tanh layers at ``deg=25`` in float64). Accuracy:
    exact for polynomials of degree < 2 deg; smooth functions converge exponentially in
    ``deg``; kinks (ReLU) converge slowly (error ~ deg^-3/2), so prefer the closed-form
    layer where one exists.
    """

    fn_: Callable = eqx.field(static=True)
    deg: int = eqx.field(static=True)
    df: Callable | None = eqx.field(static=True, default=None)

    def __init__(self, fn, deg, df=None):
        if not callable(fn):
            raise TypeError(f"ElementwiseNumerical: `fn` must be callable, got {type(fn)}")
        deg = check_int(
            deg,
            "deg",
            low=1,
            message="ElementwiseNumerical: `{name}` must be an integer >= {low}, got {value!r}",
        )
        if df is not None and not callable(df):
            raise TypeError("ElementwiseNumerical: `df` must be callable or None")
        self.fn_ = fn
        self.deg = deg
        self.df = df

    def fn(self, x):
        return self.fn_(x)

    def _df(self, x):
        if self.df is not None:
            return self.df(x)
        return jnp.vectorize(jax.grad(self.fn_))(x)

    def dual(self, s12, q1, q2, ntk):
        xs, ws = np.polynomial.hermite.hermgauss(self.deg)
        dtype = s12.dtype
        xs, ws = jnp.asarray(xs * math.sqrt(2), dtype), jnp.asarray(ws / math.sqrt(math.pi), dtype)
        first = q1 >= q2  # the larger variance first: the same for a pair and its swap
        q1, q2 = jnp.where(first, q1, q2), jnp.where(first, q2, q1)
        sq1 = safe_sqrt(q1)
        safe = jnp.maximum(sq1, _TINY)
        slope = s12 / safe
        resid = safe_sqrt(q2 - slope * slope)
        u_scale, v_scale = jnp.broadcast_arrays(sq1 + 0 * s12, slope)
        resid = jnp.broadcast_to(resid, s12.shape)

        def integrate(f):
            # Outer sum by scan so memory is deg x (tile), not deg^2 x (tile).
            def body(acc, node):
                z1, w1 = node
                fu = f(u_scale * z1)
                v = v_scale[None] * z1 + resid[None] * xs.reshape((-1,) + (1,) * s12.ndim)
                inner = jnp.tensordot(ws, f(v), axes=(0, 0))
                return acc + w1 * fu * inner, None

            acc, _ = jax.lax.scan(body, jnp.zeros_like(s12), (xs, ws))
            return acc

        nngp = integrate(self.fn_)
        if ntk is not None:
            ntk = ntk * integrate(self._df)
        return nngp, ntk

    def dual_diag(self, q):
        return self._mean_square(self.fn_, q)

    def dot_diag(self, q):
        return self._mean_square(self._df, q)

    def _mean_square(self, f, q):
        """``E[f(u)^2]``, u ~ N(0, q), by 1-D Gauss–Hermite quadrature."""
        xs, ws = np.polynomial.hermite.hermgauss(self.deg)
        xs = jnp.asarray(xs * math.sqrt(2), q.dtype)
        ws = jnp.asarray(ws / math.sqrt(math.pi), q.dtype)
        vals = f(safe_sqrt(q)[None] * xs.reshape((-1,) + (1,) * q.ndim)) ** 2
        return jnp.tensordot(ws, vals, axes=(0, 0))
