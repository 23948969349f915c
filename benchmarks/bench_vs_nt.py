"""ntk_bayes against neural-tangents, side by side in one run on this machine.

neural-tangents does not import on current JAX, so it runs in its own environment (e.g.
a venv with neural-tangents 0.6.5 and jax 0.4.23: ``--nt-python /path/to/python``);
each measurement is a fresh child process of either library, and the rounds alternate
between them so that a change of load hits both. Cases (float32, inputs from one NumPy
seed, NNGP and NTK together under ``jax.jit``):

* ``fc3_relu``: 3 x (Dense(512, W_std=1.5, b_std=0.05) + Relu), Dense(1); n = 2048, d = 128;
  ntk_bayes runs its native fully connected kernel (``stax/_native.py``) where it could
  be built (the line says), and its XLA program for the same call is timed beside it;
  also, in ntk_bayes's process, the floor (one x @ x.T plus one fused elementwise pass per
  layer) and the least any call returning both kernels can do (one x @ x.T and two n x n
  outputs), with each program's minor page faults per call (fresh output pages fault in on
  first touch, which on some hosts is most of the floor).
* ``cnn3_gap``: 3 x (Conv(64, (3, 3), SAME, W_std=1.4, b_std=0.1) + Relu), GlobalAvgPool,
  Dense(1); n = 128 inputs of 8 x 8 x 1.
* ``fc2_erf``, ``fc3_erf``: as ``fc3_relu`` with 2 or 3 Erf layers.

Prints the CPU model and, per case, compile time and best/median call time of each library,
the best CPU seconds of each process (steadier than wall time under load) and the ratios;
then, per library, how many calls faulted no fresh pages in and the best call with and
without fresh pages (which one a call gets follows glibc's heap layout in its process:
docs/kernels.md, "The page-fault lottery"), with the ratio within a state both reached.

    python benchmarks/bench_vs_nt.py --nt-python /work/ntvenv/bin/python [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

CASES = {"fc3_relu": 2048, "cnn3_gap": 128, "fc2_erf": 2048, "fc3_erf": 2048}


def _inputs(case: str, n: int):
    import numpy as np

    rng = np.random.default_rng(0)
    shape = (n, 128) if case.startswith("fc") else (n, 8, 8, 1)
    return rng.standard_normal(shape).astype(np.float32)


def _network(stax, case: str):
    if case.startswith("fc"):
        depth, phi = int(case[2]), {"relu": stax.Relu, "erf": stax.Erf}[case.split("_")[1]]
        layers = []
        for _ in range(depth):
            layers += [stax.Dense(512, W_std=1.5, b_std=0.05), phi()]
        return stax.serial(*layers, stax.Dense(1, W_std=1.5, b_std=0.05))
    block = [stax.Conv(64, (3, 3), padding="SAME", W_std=1.4, b_std=0.1), stax.Relu()]
    return stax.serial(*(block * 3), stax.GlobalAvgPool(), stax.Dense(1))


def _faults() -> int:
    """Minor page faults of this process so far (fresh output pages fault on first touch)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - non-Unix hosts
        return 0
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _timed(fn, x, repeats: int, per_call: list | None = None) -> tuple[list, list, float]:
    """``repeats`` calls of a compiled ``fn(x)``: wall seconds, CPU seconds of the process
    (all threads) and minor page faults per call (each call's count appended to
    ``per_call`` when given)."""
    import jax

    times, cpu, flt = [], [], _faults()
    for _ in range(repeats):
        f0, t, c = _faults(), time.perf_counter(), time.process_time()
        jax.block_until_ready(fn(x))
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
        if per_call is not None:
            per_call.append(_faults() - f0)
    return times, cpu, (_faults() - flt) / repeats


# A call that faults fewer pages than this reused the memory of earlier calls ("clean");
# the others got fresh pages (n = 2048: 8,192 pages of 4 KiB for two 16 MiB outputs).
_CLEAN_FAULTS = 256


def _by_state(times, per_call) -> dict:
    """Best wall time and number of calls among those that reused earlier calls' memory
    ("clean") and those that faulted fresh pages in ("faulting"): which state a call gets
    follows glibc's heap layout in the process (docs/kernels.md, "The page-fault
    lottery"), so the two are reported apart."""
    calls = list(zip(times, per_call, strict=True))
    clean = [t for t, f in calls if f < _CLEAN_FAULTS]
    faulting = [t for t, f in calls if f >= _CLEAN_FAULTS]
    return {
        "clean_calls": len(clean),
        "clean_best": min(clean, default=None),
        "faulting_calls": len(faulting),
        "faulting_best": min(faulting, default=None),
    }


