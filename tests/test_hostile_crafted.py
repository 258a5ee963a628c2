"""Crafted and damaged files (issue 25): a 6 KB PNG that would take 2 GB, damaged JPEG/PNG data taken
silently, corrupt compressed zip entries, a damaged zip directory, a repeated VOC <object>. Built at test
time from tests/hostile.py; each is refused or reported with facecore's own error, never a traceback."""

import io
import struct
import subprocess
import sys
import zipfile
import zlib

import numpy as np
import pytest

import hostile as H
from facecore import Dataset
from facecore.errors import DamagedImageError, ImageReadError, ImportRejected
from facecore.images import check_png, decode_image
from facecore.datasets.labels import parse_voc


def _photo_jpeg(w=96, h=80, quality=90) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(0)
    img = np.clip(rng.normal(128, 40, (h, w, 3)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _png_with_idat_length(length: int) -> bytes:
    """A PNG (about 6 KB of real data) whose IDAT chunk length field says ``length``."""
    rng = np.random.default_rng(1)
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)).save(buf, "PNG")
    b = bytearray(buf.getvalue())
    pos = 8
    while bytes(b[pos + 4:pos + 8]) != b"IDAT":
        pos += 12 + struct.unpack_from(">I", b, pos)[0]
    struct.pack_into(">I", b, pos, length)
    return bytes(b)


def _sos_end(b: bytes) -> int:
    pos = 2
    while b[pos + 1] != 0xDA:
        pos += 2 + struct.unpack_from(">H", b, pos + 2)[0]
    return pos + 2 + struct.unpack_from(">H", b, pos + 2)[0]


