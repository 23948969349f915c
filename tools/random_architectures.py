"""Seeded random architectures over the analytic layer set shared with neural-tangents.

A *spec* is JSON data: ``[name, kwargs]`` for a layer, ``["serial", [spec, ...]]`` and
``["parallel", [spec, ...]]`` for compositions, ``["repeat", [spec, n]]`` for
``stax.repeat``. :func:`build` turns a spec into a network with whichever ``stax``
module it is given, so the same spec builds in neural-tangents 0.6.5 (by
``tools/make_nt_reference.py``, in its own environment) and in ``ntk_bayes.stax`` (by
``tests/stat/test_differential_nt.py``). Standard library only: this module must import
in both environments and never imports either library.

Case ``i`` of seed ``s`` depends only on ``(s, i)``, so growing the number of cases
keeps the earlier ones. The layers added in issue 15's second round (Monomial,
RectifiedMonomial, Hermite, Polynomial, ExpNormalized, Gabor, FanInProd, Index,
DotGeneral, positional embeddings, ConvTranspose, ConvLocal, ImageResize) are drawn
from a second stream ``(s, i, "more")``: a case that draws none of them is the case it
was before, spec and reference values alike.

Left out, and why:

- ``Sign`` outside fully connected networks: neural-tangents 0.6.5 sets every
  same-point, cross-position covariance after ``Sign`` to 1 (ntk_bayes is right there;
  ``tests/stat/test_stax_exact_mc.py`` shows it against Monte Carlo). Fully connected
  networks have no positions, so there both agree, except on self-pairs after chained
  Signs, where neural-tangents' round-off grows to percents (case 288).
- ``Dropout`` (stochastic), ``ElementwiseNumerical`` (quadrature, not a closed form).
- ``Hermite`` except right after ``LayerNorm``: neural-tangents computes Σ12^d, the
  kernel for unit-variance pre-activations only.
- ``RectifiedMonomial`` except as the last nonlinearity before the readout:
  neural-tangents 0.6.5 returns NaN for its self-covariances (it divides by sin θ = 0),
  so any later nonlinearity is all-NaN; such cases compare no self-pairs
  (``"self_pairs": "nan in neural-tangents"``). Nor after a layer of degree 0
  (constant output: every pair is a same-point pair there, all NaN).
- ``ImageResize`` on 2-D images after an odd number of convolutions (or after a
  residual block): neural-tangents stores full-layout 2-D kernels with reversed spatial
  axes there and resizes the wrong ones (Monte Carlo sides with ntk_bayes,
  tests/stat/test_stax_conv_more_mc.py).
- ``DotGeneral`` with free axes of the constant or batch dims: neural-tangents keeps
  ``lax.dot_general``'s axis order, after which only Flatten-type readouts accept its
  kernel (tests/unit/test_stax_dot_general_more.py covers them).
- A nonlinearity right after ``FanInProd`` (neural-tangents flags the product
  non-Gaussian and refuses it).
- ``GlobalSelfAttention(linear_scaling=False)`` with other mechanisms than
  ``"IDENTITY"``: neural-tangents has no closed form for them.
- FanInSum/FanInConcat of branches that both end in a nonlinearity: neural-tangents
  refuses them and so does ntk_bayes. Residual blocks here sum a branch that ends in a
  Dense/Conv with ``Identity`` or another affine branch, opened after an affine layer.
- A nonlinearity right after a channel-wise FanInConcat (neural-tangents refuses it).
- Attention/Cos with huge variances: weights stay in [0.5, 2] so every pre-activation
  variance stays moderate (Exp and Cos of variances of 1e13 have no float64 digits left).
"""

from __future__ import annotations

import json
import random
import re

__all__ = ["CASES", "N1", "N2", "SEED", "STAT_CASES", "build", "input_shapes", "make_case"]

SEED = 20261130
CASES = 300
STAT_CASES = 30
N1, N2 = 5, 4

# Trailing input shape per family; spatial ones are (*spatial, channels).
INPUT_SHAPES = {"fc": (7,), "conv1d": (6, 3), "conv2d": (5, 5, 2), "attention": (5, 4)}
FAMILIES = tuple(INPUT_SHAPES)
_PADDINGS = ("SAME", "VALID", "CIRCULAR")
_ATTENTION = ("SOFTMAX", "IDENTITY", "ABS", "RELU")


