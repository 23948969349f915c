"""Neural-tangents 0.6.5 kernels of the random architectures in ``random_architectures``.

Run once, in an environment of its own (neural-tangents pins an old jax)::

    python3.11 -m venv /tmp/ntvenv
    /tmp/ntvenv/bin/pip install neural-tangents==0.6.5 "jax[cpu]==0.4.23" \\
        "jaxlib==0.4.23" "numpy<2" "scipy<1.13"
    /tmp/ntvenv/bin/python tools/make_nt_reference.py [workers [n_cases]]

(about 30 min with 2 workers on two cores; finished cases are kept in a temporary
folder, so an interrupted run resumes where it stopped). After a change to the
generator, ``--update [workers]`` recomputes only the cases whose spec changed and keeps
the stored values (and notes such as extrapolated self-pairs) of the others.

It writes ``tests/data/nt_random_arch.npz`` (per case ``{i}/x1``, ``{i}/x2`` and the
float64 ``{i}/nngp``, ``{i}/ntk`` of x1 with itself, ``{i}/nngp12``, ``{i}/ntk12`` of x1
against x2, ``{i}/nngp_self``, ``{i}/ntk_self`` of each of the first ``SELF_PAIRS``
points of x1 alone) and
``tests/data/nt_random_arch.json`` (the specs, seed, versions, date).

Self-pairs come from one-point calls because neural-tangents' self-pairs in a batch
are only as exact as round-off allows: it recovers the angle between a point and itself
from ``q1 q2 - Σ12²``, which is one ulp off when Σ12 and q are summed in different
orders, and the square root (in ReLU-like NTK factors, Sign, attention weights) turns
that ulp into ~1e-9. Its value for a point then depends on which other points share
the batch (case 23: 1.3e-9 between x1[1] in the batch and x1[1] alone). Alone, Σ12 and
q come out identical. ``json["self_pair_batch_error"]`` records the batch error per case.

Alone is not always enough (Σ12 and q may still part by an ulp on the way). Where the
one-point value disagreed with ntk_bayes, :func:`extrapolated_self_pairs` (neural-tangents'
limit over nearby pairs) settled it, and replaced it in the files::

    /tmp/ntvenv/bin/python tools/make_nt_reference.py --extrapolate-self-pairs 34 176

(cases 34 and 176: the one-point NTK was 3.1e-10 and 3.0e-9 off that limit; ntk_bayes is
within 5e-13 and 7.5e-12 of it; ``json`` marks them ``"self_pairs": "extrapolated"``).

Inputs are multiples of 1/8 in [-2, 2], so every inner product x·x' is exact in float64
and both libraries start from the same Gram matrix to the last bit.
"""

from __future__ import annotations

import datetime
import json
import pathlib
import sys
import tempfile

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import random_architectures as ra  # noqa: E402

OUT = pathlib.Path(__file__).parent.parent / "tests" / "data"
SELF_PAIRS = 3  # points of x1 whose self-pair is also computed alone
CACHE = pathlib.Path(tempfile.gettempdir()) / "nt_random_arch_cache"


