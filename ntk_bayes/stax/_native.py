"""The native fully connected kernel: NNGP and NTK of ``Dense``/ReLU-family networks on
CPU in one pass per tile (``native/fc_arccos.cc``, an XLA FFI handler).

XLA's CPU program of the same recursion runs each layer as its own pass over a tile and
writes every tile into the outputs from one thread (an in-place
``dynamic_update_slice`` is never split across threads), so on a 2-core host it spends
about a third of a call in single-threaded writes and fills (docs/kernels.md). The
handler takes a 64 x 64 tile of pairs through its products, every layer and its writes
(and, with ``x2`` omitted, its mirror image) while the tile sits in cache, on all of
XLA's intra-op threads.

Scope, checked by :func:`plan` (anything else takes the XLA path, with the same
results to round-off): the CPU backend, float32 or float64 inputs of shape
``(n, features)``, ``get`` of ``"nngp"`` and/or ``"ntk"``, a network of ``Dense`` and
``ABRelu`` layers (``Relu``, ``LeakyRelu``, ``Abs``) that starts with a ``Dense`` and puts
a ``Dense`` before every nonlinearity, with concrete hyperparameters (under
``jax.grad`` of a hyperparameter the network's leaves are tracers: XLA path), on one
device (``devices`` of None, 1 or one CPU device; ``block_size`` and ``memory_budget``
bound a tile's memory, which its 64 x 64 tiles keep far below any budget).
Derivatives with respect to the inputs are the XLA path's (a custom JVP), so
``jax.grad``/``jacfwd`` of a kernel work as before; ``vmap`` runs the handler once per
batch entry.

Its numbers: the same recursion, op for op, as the XLA program, in another order of
rounding (the products' sums, fused multiply-adds): within ~2 ulp of the largest entry
in float32 and ~4e-16 relative in float64 of the XLA program's; bit for bit the same
eagerly and inside a caller's ``jax.jit`` (the per-point variances are the handler's own
too); exactly symmetric with ``x2`` omitted; a copy of a point pairs with it exactly as
the point with itself. Where two float32 programs' round-off matters downstream (an
ill-conditioned solve), compare within one path (:func:`disabled`).

The handler is compiled on first use with the host's C++ compiler (``CXX``, else
``c++``/``g++``/``clang++``) against the FFI headers that jaxlib ships, with
``-march=native``, into ``$NTK_BAYES_NATIVE_DIR`` (default
``~/.cache/ntk_bayes/native``), keyed by the source, the flags, the compiler, jaxlib and
the CPU: ~4 s once per machine and jaxlib. Without a compiler, or if the build fails,
the XLA path runs and :func:`status` says why. ``NTK_BAYES_NATIVE=0`` turns the native
path off; :func:`disabled` does so for a block.
"""

from __future__ import annotations

import contextlib
import contextvars
import ctypes
import hashlib
import math
import os
import pathlib
import platform
import shutil
import subprocess
import threading

import jax
import jax.numpy as jnp
import numpy as np

from .._numerics import is_concrete

__all__ = ["disabled", "plan", "kernels", "status"]

SOURCE = pathlib.Path(__file__).parent / "native" / "fc_arccos.cc"
FLAGS = (
    "-O3",
    "-march=native",
    # x86 only: GCC's default on Intel CPUs keeps 512-bit vectors out of loops
    *(("-mprefer-vector-width=512",) if platform.machine() in ("x86_64", "AMD64") else ()),
    "-fno-math-errno",
    "-fno-signed-zeros",
    "-fopenmp-simd",
    "-std=c++17",
    "-shared",
    "-fPIC",
    "-w",
)
_TARGETS = {
    (True, "float32"): ("ntk_bayes_fc_both_f32", "NtkBayesFcBothF32"),
    (True, "float64"): ("ntk_bayes_fc_both_f64", "NtkBayesFcBothF64"),
    (False, "float32"): ("ntk_bayes_fc_nngp_f32", "NtkBayesFcNngpF32"),
    (False, "float64"): ("ntk_bayes_fc_nngp_f64", "NtkBayesFcNngpF64"),
}

_lock = threading.Lock()
_state: dict = {"tried": False, "path": None, "reason": "not built yet (no call needed it)"}
_ENABLED = contextvars.ContextVar("ntk_bayes_native", default=True)


