"""Atomic, self-describing output directories: results appear whole or not at all, and
``force`` replaces only what ntk-bayes itself wrote.

Every file of a run is written into a temporary sibling of the output directory
(``.NAME.tmp-PID-XXXX`` next to ``NAME``), which is swapped into place only when the run
has finished. An exception, Ctrl-C or SIGTERM (see :func:`sigterm_as_exit`) removes
the temporary directory, and any parent directories the run created, so a failed run
leaves the disk as it found it. A run killed outright (SIGKILL, power loss) leaves its
temporary directory behind; the next run on the same ``--out`` finds it by name and
removes it when the process that made it is gone (:func:`clean_stale`), saying so.

Each finished directory holds a manifest (:data:`MANIFEST`) listing the files the run
wrote, with their sizes and SHA-256 digests. An existing non-empty output directory is
replaced only with ``force`` **and** only when everything in it is listed, unchanged, in
its manifest: a directory holding anything else (an input CSV, notes, an older tool's
results) is refused, so ``--force`` can never delete a file ntk-bayes did not create.
Replacing swaps the two directories in one atomic ``renameat2(RENAME_EXCHANGE)`` on
Linux (two renames elsewhere), so the old results survive any failure up to that point.

::

    with atomic_output_dir("results/run1", force=args.force) as tmp:
        (tmp / "report.md").write_text(...)
    # results/run1 now holds report.md and the manifest; on error nothing was left behind
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import hashlib
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

__all__ = [
    "MANIFEST",
    "OutputExistsError",
    "output_problem",
    "check_output_dir",
    "atomic_output_dir",
    "replace_dir",
    "write_manifest",
    "foreign_files",
    "stale_temporaries",
    "clean_stale",
    "write_json",
    "current_umask",
    "sigterm_as_exit",
    "Terminated",
    "escape_markdown",
]

#: the file in each output directory listing what ntk-bayes wrote there
MANIFEST = ".ntk-bayes-manifest.json"
_SHOW = 5  # how many foreign files an error lists


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


# ---- manifest ------------------------------------------------------------------------
def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _walk(root: Path) -> list[str]:
    """Every entry below ``root`` (files, links, empty directories), relative, sorted."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel = Path(dirpath).relative_to(root)
        for d in dirnames:
            p = Path(dirpath) / d
            if p.is_symlink() or not _is_nonempty_dir(p):
                found.append(str(rel / d))
        found += [str(rel / f) for f in filenames]
    return sorted(f for f in found if f != MANIFEST)


def write_manifest(directory) -> Path:
    """List every file under ``directory`` (size and SHA-256) in its :data:`MANIFEST`."""
    from . import __version__

    directory = Path(directory)
    files = {}
    for rel in _walk(directory):
        p = directory / rel
        if p.is_symlink() or not p.is_file():
            continue  # never vouch for links or directories: they stay foreign
        files[rel] = {"size": p.stat().st_size, "sha256": _digest(p)}
    path = directory / MANIFEST
    path.write_text(
        json.dumps({"tool": "ntk-bayes", "version": __version__, "files": files}, indent=1)
    )
    return path


def foreign_files(directory) -> list[str] | None:
    """Entries of ``directory`` that its manifest does not vouch for (missing from it or
    changed since); ``None`` when there is no readable ntk-bayes manifest at all."""
    directory = Path(directory)
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
        listed = manifest["files"] if manifest.get("tool") == "ntk-bayes" else None
    except (OSError, ValueError, KeyError, AttributeError):
        return None
    if not isinstance(listed, dict):
        return None
    foreign = []
    for rel in _walk(directory):
        p, entry = directory / rel, listed.get(rel)
        if not isinstance(entry, dict) or p.is_symlink() or not p.is_file():
            foreign.append(rel)
        elif p.stat().st_size != entry.get("size") or _digest(p) != entry.get("sha256"):
            foreign.append(rel + " (changed since ntk-bayes wrote it)")
    return foreign


# ---- checks before any work ----------------------------------------------------------
def _first_existing(path: Path) -> Path:
    p = path
    while not p.exists() and p.parent != p:
        p = p.parent
    return p


