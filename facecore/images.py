"""Image files: guarded decoding (size limits read from the header before any pixel is decoded, EXIF
orientation applied), JPEG encoding and image sizes. Pixels are RGB uint8 (H, W, 3) throughout.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import DamagedImageError, ImageReadError

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
            _check_size(name, w, h)
            orientation = _orientation(im)
    except Image.DecompressionBombError:
        raise ImageReadError(f"{name}: declares far more than the {MAX_IMAGE_PIXELS / 1e6:.0f} megapixel limit "
                             "(a decompression bomb?); use a smaller image") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ImageReadError(f"{name}: not a readable image (corrupt file or unsupported format; "
                             f"use jpg, png or webp)") from exc
    sw, sh = (h, w) if orientation >= 5 else (w, h)
    return ImageHeader(sw, sh, w, h, orientation)


def _check_size(name: str, w: int, h: int) -> None:
    if w <= 0 or h <= 0:
        raise ImageReadError(f"{name}: declares an empty image ({w}x{h})")
    if w * h > MAX_IMAGE_PIXELS or max(w, h) > MAX_IMAGE_SIDE:
        raise ImageReadError(f"{name}: {w}x{h} pixels is over the limit of {MAX_IMAGE_PIXELS / 1e6:.0f} megapixels "
                             f"and {MAX_IMAGE_SIDE} pixels per side; resize it and try again")


def _orientation(im: Image.Image) -> int:
    """The EXIF orientation (1..8) of an opened image, without decoding it: a PNG's eXIf chunk is read
    when it comes before the pixel data (Pillow would decode the whole image to look for one after)."""
    if im.format == "PNG" and "exif" not in im.info:
        return 1
    try:
        orientation = int(im.getexif().get(0x0112, 1) or 1)
    except Exception:  # noqa: BLE001  a broken EXIF block only loses the orientation
        return 1
    return orientation if orientation in range(1, 9) else 1


def decode_image(data: bytes, name: str = "image") -> np.ndarray:
    """Decode encoded image bytes (jpg/png/webp/bmp) to an RGB uint8 array of shape (H, W, 3),
    turned by its EXIF orientation. The size the header declares is checked first (``image_header``),
    and a PNG's chunk structure (``check_png``) before any decoder allocates for it.

    Raises ImageReadError naming ``name`` when the bytes are not a readable image or are too large;
    DamagedImageError (a subclass) when a JPEG or PNG is corrupt or cut short, which other decoders
    would show as garbage or a part of the picture.
    """
    head = image_header(data, name)
    png = _png_chunks(data, name) if data[:8] == _PNG_SIGNATURE else None
    img = _decode_jpeg(data, name) if data[:3] == b"\xff\xd8\xff" else None
    if img is None:
        try:
            img = _decode_opencv(data, name)
        except ImageReadError:
            if png is not None:  # name the damage when it is in the pixel data (inflating it again costs time)
                _check_png_pixels(*png, name)
            raise
    if img.shape[:2] != (head.raw_height, head.raw_width):
        raise _damaged(name, f"it decodes to {img.shape[1]}x{img.shape[0]} pixels though its header declares "
                             f"{head.raw_width}x{head.raw_height}")
    return np.ascontiguousarray(apply_orientation(img, head.orientation))


def _decode_opencv(data: bytes, name: str) -> np.ndarray:
    arr = np.frombuffer(data, dtype=np.uint8)
    try:
        # orientation applied by the caller from the header, the same way for every format
        img = cv2.imdecode(arr, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION) if arr.size else None
    except cv2.error as exc:
        raise ImageReadError(f"{name}: could not be decoded ({str(exc).strip().splitlines()[-1][:200]})") from None
    if img is None or img.size == 0:
        raise ImageReadError(f"{name}: not a readable image (corrupt file or unsupported format; use jpg, png or webp)")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


# What TurboJPEG cannot take in a valid file (an unusual chroma subsampling, coding process, precision
# or colour space); OpenCV decodes those.
_JPEG_UNSUPPORTED = ("subsampling", "Unsupported JPEG process", "Unsupported JPEG data precision",
                     "Unsupported color conversion")


def _decode_jpeg(data: bytes, name: str) -> np.ndarray | None:
    """RGB pixels of a JPEG through libjpeg-turbo with its warnings ("Corrupt JPEG data", "Premature end
    of JPEG file") raised, so damaged data is refused (DamagedImageError) instead of decoded into
    garbage. Memory is bounded by the declared size, checked before. None for a file whose header
    TurboJPEG does not take (an unusual chroma subsampling or coding process): OpenCV decodes it."""
    import simplejpeg

    try:
        return simplejpeg.decode_jpeg(data, colorspace="RGB", strict=True)
    except ValueError as exc:
        message = str(exc).strip()
    try:
        simplejpeg.decode_jpeg_header(data)
    except ValueError as exc:  # in the header
        if any(s in str(exc) for s in _JPEG_UNSUPPORTED):
            return None
    else:  # the header is fine: "Unsupported JPEG process" here is a marker inside the scan data
        if any(s in message for s in ("Unsupported JPEG data precision", "Unsupported color conversion")):
            return None
    jfif = data.find(b"JFIF\x00", 0, 64)
    if "JFIF revision" in message and jfif > 0:  # metadata only: read it as JFIF 1.01, still strictly
        return _decode_jpeg(data[:jfif + 5] + b"\x01\x01" + data[jfif + 7:], name)
    raise _damaged(name, f"libjpeg: {message[:160]}")


def _damaged(name: str, what: str) -> DamagedImageError:
    return DamagedImageError(f"{name}: damaged image ({what}); the file is corrupt or cut short (an interrupted "
                             "download or copy?): use an intact copy")


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # by colour type
# Adam7 interlacing passes: (first column, first row, column step, row step)
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def check_png(data: bytes, name: str = "image") -> None:
    """Refuse (DamagedImageError) a PNG whose chunks are damaged (``decode_image`` does this before any
    decoder sees the file: a chunk length past the end of the file would have a decoder allocate it,
    2 GB for a 6 KB file; a CRC mismatch; no IEND end marker) or whose pixel data is corrupt, stops
    early or runs past the declared size. Pixel data is inflated in 1 MB steps and thrown away, so this
    costs time, never memory."""
    _check_png_pixels(*_png_chunks(data, name), name)


def _png_chunks(data: bytes, name: str) -> tuple[tuple, list]:
    """Walk a PNG's chunks, checking lengths and CRCs: (IHDR fields, IDAT chunk views)."""
    view, pos, ihdr, idat = memoryview(data), 8, None, []
    while True:
        if pos + 12 > len(data):
            raise _damaged(name, "the file ends before the PNG end marker: it is truncated")
        length, kind = struct.unpack_from(">I4s", data, pos)
        if not kind.isalpha():
            raise _damaged(name, f"no PNG chunk where one should start (offset {pos})")
        if length > len(data) - pos - 12:
            raise _damaged(name, f"PNG chunk {kind.decode()} declares {length} bytes, more than the file holds")
        body = view[pos + 8:pos + 8 + length]
        if zlib.crc32(body, zlib.crc32(kind)) != struct.unpack_from(">I", data, pos + 8 + length)[0]:
            raise _damaged(name, f"CRC error in PNG chunk {kind.decode()}")
        if ihdr is None and (kind != b"IHDR" or length != 13):
            raise _damaged(name, "the PNG does not start with its IHDR header")
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
        pos += 12 + length
    return ihdr, idat


def _check_png_pixels(ihdr: tuple, idat: list, name: str) -> None:
    """Inflate the IDAT stream (discarding it) and refuse it when corrupt or shorter than the rows
    the IHDR header declares."""
    w, h, depth, colour, _, _, interlace = ihdr
    bits = _PNG_CHANNELS.get(colour, 0) * depth
    if not bits:
        return  # an invalid colour type: the decoder refuses it with its own message
    need = 0
    for x0, y0, dx, dy in (_ADAM7 if interlace else ((0, 0, 1, 1),)):
        pw, ph = (w - x0 + dx - 1) // dx, (h - y0 + dy - 1) // dy
        if pw > 0 and ph > 0:
            need += ph * (1 + (pw * bits + 7) // 8)  # a filter byte per row
    inflate, got = zlib.decompressobj(), 0
    try:
        for part in idat:
            while part and not inflate.eof and got <= need:  # past ``need`` is extra data decoders ignore
                got += len(inflate.decompress(part, 1 << 20))
                part = inflate.unconsumed_tail
    except zlib.error as exc:
        raise _damaged(name, f"corrupt compressed pixel data ({exc})") from None
    if got < need:
        raise _damaged(name, f"the pixel data stops at {100 * got // max(need, 1)}% of the image: it is truncated")
    if got > need:
        raise _damaged(name, f"it holds more pixel data than its header's {w}x{h} pixels (a damaged header?)")


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
