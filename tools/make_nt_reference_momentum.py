"""Neural-tangents 0.6.5's ``predict.gradient_descent`` with momentum, for
``tests/unit/test_predict_gradient_descent.py``: a fixed kernel, a non-MSE loss (logistic,
softplus of -f y), train and test outputs at three times, float64.

Run once, in neural-tangents' own environment (see make_nt_reference.py)::

    /work/ntvenv/bin/python tools/make_nt_reference_momentum.py [--out tests/data]
"""

import argparse
import pathlib

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402


def case():
    """The inputs, shared with the test (same seed and construction)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((6, 6))
    k = a @ a.T / 6 + 0.1 * np.eye(6)
    ktd = rng.standard_normal((3, 6)) * 0.3
    y = rng.standard_normal((6, 2))
    return k, ktd, y, np.array([0.5, 2.0, 7.0])


def loss(f, y):
    return jnp.sum(jnp.logaddexp(0.0, -f * y))


def main():
    import neural_tangents as nt

    p = argparse.ArgumentParser()
    p.add_argument("--out", default="tests/data")
    out = pathlib.Path(p.parse_args().out)
    k, ktd, y, ts = case()
    fn = nt.predict.gradient_descent(loss, k, y, learning_rate=0.3, momentum=0.8)
    f, g = fn(ts, 0.05, 0.1, ktd)
    np.savez(out / "nt_momentum.npz", k=k, ktd=ktd, y=y, ts=ts, f=np.asarray(f), g=np.asarray(g))


if __name__ == "__main__":
    main()