def child(lib: str, case: str, n: int, repeats: int) -> dict:
    """One library, one case, in this process: compile + ``repeats`` timed calls."""
    import jax
    import jax.numpy as jnp

    if lib == "nt":
        from neural_tangents import stax
    else:
        from ntk_bayes import stax
    _, _, kernel_fn = _network(stax, case)
    x = jnp.asarray(_inputs(case, n))

    def call(a):
        return kernel_fn(a, None, ("nngp", "ntk"))

    fn = jax.jit(call)
    t = time.perf_counter()
    jax.block_until_ready(fn(x))
    first = time.perf_counter() - t
    per_call: list = []
    times, cpu, faults = _timed(fn, x, repeats, per_call)
    out = {"first": first, "best": min(times), "median": statistics.median(times)}
    out["faults"] = faults
    out.update(_by_state(times, per_call))
    # CPU seconds of the process (all threads): steadier than wall time on a loaded VM.
    out["cpu_best"] = min(cpu)
    out["compile"] = max(first - out["median"], 0.0)
    if lib == "ours":
        # As most scripts call it: kernel_fn itself (its own compiled tiles, plus the
        # Python of input checks, point ids and tile planning per call), no jax.jit.
        jax.block_until_ready(call(x))
        out["eager_best"] = min(_timed(call, x, repeats)[0])
        # The same program with 512-bit vectors (an option of the caller's jax.jit; XLA's
        # CPU default is 256): the same arithmetic, so the outputs should be bit-equal.
        wide = jax.jit(call, compiler_options={"xla_cpu_prefer_vector_width": 512})
        out["wide_equal"] = all(
            bool(jnp.array_equal(u, v))
            for u, v in zip(jax.block_until_ready(wide(x)), fn(x), strict=True)
        )
        out["wide_best"] = min(_timed(wide, x, repeats)[0])

        # ntk_bayes's XLA program for the same call (what a fully connected ReLU network
        # runs where the native kernel cannot be built, or on other backends)
        def call_xla(a):
            with stax.native_disabled():
                return call(a)

        xla = jax.jit(call_xla)
        jax.block_until_ready(xla(x))
        out["xla_best"] = min(_timed(xla, x, repeats)[0])
    if lib == "ours" and case == "fc3_relu":
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from bench_kernels import floor_fn

        # The least any call returning NNGP and NTK can do: one x @ x.T and two n x n
        # outputs, no kernel arithmetic (a bound below the floor, not a target).
        def least(a):
            g = a @ a.T / a.shape[1]
            return g, 2.0 * g + 1.0

        for name, f in (("floor", lambda a: floor_fn(a, 3)), ("least", least)):
            f = jax.jit(f)
            jax.block_until_ready(f(x))
            ft, _, out[f"{name}_faults"] = _timed(f, x, repeats)
            out[f"{name}_best"] = min(ft)
    out["jax"] = jax.__version__
    if lib == "ours":
        # the fully connected ReLU case runs the native kernel where it could be built
        out["native"] = stax.native_status()
    return out


def _run_child(python: str, lib: str, case: str, n: int, repeats: int) -> dict:
    cmd = [python, os.path.abspath(__file__), "--child", lib, "--case", case]
    cmd += ["--n", str(n), "--repeats", str(repeats)]
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"{lib} {case} failed:\n{res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def _cpu_name() -> str:
    """The CPU model and its widest vector extension (timings differ by host: the
    issue's first figures came from an AVX-512 machine, this VM has AVX2)."""
    name, flags = platform.machine(), ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and name == platform.machine():
                    name = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = line
    except OSError:  # pragma: no cover - non-Linux hosts
        return name
    vec = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    return f"{name} ({vec})"