def _not_writable(where: Path, prefix: str = ".ntk-bayes-probe-") -> str | None:
    """Try to create (and remove) a directory named ``prefix...`` in ``where``: the
    only test that also holds for root, read-only mounts, ACLs and name limits."""
    try:
        d = tempfile.mkdtemp(prefix=prefix, dir=where)
    except OSError as e:
        return e.strerror or type(e).__name__
    os.rmdir(d)
    return None


def _temp_prefix(out: Path) -> str:
    """The start of the name of ``out``'s temporary sibling (``tempfile.mkdtemp`` adds
    :data:`_TEMP_RANDOM` characters): one definition for the directory and its check."""
    return f".{out.name}.tmp-{os.getpid()}-"


_TEMP_RANDOM = 8  # characters tempfile.mkdtemp appends to the prefix
_PATH_ROOM = 64  # room under the temporary directory for the names of the files written there


def _shown(text: str, keep: int = 40) -> str:
    """``text`` shortened for an error message (a 300-character name is not read)."""
    return text if len(text) <= 2 * keep else f"{text[:keep]}...{text[-keep // 2 :]}"


def _too_long(out: Path) -> str | None:
    """Why a name that ``out`` needs (its missing directories, its own, the temporary
    sibling's) exceeds the filesystem's NAME_MAX or PATH_MAX; checked on the names,
    before anything is created, so a long ``--out`` fails now, not after the fitting."""
    where = out.parent
    while not os.path.exists(where) and where.parent != where:  # never raises
        where = where.parent
    try:
        name_max = os.pathconf(where, "PC_NAME_MAX")
        path_max = os.pathconf(where, "PC_PATH_MAX")
    except (OSError, ValueError, AttributeError):
        name_max, path_max = 255, 4096
    temp = _temp_prefix(out) + "X" * _TEMP_RANDOM
    missing = out.parent.relative_to(where).parts if out.parent != where else ()
    for name in (*missing, out.name):
        if len(os.fsencode(name)) > name_max:
            return (
                f"--out {_shown(str(out))}: the name {_shown(name)!r} has "
                f"{len(os.fsencode(name))} bytes, over this filesystem's limit of {name_max}; "
                "choose a shorter --out"
            )
    # the advice holds for any later run: process ids have up to 7 digits on Linux
    extra = len(os.fsencode(temp)) - len(os.fsencode(out.name))
    extra += max(0, 7 - len(str(os.getpid())))
    if len(os.fsencode(temp)) > name_max:
        return (
            f"--out {_shown(str(out))}: its last part has {len(os.fsencode(out.name))} bytes, "
            f"and the temporary directory the results are written to first, next to it "
            f"({_shown(temp)}), would have {len(os.fsencode(temp))}, over this filesystem's "
            f"limit of {name_max}; choose an --out whose last part has at most "
            f"{name_max - extra} bytes"
        )
    length = len(os.fsencode(str(out.parent / temp))) + _PATH_ROOM
    if length >= path_max:
        return (
            f"--out {_shown(str(out))}: the paths of the files written under it would "
            f"exceed this system's limit of {path_max} bytes; choose a shorter --out"
        )
    return None


def _inside(path: Path, directory: Path) -> bool:
    try:
        return path.resolve().is_relative_to(directory.resolve())
    except OSError:
        return False


def output_problem(out, force: bool, inputs: Iterable = ()) -> str | None:
    """Why ``out`` cannot receive a run's results, or ``None`` when it can.

    ``out`` may be missing, an empty directory, or, with ``force``, a directory that
    holds only the unchanged results of an earlier ntk-bayes run (its manifest decides);
    in every case the directory that will hold it must be writable (checked by creating
    a directory there, so an unwritable location fails now, not after the fitting). A
    file, a directory holding the working or home directory or one of ``inputs``, and
    any directory with files ntk-bayes did not write are refused whatever ``force`` says,
    and so is a name too long for the filesystem once the temporary directory's suffix is
    added (where the directory exists, that very temporary name is created and removed).
    """
    out = Path(out)
    try:
        return _output_problem(out, force, inputs)
    except OSError as e:  # a name the system refuses, a directory it cannot read, ...
        return f"--out {_shown(str(out))} cannot be used: {e.strerror or e}"


