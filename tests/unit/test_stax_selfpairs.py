"""Self-pairs (a point paired with itself) are exact: their values come from the
same-point structure, not from round-off of q1 q2 - Σ12² (issue 15)."""

import math

import jax.numpy as jnp
import numpy as np
import pytest
from _nets import fc_inputs, tokens

from ntk_bayes import stax

_NODES, _WEIGHTS = np.polynomial.hermite.hermgauss(200)


def _gauss(f, q):
    """E[f(u)] for u ~ N(0, q) by 200-node Gauss–Hermite quadrature, in float64."""
    return float(np.sum(_WEIGHTS * f(math.sqrt(2 * q) * _NODES)) / math.sqrt(math.pi))


def _erf(x, a=1.3, b=0.7, c=0.2):
    from scipy.special import erf

    return a * erf(b * x) + c


def _gelu(x):
    from scipy.special import ndtr

    return x * ndtr(x)


# (layer, E[φ(u)²], E[φ'(u)²]) for u ~ N(0, q): exact constants or 1-D quadrature of
# the finite nonlinearity and its derivative, independent of the library's formulas.
SELF_DUALS = {
    "sign": (stax.Sign(), lambda q: 1.0, lambda q: 0.0),
    "abrelu": (stax.ABRelu(-0.3, 1.2), lambda q: 0.765 * q, lambda q: 0.765),
    "relu": (stax.Relu(), lambda q: q / 2, lambda q: 0.5),
    "gelu": (
        stax.Gelu(),
        lambda q: _gauss(lambda u: _gelu(u) ** 2, q),
        lambda q: _gauss(
            lambda u: (
                (
                    _gelu(u) / np.where(u == 0, 1, u) * (u != 0)
                    + 0.5 * (u == 0)
                    + u * np.exp(-u * u / 2) / math.sqrt(2 * math.pi)
                )
                ** 2
            ),
            q,
        ),
    ),
    "erf": (
        stax.Erf(a=1.3, b=0.7, c=0.2),
        lambda q: _gauss(lambda u: _erf(u) ** 2, q),
        lambda q: _gauss(
            lambda u: (1.3 * 0.7 * 2 / math.sqrt(math.pi) * np.exp(-0.49 * u * u)) ** 2, q
        ),
    ),
    "sin": (
        stax.Sin(a=1.2, b=0.8, c=0.3),
        lambda q: _gauss(lambda u: (1.2 * np.sin(0.8 * u + 0.3)) ** 2, q),
        lambda q: _gauss(lambda u: (0.96 * np.cos(0.8 * u + 0.3)) ** 2, q),
    ),
    "rbf": (
        stax.Rbf(gamma=0.6),
        lambda q: _gauss(lambda u: 2 * np.sin(math.sqrt(1.2) * u + math.pi / 4) ** 2, q),
        lambda q: _gauss(lambda u: 2 * 1.2 * np.cos(math.sqrt(1.2) * u + math.pi / 4) ** 2, q),
    ),
}


def _reference_diagonal(layers, x):
    """(Σ(x, x), Θ(x, x)) per point by the one-point recursion, in float64 numpy."""
    x = np.asarray(x, np.float64)
    out = []
    for row in x:
        q, theta = float(row @ row) / len(row), 0.0
        for lay in layers:
            if isinstance(lay, stax.Dense):
                w2 = float(lay.W_std) ** 2
                b2 = 0.0 if lay.b_std is None else float(lay.b_std) ** 2
                q = w2 * q + b2
                theta = q + w2 * theta
            elif isinstance(lay, stax.LayerNorm):
                theta, q = theta / (q + lay.eps), q / (q + lay.eps)
            else:
                _, mean_sq, dot_sq = next(v for v in SELF_DUALS.values() if v[0] == lay)
                q, theta = mean_sq(q), dot_sq(q) * theta
        out.append((q, theta))
    return np.asarray(out)


def _dense(w=1.4, b=0.2):
    return stax.Dense(16, W_std=w, b_std=b)


