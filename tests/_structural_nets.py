"""Small networks with FanInProd, Index and DotGeneral, built from either library.

``build(stax, name)`` takes ``neural_tangents.stax`` or ``ntk_bayes.stax`` (they share
names and keyword arguments), so ``tools/make_nt_reference_structural.py`` and the tests
describe each network once.
"""

import numpy as np

# name -> per-point input shape
INPUT_SHAPES = {
    "prod_fc": (4,),
    "prod3_input": (3,),
    "prod_conv": (3, 3, 2),
    "index_img": (4, 3, 2),
    "index_seq": (6, 3),
    "dot_scalar_fc": (4,),
    "dot_img": (3, 3, 2),
    "dot_lhs_2d": (3, 4, 2),
    "attn_pos_sum": (5, 3),
    "attn_pos_concat_img": (3, 2, 2),
}
NAMES = tuple(INPUT_SHAPES)
N1, N2 = 4, 3


def inputs(name: str, seed: int = 0):
    """``(x1, x2)``, float64 multiples of 1/8 in [-2, 2]: every inner product is exact
    in float64, so both libraries start from the same Gram matrix to the last bit."""
    rng = np.random.default_rng([seed, NAMES.index(name)])
    shape = INPUT_SHAPES[name]
    return tuple(np.round(rng.normal(size=(n, *shape)) * 8).clip(-16, 16) / 8 for n in (N1, N2))


