"""What a photo holds, as an address: the same photo is found again whatever its file name.

Every image file gets a ``Fingerprint``: the SHA-256 of its bytes, the SHA-256 of its decoded pixels (the
same photo re-saved losslessly, or with other metadata) and a 16x16 grey thumbnail, which finds *near*
duplicates (the same picture re-encoded or resized: ``near_duplicate``). ``ContentIndex`` holds the
fingerprints of a folder of images; ``facecore.datasets.dataset`` refuses to add a photo that is already there
(``DuplicateImageError``), ``facecore.datasets.splits`` keeps identical photos in one split, ``facecore.identity.data``
does the same for face crops.

Fingerprints are cached per file (path, size, modification time) in the process and in a small JSON file
beside the images (``CACHE_FILE``; a cache only: it may be missing, stale or unwritable), so each photo is
decoded once.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..errors import DatasetError, ImageReadError
from ..images import IMAGE_EXTS, decode_image, read_image_bytes
from ..io import atomic_write_text

CACHE_FILE = ".contents.json"
THUMB = 16  # side of the grey thumbnail near duplicates are compared on
# A re-encoded (JPEG quality 40) or resized copy of a photo stays within these of the original on the
# 16x16 thumbnail (measured on data/sample: mean <= 0.7, 95th percentile <= 3 grey levels of 255); two
# different synthetic faces differ by >= 3.2 on average. Webcam bursts of a still person can fall
# inside too: a near duplicate is flagged for a look, never refused.
NEAR_MEAN, NEAR_P95 = 1.0, 3.0


class DuplicateImageError(DatasetError):
    """A photo whose bytes or pixels are already in the dataset (or identity): ``name`` the new file,
    ``existing`` the file already there, ``how`` ``"same bytes"`` or ``"same pixels"``."""

    def __init__(self, name: str, existing: str, how: str):
        super().__init__(f"{name}: already there as {existing} ({how}); skipped")
        self.name, self.existing, self.how = name, existing, how


@dataclass(frozen=True)
class Fingerprint:
    """``sha``: of the file bytes; ``pixels``: of the decoded RGB pixels and their shape; ``thumb``: 16x16
    grey thumbnail, uint8 bytes (256)."""

    sha: str
    pixels: str
    thumb: bytes

    def to_json(self) -> list:
        return [self.sha, self.pixels, base64.b64encode(self.thumb).decode()]

    @classmethod
    def from_json(cls, v) -> "Fingerprint":
        sha, pixels, thumb = v
        t = base64.b64decode(thumb)
        if not (isinstance(sha, str) and isinstance(pixels, str) and len(t) == THUMB * THUMB):
            raise ValueError("bad fingerprint")
        return cls(sha, pixels, t)


def fingerprint(data: bytes, rgb: np.ndarray | None = None, name: str = "image") -> Fingerprint:
    """The fingerprint of encoded image ``data`` (``rgb``: its decoded pixels, when the caller has them).
    Raises ImageReadError for bytes that are not an image."""
    if rgb is None:
        rgb = decode_image(data, name)
    rgb = np.ascontiguousarray(rgb)
    pix = hashlib.sha256(f"{rgb.shape}".encode())
    pix.update(rgb.tobytes())
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    thumb = cv2.resize(grey, (THUMB, THUMB), interpolation=cv2.INTER_AREA)
    return Fingerprint(hashlib.sha256(data).hexdigest(), pix.hexdigest(), thumb.astype(np.uint8).tobytes())


def near(a: Fingerprint, b: Fingerprint) -> bool:
    """True when ``a`` and ``b`` look like the same picture (re-encoded or resized): see ``NEAR_MEAN``."""
    d = np.abs(np.frombuffer(a.thumb, np.uint8).astype(np.int16) - np.frombuffer(b.thumb, np.uint8))
    return float(d.mean()) <= NEAR_MEAN and float(np.percentile(d, 95)) <= NEAR_P95


_CACHE: dict[tuple, Fingerprint] = {}  # (path, size, mtime_ns) -> fingerprint, for this process
_LOCK = threading.Lock()


def _key(path: Path) -> tuple:
    st = path.stat()
    return (str(path), st.st_size, st.st_mtime_ns)


def file_fingerprint(path: str | os.PathLike) -> Fingerprint:
    """The fingerprint of an image file (cached while its size and modification time stay). Raises
    ImageReadError."""
    path = Path(path)
    try:
        key = _key(path)
    except OSError as exc:
        raise ImageReadError(f"{path}: cannot read the file ({exc.strerror or exc})") from exc
    with _LOCK:
        hit = _CACHE.get(key)
    if hit is None:
        hit = fingerprint(read_image_bytes(path), name=str(path))
        with _LOCK:
            _CACHE[key] = hit
    return hit


def remember(path: Path, fp: Fingerprint) -> None:
    """Cache ``fp`` for the file just written at ``path`` (its bytes were fingerprinted before)."""
    try:
        key = _key(path)
    except OSError:
        return
    with _LOCK:
        _CACHE[key] = fp


class ContentIndex:
    """Fingerprints of the images in one folder by file name, and lookups by content.

    ``ContentIndex.of(folder, cache_file)`` reads every image (through the caches); ``add`` records a new
    one. Unreadable images are left out (``validate`` names them).
    """

    def __init__(self, prints: dict[str, Fingerprint]):
        self.prints = dict(prints)
        self._by_sha = {fp.sha: n for n, fp in sorted(self.prints.items(), reverse=True)}
        self._by_pix = {fp.pixels: n for n, fp in sorted(self.prints.items(), reverse=True)}

    @classmethod
    def of(cls, folder: str | os.PathLike, cache_file: str | os.PathLike | None = None,
           names: list[str] | None = None) -> "ContentIndex":
        """The index of the images in ``folder`` (``names``: only these files). ``cache_file``: a JSON
        cache of fingerprints by file name, read first and rewritten when something new was computed."""
        folder = Path(folder)
        if names is None:
            names = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS
                           and not p.name.startswith(".") and p.is_file()) if folder.is_dir() else []
        stored = _read_cache(cache_file)
        prints, changed = {}, False
        for name in names:
            path = folder / name
            try:
                st = path.stat()
                entry = stored.get(name)
                if entry and entry[0] == st.st_size and entry[1] == st.st_mtime_ns:
                    fp = Fingerprint.from_json(entry[2])
                    remember(path, fp)
                else:
                    fp, changed = file_fingerprint(path), True
            except (ImageReadError, OSError, ValueError, TypeError, IndexError):
                continue
            prints[name] = fp
        if cache_file is not None and (changed or set(stored) - set(prints)):
            _write_cache(cache_file, folder, prints)
        return cls(prints)

    def find(self, fp: Fingerprint) -> tuple[str, str] | None:
        """``(file name, "same bytes" | "same pixels")`` of an image already holding ``fp``'s photo, or None."""
        if fp.sha in self._by_sha:
            return self._by_sha[fp.sha], "same bytes"
        if fp.pixels in self._by_pix:
            return self._by_pix[fp.pixels], "same pixels"
        return None

    def add(self, name: str, fp: Fingerprint) -> None:
        self.prints[name] = fp
        self._by_sha.setdefault(fp.sha, name)
        self._by_pix.setdefault(fp.pixels, name)

    def groups(self, near_too: bool = False) -> dict[str, str]:
        """File name -> the first file name (sorted) of its group of identical photos (same bytes or
        pixels; with ``near_too`` near duplicates as well). A photo alone is its own group."""
        parent = {n: n for n in self.prints}

        def root(n):
            while parent[n] != n:
                parent[n] = parent[parent[n]]
                n = parent[n]
            return n

        def join(a, b):
            ra, rb = root(a), root(b)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)

        for key in ("sha", "pixels"):
            first: dict[str, str] = {}
            for n in sorted(self.prints):
                v = getattr(self.prints[n], key)
                join(first.setdefault(v, n), n)
        if near_too:
            for a, b in self.near_pairs():
                join(a, b)
        return {n: root(n) for n in self.prints}

    def near_pairs(self) -> list[tuple[str, str]]:
        """Pairs ``(a, b)`` (a < b) of different files that look like the same picture (``near``) without
        being identical."""
        names = sorted(self.prints)
        if len(names) < 2:
            return []
        t = np.stack([np.frombuffer(self.prints[n].thumb, np.uint8) for n in names]).astype(np.int16)
        out = []
        for i in range(len(names) - 1):
            d = np.abs(t[i + 1:] - t[i])
            for j in np.flatnonzero(d.mean(axis=1) <= NEAR_MEAN):
                b = names[i + 1 + j]
                a_fp, b_fp = self.prints[names[i]], self.prints[b]
                if (a_fp.sha != b_fp.sha and a_fp.pixels != b_fp.pixels
                        and float(np.percentile(d[j], 95)) <= NEAR_P95):
                    out.append((names[i], b))
        return out


def _read_cache(cache_file) -> dict:
    if cache_file is None:
        return {}
    try:
        doc = json.loads(Path(cache_file).read_text("utf-8"))
        return doc if isinstance(doc, dict) else {}
    except (OSError, ValueError, RecursionError):
        return {}


def _write_cache(cache_file, folder: Path, prints: dict[str, Fingerprint]) -> None:
    doc = {}
    for name, fp in prints.items():
        try:
            st = (folder / name).stat()
        except OSError:
            continue
        doc[name] = [st.st_size, st.st_mtime_ns, fp.to_json()]
    try:
        atomic_write_text(cache_file, json.dumps(doc))
    except OSError:  # a read-only dataset (the shipped sample): the cache is only a cache
        pass
