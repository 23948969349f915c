r"""Multi-head self-attention over token sequences (``GlobalSelfAttention``).

Infinite-width limit of Hron, Bahri, Sohl-Dickstein & Novak (2020), "Infinite
attention: NNGP and NTK for deep attention networks", with neural-tangents'
conventions: with ``linear_scaling=True`` the query and key weights are tied and the
logits are scaled by 1/(C_in · n_chan_key), so they converge to the deterministic
QK_std · Σ(x, x) and the attention weights become a fixed function of the input
kernel; the layer is then a Gaussian-process layer with a closed-form kernel.
"""

from __future__ import annotations

import enum
import math
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._numerics import check_int
from ._conv import reject_unused
from ._core import Layer, check_hyper
from ._masking import NEG_INF, token_masks

__all__ = ["GlobalSelfAttention", "ATTENTION_MECHANISMS", "PositionalEmbedding"]

ATTENTION_MECHANISMS = ("SOFTMAX", "IDENTITY", "ABS", "RELU")


class PositionalEmbedding(enum.Enum):
    """Positional embeddings of ``GlobalSelfAttention(pos_emb_type=...)``, as in
    neural-tangents: ``NONE``; ``SUM`` (added to the activations that form the keys and
    queries); ``CONCAT`` (concatenated to them along channels). The layer also takes
    the names as strings."""

    NONE = "NONE"
    SUM = "SUM"
    CONCAT = "CONCAT"


def _pos_emb_type(value) -> str:
    name = value.name if isinstance(value, PositionalEmbedding) else value
    if not isinstance(name, str) or name.upper() not in PositionalEmbedding.__members__:
        raise ValueError(
            f"GlobalSelfAttention: unknown `pos_emb_type` {value!r}; choose 'NONE', 'SUM' or "
            "'CONCAT'"
        )
    return name.upper()


def _positive_int(value, name: str) -> int:
    return check_int(
        value,
        name,
        low=1,
        message="GlobalSelfAttention: `{name}` must be a positive integer, got {value!r}",
    )


