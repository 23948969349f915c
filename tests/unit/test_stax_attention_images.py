"""GlobalSelfAttention on (N, H, W, C) images: the H·W positions are the tokens, as in
neural-tangents; kernel and finite twin equal those of the flattened token sequence."""

import jax
import numpy as np
from _nets import images

from ntk_bayes import stax


def _net():
    return stax.serial(
        stax.Dense(8, W_std=1.3, b_std=0.2),
        stax.GlobalSelfAttention(6, 5, 4, 2, W_out_std=1.2, b_std=0.1),
        stax.Relu(),
        stax.GlobalAvgPool(),
        stax.Dense(1),
    )


def test_attention_on_images_equals_attention_on_flattened_tokens(dtype):
    x1, x2 = (np.asarray(images(n, (2, 3, 2), seed=n), dtype) for n in (3, 2))
    tok = lambda x: x.reshape(x.shape[0], -1, x.shape[-1])  # noqa: E731
    a = _net().kernel_fn(x1, x2, ("nngp", "ntk"))
    b = _net().kernel_fn(tok(x1), tok(x2), ("nngp", "ntk"))
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    for name in ("nngp", "ntk"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=rtol)
    full = stax.serial(stax.Dense(8), stax.GlobalSelfAttention(6, 5, 4, 2))
    k = full.kernel_fn(x1, x2, "nngp", spatial_output="full")
    assert k.shape == (3, 2, 2, 2, 3, 3)
    kt = full.kernel_fn(tok(x1), tok(x2), "nngp", spatial_output="full")
    np.testing.assert_allclose(
        np.asarray(k).transpose(0, 1, 2, 4, 3, 5).reshape(3, 2, 6, 6), kt, rtol=rtol
    )


def test_attention_finite_twin_on_images():
    net = _net()
    x = images(3, (2, 3, 2))
    shape, params = net.init_fn(jax.random.PRNGKey(1), x.shape)
    assert shape == (3, 1)
    tokens = x.reshape(3, 6, 2)
    np.testing.assert_allclose(net.apply_fn(params, x), net.apply_fn(params, tokens), rtol=1e-5)