def inputs(case: dict, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([seed, case["id"]])
    x1, x2 = (np.round(rng.normal(size=s) * 8).clip(-16, 16) / 8 for s in ra.input_shapes(case))
    return x1, x2


def _init_worker() -> None:
    import jax

    jax.config.update("jax_enable_x64", True)


def reference_case(i: int) -> tuple[dict, dict]:
    """neural-tangents' kernels of case ``i``: (case spec with notes, arrays)."""
    from neural_tangents import stax

    case = ra.make_case(i)
    x1, x2 = inputs(case, ra.SEED)
    _, _, kernel_fn = ra.build(stax, case["net"])
    # One call on x1 and x2 together gives both blocks (neural-tangents is eager here and
    # its time is per call, not per point).
    k = kernel_fn(np.concatenate([x1, x2]), None, ("nngp", "ntk"))
    n1 = len(x1)
    out = {"x1": x1, "x2": x2}
    for name in ("nngp", "ntk"):
        out[name], out[name + "12"] = getattr(k, name)[:n1, :n1], getattr(k, name)[:n1, n1:]
    # Eager, one point at a time: under jit or vmap XLA may fuse the Σ12 and q paths
    # differently and the self-pair is one ulp off again (seen on case 23).
    alone = [kernel_fn(x1[j : j + 1], None, ("nngp", "ntk")) for j in range(SELF_PAIRS)]
    out["nngp_self"] = np.array([float(k.nngp[0, 0]) for k in alone])
    out["ntk_self"] = np.array([float(k.ntk[0, 0]) for k in alone])
    out = {name: np.asarray(a, dtype=np.float64) for name, a in out.items()}
    # After a RectifiedMonomial neural-tangents 0.6.5 returns NaN on same-point entries
    # (it divides by sin θ = 0); the generator puts it last, so only those are NaN.
    nan_self = "RectifiedMonomial" in json.dumps(case["net"])
    if nan_self:
        case["self_pairs"] = "nan in neural-tangents"
    off = ~np.eye(len(x1), dtype=bool)
    for name, a in out.items():
        if nan_self and name.endswith("_self"):
            continue
        finite = a[off] if nan_self and name in ("nngp", "ntk") else a
        if not np.all(np.isfinite(finite)):
            raise RuntimeError(f"case {i}: neural-tangents gave non-finite {name}: {case}")
    case["self_pair_batch_error"] = {
        n: float(
            np.max(np.abs(np.diag(out[n])[:SELF_PAIRS] - out[n + "_self"]))
            / np.max(np.abs(out[n][off]))
        )
        for n in ("nngp", "ntk")
    }
    print(i, case["family"], flush=True)
    return case, {f"{i}/{name}": a for name, a in out.items()}


def cached_case(i: int) -> tuple[dict, dict]:
    """:func:`reference_case`, kept in ``CACHE`` so that an interrupted run resumes
    (keyed by the spec: a changed generator never reads a stale case)."""
    import hashlib

    spec = json.dumps(ra.make_case(i)["net"], sort_keys=True).encode()
    path = CACHE / f"{ra.SEED}-{i}-{hashlib.sha256(spec).hexdigest()[:12]}.npz"
    if not path.exists():
        case, arrays = reference_case(i)
        np.savez(path, case=json.dumps(case), **{k.replace("/", "|"): v for k, v in arrays.items()})
    with np.load(path) as f:
        return json.loads(str(f["case"])), {k.replace("|", "/"): f[k] for k in f if k != "case"}


def extrapolated_self_pairs(i: int, steps=(8e-4, 4e-4, 2e-4, 1e-4)) -> dict:
    """neural-tangents' self-pairs of case ``i`` as its limit over nearby pairs.

    For x' = x + ε d (d a fixed random direction) the angle between x and x' is of
    order ε, far above round-off, so neural-tangents is accurate there; the kernel is
    a power series in ε (|ε| where a ReLU-like dual has a kink), and three Richardson
    steps on halving ε give its value at ε = 0 to O(ε⁴). This checks the one-point
    values where those are themselves round-off-limited.
    """
    from neural_tangents import stax

    case = ra.make_case(i)
    x1, _ = inputs(case, ra.SEED)
    _, _, kernel_fn = ra.build(stax, case["net"])
    rng = np.random.default_rng([ra.SEED, i, 1])
    out = {"nngp": [], "ntk": []}
    for j in range(SELF_PAIRS):
        x = x1[j : j + 1]
        d = rng.normal(size=x.shape)
        ks = [kernel_fn(x, x + e * d, ("nngp", "ntk")) for e in steps]
        for name in out:
            r = np.array([float(getattr(k, name)[0, 0]) for k in ks])
            for order in (1, 2, 3):  # halving steps: remove the e^order term
                r = (2**order * r[1:] - r[:-1]) / (2**order - 1)
            out[name].append(float(r[0]))
    return {name: np.array(v) for name, v in out.items()}


def replace_self_pairs(ids: list[int]) -> None:
    """Store extrapolated self-pairs for cases ``ids`` in the reference files."""
    import jax

    jax.config.update("jax_enable_x64", True)
    meta = json.loads((OUT / "nt_random_arch.json").read_text())
    with np.load(OUT / "nt_random_arch.npz") as f:
        arrays = dict(f)
    for i in ids:
        new = extrapolated_self_pairs(i)
        case = meta["cases"][i]
        case["self_pairs"] = "extrapolated"
        scale = {n: np.max(np.abs(arrays[f"{i}/{n}"])) for n in new}
        case["one_point_self_pair_error"] = {
            n: float(np.max(np.abs(arrays[f"{i}/{n}_self"] - new[n])) / scale[n]) for n in new
        }
        for n, v in new.items():
            arrays[f"{i}/{n}_self"] = v
        print(i, case["one_point_self_pair_error"], flush=True)
    np.savez_compressed(OUT / "nt_random_arch.npz", **arrays)
    (OUT / "nt_random_arch.json").write_text(json.dumps(meta, indent=None) + "\n")


def main(workers: int = 2, n_cases: int = ra.CASES, update: bool = False) -> None:
    import multiprocessing

    import jax
    import neural_tangents as nt

    CACHE.mkdir(parents=True, exist_ok=True)
    kept = {}
    if update:  # the stored cases whose spec is unchanged
        old = json.loads((OUT / "nt_random_arch.json").read_text())
        with np.load(OUT / "nt_random_arch.npz") as f:
            stored = dict(f)
        for case in old["cases"][:n_cases]:
            i = case["id"]
            if case["net"] == ra.make_case(i)["net"]:
                kept[i] = case, {k: v for k, v in stored.items() if k.split("/")[0] == str(i)}
        print(f"keeping {len(kept)} unchanged cases", flush=True)
    todo = [i for i in range(n_cases) if i not in kept]
    with multiprocessing.get_context("spawn").Pool(workers, _init_worker) as pool:
        fresh = dict(zip(todo, pool.map(cached_case, todo, chunksize=1), strict=True))
    results = [kept[i] if i in kept else fresh[i] for i in range(n_cases)]
    arrays, cases = {}, []
    for case, a in results:
        cases.append(case)
        arrays |= a
    OUT.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT / "nt_random_arch.npz", **arrays)
    meta = {
        "seed": ra.SEED,
        "stat_cases": ra.STAT_CASES,
        "neural_tangents": nt.__version__,
        "jax": jax.__version__,
        "numpy": np.__version__,
        "date": datetime.date.today().isoformat(),
        "made_by": "tools/make_nt_reference.py",
        "cases": cases,
    }
    (OUT / "nt_random_arch.json").write_text(json.dumps(meta, indent=None) + "\n")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--extrapolate-self-pairs"]:
        replace_self_pairs([int(a) for a in sys.argv[2:]])
    elif sys.argv[1:2] == ["--update"]:
        main(*(int(a) for a in sys.argv[2:3]), update=True)
    else:
        main(*(int(a) for a in sys.argv[1:3]))
