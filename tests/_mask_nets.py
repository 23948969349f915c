"""Networks on padded (masked) inputs, built from either library.

``build(stax, name)`` takes ``neural_tangents.stax`` or ``ntk_bayes.stax`` (same names
and keyword arguments), so ``tools/make_nt_reference_mask.py`` and the tests describe
each network once; ``inputs(name)`` gives the padded ``(x1, x2)`` and the case's
``mask_constant``. Reference values: ``tests/data/nt_mask.npz``.
"""

import functools
import pathlib

import numpy as np

DATA = pathlib.Path(__file__).parent / "data"

PAD = -7.0  # inputs are multiples of 1/8 in [-2, 2]: never equal to the padding

# name -> (per-point input shape, mask constant)
CASES = {
    "conv_gap": ((8, 3), PAD),
    "conv_avgpool_flatten": ((8, 3), PAD),
    "conv_valid_sumpool": ((9, 2), PAD),
    "dense_gap": ((7, 3), PAD),
    "dense_gap_nan": ((7, 3), float("nan")),
    "attn_softmax": ((6, 3), PAD),
    "attn_identity_sqrt": ((6, 3), PAD),
    "attn_pos_sum": ((5, 3), PAD),
    "attn_img": ((3, 3, 2), PAD),
    "layernorm_seq": ((6, 3), PAD),
    "fanin_sum": ((7, 2), PAD),
    "fanin_concat": ((6, 2), PAD),
    "fanin_concat_chan": ((6, 2), PAD),
    "conv2d_img": ((4, 4, 2), PAD),
    "fc_features": ((6,), PAD),
}
NAMES = tuple(CASES)
N1, N2 = 4, 3


def inputs(name: str, seed: int = 0):
    """``(x1, x2, mask_constant)``: float64 multiples of 1/8 in [-2, 2] (inner products
    exact in float64), padded with the constant: sequences to lengths drawn in
    [1, T] (one point of x1 unpadded), images outside a top-left block, feature vectors
    at random entries."""
    rng = np.random.default_rng([seed, NAMES.index(name)])
    shape, c = CASES[name]
    out = []
    for n in (N1, N2):
        x = np.round(rng.normal(size=(n, *shape)) * 8).clip(-16, 16) / 8
        for i in range(1, n):  # point 0 keeps every position
            if len(shape) == 1:
                x[i, rng.random(shape[0]) < 0.3] = c
            elif len(shape) == 2:
                x[i, rng.integers(1, shape[0]) :] = c
            else:
                h, w = rng.integers(1, shape[0] + 1), rng.integers(1, shape[1] + 1)
                keep = np.zeros(shape[:2], bool)
                keep[:h, :w] = True
                if keep.all():
                    keep[-1, -1] = False
                x[i, ~keep] = c
        out.append(x)
    return out[0], out[1], c


def build(stax, name: str, width: int = 8):
    w = width
    wb = {"W_std": 1.3, "b_std": 0.2}
    readout = stax.Dense(1, W_std=1.1, b_std=0.1)
    relu, gap = stax.Relu(), stax.GlobalAvgPool()

    def conv(f=(3,), padding="SAME", **kw):
        return stax.Conv(w, f, padding=padding, **kw)

    if name == "conv_gap":
        return stax.serial(conv(**wb), relu, conv(W_std=0.9), relu, gap, readout)
    if name == "conv_avgpool_flatten":
        return stax.serial(
            conv(**wb), stax.Erf(), stax.AvgPool((2,), strides=(2,)), stax.Flatten(), readout
        )
    if name == "conv_valid_sumpool":
        return stax.serial(
            conv(padding="VALID", **wb),
            relu,
            stax.SumPool((2,), padding="SAME"),
            conv((2,), padding="VALID"),
            stax.GlobalSumPool(),
        )
    if name in ("dense_gap", "dense_gap_nan"):
        return stax.serial(stax.Dense(w, **wb), relu, stax.Dense(w), stax.Gelu(), gap, readout)
    if name == "attn_softmax":
        return stax.serial(
            stax.Dense(w, **wb),
            stax.GlobalSelfAttention(w, w, w, 2, linear_scaling=True, b_std=0.1),
            relu,
            gap,
            readout,
        )
    if name == "attn_identity_sqrt":
        return stax.serial(
            stax.Dense(w, **wb),
            stax.GlobalSelfAttention(
                w, w, w, 2, linear_scaling=False, attention_mechanism="IDENTITY", b_std=0.1
            ),
            gap,
        )
    if name == "attn_pos_sum":
        return stax.serial(
            stax.Dense(w, **wb),
            stax.GlobalSelfAttention(w, w, w, 2, pos_emb_type="SUM", W_pos_emb_std=0.7),
            relu,
            gap,
        )
    if name == "attn_img":
        return stax.serial(
            conv((2, 2), **wb),
            stax.GlobalSelfAttention(w, w, w, 1, attention_mechanism="RELU"),
            gap,
            readout,
        )
    if name == "layernorm_seq":
        return stax.serial(stax.Dense(w, **wb), stax.LayerNorm(axis=(1, 2)), relu, gap)
    if name == "fanin_sum":
        return stax.serial(
            stax.Dense(w, **wb),
            stax.FanOut(2),
            stax.parallel(stax.serial(conv(), relu, conv((2,))), conv((5,), W_std=0.8)),
            stax.FanInSum(),
            relu,
            gap,
            readout,
        )
    if name == "fanin_concat":  # along the sequence: the masks are concatenated
        return stax.serial(
            stax.FanOut(2),
            stax.parallel(stax.Dense(w, **wb), conv((3,), b_std=0.3)),
            stax.FanInConcat(axis=1),
            stax.Erf(),
            gap,
        )
    if name == "fanin_concat_chan":  # along channels: a position masked in both
        return stax.serial(
            stax.FanOut(2),
            stax.parallel(stax.Dense(w, **wb), conv((3,), b_std=0.3)),
            stax.FanInConcat(),
            stax.Dense(w),
            stax.Erf(),
            gap,
        )
    if name == "conv2d_img":
        return stax.serial(
            conv((2, 2), **wb), relu, stax.AvgPool((2, 2), padding="SAME"), conv((3, 3)), gap
        )
    if name == "fc_features":
        return stax.serial(stax.Dense(w, **wb), relu, stax.Dense(w), relu, readout)
    raise KeyError(name)


@functools.cache
def reference() -> dict:
    with np.load(DATA / "nt_mask.npz") as f:
        return {k: f[k] for k in f.files}