class GlobalSelfAttention(Layer):
    r"""Self-attention over the tokens of ``(N, T, C)`` inputs (or the H·W positions of
    ``(N, H, W, C)`` images, as in neural-tangents), with ``n_heads`` heads.

    With QK = ``W_query_std`` · ``W_key_std``, OV = ``W_out_std`` · ``W_value_std``,
    σ_b = ``b_std`` (0 when ``None``), φ the ``attention_mechanism`` (softmax over the
    attended token s) and the attention weights
    G_i[t, s] = φ(QK · Σ(x_i, x_i)[t, s]) of each point:

    .. math::

        Σ'_{12} = OV^2\, G_1 Σ_{12} G_2^\top + σ_b^2, \qquad
        Θ'_{12} = OV^2\, G_1 Θ_{12} G_2^\top + [σ_b \ne \text{None}]\, σ_b^2
                  + 2\, OV^2\, G_1 Σ_{12} G_2^\top

    (the last term: gradients of the value and output weights; the tied key weights
    contribute nothing in the limit). With ``linear_scaling=False`` the logits stay
    random; only ``attention_mechanism="IDENTITY"`` then has a closed form, with
    ⟨A, B⟩ = Σ_{t,s} A[t, s] B[t, s] and S = (QK · OV)²:

    .. math::

        Σ'_{12} = S ⟨Σ_{12}, Σ_{12}⟩ Σ_{12} + σ_b^2, \qquad
        Θ'_{12} = S \big(2 ⟨Σ_{12}, Θ_{12}⟩ Σ_{12}
                  + ⟨Σ_{12}, Σ_{12}⟩ (Θ_{12} + 4 Σ_{12})\big) + σ_b^2

    (neural-tangents 0.6.5); other mechanisms raise in ``kernel_fn``.

    Positional embeddings (``pos_emb_type="SUM"`` or ``"CONCAT"``): a learned array
    E ~ N(0, 1) of shape ``(1, *positions, n_chan_pos_emb)``, times σ_e =
    ``W_pos_emb_std``, is added to (SUM) or concatenated with (CONCAT) the activations
    that form keys and queries, and values too when ``val_pos_emb``. In the limit every
    covariance K they see becomes w_x K + w_e R, with (w_x, w_e) = (1, σ_e²) for SUM,
    (C, σ_e² C_e) / (C + C_e) for CONCAT (C the input channels, C_e =
    ``n_chan_pos_emb``, default C), and R the covariance of the embeddings between
    positions: the identity, or R[t, s] = d(Σ_a |t_a − s_a|^p) with d =
    ``pos_emb_decay_fn`` and p = ``pos_emb_p_norm`` (the finite twin uses L E with
    L Lᵀ = R); as in neural-tangents 0.6.5.

    Finite width (all weights N(0, 1)): per head h, K_h = x W_K^h, G_h = φ(QK · K_h
    K_hᵀ / (C_in n_chan_key)) (queries = keys when ``linear_scaling``, else x W_Q^h and
    scale 1/(C_in sqrt(n_chan_key))), and the output is
    ``OV / sqrt(n_chan_val n_heads C_in) · concat_h(G_h x W_V^h) W_out + b_std b``.
    """

    n_chan_out: int = eqx.field(static=True)
    n_chan_key: int = eqx.field(static=True)
    n_chan_val: int = eqx.field(static=True)
    n_heads: int = eqx.field(static=True)
    linear_scaling: bool = eqx.field(static=True)
    attention_mechanism: str = eqx.field(static=True)
    W_key_std: Any = 1.0
    W_value_std: Any = 1.0
    W_query_std: Any = 1.0
    W_out_std: Any = 1.0
    b_std: Any = None
    pos_emb_type: str = eqx.field(static=True, default="NONE")
    n_chan_pos_emb: int | None = eqx.field(static=True, default=None)
    W_pos_emb_std: Any = 1.0
    pos_emb_decay_fn: Any = eqx.field(static=True, default=None)
    pos_emb_p_norm: float = eqx.field(static=True, default=2.0)
    val_pos_emb: bool = eqx.field(static=True, default=False)

    def __init__(
        self,
        n_chan_out,
        n_chan_key,
        n_chan_val,
        n_heads,
        linear_scaling=True,
        W_key_std=1.0,
        W_value_std=1.0,
        W_query_std=1.0,
        W_out_std=1.0,
        b_std=None,
        attention_mechanism="SOFTMAX",
        pos_emb_type="NONE",
        pos_emb_p_norm=2,
        pos_emb_decay_fn=None,
        n_chan_pos_emb=None,
        W_pos_emb_std=1.0,
        val_pos_emb=False,
        **unused,
    ):
        reject_unused("GlobalSelfAttention", dict(unused))
        self.pos_emb_type = _pos_emb_type(pos_emb_type)
        if self.pos_emb_type != "NONE":
            if pos_emb_decay_fn is not None and not callable(pos_emb_decay_fn):
                raise TypeError(
                    "GlobalSelfAttention: `pos_emb_decay_fn` must be a function of the "
                    f"distance array (or None), got {type(pos_emb_decay_fn).__name__}"
                )
            if isinstance(pos_emb_p_norm, bool) or not isinstance(pos_emb_p_norm, int | float):
                raise TypeError(
                    "GlobalSelfAttention: `pos_emb_p_norm` must be a number, got "
                    f"{type(pos_emb_p_norm).__name__}"
                )
            if not 0 < pos_emb_p_norm < math.inf:
                raise ValueError(
                    f"GlobalSelfAttention: `pos_emb_p_norm` must be positive, got {pos_emb_p_norm}"
                )
            if n_chan_pos_emb is not None:
                n_chan_pos_emb = _positive_int(n_chan_pos_emb, "n_chan_pos_emb")
            check_hyper(W_pos_emb_std, "W_pos_emb_std", "GlobalSelfAttention")
        else:
            pos_emb_decay_fn, val_pos_emb = None, False
        self.pos_emb_decay_fn = pos_emb_decay_fn
        self.pos_emb_p_norm = float(pos_emb_p_norm) if pos_emb_decay_fn is not None else 2.0
        self.val_pos_emb = bool(val_pos_emb)
        self.n_chan_pos_emb = n_chan_pos_emb
        self.W_pos_emb_std = W_pos_emb_std
        self.n_chan_out = _positive_int(n_chan_out, "n_chan_out")
        self.n_chan_key = _positive_int(n_chan_key, "n_chan_key")
        self.n_chan_val = _positive_int(n_chan_val, "n_chan_val")
        self.n_heads = _positive_int(n_heads, "n_heads")
        self.linear_scaling = bool(linear_scaling)
        mech = attention_mechanism.upper() if isinstance(attention_mechanism, str) else None
        if mech not in ATTENTION_MECHANISMS:
            raise ValueError(
                f"GlobalSelfAttention: unknown `attention_mechanism` {attention_mechanism!r}; "
                f"choose one of {ATTENTION_MECHANISMS}"
            )
        self.attention_mechanism = mech
        for name, v in (
            ("W_key_std", W_key_std),
            ("W_value_std", W_value_std),
            ("W_query_std", W_query_std),
            ("W_out_std", W_out_std),
        ):
            check_hyper(v, name, "GlobalSelfAttention")
        check_hyper(b_std, "b_std", "GlobalSelfAttention", allow_none=True)
        self.W_key_std, self.W_value_std = W_key_std, W_value_std
        self.W_query_std, self.W_out_std = W_query_std, W_out_std
        self.b_std = b_std

    def output_shape(self, input_shape):
        shape = tuple(input_shape)
        if isinstance(input_shape, list) and shape and not isinstance(shape[0], int):
            raise ValueError(
                "GlobalSelfAttention got several branches; close them with a fan-in first"
            )
        if len(shape) < 3:
            raise ValueError(
                f"GlobalSelfAttention expects token sequences (N, T, C) or images "
                f"(N, H, W, C), got shape {shape}; for (N, features) data add a token axis, "
                "e.g. x[:, None, :]"
            )
        if (
            self.pos_emb_type == "SUM"
            and self.n_chan_pos_emb is not None
            and self.n_chan_pos_emb != shape[-1]
        ):
            raise ValueError(
                f"GlobalSelfAttention: pos_emb_type='SUM' adds the embeddings to the "
                f"{shape[-1]} input channels, but n_chan_pos_emb={self.n_chan_pos_emb}; pass "
                f"n_chan_pos_emb=None (or {shape[-1]}), or use pos_emb_type='CONCAT'"
            )
        return shape[:-1] + (self.n_chan_out,)

    def _pos_weights(self, c_in: int) -> tuple:
        """``(w_x, w_e)``: weights of the input kernel and of the positional identity in
        the covariance that forms the attention logits."""
        if self.pos_emb_type == "NONE":
            return 1.0, 0.0
        w2 = self.W_pos_emb_std**2
        if self.pos_emb_type == "SUM":
            return 1.0, w2
        c_e = c_in if self.n_chan_pos_emb is None else self.n_chan_pos_emb
        return c_in / (c_in + c_e), w2 * c_e / (c_in + c_e)

    def _pos_emb_channels(self, c_in: int) -> int:
        if self.pos_emb_type == "NONE":
            return 0
        return c_in if self.n_chan_pos_emb is None else self.n_chan_pos_emb

    def needs_full_spatial(self, out_full: bool) -> bool:
        return True

    def mixes_space(self) -> bool:
        return True

    def _phi(self, logits):
        mech = self.attention_mechanism
        if mech == "SOFTMAX":
            return jax.nn.softmax(logits, axis=-1)
        if mech == "IDENTITY":
            return logits
        if mech == "ABS":
            return jnp.abs(logits)
        return jnp.maximum(logits, 0.0)

    def _mask_keys(self, logits, key_mask):
        """Logits of masked keys: −10²⁰ under softmax (weight 0), else 0 (as
        neural-tangents)."""
        fill = NEG_INF if self.attention_mechanism == "SOFTMAX" else 0.0
        return jnp.where(key_mask, jnp.asarray(fill, logits.dtype), logits)

    def _pos_cov(self, spatial: tuple, dtype):
        """R: covariance of the embeddings between positions, tokens in row-major order
        (T, T). One-hot embeddings (``pos_emb_decay_fn=None``) give the identity; else
        R = decay(Σ_a |i_a − j_a|^p) over the spatial axes a, as in neural-tangents."""
        t = math.prod(spatial)
        if self.pos_emb_decay_fn is None:
            return jnp.eye(t, dtype=dtype)
        coords = np.indices(spatial).reshape(len(spatial), t)
        dist = (np.abs(coords[:, :, None] - coords[:, None, :]) ** self.pos_emb_p_norm).sum(0)
        r = jnp.asarray(self.pos_emb_decay_fn(jnp.asarray(dist, dtype)), dtype)
        if r.shape != (t, t):
            raise ValueError(
                f"GlobalSelfAttention: `pos_emb_decay_fn` must map the ({t}, {t}) distance "
                f"array to an array of the same shape, got shape {r.shape}"
            )
        return r

    def _pos_chol(self, spatial: tuple) -> np.ndarray:
        """Cholesky factor L of R (float64): the finite twin's embeddings are L E."""
        with jax.ensure_compile_time_eval():  # R is a constant, also under jit
            r = np.asarray(self._pos_cov(spatial, None), np.float64)
        try:
            return np.linalg.cholesky(r)
        except np.linalg.LinAlgError:
            raise ValueError(
                "GlobalSelfAttention: `pos_emb_decay_fn` must give a positive-definite "
                f"covariance between the {r.shape[0]} positions (the finite network draws "
                "its embeddings as L E with L L^T = R); use a decay such as "
                "lambda d: jnp.exp(-d / 2)"
            ) from None

    def kernel(self, k):
        if k.n_spatial == 1:
            return self._token_kernel(k, tuple(k.shape1[1:-1]), token_masks(k))
        # Images: every position is a token (neural-tangents' convention).
        if k.diagonal_spatial:
            raise ValueError(  # pragma: no cover - the engine chooses the full layout
                "GlobalSelfAttention needs cross-token covariances (the full spatial layout)"
            )
        spatial = k.shape1[1:-1]
        tokens = k.map_arrays(
            lambda a, b: _to_tokens(a, b, spatial),
            shape1=(k.shape1[0], math.prod(spatial), k.shape1[-1]),
            shape2=(k.shape2[0], math.prod(spatial), k.shape2[-1]),
        )
        out = self._token_kernel(tokens, tuple(spatial), token_masks(k))
        return out.map_arrays(
            lambda a, b: _from_tokens(a, b, spatial),
            shape1=self.output_shape(k.shape1),
            shape2=self.output_shape(k.shape2),
        )

    def _token_kernel(self, k, spatial: tuple, masks=None):
        if not self.linear_scaling and self.attention_mechanism != "IDENTITY":
            raise NotImplementedError(
                f"GlobalSelfAttention(linear_scaling=False, attention_mechanism="
                f"{self.attention_mechanism!r}) has no closed-form kernel (its logits stay "
                "random in the limit; neural-tangents has none either); use "
                "linear_scaling=True or attention_mechanism='IDENTITY' for kernel_fn, or "
                "estimate the kernel with ntk_bayes.monte_carlo_kernel_fn"
            )
        if k.diagonal_spatial and k.shape1[1] > 1:
            raise ValueError(  # pragma: no cover - the engine chooses the full layout
                "GlobalSelfAttention needs cross-token covariances (the full spatial layout)"
            )
        self.output_shape(k.shape1)
        w_x, w_e = self._pos_weights(k.shape1[-1])
        r = None if self.pos_emb_type == "NONE" else self._pos_cov(spatial, k.cov1.dtype)

        rs = dict.fromkeys(("nngp", "ntk", "cov1", "cov2"), r)
        if masks is not None and r is not None:  # embeddings are 0 at masked positions
            m1, m2 = masks
            pair = m1[:, None, :, None] | m2[None, :, None, :]
            own1, own2 = (m[:, :, None] | m[:, None, :] for m in masks)
            zero = jnp.zeros((), r.dtype)
            rs = dict(
                nngp=jnp.where(pair, zero, r),
                ntk=jnp.where(pair, zero, r),
                cov1=jnp.where(own1, zero, r),
                cov2=jnp.where(own2, zero, r),
            )

        def interp(name):  # the covariance of what keys and queries see
            mat = getattr(k, name)
            return mat if r is None or mat is None else w_x * mat + w_e * rs[name]

        keys = {n: interp(n) for n in ("nngp", "ntk", "cov1", "cov2")}
        vals = keys if self.val_pos_emb else {n: getattr(k, n) for n in keys}
        if not self.linear_scaling:
            out = self._sqrt_scaling_kernel(keys, vals)
        else:
            out = self._linear_scaling_kernel(keys, vals, masks)
        return k.replace(
            **out,
            shape1=self.output_shape(k.shape1),
            shape2=self.output_shape(k.shape2),
            is_gaussian=True,
            independent=True,
            is_input=False,
        )

    def _linear_scaling_kernel(self, keys, vals, masks=None):
        qk = self.W_query_std * self.W_key_std
        ov2 = (self.W_out_std * self.W_value_std) ** 2
        b2 = 0.0 if self.b_std is None else self.b_std**2
        l1, l2 = qk * keys["cov1"], qk * keys["cov2"]  # (n, T, T) logits
        if masks is not None:  # masked keys get no weight
            m1, m2 = masks
            l1, l2 = self._mask_keys(l1, m1[:, None, :]), self._mask_keys(l2, m2[:, None, :])
        g1, g2 = self._phi(l1), self._phi(l2)

        def pair(mat):
            return ov2 * jnp.einsum("its,ijsu,jvu->ijtv", g1, mat, g2)

        def own(g, mat):
            return ov2 * jnp.einsum("its,isu,ivu->itv", g, mat, g) + b2

        nngp_w = pair(vals["nngp"])
        ntk = None if vals["ntk"] is None else pair(vals["ntk"]) + b2 + 2 * nngp_w
        return dict(
            nngp=nngp_w + b2, ntk=ntk, cov1=own(g1, vals["cov1"]), cov2=own(g2, vals["cov2"])
        )

    def _sqrt_scaling_kernel(self, keys, vals):
        """``linear_scaling=False`` with identity attention: the logits stay Gaussian, the
        output is a sum of products of Gaussians, and its second moments close over
        ⟨A, B⟩ = Σ_{t,s} A[t, s] B[t, s] (neural-tangents 0.6.5's formula). K are the
        covariances of what keys and queries see, V of what values see; a positional
        embedding's own gradient enters the keys' tangent kernel."""
        std2 = (self.W_query_std * self.W_key_std * self.W_out_std * self.W_value_std) ** 2
        b2 = 0.0 if self.b_std is None else self.b_std**2

        def dot(a, b):
            return jnp.sum(a * b, axis=(-2, -1), keepdims=True)

        def second(name):
            return std2 * dot(keys[name], vals[name]) * keys[name] + b2

        nk, nv = keys["nngp"], vals["nngp"]
        ntk = None
        if keys["ntk"] is not None:
            tk, tv = keys["ntk"], vals["ntk"]
            ntk = std2 * ((dot(tk, nv) + dot(nk, tv)) * nk + dot(nk, nv) * (tk + 4 * nk)) + b2
        return dict(nngp=second("nngp"), ntk=ntk, cov1=second("cov1"), cov2=second("cov2"))

    def _channels(self, c_in: int) -> tuple:
        """Input channels of (keys and queries, values)."""
        c_e = self._pos_emb_channels(c_in)
        c_keys = c_in + (c_e if self.pos_emb_type == "CONCAT" else 0)
        return c_keys, (c_keys if self.val_pos_emb else c_in)

    def init(self, key, input_shape):
        out_shape = self.output_shape(input_shape)
        c_in = input_shape[-1]
        kq, kk, kv, ko, kb, ke = jax.random.split(key, 6)
        c_e = self._pos_emb_channels(c_in)
        c_keys, c_vals = self._channels(c_in)
        keys = jax.random.normal(kk, (self.n_heads, c_keys, self.n_chan_key))
        queries = (
            None
            if self.linear_scaling
            else jax.random.normal(kq, (self.n_heads, c_keys, self.n_chan_key))
        )
        values = jax.random.normal(kv, (self.n_heads, c_vals, self.n_chan_val))
        w_out = jax.random.normal(ko, (self.n_heads * self.n_chan_val, self.n_chan_out))
        b = None if self.b_std is None else jax.random.normal(kb, (self.n_chan_out,))
        if self.pos_emb_type == "NONE":
            return out_shape, (queries, keys, values, w_out, b)
        if self.pos_emb_decay_fn is not None:
            self._pos_chol(tuple(input_shape[1:-1]))  # refuse a non-PD R before any work
        pos_emb = jax.random.normal(ke, (1, *input_shape[1:-1], c_e))
        return out_shape, (queries, keys, values, w_out, b, pos_emb)

    def prior_std(self, input_shape):
        """Unit scales: ``init_fn`` draws every weight from N(0, 1) and ``apply_fn``
        carries the ``*_std`` factors."""
        self.output_shape(input_shape)
        stds = (
            None if self.linear_scaling else 1.0,
            1.0,
            1.0,
            1.0,
            None if self.b_std is None else 1.0,
        )
        return stds if self.pos_emb_type == "NONE" else stds + (1.0,)

    def apply(self, params, x, mask=None, **kwargs):
        queries, keys, values, w_out, b = params[:5]
        out_shape = self.output_shape(x.shape)
        spatial = tuple(x.shape[1:-1])
        n, c_in = x.shape[0], x.shape[-1]
        x = x.reshape(n, -1, c_in)  # images: positions are tokens
        t = x.shape[1]
        c_keys, c_vals = self._channels(c_in)
        if keys.shape[1] != c_keys or values.shape[1] != c_vals:
            raise ValueError(
                f"GlobalSelfAttention: input has {c_in} channels but the weights expect "
                f"another number; re-run init_fn with this input shape"
            )
        x_k = x  # what keys and queries see
        if self.pos_emb_type != "NONE":
            pe = params[5].reshape(t, -1)
            if self.pos_emb_decay_fn is not None:
                pe = jnp.asarray(self._pos_chol(spatial), pe.dtype) @ pe
            pe = self.W_pos_emb_std * pe[None]
            if mask is not None:  # no embedding at masked positions
                pos = jnp.all(mask, axis=-1).reshape(-1, t, 1)
                pe = jnp.where(pos, jnp.zeros((), pe.dtype), pe)
            if self.pos_emb_type == "SUM":
                x_k = x + pe
            else:
                x_k = jnp.concatenate([x, jnp.broadcast_to(pe, (n, t, pe.shape[-1]))], axis=-1)
        x_v = x_k if self.val_pos_emb else x
        k_ = jnp.einsum("ntc,hck->hntk", x_k, keys)
        q_ = k_ if queries is None else jnp.einsum("ntc,hck->hntk", x_k, queries)
        scale = c_keys * (self.n_chan_key if self.linear_scaling else math.sqrt(self.n_chan_key))
        logits = jnp.einsum("hntk,hnsk->hnts", q_, k_) * (self.W_query_std * self.W_key_std / scale)
        if mask is not None:
            key_mask = jnp.all(mask, axis=-1).reshape(-1, t)
            logits = self._mask_keys(logits, key_mask[None, :, None, :])
        v_ = jnp.einsum("ntc,hcv->hntv", x_v, values)
        heads = jnp.einsum("hnts,hnsv->nthv", self._phi(logits), v_).reshape(n, t, -1)
        norm = (
            self.W_out_std * self.W_value_std / math.sqrt(self.n_chan_val * self.n_heads * c_vals)
        )
        out = (heads @ w_out) * norm
        if b is not None:
            out = out + self.b_std * b
        return out.reshape(out_shape)


def _to_tokens(a, batch_ndim: int, spatial: tuple):
    """(*batch, X, X', Y, Y', ...) -> (*batch, XY..., X'Y'...): positions as tokens."""
    n = len(spatial)
    lead = tuple(range(batch_ndim))
    first = tuple(batch_ndim + 2 * i for i in range(n))
    a = a.transpose(lead + first + tuple(f + 1 for f in first))
    t = math.prod(spatial)
    return a.reshape(a.shape[:batch_ndim] + (t, t))


def _from_tokens(a, batch_ndim: int, spatial: tuple):
    """Inverse of :func:`_to_tokens`."""
    n = len(spatial)
    a = a.reshape(a.shape[:batch_ndim] + tuple(spatial) * 2)
    order = [i for p in range(n) for i in (batch_ndim + p, batch_ndim + n + p)]
    return a.transpose(tuple(range(batch_ndim)) + tuple(order))
