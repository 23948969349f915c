"""Differential check against neural-tangents 0.6.5 on seeded random architectures.

The specs come from ``tools/random_architectures.py`` and the reference kernels from
``tools/make_nt_reference.py`` (run once in a separate neural-tangents environment),
stored in ``tests/data/nt_random_arch.{json,npz}``.
"""

import functools
import json
import pathlib

import numpy as np
import pytest
from _examples import load_script
from conftest import enable_x64

from ntk_bayes import stax

ROOT = pathlib.Path(__file__).parent.parent
DATA = ROOT / "tests" / "data"

# Matrix-relative error max|K - K_nt| / max|K_nt| allowed in float64 (issue 15: 1e-10
# wherever neural-tangents is right; the generator leaves out where it is not).
RTOL = 1e-10


@functools.cache
def architectures():
    """``tools/random_architectures.py`` as a module (``tools`` is not a package)."""
    return load_script(ROOT / "tools" / "random_architectures.py")


@functools.cache
def reference():
    meta = json.loads((DATA / "nt_random_arch.json").read_text())
    return meta, dict(np.load(DATA / "nt_random_arch.npz"))


# Disagreements above 1e-10 that are not settled (a real bug, or neural-tangents wrong):
# kept visible as strict xfails, never hidden by a looser tolerance.
UNSETTLED = {
    226: "self-pair NTK 1.2e-8 apart; nested Exp makes this kernel ~1e16 and ill-conditioned: "
    "neural-tangents' own one-point value and its limit over nearby pairs differ by 4.5e-8",
    # Settled by Monte Carlo (tests/stat/test_differential_settled_mc.py): with the
    # concatenation replaced by a sum both libraries agree to 1e-15.
    85: "neural-tangents wrong: NTK of FanInConcat(axis=-1) over an ExpNormalized branch "
    "and an Identity (14-23%); Monte Carlo sides with ntk_bayes (z 1.2 against 11.9)",
    242: "neural-tangents wrong: NTK of FanInConcat(axis=-1) over an ExpNormalized branch "
    "(as case 85; 0.5-10%)",
    # Off-diagonals agree to 6e-16; neural-tangents' one-point ρ, an ulp below 1, goes
    # through arcsin at each Sign (1e-8, then 1e-4, then 1e-2), as ntk_bayes' did before
    # issue 15; ntk_bayes' self-pairs after Sign are tested exact in test_stax_selfpairs.
    288: "neural-tangents wrong: self-pairs after chained Sign (0.6% NNGP, 2% NTK)",
}


def case_ids(tier: str) -> list:
    """Case ids of a tier, the unsettled ones marked as strict xfails."""
    meta, _ = reference()
    n_stat = meta["stat_cases"]
    ids = [c["id"] for c in meta["cases"]]
    ids = ids[:n_stat] if tier == "stat" else ids[n_stat:]
    return [
        pytest.param(i, marks=pytest.mark.xfail(strict=True, reason=UNSETTLED[i]))
        if i in UNSETTLED
        else i
        for i in ids
    ]


def case_name(i: int) -> str:
    meta, _ = reference()
    case = meta["cases"][i]
    names = []

    def walk(spec):
        name, arg = spec
        if name in ("serial", "parallel"):
            for s in arg:
                walk(s)
        elif name == "repeat":
            names.append("repeat")
            walk(arg[0])
        else:
            names.append(name)

    walk(case["net"])
    return f"{i}-{case['family']}-" + "-".join(n for n in names if n != "Dense")


def _compare(got, want) -> float:
    got = np.asarray(got)
    assert got.dtype == np.float64 and got.shape == want.shape, (got.dtype, got.shape)
    return float(np.max(np.abs(got - want)) / np.max(np.abs(want)))


def relative_errors(i: int, joint: bool) -> dict:
    """Matrix-relative errors of nngp/ntk: x1 with itself off the diagonal (``nngp``),
    self-pairs (``nngp_self``, against neural-tangents' one-point values: its self-pairs
    in a batch are round-off-limited, see tools/make_nt_reference.py) and x1 against
    x2 (``nngp12``).

    ``joint=True`` gets all three from one ``kernel_fn(concat(x1, x2), None)`` call (one
    compilation); ``False`` from ``kernel_fn(x1, None)`` and ``kernel_fn(x1, x2)``.
    """
    meta, ref = reference()
    case = meta["cases"][i]
    assert case["id"] == i
    x1, x2 = ref[f"{i}/x1"], ref[f"{i}/x2"]
    n1 = len(x1)
    errors = {}
    with enable_x64(True):
        net = architectures().build(stax, case["net"])
        if joint:
            k = net.kernel_fn(np.concatenate([x1, x2]), None, ("nngp", "ntk"))
            k11 = {n: getattr(k, n)[:n1, :n1] for n in ("nngp", "ntk")}
            k12 = {n: getattr(k, n)[:n1, n1:] for n in ("nngp", "ntk")}
        else:
            k11 = net.kernel_fn(x1, None, ("nngp", "ntk"))._asdict()
            k12 = net.kernel_fn(x1, x2, ("nngp", "ntk"))._asdict()
        off = ~np.eye(n1, dtype=bool)
        # neural-tangents' same-point entries are NaN after a RectifiedMonomial (it
        # divides by sin θ = 0): only the other entries compare there.
        nan_self = case.get("self_pairs") == "nan in neural-tangents"
        for name in ("nngp", "ntk"):
            want = ref[f"{i}/{name}"]
            got = np.asarray(k11[name])
            if nan_self:
                assert np.all(np.isfinite(got)), "ntk_bayes' self-pairs must be finite"
                errors[name] = _compare(got[off], want[off])
            else:
                errors[name] = _compare(np.where(off, got, want), want)
                alone = ref[f"{i}/{name}_self"]  # the first few points, each computed alone
                errors[name + "_self"] = float(
                    np.max(np.abs(np.diag(got)[: len(alone)] - alone)) / np.max(np.abs(want))
                )
            errors[name + "12"] = _compare(k12[name], ref[f"{i}/{name}12"])
    return errors


def assert_case_matches(i: int, joint: bool) -> None:
    errors = relative_errors(i, joint)
    spec = reference()[0]["cases"][i]["net"]
    assert max(errors.values()) <= RTOL, (errors, json.dumps(spec))