def _states_line(runs: dict) -> str:
    """Per library: how many of its timed calls faulted no fresh pages in, and the best
    call in each state, with the ratio of the two libraries' best in the same state where
    both have one."""
    names = {"ours": "ntk_bayes", "nt": "neural-tangents"}
    best, parts = {}, []
    for lib, rs in runs.items():
        n_clean = sum(r["clean_calls"] for r in rs)
        n_all = n_clean + sum(r["faulting_calls"] for r in rs)
        for state in ("clean", "faulting"):
            vals = [r[f"{state}_best"] for r in rs if r[f"{state}_best"] is not None]
            best[lib, state] = min(vals) if vals else None
        text = ", ".join(
            f"{state} best {best[lib, state]:.4f} s"
            for state in ("clean", "faulting")
            if best[lib, state] is not None
        )
        parts.append(f"{names[lib]} {n_clean} of {n_all} calls without fresh pages ({text})")
    for state in ("clean", "faulting"):
        if best["ours", state] and best["nt", state]:
            parts.append(f"{state} vs {state}: {best['nt', state] / best['ours', state]:.1f}x")
    return "; ".join(parts)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nt-python", help="python of an environment with neural-tangents")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds per case")
    p.add_argument("--repeats", type=int, default=7, help="timed calls per child")
    p.add_argument("--cases", default=",".join(CASES))
    p.add_argument("--child", choices=("nt", "ours"), help=argparse.SUPPRESS)
    p.add_argument("--case", help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.case, args.n, args.repeats)))
        return 0
    if not args.nt_python:
        p.error("--nt-python is required: the python of an environment with neural-tangents")
    cases = [c for c in args.cases.split(",") if c]
    for c in cases:
        if c not in CASES:
            p.error(f"unknown case {c!r}; choose from {sorted(CASES)}")
    print(f"{_cpu_name()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}")
    for case in cases:
        n = CASES[case]
        runs = {"ours": [], "nt": []}
        for _ in range(args.rounds):
            for lib, py in (("ours", sys.executable), ("nt", args.nt_python)):
                runs[lib].append(_run_child(py, lib, case, n, args.repeats))
        best = {k: min(r["best"] for r in v) for k, v in runs.items()}
        med = {k: statistics.median(r["median"] for r in v) for k, v in runs.items()}
        comp = {k: statistics.median(r["compile"] for r in v) for k, v in runs.items()}
        cpu = {k: min(r["cpu_best"] for r in v) for k, v in runs.items()}
        line = (
            f"{case} n={n}: ntk_bayes best {best['ours']:.4f} s (median {med['ours']:.4f}, "
            f"compile {comp['ours']:.2f} s; jax {runs['ours'][0]['jax']}) | neural-tangents "
            f"best {best['nt']:.4f} s (median {med['nt']:.4f}, compile {comp['nt']:.2f} s; "
            f"jax {runs['nt'][0]['jax']}) | speed-up best {best['nt'] / best['ours']:.1f}x, "
            f"median {med['nt'] / med['ours']:.1f}x | CPU seconds best {cpu['ours']:.4f} vs "
            f"{cpu['nt']:.4f}: {cpu['nt'] / cpu['ours']:.1f}x"
        )
        eager = min(r["eager_best"] for r in runs["ours"])
        wide = min(r["wide_best"] for r in runs["ours"])
        line += (
            f" | ntk_bayes called without jax.jit {eager:.4f} s; under jax.jit with "
            f"512-bit vectors {wide:.4f} s ({best['nt'] / wide:.1f}x; outputs bit-equal: "
            f"{all(r['wide_equal'] for r in runs['ours'])})"
        )
        if case.startswith("fc") and case.endswith("relu"):
            xla = min(r["xla_best"] for r in runs["ours"])
            line += (
                f" | native kernel: {runs['ours'][0]['native']}; ntk_bayes's XLA program "
                f"{xla:.4f} s ({best['nt'] / xla:.1f}x)"
            )
        if case == "fc3_relu":
            floor = min(r["floor_best"] for r in runs["ours"])
            least = min(r["least_best"] for r in runs["ours"])
            fl = {
                k: statistics.median(r[k] for r in runs["ours"])
                for k in ("faults", "floor_faults", "least_faults")
            }
            line += (
                f" | floor {floor:.4f} s, ntk_bayes/floor {best['ours'] / floor:.2f} | least "
                f"(x @ x.T and two outputs) {least:.4f} s; 10x neural-tangents needs "
                f"{best['nt'] / 10:.4f} s | page faults per call: ntk_bayes "
                f"{fl['faults']:.0f}, floor {fl['floor_faults']:.0f}, "
                f"least {fl['least_faults']:.0f}"
            )
        line += " | " + _states_line(runs)
        print(line, flush=True)
    print(f"load at the end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