def build(stax, name: str, width: int = 8):
    w = width
    if name == "prod_fc":
        return stax.serial(
            stax.Dense(w, W_std=1.3, b_std=0.2),
            stax.FanOut(2),
            stax.parallel(
                stax.serial(stax.Dense(w, W_std=1.2, b_std=0.1), stax.Erf()),
                stax.Dense(w, W_std=0.9, b_std=0.3),
            ),
            stax.FanInProd(),
            stax.Dense(w, W_std=1.1, b_std=0.2),
            stax.Relu(),
            stax.Dense(1, W_std=1.0, b_std=0.1),
        )
    if name == "prod3_input":
        return stax.serial(
            stax.FanOut(3),
            stax.parallel(
                stax.Dense(w, W_std=1.1, b_std=0.2),
                stax.Dense(w, W_std=0.8),
                stax.serial(stax.Dense(w, W_std=1.4, b_std=0.1), stax.Relu()),
            ),
            stax.FanInProd(),
            stax.Dense(1, W_std=1.2, b_std=0.05),
        )
    if name == "prod_conv":
        return stax.serial(
            stax.Conv(w, (2, 2), padding="SAME", W_std=1.2, b_std=0.1),
            stax.FanOut(2),
            stax.parallel(
                stax.serial(stax.Conv(w, (3, 3), padding="SAME", W_std=1.3), stax.Relu()),
                stax.Conv(w, (1, 1), W_std=0.9, b_std=0.2),
            ),
            stax.FanInProd(),
            stax.Conv(w, (2, 2), padding="SAME", W_std=1.1, b_std=0.1),
            stax.Relu(),
            stax.GlobalAvgPool(),
            stax.Dense(1, W_std=1.0, b_std=0.1),
        )
    if name == "index_img":
        return stax.serial(
            stax.Conv(w, (2, 2), padding="SAME", W_std=1.3, b_std=0.1),
            stax.Relu(),
            stax.Index(idx=stax.Slice[:, 1:4, ::-1, :]),
            stax.Conv(w, (2, 2), W_std=1.2, b_std=0.2),
            stax.Relu(),
            stax.Index(idx=stax.Slice[:, 0, ...]),
            stax.Conv(w, (2,), W_std=1.1),
            stax.Relu(),
            stax.GlobalAvgPool(),
            stax.Dense(1, W_std=1.0, b_std=0.1),
        )
    if name == "index_seq":
        return stax.serial(
            stax.Dense(w, W_std=1.4, b_std=0.1),
            stax.Relu(),
            stax.Index(idx=stax.Slice[:, ::2]),
            stax.Dense(w, W_std=1.2, b_std=0.2),
            stax.Erf(),
            stax.Flatten(),
            stax.Dense(1, W_std=1.0, b_std=0.1),
        )
    if name == "dot_scalar_fc":
        return stax.serial(
            stax.Dense(w, W_std=1.3, b_std=0.2),
            stax.Relu(),
            stax.DotGeneral(rhs=0.7),
            stax.Dense(w, W_std=1.1, b_std=0.1),
            stax.Erf(),
            stax.DotGeneral(lhs=-1.3),
            stax.Dense(1, W_std=1.0, b_std=0.1),
        )
    if name == "dot_img":
        return stax.serial(
            stax.Conv(w, (2, 2), padding="SAME", W_std=1.3, b_std=0.1),
            stax.Relu(),
            stax.DotGeneral(
                rhs=np.array([1.0, -1.0, 0.5]),
                dimension_numbers=(((1,), (0,)), ((), ())),
            ),
            stax.Conv(w, (2,), W_std=1.2, b_std=0.2),
            stax.Relu(),
            stax.GlobalAvgPool(),
            stax.Dense(1, W_std=1.0, b_std=0.1),
        )
    if name == "dot_lhs_2d":
        lhs = np.arange(12.0).reshape(4, 3) / 10 - 0.5  # axis 0 <-> W, axis 1 <-> H
        return stax.serial(
            stax.Conv(w, (2, 2), padding="SAME", W_std=1.3, b_std=0.1),
            stax.Erf(),
            stax.DotGeneral(lhs=lhs, dimension_numbers=(((0, 1), (2, 1)), ((), ()))),
            stax.Dense(w, W_std=1.2, b_std=0.2),
            stax.Relu(),
            stax.Dense(1, W_std=1.0, b_std=0.1),
        )
    if name == "attn_pos_sum":
        return stax.serial(
            stax.Dense(w, W_std=1.2, b_std=0.1),
            stax.GlobalSelfAttention(
                w,
                w,
                w,
                2,
                W_key_std=1.1,
                W_value_std=1.2,
                W_query_std=0.9,
                b_std=0.1,
                pos_emb_type="SUM",
                W_pos_emb_std=0.8,
            ),
            stax.Relu(),
            stax.GlobalAvgPool(),
            stax.Dense(1, W_std=1.0, b_std=0.1),
        )
    if name == "attn_pos_concat_img":
        return stax.serial(
            stax.Conv(w, (2, 2), padding="SAME", W_std=1.3, b_std=0.1),
            stax.Relu(),
            stax.GlobalSelfAttention(
                w,
                w,
                w,
                1,
                W_key_std=1.3,
                W_value_std=1.1,
                W_out_std=0.9,
                pos_emb_type="CONCAT",
                n_chan_pos_emb=w // 2,
                W_pos_emb_std=1.4,
            ),
            stax.GlobalAvgPool(),
            stax.Dense(1, W_std=1.0, b_std=0.1),
        )
    raise KeyError(name)


# linearize / taylor_expand: one pure function both libraries expand.
def taylor_f(params, x, scale):
    import jax.numpy as jnp

    h = jnp.tanh(x @ params["W1"] + params["b1"])
    return {"out": scale * jnp.sin(h @ params["W2"]), "h": h}


def taylor_case():
    """``(params, new_params, x, scale)`` as float64 numpy."""
    rng = np.random.default_rng(7)
    params = {
        "W1": rng.normal(size=(3, 5)) / 2,
        "b1": rng.normal(size=(5,)) / 4,
        "W2": rng.normal(size=(5, 2)) / 2,
    }
    new = {k: v + rng.normal(size=v.shape) * 0.3 for k, v in params.items()}
    x = rng.normal(size=(4, 3))
    return params, new, x, 1.5


TAYLOR_DEGREES = (0, 1, 2, 3)