def _std(rng: random.Random, lo: float, hi: float) -> float:
    return round(rng.uniform(lo, hi), 3)


def _b_std(rng: random.Random):
    return None if rng.random() < 0.2 else _std(rng, 0.0, 0.5)


def _nonlinearity(rng: random.Random, family: str) -> list:
    """One elementwise layer with random constants (those both libraries take)."""
    choices = [
        ("Relu", lambda: {}),
        ("ABRelu", lambda: {"a": _std(rng, -1.0, 1.0), "b": _std(rng, -1.0, 1.5)}),
        ("LeakyRelu", lambda: {"alpha": _std(rng, 0.0, 0.5)}),
        ("Abs", lambda: {}),
        ("Erf", lambda: {"a": _std(rng, 0.5, 2), "b": _std(rng, 0.3, 1.5), "c": _std(rng, -1, 1)}),
        ("Gelu", lambda: {"approximate": False}),
        ("Sin", lambda: {"a": _std(rng, 0.5, 2), "b": _std(rng, 0.3, 1.5), "c": _std(rng, -1, 1)}),
        ("Cos", lambda: {"a": _std(rng, 0.5, 2), "b": _std(rng, 0.3, 1.5), "c": _std(rng, -1, 1)}),
        ("Rbf", lambda: {"gamma": _std(rng, 0.1, 1.5)}),
        ("Exp", lambda: {"a": _std(rng, 0.5, 1.5), "b": _std(rng, 0.1, 0.6)}),
        ("Gaussian", lambda: {"a": _std(rng, 0.5, 1.5), "b": -_std(rng, 0.2, 1.0)}),
        ("Sigmoid_like", lambda: {}),
        ("Identity", lambda: {}),
    ]
    if family == "fc":  # see the module docstring
        choices.append(("Sign", lambda: {}))
    name, kwargs = rng.choice(choices)
    return [name, kwargs()]


# Fraction of cases that draw from the second stream at all.
MORE = 0.5
DECAYS = {"exp_half": lambda d: 2.718281828459045 ** (-d / 2), "inv_sq": lambda d: 1 / (1 + d) ** 2}


def _more_nonlinearity(rng: random.Random, after_norm: bool) -> list:
    """One of the polynomial-type layers (Hermite only after LayerNorm, see above)."""
    choices = [
        ("Monomial", lambda: {"degree": rng.randint(0, 3)}),
        ("Polynomial", lambda: {"coef": [_std(rng, -1, 1) for _ in range(rng.randint(1, 4))]}),
        (
            "ExpNormalized",
            lambda: {
                "gamma": _std(rng, 0.2, 1.5),
                "shift": _std(rng, -1.5, 0.5),
                "do_clip": rng.random() < 0.5,
            },
        ),  # fmt: skip
        ("Gabor", lambda: {}),
    ]
    if after_norm:
        choices.append(("Hermite", lambda: {"degree": rng.randint(0, 4)}))
    name, kwargs = rng.choice(choices)
    return [name, kwargs()]


