"""Drop one known false alarm from XLA's native log while the ``ntk-bayes`` command runs.

jaxlib's CPU loader checks a program read back from JAX's persistent compilation cache
(which ``scripts/main.sh`` and the tests turn on) against the host's CPU features. On
Intel CPUs LLVM records two tuning preferences, ``+prefer-no-gather`` and
``+prefer-no-scatter``, among the features a program was compiled for, and the host's
feature list never names them, so every program loaded from the cache logs a
3 KB error line ending "This could lead to execution errors such as SIGILL"
(openxla/xla#44565, jax-ml/jax#38445). The program was compiled on this host and loads
and runs all the same (measured on the Intel Xeon VM of 2026-12-05, jaxlib 0.9.2: a
3-layer CNN kernel's first call 1.7 s cold, 0.8 s from the cache). A run of the main
job printed dozens of them.

:func:`drop_native_lines` routes the process's file descriptor 2 (where C++ logs go)
through a small filter process that drops lines naming those two preferences in that
loader message and passes every other byte on; Python's ``sys.stderr`` keeps writing to
the original stream directly, so progress bars still see their terminal. The filter
is a separate process, not a thread, so that a native writer holding the GIL can never
wait on it. It ends when the block ends (its pipe closes), or with the command.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from collections.abc import Iterator

# A line is dropped only if it holds the loader's file name and one of these phrases;
# a real mismatch (a cache copied from a CPU with other instruction sets) still shows.
_LOADER = b"cpu_aot_loader.cc"
_FALSE_ALARMS = (b"+prefer-no-gather is not", b"+prefer-no-scatter is not")

_FILTER = r"""
import os, sys
loader, alarms = sys.argv[1].encode(), [a.encode() for a in sys.argv[2:]]

def keep(line):
    return not (loader in line and any(a in line for a in alarms))

def out(data):
    while data:
        data = data[os.write(1, data):]

rest = b""
while True:
    try:
        chunk = os.read(0, 1 << 16)
    except InterruptedError:
        continue
    if not chunk:
        break
    *lines, rest = (rest + chunk).split(b"\n")
    out(b"".join(line + b"\n" for line in lines if keep(line)))
if rest and keep(rest):
    out(rest)
"""


@contextlib.contextmanager
def drop_native_lines() -> Iterator[None]:
    """Inside the block, native writes to file descriptor 2 pass through a filter that
    drops the CPU loader's false alarm (module docstring); Python's ``sys.stderr``
    writes to the original stream. Does nothing where descriptor 2 or a subprocess is
    unavailable, or when ``NTK_BAYES_NATIVE_LOG=all``."""
    if os.environ.get("NTK_BAYES_NATIVE_LOG", "").lower() == "all":
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (AttributeError, OSError, ValueError):
        yield
        return
    try:
        read, write = os.pipe()
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _FILTER, _LOADER.decode()]
            + [a.decode() for a in _FALSE_ALARMS],
            stdin=read,
            stdout=saved,
            stderr=saved,
            start_new_session=True,  # Ctrl-C reaches the command, not the filter
        )
    except OSError:
        os.close(saved)
        yield
        return
    os.close(read)
    python_stderr = sys.stderr
    sys.stderr = io.TextIOWrapper(
        io.FileIO(os.dup(saved), "w"),
        encoding=getattr(python_stderr, "encoding", None) or "utf-8",
        errors="backslashreplace",
        line_buffering=True,
    )
    os.dup2(write, 2)
    os.close(write)
    try:
        yield
    finally:
        ours, sys.stderr = sys.stderr, python_stderr
        with contextlib.suppress(OSError, ValueError):
            ours.close()
        os.dup2(saved, 2)  # the pipe's last writer in this process: the filter sees EOF
        os.close(saved)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # a subprocess of the command still holds it
            pass
