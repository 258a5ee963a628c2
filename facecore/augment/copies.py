"""Derived copies in a dataset's ``augmented/`` folder, shared by augmentation and mosaics: what a run
did (``CopyReport``), one writer at a time (``DatasetLock``), when a photo's copies are stale
(``source_signature``), and writing and removing one copy.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..datasets.dataset import Dataset
from ..errors import BusyError
from ..io import storage_errors
from ..datasets.labels import LABEL_EXTS

LOCK_FILE = ".augment.lock"


@dataclass
class CopyReport:
    """What a run that writes derived copies into ``augmented/`` did (augmentation, mosaics).
    ``failed`` holds ``(source stem, reason)``."""

    total: int = 0          # copies wanted
    written: int = 0
    skipped: int = 0        # already on disk from an earlier (interrupted) run
    removed: int = 0        # stale copies deleted (sources no longer in train, or another config)
    failed: list[tuple[str, str]] = field(default_factory=list)
    cancelled: bool = False
    seconds: float = 0.0

    @property
    def done(self) -> int:
        return self.written + self.skipped


def write_fast(path: Path, data: bytes) -> None:
    """Write one copy's file so that readers and resumes never see half of it (temp file + rename)."""
    # No fsync: copies are derived data, regenerated exactly from their seed, and an fsync per file
    # would cost more than augmenting it.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def source_signature(item) -> str:
    """Changes when the photo or its label changes, so its copies are made again."""
    h = hashlib.sha256()
    st = item.image.stat()
    h.update(f"{item.image.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    if item.label is not None:
        h.update(item.label.read_bytes())
    return h.hexdigest()[:16]


class DatasetLock:
    """An exclusive, non-blocking lock on one dataset's augmented copies, across processes and threads
    (``flock`` on a file of its own open: the kernel drops it when the holder dies, even by SIGKILL).
    Two runs with different settings would otherwise write copies under each other's manifest."""

    def __init__(self, folder: Path):
        self.path = folder / LOCK_FILE
        self._fh = None

    def __enter__(self):
        try:
            import fcntl
        except ImportError:  # Windows: no cross-process lock; the page still runs one job per dataset
            return self
        with storage_errors(f"lock {self.path.parent}"):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fh = open(self.path, "a+b")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            raise BusyError(f"{self.path.parent.parent.name}: another augmentation of this dataset is running "
                            "(on the Augment page or the command line); wait for it to finish or stop it") from None
        self._fh = fh
        return self

    def __exit__(self, *exc):
        if self._fh is not None:
            self._fh.close()  # closing releases the lock
            self._fh = None


def remove_copy(out: Dataset, stem: str) -> None:
    """Delete copy ``stem`` of the augmented dataset ``out``: its image and its label in any format."""
    (out.images_dir / f"{stem}.jpg").unlink(missing_ok=True)
    for ext in LABEL_EXTS:
        (out.labels_dir / f"{stem}{ext}").unlink(missing_ok=True)

