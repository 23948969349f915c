"""neural-tangents 0.6.5 reference values of networks with ``stax.Aggregate``
(``tools/make_nt_reference_aggregate.py``, stored in ``tests/data/nt_aggregate.npz``), and
the inputs and graphs the Aggregate tests share."""

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
from conftest import DATA, build_from_spec

from ntk_bayes import stax


@functools.cache
def reference():
    """``(spec, arrays)``: the cases' JSON spec and the stored arrays."""
    with np.load(DATA / "nt_aggregate.npz") as f:
        arrays = {k: f[k] for k in f.files}
    return json.loads(str(arrays["spec"])), arrays


def rel(got, want) -> float:
    """Matrix-relative error max|got - want| / max|want|."""
    return float(np.max(np.abs(np.asarray(got, np.float64) - want)) / np.max(np.abs(want)))


def limit(dtype) -> float:
    # float64 to 1e-10 (issue 15's bar), float32 to a few thousand ulps.
    return 1e-10 if dtype == np.float64 else 2e-5


def check_case(case: str, dtype) -> None:
    """The case's NNGP and NTK (x1 with x2, and x1 with itself) agree with the stored
    values. One call on [x1; x2] with x2=None (the self-pair path) gives both blocks."""
    spec, ref = reference()
    net = build_from_spec(stax, ["serial", spec["cases"][case]["layers"]])
    x1, x2 = ref[f"{case}/x1"].astype(dtype), ref[f"{case}/x2"].astype(dtype)
    x = np.concatenate([x1, x2])
    p = np.concatenate([ref[f"{case}/p1"], ref[f"{case}/p2"]])
    k = net.kernel_fn(x, None, ("nngp", "ntk"), pattern=(p, None))
    n1 = len(x1)
    for g in ("nngp", "ntk"):
        got = np.asarray(getattr(k, g))
        assert got.dtype == dtype
        assert rel(got[:n1, n1:], ref[f"{case}/{g}12"]) <= limit(dtype), (g, "x1 x2")
        assert rel(got[:n1, :n1], ref[f"{case}/{g}"]) <= limit(dtype), (g, "x1 x1")


def points(n, shape=(4, 2), seed=0):
    return np.asarray(jax.random.normal(jax.random.PRNGKey(seed), (n, *shape)), np.float64)


def edges_and_dense(n, V, n_edges, seed=0):
    """Random edge lists with repeats and padding, and the same graphs as arrays."""
    r = np.random.default_rng(seed)
    edges = r.integers(0, V, (n, n_edges, 2)).astype(np.int32)
    edges[:, -2] = (-1, 2)  # padding: a negative tail or head drops the edge
    edges[:, -1] = (1, -1)
    dense = np.zeros((n, V, V))
    for i in range(n):
        for s, t in edges[i, :-2]:
            dense[i, s, t] += 1
    return edges, dense


def decode(e):
    """Edge lists -> adjacency arrays, a user's ``to_dense``: it sees each tile's rows."""
    keep = jnp.all(e >= 0, -1)[..., None, None]
    hot = jax.nn.one_hot(e[..., 0], 4)[..., :, None] * jax.nn.one_hot(e[..., 1], 4)[..., None, :]
    return jnp.sum(hot * keep, axis=1)
