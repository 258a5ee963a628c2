"""Moving datasets in and out: import images with labelme/VOC labels from a ``.zip`` or a folder, and
export a dataset as a labelme ``.zip``.

Imports match labels to images by file stem, wherever they sit in the archive or folder; refuse unsafe
archives (absolute paths, ``..``, zip bombs) as a whole; skip bad files one by one with the reason
(``ImportReport``); and never change what is already in the dataset. ``Dataset.import_zip``,
``Dataset.import_folder`` and ``Dataset.export_labelme_zip`` call these.
"""

from __future__ import annotations

import io
import json
import lzma
import os
import re
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from .contents import DuplicateImageError
from ..errors import DatasetError, ImageReadError, ImportRejected, LabelFormatError, StorageError
from ..images import IMAGE_EXTS, image_header
from ..io import atomic_write_bytes
from .labels import LABEL_EXTS, labelme_document, orient_label, parse_label_bytes, read_label

# Refuse archives past these: a zip bomb or a mistaken upload must not fill the disk.
MAX_ZIP_TOTAL_BYTES = 2 * 1024**3
MAX_ZIP_ENTRIES = 50_000
MAX_ENTRY_BYTES = 64 * 1024**2
MAX_COMPRESSION_RATIO = 200
# An LZMA entry's decoder allocates the dictionary its header declares (up to 4 GB) before reading data
MAX_LZMA_DICT_BYTES = 64 * 1024**2
# zipfile reads these; others (Deflate64, PPMd, ...) and encrypted entries are skipped with a message
_ZIP_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate", zipfile.ZIP_BZIP2: "bzip2",
                zipfile.ZIP_LZMA: "lzma"}


@dataclass
class ImportReport:
    """What an import added and what it skipped (with the reason per file)."""

    added: list[str] = field(default_factory=list)
    labeled: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    # things imported but changed or worth a look: (file, what happened)
    notes: list[tuple[str, str]] = field(default_factory=list)
    # photos already in the dataset (same bytes or pixels), not added again: (file, which one it is)
    duplicates: list[tuple[str, str]] = field(default_factory=list)

    def add_duplicate(self, name: str, exc: "DuplicateImageError", label_name: str | None = None) -> None:
        """Record that ``name`` was not added: it is ``exc.existing`` (its label ``label_name`` unused)."""
        self.duplicates.append((name, f"already there as {exc.existing} ({exc.how})"
                                      + (f"; its label {label_name} was not used" if label_name else "")))


def export_labelme_zip(ds: "Dataset", dest: str | os.PathLike | io.BytesIO | None = None) -> bytes | Path:
    """Zip the dataset as ``<name>/images/*`` and ``<name>/labels/*.json`` (labelme 5, imageData null).

    VOC labels are converted to labelme. Unlabeled images go without a JSON (no-face by convention).
    Returns the bytes when ``dest`` is None, else writes ``dest`` atomically and returns it.
    """
    if dest is not None and not isinstance(dest, io.BytesIO):
        _check_export_dest(ds, Path(dest))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for it in ds.items():
            zf.write(it.image, f"{ds.name}/images/{it.image.name}", compress_type=zipfile.ZIP_STORED)
            if it.label is None:
                continue
            try:
                doc = labelme_document(read_label(it.label), it.image.name)
            except LabelFormatError:
                # a broken label must not block the export: ship it as it is (validate() names it)
                zf.write(it.label, f"{ds.name}/labels/{it.label.name}")
                continue
            zf.writestr(f"{ds.name}/labels/{it.stem}.json", json.dumps(doc, indent=2))
    data = buf.getvalue()
    if dest is None:
        return data
    if isinstance(dest, io.BytesIO):
        dest.write(data)
        return dest
    return atomic_write_bytes(dest, data)


def _check_export_dest(ds: "Dataset", dest: Path) -> None:
    if dest.is_dir():
        raise DatasetError(f"{dest}: is a folder; give the .zip file to write, e.g. {dest / (ds.name + '.zip')}")
    parent = dest.parent.resolve()
    for inside in (ds.images_dir, ds.labels_dir, ds.augmented.root):
        inside = inside.resolve()
        if parent == inside or inside in parent.parents:
            raise DatasetError(f"{dest}: inside the dataset's {inside.name}/ folder, where it would be taken "
                               "for data; write the .zip somewhere else")