@pytest.mark.parametrize("length", [0x7FFFFFFF, 0xFFFFFFFF, 0x10000])
def test_png_chunk_longer_than_the_file_is_refused_before_any_allocation(length):
    data = _png_with_idat_length(length)
    # a child process with 256 MB of address space over its start: a decoder that trusts the length dies
    code = ("import resource, sys; sys.path.insert(0, 'tests'); from facecore.images import decode_image; "
            "from facecore.errors import DamagedImageError; data = sys.stdin.buffer.read(); "
            "vm = int([l for l in open('/proc/self/status') if l.startswith('VmSize')][0].split()[1]) * 1024; "
            "resource.setrlimit(resource.RLIMIT_AS, (vm + 256 * 2**20,) * 2)\n"
            "try:\n    decode_image(data, 'crafted.png')\nexcept DamagedImageError as e:\n    print(e)")
    out = subprocess.run([sys.executable, "-c", code], input=data, capture_output=True, timeout=180,
                         env={"OMP_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "2", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr.decode()[-2000:]
    assert f"IDAT declares {length} bytes, more than the file holds" in out.stdout.decode()


def _png_damage(kind: str) -> bytes:
    b = bytearray(H.png_bytes(64, 48))
    if kind == "crc":
        b[45] ^= 0x10  # a byte inside IHDR or IDAT: the chunk's CRC no longer matches
    elif kind == "no_iend":
        del b[-12:]
    elif kind == "short_idat":  # IDAT stream cut, chunk CRC recomputed, IEND kept: only the rows are missing
        raw = zlib.compress(b"\x00" + b"\x78" * (64 * 3), 9)  # one row of the 48 declared
        ihdr = struct.pack(">IIBBBBB", 64, 48, 8, 2, 0, 0, 0)
        return b"\x89PNG\r\n\x1a\n" + H._chunk(b"IHDR", ihdr) + H._chunk(b"IDAT", raw) + H._chunk(b"IEND", b"")
    elif kind == "bad_zlib":
        ihdr = struct.pack(">IIBBBBB", 64, 48, 8, 2, 0, 0, 0)
        return (b"\x89PNG\r\n\x1a\n" + H._chunk(b"IHDR", ihdr) + H._chunk(b"IDAT", b"\x78\x9c\xff\xff\xff\xff")
                + H._chunk(b"IEND", b""))
    return bytes(b)


@pytest.mark.parametrize("kind,words", [("crc", "CRC error in PNG chunk"), ("no_iend", "truncated"),
                                        ("short_idat", "pixel data stops at"),
                                        ("bad_zlib", "corrupt compressed pixel data")])
def test_damaged_png_is_flagged_as_damaged(kind, words):
    with pytest.raises(DamagedImageError, match=words):
        decode_image(_png_damage(kind), "d.png")


def test_png_check_accepts_interlaced_16_bit_palette_and_gray_alpha():
    from PIL import Image

    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 255, (37, 53, 3), dtype=np.uint8)
    images = [Image.fromarray(rgb), Image.fromarray(rgb).convert("P"), Image.fromarray(rgb).convert("LA"),
              Image.fromarray((rgb[..., 0].astype(np.uint16) * 257)), Image.fromarray(rgb).convert("1")]
    for im in images:
        for interlace in (False, True):
            buf = io.BytesIO()
            im.save(buf, "PNG", interlace=interlace) if interlace else im.save(buf, "PNG")
            check_png(buf.getvalue())
            assert decode_image(buf.getvalue()).shape == (37, 53, 3)


def _jpeg_damage(kind: str) -> bytes:
    b = bytearray(_photo_jpeg())
    start = _sos_end(bytes(b))
    if kind == "truncated":
        return bytes(b[: start + (len(b) - start) // 2])
    if kind == "garbage_run":
        mid = start + (len(b) - start) // 2
        b[mid:mid + 64] = b"\x00" * 64
    elif kind == "height_1":  # the SOF height set to 1: a 96x1 image with the rest of the data left over
        pos = 2
        while b[pos + 1] not in (0xC0, 0xC1, 0xC2):
            pos += 2 + struct.unpack_from(">H", b, pos + 2)[0]
        struct.pack_into(">H", b, pos + 5, 1)
    elif kind == "marker":
        b[start + 40:start + 42] = b"\xff\xd3"  # a restart marker where none belongs
    return bytes(b)


@pytest.mark.parametrize("kind", ["truncated", "garbage_run", "height_1", "marker"])
def test_damaged_jpeg_is_flagged_not_decoded_into_garbage(kind):
    with pytest.raises(DamagedImageError, match="damaged image .*libjpeg"):
        decode_image(_jpeg_damage(kind), "d.jpg")


def test_intact_jpegs_still_decode_like_opencv():
    import cv2

    for data in (_photo_jpeg(), _photo_jpeg(quality=40), H.jpeg_bytes(64, 48), H.jpeg_bytes(64, 48, orientation=6)):
        ours = decode_image(data)
        ref = cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        assert ours.shape == ref.shape and np.abs(ours.astype(int) - ref).max() <= 1


def test_damaged_images_are_skipped_on_import_and_named_by_validate(tmp_path):
    ds = Dataset.create(tmp_path / "ds")
    entries = {"ok.jpg": _photo_jpeg(), "cut.jpg": _jpeg_damage("truncated"), "crc.png": _png_damage("crc")}
    report = ds.import_zip(H.zip_bytes(entries))
    assert report.added == ["ok"]
    assert {n for n, _ in report.skipped} == {"cut.jpg", "crc.png"}
    assert all("damaged image" in why for _, why in report.skipped)
    # one that got in before this check (copied into the folder): validate names the damage
    (ds.images_dir / "old.jpg").write_bytes(_jpeg_damage("garbage_run"))
    problems = {p.path.rsplit("/", 1)[-1]: p for p in ds.validate()}
    assert problems["old.jpg"].kind == "unreadable_image" and "damaged image" in problems["old.jpg"].message


def test_gallery_shows_a_damaged_image_as_damaged(tmp_path):
    from facecore.datasets import labeling as L

    ds = Dataset.create(tmp_path / "ds")
    (ds.images_dir).mkdir(parents=True, exist_ok=True)
    (ds.images_dir / "old.jpg").write_bytes(_jpeg_damage("truncated"))
    (entry,) = L.entries(ds)
    with pytest.raises(DamagedImageError):
        L.thumbnail(entry)


def _corrupt_deflate_zip(method=zipfile.ZIP_DEFLATED) -> bytes:
    """Three images; the middle entry's compressed data is replaced by bytes no decoder accepts."""
    entries = {f"p{i}.png": H.png_bytes(value=40 * i + 10) for i in range(3)}
    b = bytearray(H.zip_bytes(entries, method))
    info = zipfile.ZipFile(io.BytesIO(bytes(b))).getinfo("p1.png")
    start = info.header_offset + 30 + len(info.filename)
    if method == zipfile.ZIP_LZMA:
        start += 9  # the LZMA header and properties stay readable; the stream after them does not
    b[start:start + 64] = b"\xff" * 64
    return bytes(b)


@pytest.mark.parametrize("method", [zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])
def test_corrupt_compressed_entry_is_skipped_and_reported_the_rest_imported(tmp_path, method):
    ds = Dataset.create(tmp_path / "ds")
    report = ds.import_zip(_corrupt_deflate_zip(method))
    assert sorted(report.added) == ["p0", "p2"]
    assert [n for n, _ in report.skipped] == ["p1.png"]
    assert "damaged in the archive" in report.skipped[0][1]
    assert sorted(it.stem for it in ds.items()) == ["p0", "p2"]  # nothing in the dataset the report omits


def test_zlib_error_itself_is_caught(tmp_path):
    """Deflate data whose first block has the reserved type: zlib.error, not a CRC mismatch."""
    b = bytearray(H.zip_bytes({"a.png": H.png_bytes(), "b.png": H.png_bytes(value=3)}))
    info = zipfile.ZipFile(io.BytesIO(bytes(b))).getinfo("a.png")
    b[info.header_offset + 30 + len(info.filename)] = 0x07  # BFINAL=1, BTYPE=11 (reserved)
    report = Dataset.create(tmp_path / "ds").import_zip(bytes(b))
    assert report.added == ["b"] and "error" in report.skipped[0][1] and "damaged in the archive" in report.skipped[0][1]


def test_lzma_entry_declaring_a_4_gb_dictionary_is_refused_before_allocating(tmp_path):
    b = bytearray(H.zip_bytes({"a.png": H.png_bytes(), "b.png": H.png_bytes(value=3)}, zipfile.ZIP_LZMA))
    info = zipfile.ZipFile(io.BytesIO(bytes(b))).getinfo("a.png")
    struct.pack_into("<I", b, info.header_offset + 30 + len(info.filename) + 5, 0xFFFFFFFF)
    report = Dataset.create(tmp_path / "ds").import_zip(bytes(b))
    assert report.added == ["b"] and "4096 MB dictionary" in report.skipped[0][1]


@pytest.mark.parametrize("damage,words", [("entries", r"directory \(the list of files at its end\) is damaged"),
                                          ("empty", "holds no files")])
def test_zip_that_lists_no_files_gets_a_message(tmp_path, damage, words):
    if damage == "empty":
        data = H.zip_bytes({})
    else:
        b = bytearray(H.zip_bytes({"a.png": H.png_bytes()}))
        struct.pack_into("<HHI", b, b.rfind(b"PK\x05\x06") + 8, 0, 0, 0)  # no entries, no directory
        data = bytes(b)
    with pytest.raises(ImportRejected, match=words):
        Dataset.create(tmp_path / "ds").import_zip(data)


def test_zip_directory_with_a_huge_comment_length_still_imports(tmp_path):
    b = bytearray(H.zip_bytes({"a.png": H.png_bytes()}))
    struct.pack_into("<H", b, b.rfind(b"PK\x05\x06") + 20, 65535)
    assert Dataset.create(tmp_path / "ds").import_zip(bytes(b)).added == ["a"]


@pytest.mark.slow
def test_cli_import_of_a_damaged_directory_exits_with_a_message(tmp_path):
    b = bytearray(H.zip_bytes({"a.png": H.png_bytes()}))
    struct.pack_into("<HHI", b, b.rfind(b"PK\x05\x06") + 8, 0, 0, 0)
    (tmp_path / "x.zip").write_bytes(bytes(b))
    out = subprocess.run([sys.executable, "-m", "facecore", "import", str(tmp_path / "x.zip"), "--data",
                          str(tmp_path / "ds")], capture_output=True, text=True, timeout=120)
    assert out.returncode not in (0, 70) and "directory" in out.stdout + out.stderr
    assert "Traceback" not in out.stderr


def test_repeated_voc_object_is_kept_once_with_a_note():
    obj = "<object><name>face</name><bndbox><xmin>4</xmin><ymin>4</ymin><xmax>30</xmax><ymax>40</ymax></bndbox></object>"
    xml = f"<annotation><size><width>64</width><height>48</height></size>{obj}{obj}{obj}</annotation>"
    notes: list[str] = []
    label = parse_voc(xml, "r.xml", notes)
    assert len(label.boxes) == 1 and any("repeat an earlier one's box" in n for n in notes)


def test_image_read_errors_stay_image_read_errors():
    assert issubclass(DamagedImageError, ImageReadError)  # every `except ImageReadError` still holds


def test_jpeg_with_an_unknown_jfif_revision_still_decodes_strictly():
    data = bytearray(_photo_jpeg())
    j = data.find(b"JFIF\x00")
    data[j + 5] = 3  # "JFIF 3.01": a libjpeg warning about metadata only
    assert decode_image(bytes(data)).shape == (80, 96, 3)
    damaged = bytearray(_jpeg_damage("truncated"))
    damaged[j + 5] = 3  # and damage behind it is still found
    with pytest.raises(DamagedImageError, match="Premature end"):
        decode_image(bytes(damaged))