@pytest.mark.parametrize("depth", [1, 3])
def test_sign_chain_diagonal_is_exactly_one(dtype, depth):
    """sign² ≡ 1: the self-pair NNGP after Sign is 1, not 1 - (round-off)^(1/2)."""
    net = stax.serial(*[lay for _ in range(depth) for lay in (stax.Dense(64), stax.Sign())])
    x = np.asarray(fc_inputs(5, d=7, seed=1), dtype)
    for x2 in (None, x.copy()):
        k = np.asarray(net.kernel_fn(x, x2, "nngp"))
        assert np.all(np.diag(k) == 1.0)


@pytest.mark.parametrize("depth", [1, 4])
def test_proportional_points_have_correlation_exactly_one_in_float64(dtype, depth):
    """x, 2x, x/2 and -3x through bias-free layers: in float64 correlation exactly ±1 at
    every depth (q1 q2 - Σ12² within 8 ulp is taken as 0 by ``sin_root``); before, four
    Dense-Sign blocks gave 0.91 instead of 1 and the ReLU NTK of x and 2x was 1.5e-8 off
    2 Θ(x, x) (neural-tangents: exact). float32 keeps the plain difference (the cut would
    blur near-collinear distinct points: tests/e2e/test_examples.py::test_quickstart's
    dense-grid posterior variance went negative with it), so there only the ReLU NTK's
    documented round-off (5e-4) is checked."""
    v = np.random.default_rng(3).normal(size=(1, 6))
    x = np.concatenate([v, 2 * v, 0.5 * v, -3 * v]).astype(dtype)
    sign = stax.serial(*[lay for _ in range(depth) for lay in (stax.Dense(8), stax.Sign())])
    relu = stax.serial(*[lay for _ in range(depth) for lay in (stax.Dense(8), stax.Relu())])
    k = np.asarray(sign.kernel_fn(x, None, "nngp"))
    t = np.asarray(relu.kernel_fn(x, None, "ntk"))
    if dtype == np.float64:
        np.testing.assert_array_equal(np.abs(k), 1.0)
        # positively homogeneous of degree 2 in each input's scale: Θ(x, 2x) = 2 Θ(x, x)
        np.testing.assert_allclose(t[0, 1], 2 * t[0, 0], rtol=1e-14)
        np.testing.assert_allclose(t[0, 2], 0.5 * t[0, 0], rtol=1e-14)
    else:
        assert np.all(np.abs(k) <= 1.0)
        np.testing.assert_allclose(t[0, 1], 2 * t[0, 0], rtol=2e-3)


COMPOSITES = {
    name: [_dense(), stax.LayerNorm(), SELF_DUALS[name][0], _dense(1.1, 0.1)]
    for name in ("gelu", "sin", "rbf", "abrelu", "erf", "sign")
}
COMPOSITES["mixed"] = [
    _dense(1.5, 0.05),
    stax.LayerNorm(),
    SELF_DUALS["gelu"][0],
    _dense(1.2, 0.3),
    stax.LayerNorm(),
    SELF_DUALS["abrelu"][0],
    _dense(),
    SELF_DUALS["sign"][0],
    _dense(0.9, 0.4),
    SELF_DUALS["rbf"][0],
    _dense(),
    SELF_DUALS["sin"][0],
    _dense(),
]


@pytest.mark.parametrize("name", sorted(COMPOSITES))
def test_self_pairs_match_one_point_recursion(dtype, name):
    layers = COMPOSITES[name]
    net = stax.serial(*layers)
    x = np.asarray(fc_inputs(6, d=5, seed=2), dtype) * 1.7
    want = _reference_diagonal(layers, x)
    k = net.kernel_fn(x, None, ("nngp", "ntk"))
    rtol = 1e-13 if dtype == np.float64 else 2e-6
    np.testing.assert_allclose(np.diag(np.asarray(k.nngp, np.float64)), want[:, 0], rtol=rtol)
    np.testing.assert_allclose(np.diag(np.asarray(k.ntk, np.float64)), want[:, 1], rtol=rtol)
    if name == "mixed":  # the diagonal tiles of a tiled kernel know their self-pairs too
        tiled = net.kernel_fn(x, None, "ntk", block_size=4)
        np.testing.assert_allclose(np.diag(np.asarray(tiled, np.float64)), want[:, 1], rtol=rtol)