def _output_problem(out: Path, force: bool, inputs: Iterable) -> str | None:
    if out.name in ("", ".", ".."):
        return f"--out {str(out)!r} must name a directory (not '.', '..' or a root)"
    too_long = _too_long(out)
    if too_long is not None:
        return too_long
    if out.is_symlink():
        return f"--out {out} is a symbolic link; give the real directory"
    for f in inputs:
        if f is not None and _inside(Path(f), out):
            return (
                f"--out {out} contains the input {f}; write the results to another "
                "directory (ntk-bayes never replaces its inputs)"
            )
    if out.exists() and not out.is_dir():
        return f"--out {out} exists and is not a directory"
    if out.exists() and _is_nonempty_dir(out):
        if not force:
            return f"--out {out} already exists and is not empty; pass --force to replace it"
        resolved, cwd = out.resolve(), Path.cwd().resolve()
        if resolved in (Path.home().resolve(), Path(resolved.anchor)) or cwd.is_relative_to(
            resolved
        ):
            return f"--out {out} holds the working or home directory; refusing to replace it"
        foreign = foreign_files(out)
        if foreign is None:
            return (
                f"--out {out} is not an ntk-bayes output directory (it has no {MANIFEST}); "
                "--force only replaces ntk-bayes's own results, so choose a new --out or "
                "move its files away yourself"
            )
        if foreign:
            shown = ", ".join(foreign[:_SHOW]) + (" ..." if len(foreign) > _SHOW else "")
            return (
                f"--out {out} holds {len(foreign)} file(s) ntk-bayes did not write ({shown}); "
                "--force only replaces ntk-bayes's own results: move them away or choose "
                "a new --out"
            )
    where = _first_existing(out.parent)
    if not where.is_dir():
        return f"--out {out}: {where} is not a directory"
    # in the directory itself, the temporary sibling's real name: any limit shows now
    why = _not_writable(where, _temp_prefix(out) if where == out.parent else ".ntk-bayes-probe-")
    if why is not None:
        return f"--out {out} cannot be written: creating a directory in {where} failed ({why})"
    return None


def check_output_dir(out, force: bool, inputs: Iterable = ()) -> None:
    """Raise :class:`OutputExistsError` when :func:`output_problem` finds one."""
    problem = output_problem(out, force, inputs)
    if problem is not None:
        raise OutputExistsError(problem)


# ---- temporaries left by killed runs -------------------------------------------------
def _temp_pattern(out: Path) -> re.Pattern:
    return re.compile(rf"\.{re.escape(out.name)}\.(tmp|old)-(\d+)?-?[A-Za-z0-9_]+")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stale_temporaries(out) -> list[tuple[Path, int | None]]:
    """Temporary siblings of ``out`` whose run is gone: ``(path, pid)`` pairs, ``pid``
    ``None`` for names without one (written by older versions)."""
    out = Path(out)
    if not out.parent.is_dir():
        return []
    pattern, found = _temp_pattern(out), []
    for p in sorted(out.parent.iterdir()):
        m = pattern.fullmatch(p.name)
        if m is None or not p.is_dir() or p.is_symlink():
            continue
        pid = int(m.group(2)) if m.group(2) else None
        if pid is None or (pid != os.getpid() and not _alive(pid)):
            found.append((p, pid))
    return found


def _stderr(msg: str) -> None:
    print(f"ntk-bayes: {msg}", file=sys.stderr)


def clean_stale(out, log: Callable[[str], None] = _stderr) -> list[Path]:
    """Deal with what killed runs left next to ``out``, and say what was done.

    A temporary directory named with the id of a process that no longer exists is
    removed (it is ntk-bayes's by name and nobody is writing it). If ``out`` itself is
    missing and an ``.old-`` directory holds complete earlier results (a kill between
    the two renames of a replacement), those are put back. Nameless temporaries of older
    versions are only reported.

    Returns:
        The paths that were removed.
    """
    out = Path(out)
    removed = []
    for p, pid in stale_temporaries(out):
        if ".old-" in p.name and not out.exists() and foreign_files(p) == []:
            p.rename(out)
            log(f"restored the earlier results {out} from {p.name} (left by a killed run)")
        elif pid is None:
            log(
                f"{p} looks like the temporary directory of a killed run of an older "
                "ntk-bayes; delete it if no run is writing it"
            )
        else:
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
            log(f"removed {p.name}, left in {p.parent} by a killed run (process {pid})")
    return removed


