"""Classify sklearn's 8x8 digits with the NTK of an infinitely wide CNN.

A ReLU CNN read out by global average pooling is, at infinite width and trained by
gradient descent on squared loss, kernel regression with its neural tangent kernel.
This script computes that kernel on a train/test split of the digits, solves the
regression, and compares with the NTK of a fully connected ReLU network (which sees
the pixels as an unordered vector).

    python examples/cnn_digits.py             # 600 train / 300 test images
    python examples/cnn_digits.py --n-train 1200 --n-test 597 --depth 5
    python examples/cnn_digits.py --quick     # 120 train / 60 test images, depth 2 (CI)
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.datasets import load_digits

from ntk_bayes import stax


def cnn_gap(depth: int):
    block = [stax.Conv(64, (3, 3), padding="SAME", W_std=1.4, b_std=0.1), stax.Relu()]
    return stax.serial(*(block * depth), stax.GlobalAvgPool(), stax.Dense(1))


def fully_connected(depth: int):
    block = [stax.Dense(512, W_std=1.4, b_std=0.1), stax.Relu()]
    return stax.serial(stax.Flatten(), *(block * depth), stax.Dense(1))


def kernel_regression_accuracy(k_train, k_test_train, y_train, y_test, reg=1e-4):
    """argmax of K_*x (K_xx + reg tr(K)/n I)^-1 Y with centred one-hot targets."""
    k_train = np.asarray(k_train, np.float64)
    targets = np.eye(10)[y_train] - 0.1
    n = k_train.shape[0]
    alpha = np.linalg.solve(k_train + reg * np.trace(k_train) / n * np.eye(n), targets)
    pred = np.asarray(k_test_train, np.float64) @ alpha
    return float(np.mean(pred.argmax(axis=1) == y_test))


def main(n_train: int, n_test: int, depth: int) -> dict:
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[..., None]
    x = (x - x.mean()) / x.std()
    order = np.random.default_rng(0).permutation(len(x))
    if n_train + n_test > len(x):
        raise ValueError(f"n_train + n_test must be at most {len(x)}")
    train, test = order[:n_train], order[n_train : n_train + n_test]
    results = {}
    for name, net in (("CNN-GAP", cnn_gap(depth)), ("FC", fully_connected(depth))):
        t0 = time.perf_counter()
        k_train = net.kernel_fn(x[train], None, "ntk")
        k_test = net.kernel_fn(x[test], x[train], "ntk")
        seconds = time.perf_counter() - t0
        acc = kernel_regression_accuracy(k_train, k_test, digits.target[train], digits.target[test])
        results[name] = acc
        print(f"{name:8s} depth {depth}: NTK test accuracy {acc:.3f} ({seconds:.1f} s for kernels)")
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=600)
    parser.add_argument("--n-test", type=int, default=300)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="120 / 60 images, depth 2 (CI)")
    args = parser.parse_args()
    if args.quick:
        args.n_train, args.n_test, args.depth = 120, 60, 2
    main(args.n_train, args.n_test, args.depth)
