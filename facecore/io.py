"""Atomic file writes and image decoding shared by facecore."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from .errors import ImageReadError

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Read once at import: os.umask can only be read by setting it, which is not thread-safe later on.
_UMASK = _read_umask()


def publish(path: str | os.PathLike) -> None:
    """Give a file or folder made by mkstemp/mkdtemp (private, 0600/0700) the usual permissions."""
    os.chmod(path, (0o777 if os.path.isdir(path) else 0o666) & ~_UMASK)


def replace_dir(out_dir: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Atomically create or replace folder ``out_dir``: ``write(tmp)`` fills a temporary sibling folder,
    which is then renamed into place, so a reader never sees half of it (e.g. a model being saved).

    The temporary and replaced folders are dot-named, so listings that skip dot-names ignore them.
    """
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        write(tmp)
        for p in [*tmp.rglob("*"), tmp]:
            publish(p)
        old = None
        if out.exists():
            old = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:8]}")
            os.replace(out, old)
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` so readers see the old file or the new one, never half of one.

    The bytes go to a temporary file in the same folder, are flushed to disk, then renamed
    over ``path`` (``os.replace`` is atomic on POSIX and Windows).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        publish(tmp)
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


def decode_image(data: bytes, name: str = "image") -> np.ndarray:
    """Decode encoded image bytes (jpg/png/webp/bmp) to an RGB uint8 array of shape (H, W, 3).

    Raises ImageReadError naming ``name`` when the bytes are not a readable image.
    """
    arr = np.frombuffer(data, dtype=np.uint8)
    img = cv2.imdecode(arr, cv2.IMREAD_COLOR) if arr.size else None
    if img is None or img.size == 0:
        raise ImageReadError(f"{name}: not a readable image (corrupt file or unsupported format; use jpg, png or webp)")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as RGB uint8, shape (H, W, 3). Raises ImageReadError."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageReadError(f"{path}: cannot read the file ({exc.strerror or exc})") from exc
    return decode_image(data, str(path))


def encode_jpeg(rgb: np.ndarray, quality: int = 95) -> bytes:
    """Encode an RGB uint8 image (H, W, 3) as JPEG bytes."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ImageReadError("could not encode the image as JPEG")
    return buf.tobytes()


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) of an image file, decoding it. Raises ImageReadError."""
    img = read_image(path)
    return img.shape[1], img.shape[0]