def import_zip(ds: "Dataset", source, max_total_bytes: int = MAX_ZIP_TOTAL_BYTES) -> ImportReport:
    """Import images and labelme/VOC labels from a ``.zip`` (path, bytes or file object).

    Labels are matched to images by file stem, wherever they sit in the archive.
    Refuses (ImportRejected) entries with absolute paths or ``..``, more than
    ``MAX_ZIP_ENTRIES`` entries, or more than ``max_total_bytes`` uncompressed;
    bad files inside are skipped and reported, and nothing already in the dataset changes.
    """
    if isinstance(source, (bytes, bytearray)):
        source = io.BytesIO(source)
    try:
        zf = zipfile.ZipFile(source)
    # ValueError: a name that is not UTF-8; NotImplementedError: a zip version it cannot read
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as exc:
        raise ImportRejected(f"not a readable .zip file ({exc})") from exc
    with zf:
        infos = [i for i in zf.infolist() if not i.filename.endswith("/")]  # is_dir() fails on an empty name
        if not infos:
            raise ImportRejected(_empty_archive(source))
        if len(infos) > MAX_ZIP_ENTRIES:
            raise ImportRejected(f"the archive has {len(infos)} files; the limit is {MAX_ZIP_ENTRIES}")
        total = 0
        for info in infos:
            name = info.filename.replace("\\", "/")
            parts = PurePosixPath(name).parts
            if name.startswith("/") or ".." in parts or re.match(r"^[A-Za-z]:", name):
                raise ImportRejected(f"unsafe path in the archive: {info.filename!r} (absolute or with '..'); nothing was imported")
            total += info.file_size
            if info.file_size > MAX_ENTRY_BYTES:
                raise ImportRejected(f"{info.filename}: {info.file_size / 1e6:.0f} MB uncompressed, over the {MAX_ENTRY_BYTES // 1024**2} MB limit per file")
            if info.compress_size and info.file_size / info.compress_size > MAX_COMPRESSION_RATIO and info.file_size > 1024**2:
                raise ImportRejected(f"{info.filename}: compression ratio {info.file_size / info.compress_size:.0f}:1 looks like a zip bomb; nothing was imported")
        if total > max_total_bytes:
            raise ImportRejected(f"the archive unpacks to {total / 1e9:.1f} GB; the limit is {max_total_bytes / 1e9:.1f} GB")
        files, unreadable = {}, []
        for info in infos:
            name = info.filename.replace("\\", "/")
            if "__MACOSX" in name or PurePosixPath(name).name.startswith("."):
                continue
            if info.flag_bits & 0x1:
                unreadable.append((name, "encrypted (password-protected) entry; zip it again without a password"))
            elif info.compress_type not in _ZIP_METHODS:
                unreadable.append((name, f"compressed with method {info.compress_type} (e.g. Deflate64), which "
                                         "cannot be read here; zip it again with ordinary Deflate compression"))
            else:
                files[name] = info
        report = _import_entries(ds, files, lambda info: _read_entry(zf, info))
        report.skipped[:0] = unreadable
        return report


