"""Time the infinite-width kernels of ReLU CNNs with global average pooling.

Cases (float32, 2-core CPU unless a device is available):

1. ``cnn3``: Conv(64, (3, 3), padding="SAME", W_std=1.4, b_std=0.1) + Relu, three times,
   GlobalAvgPool, Dense(1): NNGP and NTK together of n = 128 random 8x8x1 inputs
   (neural-tangents 0.6.5 needs 62 s after 80 s of compilation on this machine).
2. ``digits``: the same block five times, on all 1,797 sklearn digits (8x8x1): full NTK.
3. kernel regression with the 5-layer CNN-GAP NTK on a held-out split of digits.

Run ``python benchmarks/bench_cnn.py`` (``--quick`` skips the 1,797-digit kernel).
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from ntk_bayes import stax


def cnn(depth: int):
    block = [stax.Conv(64, (3, 3), padding="SAME", W_std=1.4, b_std=0.1), stax.Relu()]
    return stax.serial(*(block * depth), stax.GlobalAvgPool(), stax.Dense(1))


def timed(fn, *args, **kwargs):
    """(result, wall seconds, CPU seconds of this process): on a shared machine the CPU
    time is the steadier figure; wall time is what a user waits on an idle one."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = jax.block_until_ready(fn(*args, **kwargs))
    return out, time.perf_counter() - t0, time.process_time() - c0


def bench_cnn3(n: int = 128, repeats: int = 3) -> None:
    x = jax.random.normal(jax.random.PRNGKey(0), (n, 8, 8, 1), jnp.float32)
    net = cnn(3)
    _, first, _ = timed(net.kernel_fn, x, None, ("nngp", "ntk"))
    runs = [timed(net.kernel_fn, x, None, ("nngp", "ntk"))[1:] for _ in range(repeats)]
    wall, cpu = min(r[0] for r in runs), min(r[1] for r in runs)
    print(
        f"cnn3 n={n} 8x8x1 nngp+ntk: first call (compile + run) {first:.2f} s; after "
        f"compilation {wall:.3f} s wall, {cpu:.3f} s CPU (best of {repeats}); "
        f"neural-tangents 0.6.5: 62 s -> {62 / wall:.0f}x faster; compilation about "
        f"{first - wall:.1f} s"
    )


def digits():
    from sklearn.datasets import load_digits

    data = load_digits()
    x = (data.images / 16.0).astype(np.float32)[..., None]
    x = (x - x.mean()) / x.std()
    return x, data.target


def bench_digits() -> None:
    x, y = digits()
    net = cnn(5)
    k, wall, cpu = timed(net.kernel_fn, x, None, "ntk")
    print(
        f"digits: 5-layer CNN-GAP full NTK of {x.shape[0]} images: {wall:.1f} s wall, "
        f"{cpu:.1f} s CPU (compilation included); finite: "
        f"{bool(np.isfinite(np.asarray(k)).all())}"
    )
    rng = np.random.default_rng(0)
    perm = rng.permutation(x.shape[0])
    train, test = perm[:1200], perm[1200:]
    k = np.asarray(k, np.float64)
    ktt = k[np.ix_(train, train)]
    kst = k[np.ix_(test, train)]
    onehot = np.eye(10)[y[train]] - 0.1
    reg = 1e-4 * np.trace(ktt) / len(train)
    alpha = np.linalg.solve(ktt + reg * np.eye(len(train)), onehot)
    acc = np.mean(np.argmax(kst @ alpha, axis=1) == y[test])
    print(f"digits: NTK kernel regression, train 1200 / test {len(test)}: accuracy {acc:.4f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip the 1,797-digit kernel")
    parser.add_argument("--n", type=int, default=128)
    args = parser.parse_args()
    print(f"devices: {jax.devices()}")
    bench_cnn3(args.n)
    if not args.quick:
        bench_digits()
