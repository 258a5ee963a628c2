"""Atomic file writes, folder swaps and their recovery, storage-error messages.

Image decoding lives in ``facecore.images``.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

from .errors import FaceCoreError, StorageError


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Read once at import: os.umask can only be read by setting it, which is not thread-safe later on.
_UMASK = _read_umask()


def publish(path: str | os.PathLike) -> None:
    """Give a file or folder made by mkstemp/mkdtemp (private, 0600/0700) the usual permissions."""
    os.chmod(path, (0o777 if os.path.isdir(path) else 0o666) & ~_UMASK)


def write_durable(fd: int, tmp: str, data: bytes) -> None:
    """Write ``data`` to the mkstemp file ``fd``/``tmp``, on disk (fsynced) and closed, with the usual
    permissions: ready to be renamed into place."""
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    publish(tmp)


# -- storage errors ------------------------------------------------------------------------------
_ERRNO_TEXT = {
    errno.EROFS: ("the folder is read-only", "make it writable or choose another folder"),
    errno.EACCES: ("permission denied", "make the folder writable or choose another folder"),
    errno.EPERM: ("permission denied", "make the folder writable or choose another folder"),
    errno.ENOSPC: ("the disk is full", "free some space and try again"),
    errno.EDQUOT: ("the disk quota is used up", "free some space and try again"),
    errno.ENAMETOOLONG: ("the file name is too long", "rename the file to something shorter"),
    errno.ENOTDIR: ("a part of the path is a file, not a folder", "choose another path"),
    errno.EISDIR: ("the path is a folder, not a file", "choose a file name"),
    errno.ENOENT: ("the file or folder does not exist", "check the path"),
    errno.EEXIST: ("something with that name already exists", "choose another name"),
}


def storage_message(exc: OSError, what: str) -> str:
    """A sentence for people from an ``OSError`` met while trying to ``what`` (e.g. "save the label")."""
    reason, advice = _ERRNO_TEXT.get(exc.errno, (exc.strerror or str(exc) or type(exc).__name__, "try again"))
    where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
    return f"could not {what}: {reason}{where}; {advice}"


@contextmanager
def storage_errors(what: str):
    """Turn an ``OSError`` inside the block into a ``StorageError`` saying what failed and why."""
    try:
        yield
    except FaceCoreError:
        raise
    except OSError as exc:
        raise StorageError(storage_message(exc, what)) from exc


def check_parents(path: str | os.PathLike) -> Path:
    """Refuse (StorageError) a path whose nearest existing ancestor is a file: ``mkdir(parents=True)``
    would only say "File exists" about it."""
    path = Path(path)
    for parent in path.parents:
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                raise StorageError(f"could not write {path}: {parent} is a file, not a folder; choose another path")
            break
    return path


# -- folder swaps and their leftovers ------------------------------------------------------------
# A save writes ``.<name>.tmp-<pid>-<hex>``, renames it ``.<name>.new-<tag>`` once complete, moves the
# current folder aside to ``.<name>.old-<tag>`` and renames the new one into place. A process killed
# between those renames leaves no ``<name>``; ``recover_dir`` finishes (from ``.new``) or undoes
# (from ``.old``) the swap. Names without a pid come from older versions (``.old-<hex>``, mkdtemp ``.tmp-``).
# greedy name, dot-free tag: a model called "a.new-1" still groups its ".a.new-1.tmp-<tag>" under "a.new-1"
_SWAP_RE = re.compile(r"^\.(?P<name>.+)\.(?P<kind>tmp|new|old)-(?P<tag>[A-Za-z0-9_-]+)$")
_PID_TAG_RE = re.compile(r"^(?P<pid>\d+)-[0-9a-f]{8}$")
_FILE_LEFTOVER_RE = re.compile(r"^\.(?:upload\..*|.+\.tmp|.+\.part\.mp4|.+\.check)$")
_NAME_ROOM = 80  # hidden names stay below the 255-byte limit of most file systems
STALE_AFTER_S = 3600  # a leftover without a pid (older versions, mkstemp files) is stale after this


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid() or os.name == "nt":
        # this process: another thread may be saving right now. Windows: os.kill(pid, 0) would
        # terminate the process, so leftovers there only go by age.
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def _age_s(p: Path) -> float:
    try:
        return time.time() - p.lstat().st_mtime
    except OSError:
        return 0.0


def _stale(p: Path, pid: int | None) -> bool:
    """A leftover nobody is writing any more: its process is gone, or (no pid) it is old."""
    if pid is not None:
        return not _pid_alive(pid) or _age_s(p) > 24 * 3600
    return _age_s(p) > STALE_AFTER_S


def _complete(p: Path) -> bool:
    """Whether a leftover folder of an older version (no ``.new`` stage) holds a finished save."""
    return (p / "meta.json").is_file() or ((p / "images").is_dir() and (p / "labels").is_dir())


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        try:
            p.unlink()
        except OSError:
            pass


def recover_swaps(parent: str | os.PathLike) -> list[str]:
    """Repair every folder swap under ``parent`` that a killed save left half done, and delete stale
    ``.tmp``/``.new``/``.old`` folders and ``.upload``/``.tmp``/``.part`` files. Returns the names
    restored or finished. Never raises: a read-only folder is left as it is."""
    parent = Path(parent)
    groups: dict[str, list[tuple[str, Path, int | None]]] = {}
    try:
        entries = list(parent.iterdir())
    except OSError:
        return []
    for p in entries:
        m = _SWAP_RE.match(p.name)
        if m and p.is_dir():
            t = _PID_TAG_RE.match(m["tag"])
            groups.setdefault(m["name"], []).append((m["kind"], p, int(t["pid"]) if t else None))
        elif _FILE_LEFTOVER_RE.match(p.name) and p.is_file() and _stale(p, _pid_in(p.name)):
            _remove(p)
    fixed = []
    for short, found in groups.items():
        if _recover_group(parent, short, found):
            fixed.append(short)
    return fixed


def _pid_in(name: str) -> int | None:
    m = re.search(r"\.(\d+)-", name)
    return int(m.group(1)) if m else None


def _recover_group(parent: Path, short: str, found) -> bool:
    # the target's full name: the one folder whose clipped name matches, else the clipped name itself
    out = next((p for p in parent.iterdir() if not p.name.startswith(".") and p.name[:_NAME_ROOM] == short),
               parent / short)
    restored = False
    try:
        if not out.exists():
            done = [(k, p) for k, p, pid in found
                    if (pid is None or not _pid_alive(pid)) and (k == "new" or (k == "tmp" and pid is None and _complete(p)))]
            olds = [(k, p) for k, p, pid in found if k == "old" and (pid is None or not _pid_alive(pid))]
            pick = max(done or olds, key=lambda kp: kp[1].stat().st_mtime_ns, default=None)
            if pick is not None and (done or olds):
                os.replace(pick[1], out)
                restored = True
                found = [f for f in found if f[1] != pick[1]]
        for kind, p, pid in found:
            if p.exists() and (_stale(p, pid) or (kind == "old" and out.exists() and pid is None)):
                _remove(p)
    except OSError:
        pass
    return restored


def recover_dir(out_dir: str | os.PathLike) -> bool:
    """``recover_swaps`` for the parent of ``out_dir``; True when ``out_dir`` was restored or finished."""
    out = Path(out_dir)
    return out.name[:_NAME_ROOM] in recover_swaps(out.parent)


def replace_dir(out_dir: str | os.PathLike, write: Callable[[Path], None],
                check: Callable[[Path], object] | None = None) -> Path:
    """Atomically create or replace folder ``out_dir``: ``write(tmp)`` fills a temporary sibling folder,
    which is then renamed into place, so a reader never sees half of it (e.g. a model being saved).

    The temporary and replaced folders are dot-named, so listings that skip dot-names ignore them;
    a save killed half way is finished or undone by ``recover_dir`` (called on listing and loading).
    ``check(out_dir)`` runs again right before the swap and may raise to refuse replacing what is
    there now (e.g. ``facecore.meta.check_model_dir``). An ``OSError`` (read-only folder, full disk) becomes a ``StorageError``.
    """
    out = Path(out_dir)
    with storage_errors(f"save {out}"):
        check_parents(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        recover_dir(out)
        tag = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        short = out.name[:_NAME_ROOM]
        tmp: Path | None = out.with_name(f".{short}.tmp-{tag}")
        tmp.mkdir()
        old = None
        try:
            write(tmp)
            for p in [*tmp.rglob("*"), tmp]:
                publish(p)
            new = out.with_name(f".{short}.new-{tag}")
            os.replace(tmp, new)  # complete from here on: a recovery may finish the swap with it
            tmp = new
            if check is not None:
                check(out)
            if out.exists():
                old = out.with_name(f".{short}.old-{tag}")
                os.replace(out, old)
            os.replace(new, out)
            tmp = None
        except BaseException:
            if old is not None and not out.exists():
                os.replace(old, out)  # put the previous folder back
                old = None
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
            raise
        finally:
            if old is not None and tmp is None:
                shutil.rmtree(old, ignore_errors=True)
    return out


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` so readers see the old file or the new one, never half of one.

    The bytes go to a temporary file in the same folder, are flushed to disk, then renamed
    over ``path`` (``os.replace`` is atomic on POSIX and Windows). An ``OSError`` (read-only
    folder, full disk, name too long) becomes a ``StorageError`` naming ``path``.
    """
    path = Path(path)
    with storage_errors(f"write {path}"):
        check_parents(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_dir():
            raise StorageError(f"could not write {path}: it is a folder; choose a file name")
        # a short temporary name: ".<long name>.<random>.tmp" would pass the 255-byte limit first
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name[:_NAME_ROOM]}.{os.getpid()}-", suffix=".tmp", dir=path.parent)
        try:
            write_durable(fd, tmp, data)
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """``atomic_write_bytes`` for UTF-8 text."""
    return atomic_write_bytes(path, text.encode("utf-8"))