class _Net:
    """Grows one random spec while tracking the spatial shape the layers see."""

    def __init__(self, rng: random.Random, family: str, more: random.Random | None = None):
        self.rng, self.family = rng, family
        self.spatial = list(INPUT_SHAPES[family][:-1])
        self.layers: list = []
        self.param = "standard" if rng.random() < 0.15 else "ntk"
        # The second stream (None: this case draws no layer of the second round).
        self.more = more if more is not None and more.random() < MORE else None
        self.n_conv = 0  # convolutions on the main path (ImageResize, see above)
        self.residual_seen = False

    def maybe(self, p: float) -> bool:
        return self.more is not None and self.more.random() < p

    def nonlinearity(self, after_norm: bool = False) -> list:
        layer = _nonlinearity(self.rng, self.family)  # drawn always: keeps the main stream
        if self.maybe(0.3):
            return _more_nonlinearity(self.more, after_norm)
        return layer

    @property
    def conv(self) -> bool:
        return self.family.startswith("conv")

    def affine(self, width: int | None = None) -> list:
        rng = self.rng
        width = width or rng.choice((3, 8, 16))
        kw = {"W_std": _std(rng, 0.5, 2.0), "b_std": _b_std(rng), "parameterization": self.param}
        if not self.conv:
            return ["Dense", {"out_dim": width, **kw}]
        filt, strides = [], []
        for size in self.spatial:
            filt.append(rng.randint(1, min(3, size)))
            strides.append(2 if size >= 4 and rng.random() < 0.2 else 1)
        padding = rng.choice(_PADDINGS)
        return ["Conv", {"out_chan": width, "filter_shape": filt, "strides": strides,
                         "padding": padding, **kw}]  # fmt: skip

    def track(self, layer: list) -> list:
        """Update the spatial shape after a layer that changes it; return the layer."""
        name, kw = layer
        if name in ("Conv", "ConvLocal", "AvgPool", "SumPool"):
            window = kw.get("filter_shape") or kw["window_shape"]
            strides = kw.get("strides") or [1] * len(window)
            self.spatial = [
                -(-(s - (f - 1 if kw["padding"] == "VALID" else 0)) // st)
                for s, f, st in zip(self.spatial, window, strides, strict=True)
            ]
        elif name == "ConvTranspose":
            self.spatial = [
                s * st + (max(f - st, 0) if kw["padding"] == "VALID" else 0)
                for s, f, st in zip(self.spatial, kw["filter_shape"], kw["strides"], strict=True)
            ]
        if name in ("Conv", "ConvLocal", "ConvTranspose"):
            self.n_conv += 1
        return layer

    def conv_variant(self, layer: list) -> list:
        """A top-level Conv, or (second stream) the same as ConvTranspose or ConvLocal."""
        if layer[0] == "Conv" and self.maybe(0.3):
            kind = self.more.choice(("ConvTranspose", "ConvLocal"))
            kw = dict(layer[1])
            if kind == "ConvTranspose":  # keep the images small (the slow tier's time)
                top = 2 if len(self.spatial) == 1 else 1
                kw["strides"] = [min(st, top) for st in kw["strides"]]
            return [kind, kw]
        return layer

    def spatial_extra(self) -> None:
        """Second stream, convolutional families: Index, ImageResize or DotGeneral."""
        if not self.conv or not self.maybe(0.35):
            return
        rng = self.more
        kind = rng.choice(("Index", "ImageResize", "DotGeneral"))
        d = len(self.spatial)
        if kind == "Index":
            idx = [[None, None, None]]
            for size in self.spatial:
                if size >= 3 and rng.random() < 0.6:
                    start = rng.randint(0, 1)
                    step = rng.choice((1, 2, -1))
                    idx.append([size - 1 - start, None, -1] if step == -1 else [start, None, step])
                else:
                    idx.append([None, None, None])
            idx.append([None, None, None])
            self.layers.append(["Index", {"idx": idx}])
            self.spatial = [
                len(range(*slice(*sl).indices(n)))
                for sl, n in zip(idx[1:-1], self.spatial, strict=True)
            ]
        elif kind == "ImageResize":
            if d == 2 and (self.n_conv % 2 or self.residual_seen):
                return
            new = [max(2, min(8, s + rng.choice((-2, -1, 1, 2, 3)))) for s in self.spatial]
            method = rng.choice(("linear", "nearest"))
            kw = {"shape": [-1, *new, -1], "method": method}
            if method == "linear" and rng.random() < 0.3:
                kw["antialias"] = False
            self.layers.append(["ImageResize", kw])
            self.spatial = new
        elif d == 2 and rng.random() < 0.5:  # contract one axis with a vector
            ax = rng.randint(1, 2)
            vec = [_std(rng, -1.5, 1.5) for _ in range(self.spatial[ax - 1])]
            self.layers.append(
                ["DotGeneral", {"rhs": vec, "dimension_numbers": [[[ax], [0]], [[], []]]}]
            )
            del self.spatial[ax - 1]
        else:
            self.layers.append(["DotGeneral", {rng.choice(("lhs", "rhs")): _std(rng, -1.5, 1.5)}])

    def residual(self) -> list:
        """An affine layer, then FanOut(2) → a branch ending in its own affine layer and an
        Identity or affine branch → FanInSum/FanInConcat (Gaussian, independent branches)."""
        rng = self.rng
        width = rng.choice((8, 16))
        self.layers.append(self.track(self.affine(width)))
        # Branch convolutions keep the spatial shape so that the branches can be summed.
        padding = rng.choice(("SAME", "CIRCULAR"))

        def branch_affine():
            lay = self.affine(width)
            if self.conv:
                lay[1]["padding"] = padding
                lay[1]["strides"] = [1] * len(self.spatial)
            return lay

        main = [self.nonlinearity(), branch_affine()]
        if rng.random() < 0.4:
            main += [self.nonlinearity(), branch_affine()]
        concat = rng.random() < 0.3
        other = branch_affine() if rng.random() < 0.3 else ["Identity", {}]
        fan_in = ["FanInConcat", {"axis": -1}] if concat else ["FanInSum", {}]
        return ["serial", [["FanOut", {"num": 2}], ["parallel", [["serial", main], other]],
                           fan_in]]  # fmt: skip

    def hidden_block(self) -> None:
        rng = self.rng
        r = rng.random()
        if r < 0.2:
            self.layers.append(self.residual())
            self.residual_seen = True
            # neural-tangents 0.6.5 refuses a nonlinearity right after a channel-wise
            # FanInConcat (its output is flagged non-Gaussian: a TODO there).
            if self.layers[-1][1][-1][0] == "FanInSum" and rng.random() < 0.5:
                self.layers.append(self.nonlinearity())
            elif self.layers[-1][1][-1][0] == "FanInSum" and self.maybe(0.4):
                self.layers[-1][1][-1] = ["FanInProd", {}]  # nothing nonlinear follows
            return
        if r < 0.3 and self.family == "fc" and self.param == "ntk":
            width = rng.choice((8, 16))
            self.layers.append(self.affine(width))
            body = ["serial", [self.nonlinearity(), self.affine(width)]]
            self.layers.append(["repeat", [body, rng.randint(1, 3)]])
            return
        self.layers.append(self.track(self.conv_variant(self.affine())))
        norm = rng.random() < 0.15
        if norm:
            self.layers.append(["LayerNorm", {"axis": -1}])
        self.layers.append(self.nonlinearity(after_norm=norm))
        if self.conv and rng.random() < 0.3 and min(self.spatial) >= 2:
            pool = rng.choice(("AvgPool", "SumPool"))
            kw = {"window_shape": [2] * len(self.spatial), "strides": None,
                  "padding": rng.choice(_PADDINGS)}  # fmt: skip
            if rng.random() < 0.5:
                kw["strides"] = [1] * len(self.spatial)
            if pool == "AvgPool":
                kw["normalize_edges"] = rng.random() < 0.5
            self.layers.append(self.track([pool, kw]))
        self.spatial_extra()
        if self.family == "fc" and self.maybe(0.15):
            self.layers.append(
                ["DotGeneral", {self.more.choice(("lhs", "rhs")): _std(self.more, -1.5, 1.5)}]
            )

    def attention_block(self, sqrt_scaling: bool) -> None:
        rng = self.rng
        heads = rng.choice((1, 2, 4))
        self.layers.append(
            [
                "GlobalSelfAttention",
                {
                    "n_chan_out": 8,
                    "n_chan_key": 8,
                    "n_chan_val": 8,
                    "n_heads": heads,
                    "linear_scaling": True,
                    "W_key_std": _std(rng, 0.5, 1.5),
                    "W_value_std": _std(rng, 0.5, 1.5),
                    "W_query_std": _std(rng, 0.5, 1.5),
                    "W_out_std": _std(rng, 0.5, 1.5),
                    "b_std": _b_std(rng),
                    "attention_mechanism": rng.choice(_ATTENTION),
                },
            ]
        )
        if sqrt_scaling:  # the only closed form neural-tangents has for 1/sqrt(d) logits
            self.layers[-1][1] |= {"linear_scaling": False, "attention_mechanism": "IDENTITY"}
        if self.maybe(0.6):
            more = self.more
            kw = {"pos_emb_type": more.choice(("SUM", "CONCAT"))}
            kw["W_pos_emb_std"] = _std(more, 0.5, 2.0)
            kw["val_pos_emb"] = more.random() < 0.4
            if kw["pos_emb_type"] == "CONCAT" and more.random() < 0.5:
                kw["n_chan_pos_emb"] = more.choice((2, 4, 8))
            if more.random() < 0.5:
                kw["pos_emb_decay_fn"] = more.choice(sorted(DECAYS))
                kw["pos_emb_p_norm"] = more.choice((1, 2, 1.5))
            self.layers[-1][1] |= kw

    def _constant(self) -> bool:
        """Whether a layer of degree 0 makes every point alike: the angle θ is then 0
        between all points and neural-tangents' RectifiedMonomial is NaN everywhere."""
        text = json.dumps(self.layers)
        return any(f'"{n}", {{"degree": 0}}' in text for n in ("Monomial", "Hermite")) or bool(
            re.search(r'"coef": \[[^,\]]*\]', text)
        )

    def readout(self) -> None:
        rng = self.rng
        last = self.layers[-1][0] in ("Dense", "Conv", "ConvLocal", "ConvTranspose")
        if last and not self._constant() and self.maybe(0.15):
            self.layers.append(["RectifiedMonomial", {"degree": self.more.randint(0, 3)}])
        if self.family != "fc":
            self.layers.append([rng.choice(("Flatten", "GlobalAvgPool", "GlobalSumPool")), {}])
        last = {"out_dim": 1, "W_std": _std(rng, 0.5, 2.0), "b_std": _b_std(rng)}
        self.layers.append(["Dense", {**last, "parameterization": self.param}])


def make_case(i: int, seed: int = SEED) -> dict:
    """Case ``i``: ``{"id", "family", "x1", "x2", "net"}`` with input shapes and a spec."""
    rng = random.Random(f"{seed}/{i}")
    family = FAMILIES[i % len(FAMILIES)]
    net = _Net(rng, family, random.Random(f"{seed}/{i}/more"))
    if family == "attention":
        net.layers.append(["Dense", {"out_dim": 8, "W_std": _std(rng, 0.5, 1.5), "b_std": None}])
        if rng.random() < 0.5:
            net.layers.append(net.nonlinearity())
        # Its own stream, so that adding it left every other draw of the case unchanged.
        sqrt_scaling = random.Random(f"{seed}/{i}/sqrt_scaling").random() < 0.3
        net.attention_block(sqrt_scaling)
        for _ in range(rng.randint(0, 2)):
            norm = rng.random() < 0.3
            if norm:
                net.layers.append(["LayerNorm", {"axis": -1}])
            net.layers.append(net.nonlinearity(after_norm=norm))
            net.layers.append(net.affine(8))
    else:
        for _ in range(rng.randint(1, 4)):
            net.hidden_block()
    net.readout()
    shape = list(INPUT_SHAPES[family])
    return {"id": i, "family": family, "x1": [N1, *shape], "x2": [N2, *shape],
            "net": ["serial", net.layers]}  # fmt: skip


def input_shapes(case: dict) -> tuple[tuple, tuple]:
    return tuple(case["x1"]), tuple(case["x2"])


def _arg(v):
    return tuple(v) if isinstance(v, list) else v


def build(stax, spec):
    """Build a spec with the given ``stax`` module (ntk_bayes' or neural-tangents')."""
    name, arg = spec
    if name in ("serial", "parallel"):
        return getattr(stax, name)(*[build(stax, s) for s in arg])
    if name == "repeat":
        return stax.repeat(build(stax, arg[0]), arg[1])
    kwargs = {k: _arg(v) for k, v in arg.items()}
    if name == "Index":  # JSON has no slices: [start, stop, step] lists
        kwargs["idx"] = tuple(slice(*s) for s in arg["idx"])
    if name == "DotGeneral":
        kwargs = {k: (v if k != "dimension_numbers" else _nested(v)) for k, v in arg.items()}
    if "pos_emb_decay_fn" in kwargs:
        kwargs["pos_emb_decay_fn"] = DECAYS[kwargs["pos_emb_decay_fn"]]
    return getattr(stax, name)(**kwargs)


def _nested(v):
    return tuple(_nested(x) for x in v) if isinstance(v, list) else v
