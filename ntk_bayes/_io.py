"""Atomic output directories: a command's results appear whole or not at all.

Every file of a run is written into a temporary sibling of the output directory
(``.NAME.tmp-XXXX`` next to ``NAME``), which is renamed into place only when the run
has finished. An exception, Ctrl-C or SIGTERM (see :func:`sigterm_as_exit`) removes
the temporary directory, and any parent directories the run created, so a failed run
leaves the disk as it found it. An existing non-empty output directory is replaced
only with ``force``, and then by two renames (old out of the way, new in place), so
the old results survive a failure too.

::

    with atomic_output_dir("results/run1", force=args.force) as tmp:
        (tmp / "report.md").write_text(...)
    # results/run1 now holds report.md; on error nothing was left behind
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "OutputExistsError",
    "output_problem",
    "check_output_dir",
    "atomic_output_dir",
    "replace_dir",
    "write_json",
    "current_umask",
    "sigterm_as_exit",
]


class OutputExistsError(FileExistsError):
    """The output directory cannot be used as asked (exists without ``force``, is a file, ...)."""


def current_umask() -> int:
    """The process umask (read without changing it for longer than one call)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _is_nonempty_dir(path: Path) -> bool:
    with os.scandir(path) as it:
        return any(True for _ in it)


def output_problem(out, force: bool) -> str | None:
    """Why ``out`` cannot receive a run's results, or ``None`` when it can.

    ``out`` may be missing, an empty directory, or, with ``force``, a non-empty
    directory (which will be replaced). A file, a directory holding the current working
    directory, the home or the root directory are refused whatever ``force`` says.
    """
    out = Path(out)
    if out.name in ("", ".", ".."):
        return f"--out {str(out)!r} must name a directory (not '.', '..' or a root)"
    if out.is_symlink():
        return f"--out {out} is a symbolic link; give the real directory"
    if not out.exists():
        return None
    if not out.is_dir():
        return f"--out {out} exists and is not a directory"
    if not _is_nonempty_dir(out):
        return None
    if not force:
        return f"--out {out} already exists and is not empty; pass --force to replace it"
    resolved = out.resolve()
    cwd = Path.cwd().resolve()
    if resolved in (Path.home().resolve(), Path(resolved.anchor)) or cwd.is_relative_to(resolved):
        return f"--out {out} holds the working or home directory; refusing to replace it"
    return None


def check_output_dir(out, force: bool) -> None:
    """Raise :class:`OutputExistsError` when :func:`output_problem` finds one."""
    problem = output_problem(out, force)
    if problem is not None:
        raise OutputExistsError(problem)


def replace_dir(tmp, out, force: bool) -> None:
    """Move the finished directory ``tmp`` to ``out`` (replacing ``out`` with ``force``).

    The check is repeated here because the world may have changed while the run
    computed. Replacing renames the old directory aside first and restores it if the
    second rename fails.
    """
    tmp, out = Path(tmp), Path(out)
    check_output_dir(out, force)
    if out.exists():
        old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
        out.rename(old)
        try:
            tmp.rename(out)
        except BaseException:
            old.rename(out)
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(out)


def _missing_parents(path: Path) -> list[Path]:
    missing = []
    p = path.parent
    while not p.exists():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    return missing


@contextlib.contextmanager
def atomic_output_dir(out, *, force: bool = False) -> Iterator[Path]:
    """Yield a temporary directory that becomes ``out`` when the block succeeds.

    Args:
        out: the output directory.
        force: replace an existing non-empty ``out``.

    Raises:
        OutputExistsError: before the block runs, when ``out`` cannot be used
            (and again at the end if it changed meanwhile).
    """
    out = Path(out)
    check_output_dir(out, force)
    created = _missing_parents(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        tmp.chmod(0o777 & ~current_umask())  # mkdtemp makes it private; results should not be
        yield tmp
        replace_dir(tmp, out, force)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for p in created:  # innermost first; only directories this run made and left empty
            with contextlib.suppress(OSError):
                p.rmdir()
        raise


def write_json(path, obj) -> None:
    """Write ``obj`` as indented JSON (NaN/inf written as ``null``, so the file parses)."""
    Path(path).write_text(json.dumps(_finite(obj), indent=2, default=str) + "\n")


def _finite(obj):
    if isinstance(obj, float):
        return obj if obj == obj and obj not in (float("inf"), float("-inf")) else None
    if isinstance(obj, dict):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    if hasattr(obj, "item") and getattr(obj, "ndim", None) == 0:  # NumPy scalars
        return _finite(obj.item())
    if hasattr(obj, "tolist"):
        return _finite(obj.tolist())
    return obj


@contextlib.contextmanager
def sigterm_as_exit() -> Iterator[None]:
    """Turn SIGTERM into ``SystemExit(143)`` inside the block, so cleanup handlers run.

    Only installed from the main thread (elsewhere signals cannot be handled); the
    previous handler is restored on exit.
    """
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