def test_self_pairs_after_attention_with_huge_variances_then_cos(dtype):
    """Cos after variances of ~1e14: E[cos(u)²] = (1 + e^{-2q})/2 = 1/2 exactly, while
    exp(-(q1 + q2 - 2Σ12)/2) of one-ulp differences (~0.03 at q=1e14) is anything."""
    net = stax.serial(
        stax.Dense(8, W_std=1e7),
        stax.GlobalSelfAttention(8, 8, 8, 2, W_out_std=1.3),
        stax.Cos(),
    )
    x = np.asarray(tokens(3, t=4, c=3, seed=5), dtype)
    k = np.asarray(net.kernel_fn(x, None, "nngp", spatial_output="diagonal"), np.float64)
    same = k[np.arange(3), np.arange(3)]  # (n, T): same point, same token
    np.testing.assert_allclose(same, 0.5, rtol=1e-12 if dtype == np.float64 else 1e-6)
    full = net.kernel_fn(x, None, ("nngp", "cov1"), spatial_output="full")
    cov1 = np.asarray(full.cov1, np.float64)
    np.testing.assert_allclose(np.einsum("nii->ni", cov1), 0.5, rtol=1e-6)


def test_numerical_elementwise_self_pairs_use_one_dimensional_quadrature():
    tanh = stax.ElementwiseNumerical(jnp.tanh, deg=150)
    q = jnp.asarray([0.3, 1.0, 2.5])
    want = [_gauss(lambda u: np.cosh(u) ** -4, float(v)) for v in q]
    np.testing.assert_allclose(np.asarray(tanh.dot_diag(q)), want, rtol=1e-4)


def test_point_ids_are_equal_exactly_for_equal_points(dtype):
    """Planted: copies within a set and across sets share an id; points one ulp apart,
    or equal in x but not in a per-point part (a mask), do not; -0.0 is 0.0."""
    from ntk_bayes.stax import _ids
    from ntk_bayes.stax._ids import point_ids

    rng = np.random.default_rng(3)
    a = rng.normal(size=(6, 3)).astype(dtype)
    x1 = np.concatenate([a, a[[0, 2]]])  # rows 6, 7 copy rows 0, 2
    x1[1, 1] = 0.0
    x1[3] = x1[1]
    x1[3, 1] = -0.0  # row 3 equals row 1 in value
    x1[4] = np.nextafter(x1[5], dtype.type(np.inf))  # one ulp from row 5
    x2 = np.concatenate([a[[2]], rng.normal(size=(2, 3)).astype(dtype)])
    m1 = np.ones((8, 2), bool)
    m1[7, 1] = False  # row 7 is a copy of row 2 in x, not in its mask
    m2 = np.ones((3, 2), bool)
    rows = np.concatenate([np.concatenate([x1, m1], 1), np.concatenate([x2, m2], 1)])
    equal = (rows[:, None] == rows[None, :]).all(-1)  # 0.0 == -0.0 in numpy too
    for on_host in (True, False):  # NumPy on the host, and the compiled program
        ids1, ids2 = (np.asarray(i) for i in point_ids([x1, m1], [x2, m2], on_host=on_host))
        ids = np.concatenate([ids1, ids2])
        np.testing.assert_array_equal(ids[:, None] == ids[None, :], equal)
        assert sorted(set(ids.tolist())) == list(range(len(set(ids.tolist()))))  # 0 .. k-1
        assert ids1[6] == ids1[0] and ids1[3] == ids1[1] and ids2[0] == ids1[2]
        assert ids1[7] != ids1[2] and ids1[4] != ids1[5]
        same1, same2 = point_ids([x1], on_host=on_host)  # x2 omitted: one set of ids
        assert same1 is same2 and np.asarray(same1)[6] == np.asarray(same1)[0]
        assert np.asarray(point_ids([x1[:1]], on_host=on_host)[0]).tolist() == [0]  # one point
        # nothing per point (a part with no values): every point is one point
        nothing = np.zeros((3, 0), dtype)
        assert np.asarray(point_ids([nothing], on_host=on_host)[0]).tolist() == [0, 0, 0]
    # compiled, three rows at a time (hashes in overlapping chunks, neighbours in padded
    # ones): the ids of the whole-rows program
    small = point_ids(
        [x1, m1], [x2, m2], chunk_bytes=3 * (x1[0].nbytes + m1[0].nbytes), on_host=False
    )
    for got, want in zip(small, (ids1, ids2), strict=True):
        np.testing.assert_array_equal(np.asarray(got), want)
    # the default for small CPU arrays is the host
    assert _ids._small_on_cpu([x1, m1, x2, m2])