# ---- the swap ------------------------------------------------------------------------
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux ``renameat2``); ``False`` when unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: the filesystem cannot; fall back
        return False
    raise OSError(err, os.strerror(err), str(a))


def _fault(point: str) -> None:
    """Fault injection for the tests: ``NTK_BAYES_FAULT=point:SIGNAL`` sends SIGNAL to
    this process at ``point`` (``tmp-created``, ``written``, ``manifest``, ``swapped``)."""
    spec = os.environ.get("NTK_BAYES_FAULT", "")
    if spec.partition(":")[0] == point:
        os.kill(os.getpid(), getattr(signal, spec.partition(":")[2] or "SIGKILL"))


def replace_dir(tmp, out, force: bool) -> None:
    """Move the finished directory ``tmp`` to ``out`` (replacing ``out`` with ``force``).

    The check is repeated here because the world may have changed while the run
    computed. Replacing swaps the directories atomically where the system can, else
    renames the old directory aside first and restores it if the second rename fails.
    """
    tmp, out = Path(tmp), Path(out)
    check_output_dir(out, force)
    if not out.exists():
        tmp.rename(out)
        return
    if _exchange(tmp, out):  # tmp now holds the old results
        _fault("swapped")
        shutil.rmtree(tmp, ignore_errors=True)
        return
    old = out.parent / f".{out.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    out.rename(old)
    try:
        tmp.rename(out)
    except BaseException:
        old.rename(out)
        raise
    _fault("swapped")
    shutil.rmtree(old, ignore_errors=True)


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
def atomic_output_dir(
    out: str | os.PathLike[str], *, force: bool = False, log: Callable[[str], None] = _stderr
) -> Iterator[Path]:
    """Yield a temporary directory that becomes ``out`` when the block succeeds.

    Temporaries of killed earlier runs next to ``out`` are cleaned first
    (:func:`clean_stale`, reported through ``log``); a :data:`MANIFEST` of the files the
    block wrote is added before the swap.

    Args:
        out: the output directory.
        force: replace an existing ``out`` that holds only ntk-bayes's own results.
        log: receives one line per stale temporary found.

    Raises:
        OutputExistsError: before the block runs, when ``out`` cannot be used
            (and again at the end if it changed meanwhile).
    """
    out = Path(out)
    clean_stale(out, log)
    check_output_dir(out, force)
    created = _missing_parents(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(out), dir=out.parent))
    try:
        _fault("tmp-created")
        tmp.chmod(0o777 & ~current_umask())  # mkdtemp makes it private; results should not be
        yield tmp
        _fault("written")
        write_manifest(tmp).chmod(0o666 & ~current_umask())
        _fault("manifest")
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


class Terminated(SystemExit):
    """SIGTERM arrived inside :func:`sigterm_as_exit`: a ``SystemExit(143)`` that the
    command recognises, so it can say what was (not) written, as for Ctrl-C."""


@contextlib.contextmanager
def sigterm_as_exit() -> Iterator[None]:
    """Turn SIGTERM into :class:`Terminated` (a ``SystemExit(143)``) inside the block, so
    cleanup handlers run.

    Only installed from the main thread (elsewhere signals cannot be handled); the
    previous handler is restored on exit.
    """
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Terminated(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+!|<>~^$])")


def escape_markdown(text) -> str:
    """``text`` made inert in Markdown and HTML: a column name or file name from the
    user's data shows as written, never as a link, table cell, heading or tag.

    Backslash-escapes Markdown's punctuation (``|`` included, so a table keeps its
    columns), writes ``<``, ``>`` and ``&`` as HTML entities, turns line breaks into
    spaces and defuses a leading ``=``, ``+``, ``-`` or ``@`` (a formula when the
    table is pasted into a spreadsheet).
    """
    s = " ".join(str(text).splitlines())
    s = s.replace("&", "&amp;")
    s = _MD_SPECIAL.sub(lambda m: {"<": "&lt;", ">": "&gt;"}.get(m[1], "\\" + m[1]), s)
    if s[:1] in ("=", "+", "-", "@"):
        s = "\\" + s
    return s