@contextlib.contextmanager
def disabled():
    """``with stax.native_disabled():`` every ``kernel_fn`` call in the block (traced or
    run) takes the XLA program, also where the native fully connected kernel would run
    (to compare the two, or to keep one program's round-off through an ill-conditioned
    float32 solve). ``NTK_BAYES_NATIVE=0`` does so for the whole process."""
    token = _ENABLED.set(False)
    try:
        yield
    finally:
        _ENABLED.reset(token)


def _enabled() -> bool:
    env = os.environ.get("NTK_BAYES_NATIVE", "1").strip().lower()
    return _ENABLED.get() and env not in ("0", "off", "false", "no")


def status() -> str:
    """``stax.native_status()``: where the native fully connected kernel was loaded from,
    or why it is not used ("not built yet" until a call needs it, "not available: ..."
    with the compiler's message, "off" when switched off)."""
    if not _enabled():
        return "off (NTK_BAYES_NATIVE=0 or stax._native.disabled())"
    return f"loaded from {_state['path']}" if _state["path"] else _state["reason"]


def _compiler() -> str | None:
    given = os.environ.get("CXX")
    if given:
        return shutil.which(given) or (given if os.path.exists(given) else None)
    for name in ("c++", "g++", "clang++"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _cpu_id() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            lines = [ln for ln in f if ln.startswith(("model name", "flags"))]
        return "".join(sorted(set(lines)))
    except OSError:  # pragma: no cover - non-Linux hosts
        return platform.processor() + platform.machine()


def _build() -> str:
    """The compiled handler's path (built unless a build with the same key exists);
    raises ``RuntimeError`` naming the cause."""
    cxx = _compiler()
    if cxx is None:
        raise RuntimeError("no C++ compiler found (set CXX, or install g++)")
    import jaxlib

    include = jax.ffi.include_dir()
    try:
        version = subprocess.run(
            [cxx, "--version"], capture_output=True, text=True, timeout=30, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError) as e:
        raise RuntimeError(f"the C++ compiler {cxx} does not run: {e}") from e
    key = hashlib.sha256()
    for part in (SOURCE.read_bytes(), " ".join(FLAGS).encode(), version.encode()):
        key.update(part)
    for part in (jaxlib.__version__, include, _cpu_id()):
        key.update(part.encode())
    root = os.environ.get("NTK_BAYES_NATIVE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "ntk_bayes", "native"
    )
    out = pathlib.Path(root) / f"fc_arccos-{key.hexdigest()[:20]}.so"
    if out.exists():
        return str(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # built beside its final name and moved there whole: a reader (another process)
    # never loads a half-written library
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    cmd = [cxx, *FLAGS, f"-I{include}", str(SOURCE), "-o", str(tmp)]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
        if res.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{res.stderr[-2000:]}")
        os.replace(tmp, out)
    except subprocess.TimeoutExpired as e:
        raise RuntimeError(f"compiling {SOURCE.name} took over 300 s") from e
    finally:
        if tmp.exists():
            tmp.unlink()
    return str(out)


def _load() -> bool:
    """Build (once per key), load and register the handlers; False with a reason."""
    if _state["tried"]:
        return _state["path"] is not None
    with _lock:
        if not _state["tried"]:
            try:
                path = _build()
                lib = ctypes.cdll.LoadLibrary(path)
                for name, symbol in _TARGETS.values():
                    capsule = jax.ffi.pycapsule(getattr(lib, symbol))
                    jax.ffi.register_ffi_target(name, capsule, platform="cpu")
                _state["path"], _state["reason"] = path, None
            except (RuntimeError, OSError, AttributeError) as e:
                _state["reason"] = f"not available: {e}"
            _state["tried"] = True
    return _state["path"] is not None


def _layers(net) -> list | None:
    from ._core import Serial

    if isinstance(net, Serial):
        out = []
        for layer in net.layers:
            inner = _layers(layer)
            if inner is None:
                return None
            out += inner
        return out
    return [net]


def _number(v) -> float | None:
    if v is None:
        return 0.0
    if not is_concrete(v) or np.ndim(v) != 0:
        return None
    v = float(np.asarray(v))
    return v if math.isfinite(v) else None


def _one_device(devices) -> bool:
    if devices is None:
        return True
    if isinstance(devices, int | np.integer) and not isinstance(devices, bool):
        return int(devices) == 1
    try:
        devices = list(devices)
    except TypeError:
        return False  # the XLA path names what is wrong with it
    return len(devices) == 1 and getattr(devices[0], "platform", None) == "cpu"


def plan(net, x1, x2, names, want_all, extra, devices) -> tuple | None:
    """The layer table for the native kernel, or ``None`` where the XLA path runs."""
    from ._dense import Dense
    from ._elementwise import ABRelu

    # block_size bounds a tile's memory, which the native kernel's 64 x 64 tiles keep
    # far below any budget; devices: one device only (the XLA tiler spreads tiles)
    if not _enabled() or want_all or not _one_device(devices):
        return None
    if not set(names) <= {"nngp", "ntk"} or any(k != "ids" for k in extra[0]):
        return None
    if jax.default_backend() != "cpu" or x1.ndim != 2 or x1.shape[0] == 0 or x1.shape[1] == 0:
        return None
    if x1.dtype not in (jnp.float32, jnp.float64):
        return None
    if x2 is not None and (x2.ndim != 2 or x2.dtype != x1.dtype or x2.shape[0] == 0):
        return None
    layers = _layers(net)
    if not layers or type(layers[0]) is not Dense:
        return None
    ops, width, gaussian = [], x1.shape[1], False
    for layer in layers:
        if type(layer) is Dense:
            w, b = _number(layer.W_std), _number(layer.b_std)
            if w is None or b is None:
                return None
            if layer.parameterization == "ntk":
                alpha, beta = -1.0, 0.0
            else:
                alpha, beta = float(width), 0.0 if layer.b_std is None else 1.0
            ops.append((0.0, w * w, b * b, alpha, beta))
            width, gaussian = layer.out_dim, True
        elif type(layer) is ABRelu and gaussian:
            a, b = _number(layer.a), _number(layer.b)
            if a is None or b is None:
                return None
            ops.append((1.0, a, b, 0.0, 0.0))
            gaussian = False
        else:
            return None
    if not _load():
        return None
    return tuple(ops)


def _call(ops, sym, with_ntk, x1, x2, id1, id2):
    from ._elementwise import _asin_coefficients

    dtype = jnp.dtype(x1.dtype).name
    name, _ = _TARGETS[(with_ntk, dtype)]
    out = jax.ShapeDtypeStruct((x1.shape[0], x2.shape[0]), x1.dtype)
    call = jax.ffi.ffi_call(name, (out, out) if with_ntk else (out,), vmap_method="sequential")
    res = call(
        x1,
        x2.T,
        id1,
        id2,
        ops=np.asarray(ops, np.float64).reshape(-1),
        coef=np.asarray(_asin_coefficients(dtype), np.float64),
        sym=bool(sym),
    )
    return tuple(res)


def _ids(x1, x2, ids, same):
    """int32 ids whose equality marks the self-pairs, as ``Kernel.equal_pair_mask``:
    the point ids where the inputs hold copies, else the index with ``same`` (whether
    x2 is x1), else none."""
    if ids is not None:
        return ids[0].astype(jnp.int32), ids[1].astype(jnp.int32)
    n1, n2 = x1.shape[0], (x1 if x2 is None else x2).shape[0]
    id1 = jnp.arange(n1, dtype=jnp.int32)
    apart = -1 - jnp.arange(n2, dtype=jnp.int32)
    if same is None:
        return id1, apart
    return id1, jnp.where(same, jnp.arange(n2, dtype=jnp.int32), apart)


def kernels(ops, x1, x2, ids, same, names, xla):
    """``names`` (a subset of nngp, ntk) between ``x1`` and ``x2`` (``None``: ``x1``,
    mirrored tiles) by the native kernel; ``xla(a, b)``, the library's XLA path for the
    same call, gives the derivatives."""
    with_ntk = "ntk" in names
    sym = x2 is None
    id1, id2 = _ids(x1, x2, ids, same)

    def native(*xs):
        k = _call(ops, sym, with_ntk, xs[0], xs[-1], id1, id2)
        return tuple(k[0] if n == "nngp" else k[1] for n in names)

    f = jax.custom_jvp(native)
    f.defjvp(
        lambda primals, tangents: jax.jvp(
            lambda *xs: tuple(xla(xs[0], None if sym else xs[1])), primals, tangents
        )
    )
    return f(x1) if sym else f(x1, x2)