@pytest.mark.parametrize("m", [1, 2, 7, 2048, 70000])
def test_hash_order_sorts_by_hash_then_index(m):
    """Reference: NumPy's lexsort. Two passes of packed uint32 keys sort by the whole
    32-bit hash while the positions take at most 16 bits (m <= 65536), by its low
    2 (32 - b) bits past that (m = 70000: b = 17, 30 bits); ties keep index order.
    Hashes drawn from 64 values so that ties are common."""
    from ntk_bayes.stax._ids import _hash_order

    rng = np.random.default_rng(m)
    h = rng.choice(rng.integers(0, 2**32, 64, dtype=np.uint64), m).astype(np.uint32)
    b = max(1, (m - 1).bit_length())
    key = h if b <= 16 else h & np.uint32((1 << (2 * (32 - b))) - 1)
    want = np.lexsort((np.arange(m), key))
    np.testing.assert_array_equal(np.asarray(_hash_order(jnp.asarray(h))), want)


def test_point_ids_never_join_points_whose_hashes_collide(monkeypatch):
    """Planted collision: every point hashed to one value. The ids compare each row with
    its sorted neighbour in full, so distinct points keep distinct ids; copies that are
    neighbours in index order still share theirs (a collision may only split copies)."""
    from ntk_bayes.stax import _ids

    monkeypatch.setattr(_ids, "_point_hash", lambda parts: jnp.zeros(len(parts[0]), jnp.uint32))
    rng = np.random.default_rng(5)
    a = rng.normal(size=(5, 4)).astype(np.float32)
    x = np.concatenate([a[:3], a[[2]], a[3:]])  # row 3 copies row 2, its neighbour
    ids = np.asarray(_ids.point_ids([x], on_host=False)[0])
    rows_equal = (x[:, None] == x[None, :]).all(-1)
    assert ids[3] == ids[2]
    np.testing.assert_array_equal(ids[:, None] == ids[None, :], rows_equal)


@pytest.mark.parametrize("block_size", [None, 3])
def test_copies_of_a_point_are_exact(dtype, block_size):
    """A point that occurs twice (two rows of x1, or in x1 and x2) is one point: its
    pairs take the same-point value, as the self-pairs do. Without the ids they were off
    by up to 1e-4 relative in float64 after LayerNorm, ABRelu and Sign."""
    layers = COMPOSITES["mixed"]
    net = stax.serial(*layers)
    x = np.asarray(fc_inputs(4, d=5, seed=2), dtype) * 1.7
    x1 = np.concatenate([x, x[[0, 2]]])  # rows 4, 5 are copies of rows 0, 2
    x2 = np.concatenate([x[[3]], x1[[1]] + 0.5])
    want = _reference_diagonal(layers, x)
    rtol = 1e-13 if dtype == np.float64 else 2e-6
    k = net.kernel_fn(x1, None, ("nngp", "ntk"), block_size=block_size)
    kx = net.kernel_fn(x1, x2, ("nngp", "ntk"), block_size=block_size)
    for g, col in (("nngp", 0), ("ntk", 1)):
        K = np.asarray(getattr(k, g), np.float64)
        for i, j in ((0, 4), (4, 0), (2, 5), (4, 4)):
            np.testing.assert_allclose(K[i, j], want[i % 4, col], rtol=rtol, err_msg=(g, i, j))
        KX = np.asarray(getattr(kx, g), np.float64)
        np.testing.assert_allclose(KX[3, 0], want[3, col], rtol=rtol, err_msg=g)


