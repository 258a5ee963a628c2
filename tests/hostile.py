"""Hostile inputs made at test time (no binary fixtures): decompression bombs, lying headers,
deeply nested labels, odd zips. Shared by tests/test_hostile_*.py."""

from __future__ import annotations

import io
import json
import struct
import zipfile
import zlib

import numpy as np
from PIL import Image


def png_bytes(w: int = 64, h: int = 48, value: int = 120) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((h, w, 3), value, np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def jpeg_bytes(w: int = 64, h: int = 48, orientation: int | None = None) -> bytes:
    """A JPEG whose left half is dark and right half bright (so a wrong turn is visible)."""
    img = np.zeros((h, w, 3), np.uint8)
    img[:, w // 2:] = 230
    buf = io.BytesIO()
    kw = {}
    if orientation is not None:
        ex = Image.Exif()
        ex[0x0112] = orientation
        kw["exif"] = ex.tobytes()
    Image.fromarray(img).save(buf, "JPEG", quality=95, **kw)
    return buf.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bomb(w: int, h: int, rows: int = 64) -> bytes:
    """A small PNG declaring ``w`` x ``h`` grayscale pixels; the first ``rows`` rows really are in it
    (all zero, highly compressible), the rest is missing, as in a truncated bomb. A decoder that
    trusts the header allocates w*h bytes (or more) before noticing."""
    raw = zlib.compress(b"\x00" * ((w + 1) * rows), 9)
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", raw) + _chunk(b"IEND", b"")


def jpeg_lying_size(w: int, h: int) -> bytes:
    """A 1-2 KB JPEG whose SOF header claims ``w`` x ``h`` pixels."""
    data = bytearray(jpeg_bytes(16, 16))
    i = 2
    while i < len(data):
        marker, length = data[i + 1], struct.unpack(">H", data[i + 2:i + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):
            data[i + 5:i + 9] = struct.pack(">HH", h, w)
            return bytes(data)
        i += 2 + length
    raise AssertionError("no SOF marker")


def deep_json(depth: int = 100_000) -> bytes:
    return b'{"shapes": ' + b"[" * depth + b"]" * depth + b"}"


def labelme(shapes, w: int = 64, h: int = 48, **extra) -> bytes:
    doc = {"version": "5.0.1", "shapes": shapes, "imagePath": "x.jpg", "imageData": None,
           "imageWidth": w, "imageHeight": h, **extra}
    return json.dumps(doc).encode()


def rect(x1, y1, x2, y2, label="face", kind="rectangle") -> dict:
    return {"label": label, "points": [[x1, y1], [x2, y2]], "shape_type": kind, "flags": {}, "group_id": None}


def zip_bytes(entries: dict[str, bytes], compression=zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


def zip_with_flags(entries: dict[str, bytes], encrypt: set[str] = frozenset(), method: dict[str, int] | None = None) -> bytes:
    """A zip whose named entries are marked encrypted (flag bit 0) or use another compression method
    number (9 = Deflate64), as archivers other than Python's write them."""
    data = bytearray(zip_bytes(entries, zipfile.ZIP_STORED))
    method = method or {}
    for name in set(encrypt) | set(method):
        enc = name.encode()
        for sig in (b"PK\x03\x04", b"PK\x01\x02"):
            pos = 0
            while True:
                pos = data.find(sig, pos)
                if pos < 0:
                    break
                if sig == b"PK\x03\x04":
                    flag_at, meth_at, name_len_at, name_at = pos + 6, pos + 8, pos + 26, pos + 30
                else:
                    flag_at, meth_at, name_len_at, name_at = pos + 8, pos + 10, pos + 28, pos + 46
                n = struct.unpack("<H", data[name_len_at:name_len_at + 2])[0]
                if bytes(data[name_at:name_at + n]) == enc:
                    if name in encrypt:
                        flags = struct.unpack("<H", data[flag_at:flag_at + 2])[0] | 1
                        data[flag_at:flag_at + 2] = struct.pack("<H", flags)
                    if name in method:
                        data[meth_at:meth_at + 2] = struct.pack("<H", method[name])
                pos += 4
    return bytes(data)
