"""Small attention networks with neural-tangents' positional-embedding options
(``pos_emb_decay_fn``, ``pos_emb_p_norm``, ``val_pos_emb``, ``n_chan_pos_emb``) and
``linear_scaling=False``, built from either library.

``build(stax, name)`` takes ``neural_tangents.stax`` or ``ntk_bayes.stax``, so
``tools/make_nt_reference_layers.py`` and the tests describe each network once.
"""

import numpy as np

N1, N2 = 3, 2


def exp_decay(d):
    import jax.numpy as jnp

    return jnp.exp(-d / 2)


def power_decay(d):
    return 1 / (1 + d) ** 2


# name -> (per-point input shape, GlobalSelfAttention keyword arguments)
CASES = {
    "sum_decay_p1": (
        (5, 3),
        dict(pos_emb_type="SUM", pos_emb_decay_fn=exp_decay, pos_emb_p_norm=1, W_pos_emb_std=1.3),
    ),
    "concat_val": (
        (4, 3),
        dict(pos_emb_type="CONCAT", val_pos_emb=True, n_chan_pos_emb=3, W_pos_emb_std=0.9),
    ),
    "sum_val_decay_relu": (
        (5, 2),
        dict(
            pos_emb_type="SUM",
            val_pos_emb=True,
            pos_emb_decay_fn=power_decay,
            attention_mechanism="RELU",
            W_pos_emb_std=1.1,
        ),
    ),
    "sqrt_identity_sum": (
        (4, 3),
        dict(
            linear_scaling=False,
            attention_mechanism="IDENTITY",
            pos_emb_type="SUM",
            W_pos_emb_std=0.7,
        ),
    ),
    "sqrt_identity_concat_val": (
        (4, 2),
        dict(
            linear_scaling=False,
            attention_mechanism="IDENTITY",
            pos_emb_type="CONCAT",
            val_pos_emb=True,
            n_chan_pos_emb=5,
            W_pos_emb_std=1.2,
        ),
    ),
    "sqrt_identity_decay_p15": (
        (5, 3),
        dict(
            linear_scaling=False,
            attention_mechanism="IDENTITY",
            pos_emb_type="CONCAT",
            pos_emb_decay_fn=exp_decay,
            pos_emb_p_norm=1.5,
        ),
    ),
    "img_concat_decay_val": (
        (3, 2, 2),
        dict(
            pos_emb_type="CONCAT",
            pos_emb_decay_fn=exp_decay,
            pos_emb_p_norm=1,
            val_pos_emb=True,
            n_chan_pos_emb=4,
            W_pos_emb_std=1.4,
        ),
    ),
}
NAMES = tuple(CASES)


def inputs(name: str, seed: int = 0):
    """``(x1, x2)``, float64 multiples of 1/8 (exact inner products in float64)."""
    rng = np.random.default_rng([seed, NAMES.index(name)])
    shape = CASES[name][0]
    return tuple(np.round(rng.normal(size=(n, *shape)) * 8).clip(-16, 16) / 8 for n in (N1, N2))


def attention(stax, name: str, width: int = 8, n_chan_key=None, n_heads: int = 2, **over):
    kw = dict(
        W_key_std=1.1, W_value_std=1.2, W_query_std=0.9, W_out_std=0.8, b_std=0.1, **CASES[name][1]
    )
    kw.update(over)
    return stax.GlobalSelfAttention(width, n_chan_key or width, width, n_heads, **kw)


def build(stax, name: str, width: int = 8):
    return stax.serial(
        stax.Dense(width, W_std=1.2, b_std=0.1),
        attention(stax, name, width),
        stax.Relu(),
        stax.GlobalAvgPool(),
        stax.Dense(1, W_std=1.0, b_std=0.1),
    )
