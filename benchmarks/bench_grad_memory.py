"""Peak memory of reverse-mode gradients of a deep kernel against its forward pass (issue 15).

A depth-50 ReLU network (Dense(512, W_std, b_std) + Relu, 50 times, then Dense(1));
``jax.jacrev`` of its NTK on n points with respect to (W_std, b_std), against the
forward kernel alone, each in a fresh process. Two ways to write the network: ``serial``
(50 layers listed) and ``repeat`` (``stax.repeat``); both run as a scanned, checkpointed
loop. Two memory figures per program:

* the process's peak: on a CPU its peak RSS (it includes compilation and the runtime's
  ~270 MiB), on an accelerator the device's peak of bytes in use (``memory_stats()``);
* the program's own buffers as XLA assigned them (arguments, outputs and temporaries,
  ``memory_analysis()``): the same measure on every backend, free of any baseline. With
  checkpointing it does not grow with depth (n = 24, 2026-12-04, 2-core CPU: ``jacrev``
  7.0, 7.1, 7.4 and 7.8 MiB at depth 10, 25, 50 and 100).

    python benchmarks/bench_grad_memory.py [--n 9 24] [--depth 50]

``jacrev`` pulls back one cotangent per output entry (n² of them, each an n x n state),
so its memory grows as n⁴: at n = 512 it asks for 2.7 TB whatever the network. With
few hyperparameters and many points, ``jax.jacfwd`` is the transform to use.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def _child(style: str, mode: str, n: int, depth: int) -> dict:
    import jax
    import jax.numpy as jnp

    from ntk_bayes import stax

    def build(w, b):
        block = stax.serial(stax.Dense(512, W_std=w, b_std=b), stax.Relu())
        rest = depth - 1  # the first block changes the width, the rest keep it
        body = stax.repeat(block, rest) if style == "repeat" else stax.serial(*[block] * rest)
        return stax.serial(block, body, stax.Dense(1, W_std=w, b_std=b))

    x = jax.random.normal(jax.random.PRNGKey(0), (n, 32))

    def ntk(w, b):
        return build(w, b).kernel_fn(x, None, "ntk")

    def peak_mib():
        if jax.default_backend() == "cpu":
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return (jax.devices()[0].memory_stats() or {}).get("peak_bytes_in_use", 0) / 2**20

    fn = jax.jit(ntk if mode == "forward" else jax.jacrev(ntk, argnums=(0, 1)))
    args = (jnp.float32(1.4), jnp.float32(0.1))
    base = peak_mib()
    t = time.perf_counter()
    compiled = fn.lower(*args).compile()
    out = jax.block_until_ready(compiled(*args))
    seconds = time.perf_counter() - t
    peak = peak_mib()
    # The program's own buffers as XLA assigned them (arguments, outputs, temporaries):
    # the same on every backend and free of the process's baseline.
    m = compiled.memory_analysis()
    program = sum(
        getattr(m, k, 0) or 0
        for k in ("argument_size_in_bytes", "output_size_in_bytes", "temp_size_in_bytes")
    )
    finite = bool(all(jnp.all(jnp.isfinite(o)) for o in jax.tree_util.tree_leaves(out)))
    where = (
        "peak RSS of the process, compilation included"
        if jax.default_backend() == "cpu"
        else f"peak device memory in use, {jax.devices()[0].device_kind}"
    )
    return {
        "peak_mib": peak,
        "base_mib": base,
        "program_mib": program / 2**20,
        "seconds": seconds,
        "finite": finite,
        "where": where,
    }


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n", type=int, nargs="+", default=[9, 24])
    p.add_argument("--depth", type=int, default=50)
    p.add_argument("--styles", nargs="+", default=["serial", "repeat"])
    p.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        style, mode, n, depth = args.child
        print(json.dumps(_child(style, mode, int(n), int(depth))))
        return
    print(f"# depth {args.depth}, float32")
    print(
        f"{'style':<7} {'n':>5} {'forward MiB':>12} {'jacrev MiB':>11} {'ratio':>6} "
        f"{'program MiB: forward':>21} {'jacrev':>8} {'jacrev s':>9}"
    )
    for n in args.n:
        for style in args.styles:
            res = {}
            for mode in ("forward", "jacrev"):
                cmd = [sys.executable, __file__, "--child", style, mode, str(n), str(args.depth)]
                out = subprocess.run(cmd, capture_output=True, text=True, check=True)
                res[mode] = json.loads(out.stdout.strip().splitlines()[-1])
            f, g = res["forward"]["peak_mib"], res["jacrev"]["peak_mib"]
            pf, pg = res["forward"]["program_mib"], res["jacrev"]["program_mib"]
            print(
                f"{style:<7} {n:>5} {f:>12.1f} {g:>11.1f} {g / max(f, 1e-9):>6.2f} "
                f"{pf:>21.2f} {pg:>8.2f} {res['jacrev']['seconds']:>9.1f}  "
                f"({res['jacrev']['where']}; "
                f"finite: {res['forward']['finite'] and res['jacrev']['finite']})"
            )


if __name__ == "__main__":
    main()
