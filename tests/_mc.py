"""Shared check for 'analytic kernel against Monte Carlo networks' tests."""

import jax
import numpy as np

import ntk_bayes as nb

KEY = jax.random.PRNGKey(0)


def mc_z_scores(net, x1, x2, n_samples=64, samples_per_step=16, key=KEY, batch_size=0, **kwargs):
    """``(z, k, mean, se)``: per-entry |analytic - MC| / (MC standard error) of each
    kernel (a dict of float64 arrays), the analytic kernels, the Monte Carlo mean and
    its standard error, for ``n_samples`` random networks from ``net.init_fn``.
    ``kwargs`` (e.g. ``pattern=(p1, p2)``) go to both kernel functions; ``batch_size``
    cuts the Monte Carlo estimate into blocks of that many inputs (0: whole).

    The floor of 1e-6 of the kernel's scale on the standard error keeps entries that
    are exactly constant across samples (e.g. a readout bias alone) from dividing by 0.
    """
    k = net.kernel_fn(x1, x2, ("nngp", "ntk"), **kwargs)
    mc = nb.monte_carlo_kernel_fn(
        net.init_fn,
        net.apply_fn,
        key,
        n_samples,
        samples_per_step=samples_per_step,
        batch_size=batch_size,
    )
    mean, se = mc(x1, x2, ("nngp", "ntk"), with_stderr=True, **kwargs)
    z = {}
    for name in ("nngp", "ntk"):
        a, m, s = (np.asarray(getattr(o, name), np.float64) for o in (k, mean, se))
        z[name] = np.abs(m - a) / np.maximum(s, 1e-6 * np.abs(a).max())
    return z, k, mean, se


def z_against(kernel, mean, se, name="nngp"):
    """Largest |MC mean - kernel| / se of one kernel (``name``), e.g. a wrong closed form
    that the test must reject: the power of a check whose right kernel passes."""
    m, s = (np.asarray(getattr(o, name), np.float64) for o in (mean, se))
    return float((np.abs(m - np.asarray(kernel, np.float64)) / s).max())
