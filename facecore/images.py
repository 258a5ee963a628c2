"""Image files: guarded decoding (size limits read from the header before any pixel is decoded, EXIF
orientation applied), JPEG encoding and image sizes. Pixels are RGB uint8 (H, W, 3) throughout.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import ImageReadError

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")

# Decoding limits (README "Limits"): the size is read from the header before any pixel is decoded,
# so a 300 KB PNG declaring 50000x50000 costs nothing. 50 MP covers every phone camera's default mode.
MAX_IMAGE_PIXELS = 50_000_000
MAX_IMAGE_SIDE = 20_000
MAX_IMAGE_FILE_BYTES = 64 * 1024**2

# Our own limit is lower than Pillow's bomb check, whose warning would only be noise.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


@dataclass(frozen=True)
class ImageHeader:
    """What an image file's header declares, read without decoding a pixel.

    ``width``/``height``: as shown (after the EXIF orientation, as ``decode_image`` returns it);
    ``raw_width``/``raw_height``: as stored; ``orientation``: the EXIF tag (1 = none, 5..8 swap the sides).
    """

    width: int
    height: int
    raw_width: int
    raw_height: int
    orientation: int = 1


def image_header(data: bytes, name: str = "image") -> ImageHeader:
    """Read the declared size of encoded image bytes and refuse it, before any decoding, when it is
    past ``MAX_IMAGE_PIXELS`` or ``MAX_IMAGE_SIDE`` (decompression bombs). Raises ImageReadError."""
    if len(data) > MAX_IMAGE_FILE_BYTES:
        raise ImageReadError(f"{name}: {len(data) / 1e6:.0f} MB is over the {MAX_IMAGE_FILE_BYTES // 1024**2} MB "
                             "limit per image file")
    try:
        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
            try:
                orientation = int(im.getexif().get(0x0112, 1) or 1)
            except Exception:  # noqa: BLE001  a broken EXIF block only loses the orientation
                orientation = 1
    except Image.DecompressionBombError:
        raise ImageReadError(f"{name}: declares far more than the {MAX_IMAGE_PIXELS / 1e6:.0f} megapixel limit "
                             "(a decompression bomb?); use a smaller image") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ImageReadError(f"{name}: not a readable image (corrupt file or unsupported format; "
                             f"use jpg, png or webp)") from exc
    if w <= 0 or h <= 0:
        raise ImageReadError(f"{name}: declares an empty image ({w}x{h})")
    if w * h > MAX_IMAGE_PIXELS or max(w, h) > MAX_IMAGE_SIDE:
        raise ImageReadError(f"{name}: {w}x{h} pixels is over the limit of {MAX_IMAGE_PIXELS / 1e6:.0f} megapixels "
                             f"and {MAX_IMAGE_SIDE} pixels per side; resize it and try again")
    if orientation not in range(1, 9):
        orientation = 1
    sw, sh = (h, w) if orientation >= 5 else (w, h)
    return ImageHeader(sw, sh, w, h, orientation)


def decode_image(data: bytes, name: str = "image") -> np.ndarray:
    """Decode encoded image bytes (jpg/png/webp/bmp) to an RGB uint8 array of shape (H, W, 3),
    turned by its EXIF orientation. The size the header declares is checked first (``image_header``).

    Raises ImageReadError naming ``name`` when the bytes are not a readable image or are too large.
    """
    head = image_header(data, name)
    arr = np.frombuffer(data, dtype=np.uint8)
    try:
        # orientation applied below from the header, the same way for every format
        img = cv2.imdecode(arr, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION) if arr.size else None
    except cv2.error as exc:
        raise ImageReadError(f"{name}: could not be decoded ({str(exc).strip().splitlines()[-1][:200]})") from None
    if img is None or img.size == 0:
        raise ImageReadError(f"{name}: not a readable image (corrupt file or unsupported format; use jpg, png or webp)")
    return np.ascontiguousarray(apply_orientation(cv2.cvtColor(img, cv2.COLOR_BGR2RGB), head.orientation))


def apply_orientation(img: np.ndarray, orientation: int) -> np.ndarray:
    """Turn stored pixels the way EXIF ``orientation`` (1..8) says they are meant to be shown."""
    if orientation == 2:
        return img[:, ::-1]
    if orientation == 3:
        return img[::-1, ::-1]
    if orientation == 4:
        return img[::-1]
    if orientation == 5:
        return img.transpose(1, 0, 2)
    if orientation == 6:
        return img.transpose(1, 0, 2)[:, ::-1]
    if orientation == 7:
        return img.transpose(1, 0, 2)[::-1, ::-1]
    if orientation == 8:
        return img.transpose(1, 0, 2)[::-1]
    return img


def read_image_bytes(path: str | os.PathLike) -> bytes:
    """The bytes of an image file, refusing files over ``MAX_IMAGE_FILE_BYTES`` before reading them."""
    path = Path(path)
    try:
        if not path.is_file():  # a folder, or a link to /dev/zero or a pipe, which would read forever
            raise ImageReadError(f"{path}: not a regular file")
        size = path.stat().st_size
        if size > MAX_IMAGE_FILE_BYTES:
            raise ImageReadError(f"{path}: {size / 1e6:.0f} MB is over the {MAX_IMAGE_FILE_BYTES // 1024**2} MB "
                                 "limit per image file")
        return path.read_bytes()
    except OSError as exc:
        raise ImageReadError(f"{path}: cannot read the file ({exc.strerror or exc})") from exc


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as RGB uint8, shape (H, W, 3), within the pixel limits. Raises ImageReadError."""
    return decode_image(read_image_bytes(path), str(path))


def read_image_header(path: str | os.PathLike) -> ImageHeader:
    """``image_header`` of an image file (reads the file, decodes nothing). Raises ImageReadError."""
    return image_header(read_image_bytes(path), str(path))


def encode_jpeg(rgb: np.ndarray, quality: int = 95) -> bytes:
    """Encode an RGB uint8 image (H, W, 3) as JPEG bytes."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ImageReadError("could not encode the image as JPEG")
    return buf.tobytes()


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) of an image file as shown (EXIF orientation applied), from its header. Raises ImageReadError."""
    h = read_image_header(path)
    return h.width, h.height