def import_folder(ds: "Dataset", folder: str | os.PathLike) -> ImportReport:
    """Import images and labelme/VOC labels found anywhere under ``folder`` (same rules as a zip)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ImportRejected(f"{folder}: not a folder")
    root = ds.root.resolve()
    if folder.resolve() == root or root in folder.resolve().parents or folder.resolve() in root.parents:
        raise ImportRejected(f"{folder}: holds the dataset {ds.name} itself (or lies inside it); "
                             "import from another folder")
    # names that are not valid UTF-8 are shown with a replacement character (and never reach a page as bytes)
    files = {p.relative_to(folder).as_posix().encode("utf-8", "surrogateescape").decode("utf-8", "replace"): p
             for p in sorted(folder.rglob("*"))
             if p.is_file() and not p.is_symlink() and not p.name.startswith(".")}

    def read(p: Path) -> bytes:
        if p.stat().st_size > MAX_ENTRY_BYTES:
            raise ImageReadError(f"{p.name}: {p.stat().st_size / 1e6:.0f} MB, over the "
                                 f"{MAX_ENTRY_BYTES // 1024**2} MB limit per file")
        return p.read_bytes()

    return _import_entries(ds, files, read)


def _import_entries(ds: "Dataset", files: dict, read) -> ImportReport:
    report = ImportReport()
    images = {n: v for n, v in files.items() if PurePosixPath(n).suffix.lower() in IMAGE_EXTS}
    labels: dict[str, list[str]] = {}
    for n in files:
        if PurePosixPath(n).suffix.lower() in LABEL_EXTS:
            labels.setdefault(PurePosixPath(n).stem, []).append(n)
    for n in files:
        ext = PurePosixPath(n).suffix.lower()
        if ext not in IMAGE_EXTS and ext not in LABEL_EXTS:
            report.skipped.append((n, "not an image (jpg, png, webp, bmp) or a label (.json, .xml)"))
    used_labels: set[str] = set()
    label_ext = "." + ds.label_format()
    for name in sorted(images):
        try:
            data = read(images[name])
            head = image_header(data, name)  # refuses bombs before anything is decoded
        except (ImageReadError, *_ENTRY_ERRORS) as exc:
            report.skipped.append((name, _entry_error(name, exc)))  # the report names it already
            continue
        label = None
        lab_name = _closest(name, labels.get(PurePosixPath(name).stem, []))
        if lab_name is not None:
            used_labels.add(lab_name)
            try:
                notes: list[str] = []
                parsed = parse_label_bytes(read(files[lab_name]), lab_name, (head.width, head.height), notes)
                label, note = orient_label(parsed, head, lab_name)  # may refuse it: then the image goes alone
                report.notes.extend((lab_name, n.removeprefix(f"{lab_name}: ")) for n in notes + [note] if n)
            except LabelFormatError as exc:
                report.skipped.append((lab_name, f"{str(exc).removeprefix(f'{lab_name}: ')} "
                                       "(image imported without its label)"))
            except _ENTRY_ERRORS as exc:
                report.skipped.append((lab_name, f"{_entry_error(lab_name, exc)} (image imported without its label)"))
        try:
            item = ds.add_image(data, PurePosixPath(name).name, label=label, label_ext=label_ext)
        except ImageReadError as exc:
            report.skipped.append((name, str(exc).removeprefix(f"{name}: ")))
            continue
        except DuplicateImageError as exc:  # content-addressed: the photo is in the dataset already
            report.add_duplicate(name, exc, lab_name if label is not None else None)
            continue
        report.added.append(item.stem)
        report.labeled += label is not None
    for stem, names in labels.items():
        for n in names:
            if n not in used_labels:
                report.skipped.append((n, "label without a matching image"))
    return report


def _closest(image_name: str, candidates: list[str]) -> str | None:
    """The label path sharing most leading folders with the image (``train/images`` ~ ``train/labels``)."""
    if not candidates:
        return None
    img_parts = PurePosixPath(image_name).parts[:-1]

    def shared(c: str) -> int:
        n = 0
        for a, b in zip(img_parts, PurePosixPath(c).parts[:-1]):
            if a != b:
                break
            n += 1
        return n

    return max(candidates, key=shared)


# What reading one archive entry or file may raise besides ImageReadError: a corrupt or truncated
# entry (zlib and lzma errors, bz2's OSError, EOF, a CRC mismatch), an unsupported method or
# encryption, a vanished file.
_ENTRY_ERRORS = (OSError, zipfile.BadZipFile, EOFError, RuntimeError, NotImplementedError, ValueError, zlib.error,
                 lzma.LZMAError)
_DAMAGED_ENTRY = (zlib.error, lzma.LZMAError, EOFError, zipfile.BadZipFile)


def _read_entry(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    """The bytes of one entry; an LZMA entry declaring a dictionary over ``MAX_LZMA_DICT_BYTES`` is refused
    (BadZipFile) before its decoder allocates it."""
    if info.compress_type == zipfile.ZIP_LZMA:
        zf.fp.seek(info.header_offset)
        head = zf.fp.read(30)
        if len(head) == 30 and head[:4] == b"PK\x03\x04":
            name_len, extra_len = struct.unpack_from("<HH", head, 26)
            zf.fp.seek(info.header_offset + 30 + name_len + extra_len)
            props = zf.fp.read(9)  # LZMA version (2), properties size (2), lc/lp/pb (1), dictionary size (4)
            size = struct.unpack_from("<I", props, 5)[0] if len(props) == 9 else 0
            if size > MAX_LZMA_DICT_BYTES:
                raise zipfile.BadZipFile(f"its LZMA header declares a {size / 2**20:.0f} MB dictionary, over the "
                                         f"{MAX_LZMA_DICT_BYTES // 2**20} MB limit")
    return zf.read(info)


def _empty_archive(source) -> str:
    """Why a zip lists no files: a damaged central directory (the file still holds entries) or none."""
    try:
        if isinstance(source, (str, os.PathLike)):
            with open(source, "rb") as f:
                head = f.read(MAX_ENTRY_BYTES)
        else:
            source.seek(0)
            head = source.read(MAX_ENTRY_BYTES)
    except (AttributeError, OSError, ValueError):
        head = b""
    if b"PK\x03\x04" in head:
        return ("the archive's directory (the list of files at its end) is damaged, so no file in it can be "
                "found; nothing was imported. Zip the files again, or repair it (e.g. zip -FF in.zip --out fixed.zip)")
    return "the archive holds no files; nothing was imported"


def _entry_error(name: str, exc: BaseException) -> str:
    """Why entry ``name`` was skipped, without repeating its name (the report pairs them)."""
    if isinstance(exc, RuntimeError) and "encrypted" in str(exc):
        return "encrypted (password-protected) entry; zip it again without a password"
    if isinstance(exc, NotImplementedError):
        return "compression method not supported; zip it again with ordinary Deflate compression"
    if isinstance(exc, (ImageReadError, StorageError)):
        return str(exc).removeprefix(f"{name}: ")
    if isinstance(exc, _DAMAGED_ENTRY) or (isinstance(exc, OSError) and "data stream" in str(exc)):
        return f"damaged in the archive ({type(exc).__name__}: {str(exc)[:160]}); zip the original file again"
    return f"could not be read ({type(exc).__name__}: {str(exc)[:160]})"