def test_copies_split_by_train_dropout(x64):
    """Train-mode Dropout gives two copies of a point different masks: after it, the
    copies are two points with correlation `rate` (Relu's arc-cosine value), while the
    point with itself keeps the same-point value."""
    rate = 0.5
    net = stax.serial(
        stax.Dense(8, W_std=1.0, b_std=None),
        stax.Dropout(rate),
        stax.Dense(8, W_std=1.0, b_std=None),
        stax.Relu(),
    )
    x = np.asarray(fc_inputs(2, d=3, seed=4), np.float64)
    x1 = np.concatenate([x, x[:1]])
    K = np.asarray(net.kernel_fn(x1, None, "nngp"), np.float64)
    q = float(x[0] @ x[0]) / 3 / rate  # a point's variance after Dropout
    theta = math.acos(rate)  # the copies' correlation: Σ / (Σ / rate)
    cross = q / (2 * math.pi) * (math.sin(theta) + (math.pi - theta) * math.cos(theta))
    rtol = 1e-12 if x64 else 1e-5
    np.testing.assert_allclose(K[0, 2], cross, rtol=rtol)
    np.testing.assert_allclose(K[0, 0], q / 2, rtol=rtol)
    # Dropout in the second of two summed branches (a fan-in that kept its first
    # branch's ids would fail): the copies have correlation 2Σ / (Σ/rate + Σ), and the
    # point with itself variance Σ/rate + Σ.
    dense = stax.Dense(8, W_std=1.0, b_std=None)
    net = stax.serial(
        dense,
        stax.FanOut(2),
        stax.parallel(dense, stax.serial(stax.Dropout(rate), dense)),
        stax.FanInSum(),
        stax.Relu(),
    )
    K = np.asarray(net.kernel_fn(x1, None, "nngp"), np.float64)
    s = float(x[0] @ x[0]) / 3
    q = s / rate + s
    theta = math.acos(2 * s / q)
    cross = q / (2 * math.pi) * (math.sin(theta) + (math.pi - theta) * math.cos(theta))
    np.testing.assert_allclose(K[0, 2], cross, rtol=rtol)
    np.testing.assert_allclose(K[0, 0], q / 2, rtol=rtol)


def test_gradient_at_a_copy_is_one_sided():
    """d/dx1 of k(x1, x2) where x1 equals x2 (two arrays, equal values): the one-sided
    derivative, checked against central differences in x1 alone (a smooth kernel),
    not the derivative along both points, which is twice it."""
    import jax
    from conftest import enable_x64

    net = stax.serial(stax.Dense(8, W_std=1.3, b_std=0.2), stax.Erf(), stax.Dense(1))
    with enable_x64(True):
        x = np.asarray(fc_inputs(1, d=3, seed=6), np.float64)

        def k(x1):
            return net.kernel_fn(x1, jnp.asarray(x), "ntk")[0, 0]

        g = np.asarray(jax.grad(k)(jnp.asarray(x)))
        h = 1e-5
        fd = np.zeros(3)
        for c in range(3):
            e = np.zeros_like(x)
            e[0, c] = h
            fd[c] = (float(k(jnp.asarray(x + e))) - float(k(jnp.asarray(x - e)))) / (2 * h)
    np.testing.assert_allclose(g[0], fd, rtol=1e-6, atol=1e-9)
