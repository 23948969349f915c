"""Seeded random architectures over the analytic layer set shared with neural-tangents.

A *spec* is JSON data: ``[name, kwargs]`` for a layer, ``["serial", [spec, ...]]`` and
``["parallel", [spec, ...]]`` for compositions, ``["repeat", [spec, n]]`` for
``stax.repeat``. :func:`build` turns a spec into a network with whichever ``stax``
module it is given, so the same spec builds in neural-tangents 0.6.5 (by
``tools/make_nt_reference.py``, in its own environment) and in ``ntk_bayes.stax`` (by
``tests/stat/test_differential_nt.py``). Standard library only: this module must import
in both environments and never imports either library.

Case ``i`` of seed ``s`` depends only on ``(s, i)``, so growing the number of cases
keeps the earlier ones.

Left out, and why:

- ``Sign`` outside fully connected networks: neural-tangents 0.6.5 sets every
  same-point, cross-position covariance after ``Sign`` to 1 (ntk_bayes is right there;
  ``tests/stat/test_stax_exact_mc.py`` shows it against Monte Carlo). Fully connected
  networks have no positions, so there both agree, except on self-pairs after chained
  Signs, where neural-tangents' round-off grows to percents (case 288).
- ``Dropout`` (stochastic), ``ElementwiseNumerical`` (quadrature, not a closed form),
  ``Hermite``, ``Polynomial`` and the other neural-tangents layers ntk_bayes lacks.
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

import random

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


class _Net:
    """Grows one random spec while tracking the spatial shape the layers see."""

    def __init__(self, rng: random.Random, family: str):
        self.rng, self.family = rng, family
        self.spatial = list(INPUT_SHAPES[family][:-1])
        self.layers: list = []
        self.param = "standard" if rng.random() < 0.15 else "ntk"

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
        """Update the spatial shape after a Conv or pooling layer; return the layer."""
        name, kw = layer
        if name in ("Conv", "AvgPool", "SumPool"):
            window = kw.get("filter_shape") or kw["window_shape"]
            strides = kw.get("strides") or [1] * len(window)
            self.spatial = [
                -(-(s - (f - 1 if kw["padding"] == "VALID" else 0)) // st)
                for s, f, st in zip(self.spatial, window, strides, strict=True)
            ]
        return layer

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

        main = [_nonlinearity(rng, self.family), branch_affine()]
        if rng.random() < 0.4:
            main += [_nonlinearity(rng, self.family), branch_affine()]
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
            # neural-tangents 0.6.5 refuses a nonlinearity right after a channel-wise
            # FanInConcat (its output is flagged non-Gaussian: a TODO there).
            if self.layers[-1][1][-1][0] == "FanInSum" and rng.random() < 0.5:
                self.layers.append(_nonlinearity(rng, self.family))
            return
        if r < 0.3 and self.family == "fc" and self.param == "ntk":
            width = rng.choice((8, 16))
            self.layers.append(self.affine(width))
            body = ["serial", [_nonlinearity(rng, self.family), self.affine(width)]]
            self.layers.append(["repeat", [body, rng.randint(1, 3)]])
            return
        self.layers.append(self.track(self.affine()))
        if rng.random() < 0.15:
            self.layers.append(["LayerNorm", {"axis": -1}])
        self.layers.append(_nonlinearity(rng, self.family))
        if self.conv and rng.random() < 0.3 and min(self.spatial) >= 2:
            pool = rng.choice(("AvgPool", "SumPool"))
            kw = {"window_shape": [2] * len(self.spatial), "strides": None,
                  "padding": rng.choice(_PADDINGS)}  # fmt: skip
            if rng.random() < 0.5:
                kw["strides"] = [1] * len(self.spatial)
            if pool == "AvgPool":
                kw["normalize_edges"] = rng.random() < 0.5
            self.layers.append(self.track([pool, kw]))

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

    def readout(self) -> None:
        rng = self.rng
        if self.family != "fc":
            self.layers.append([rng.choice(("Flatten", "GlobalAvgPool", "GlobalSumPool")), {}])
        last = {"out_dim": 1, "W_std": _std(rng, 0.5, 2.0), "b_std": _b_std(rng)}
        self.layers.append(["Dense", {**last, "parameterization": self.param}])


def make_case(i: int, seed: int = SEED) -> dict:
    """Case ``i``: ``{"id", "family", "x1", "x2", "net"}`` with input shapes and a spec."""
    rng = random.Random(f"{seed}/{i}")
    family = FAMILIES[i % len(FAMILIES)]
    net = _Net(rng, family)
    if family == "attention":
        net.layers.append(["Dense", {"out_dim": 8, "W_std": _std(rng, 0.5, 1.5), "b_std": None}])
        if rng.random() < 0.5:
            net.layers.append(_nonlinearity(rng, family))
        # Its own stream, so that adding it left every other draw of the case unchanged.
        sqrt_scaling = random.Random(f"{seed}/{i}/sqrt_scaling").random() < 0.3
        net.attention_block(sqrt_scaling)
        for _ in range(rng.randint(0, 2)):
            if rng.random() < 0.3:
                net.layers.append(["LayerNorm", {"axis": -1}])
            net.layers.append(_nonlinearity(rng, family))
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
    return getattr(stax, name)(**{k: _arg(v) for k, v in arg.items()})
