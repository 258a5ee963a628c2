"""Datasets on disk: a folder with ``images/`` and ``labels/``.

Conventions (the labelme tutorial workflow's):
- ``labels/<stem>.json`` (labelme) or ``labels/<stem>.xml`` (VOC) labels ``images/<stem>.<ext>``.
- An image without a label file is a no-face example for training. The labeling page also
  calls it *unlabeled*; marking "no face" writes a labelme file with no shapes.
- Offline-augmented copies live in ``augmented/{images,labels}`` and are named
  ``<source stem>__aug<k>``, so every copy can be traced to the photo it came from.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from . import boxes as B
from .errors import DatasetError, ImageReadError, ImportRejected, LabelFormatError, StorageError
from .io import (IMAGE_EXTS, atomic_write_bytes, decode_image, encode_jpeg, image_header, read_image,
                 recover_dir, recover_swaps, replace_dir, storage_errors, write_durable)
from .labels import (LABEL_EXTS, ImageLabel, labelme_document, orient_label, parse_label_bytes, read_label,
                     write_label)

AUG_SEP = "__aug"
MOSAIC_MANIFEST = "mosaic.json"  # written by facecore.mosaic beside the augmented copies
_AUG_RE = re.compile(r"__aug\d+$")
SPLITS = ("train", "val", "test")
# The share of source photos in each split, in SPLITS order: the one default of training, evaluation,
# augmentation (only the train split is augmented) and the CLI.
DEFAULT_SPLIT = (0.7, 0.15, 0.15)

# Refuse archives past these: a zip bomb or a mistaken upload must not fill the disk.
MAX_ZIP_TOTAL_BYTES = 2 * 1024**3
MAX_ZIP_ENTRIES = 50_000
MAX_ENTRY_BYTES = 64 * 1024**2
MAX_COMPRESSION_RATIO = 200
# zipfile reads these; others (Deflate64, PPMd, ...) and encrypted entries are skipped with a message
_ZIP_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate", zipfile.ZIP_BZIP2: "bzip2",
                zipfile.ZIP_LZMA: "lzma"}


def source_of(stem: str) -> str:
    """The source photo's stem of an item: ``"abc__aug007"`` -> ``"abc"``; originals map to themselves."""
    return _AUG_RE.sub("", stem)


@dataclass(frozen=True)
class Item:
    """One image of a dataset and its label file (``None`` when unlabeled)."""

    stem: str
    image: Path
    label: Path | None

    @property
    def source(self) -> str:
        return source_of(self.stem)

    @property
    def labeled(self) -> bool:
        return self.label is not None


@dataclass(frozen=True)
class Counts:
    """How many images a dataset holds. ``no_face`` includes unlabeled images (training convention)."""

    images: int
    faces: int
    no_face: int
    labeled: int
    unlabeled: int
    augmented: int = 0


@dataclass(frozen=True)
class Problem:
    """A validation finding: ``kind`` is a short code, ``path`` the file, ``message`` for people."""

    kind: str
    path: str
    message: str


@dataclass(frozen=True)
class Split:
    """Items per split; every source photo (and all its augmented copies) sits in exactly one."""

    train: tuple[Item, ...]
    val: tuple[Item, ...]
    test: tuple[Item, ...]
    # (image file name, why) of images left out of every split: their label is broken
    skipped: tuple[tuple[str, str], ...] = ()

    def __getitem__(self, name: str) -> tuple[Item, ...]:
        if name not in SPLITS:
            raise KeyError(f"unknown split {name!r}; use one of {', '.join(SPLITS)}")
        return getattr(self, name)

    def sizes(self) -> dict[str, int]:
        return {s: len(self[s]) for s in SPLITS}


@dataclass
class ImportReport:
    """What an import added and what it skipped (with the reason per file)."""

    added: list[str] = field(default_factory=list)
    labeled: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    # things imported but changed or worth a look: (file, what happened)
    notes: list[tuple[str, str]] = field(default_factory=list)


def _printable_name(name: str) -> bool:
    """False for a file name that is not valid UTF-8 (Python keeps its bytes as surrogates, which no
    page, JSON or zip can carry): such files are left out of listings and named by ``validate``."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _safe_stem(name: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).stem).strip("._") or "image"
    # "__aug<k>" marks offline-augmented copies; an original must not look like one
    return stem.replace(AUG_SEP, "_aug")[:100]


class Dataset:
    """A dataset folder. Use ``Dataset.open`` for an existing one and ``Dataset.create`` for a new one."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self._next_free: dict[str, int] = {}  # base stem -> first suffix worth trying (linear imports)

    # -- construction -------------------------------------------------------------------
    @classmethod
    def open(cls, root: str | os.PathLike) -> "Dataset":
        """Open an existing dataset; raises DatasetError if ``root/images`` does not exist."""
        ds = cls(root)
        if not ds.root.exists():
            recover_dir(ds.root)  # a copy killed half way through its final rename
        if not ds.images_dir.is_dir():
            raise DatasetError(f"{ds.root}: not a dataset (no images/ folder). Create it on the Collect & Label page.")
        return ds

    @classmethod
    def create(cls, root: str | os.PathLike) -> "Dataset":
        """Create (or reopen) a dataset folder with empty ``images/`` and ``labels/``."""
        ds = cls(root)
        for d in (ds.root, ds.images_dir, ds.labels_dir):
            if d.exists() and not d.is_dir():
                raise DatasetError(f"{d}: is a file, not a folder; choose another dataset folder")
        with storage_errors(f"create the dataset folder {ds.root}"):
            ds.images_dir.mkdir(parents=True, exist_ok=True)
            ds.labels_dir.mkdir(parents=True, exist_ok=True)
        return ds

    @property
    def name(self) -> str:
        return self.root.name

    @property
    def images_dir(self) -> Path:
        return self.root / "images"

    @property
    def labels_dir(self) -> Path:
        return self.root / "labels"

    @property
    def augmented(self) -> "Dataset":
        """The dataset of offline-augmented copies (may not exist yet)."""
        return Dataset(self.root / "augmented")

    def __repr__(self) -> str:
        return f"Dataset({str(self.root)!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, Dataset) and self.root.resolve() == other.root.resolve()

    def __hash__(self) -> int:
        return hash(self.root.resolve())

    # -- listing ------------------------------------------------------------------------
    def _label_files(self) -> dict[str, Path]:
        out: dict[str, Path] = {}
        if self.labels_dir.is_dir():
            for p in sorted(self.labels_dir.iterdir()):
                if p.suffix.lower() in LABEL_EXTS and not p.name.startswith(".") and _printable_name(p.name):
                    out.setdefault(p.stem, p)
        return out

    def items(self) -> list[Item]:
        """All images sorted by name, each with its label file or None. Stale leftovers of killed
        writes (dot-named ``.upload``/``.tmp`` files) are removed on the way."""
        if not self.images_dir.is_dir():
            return []
        for d in (self.images_dir, self.labels_dir):
            recover_swaps(d)
        labels = self._label_files()
        return [
            Item(p.stem, p, labels.get(p.stem))
            for p in sorted(self.images_dir.iterdir())
            if p.suffix.lower() in IMAGE_EXTS and not p.name.startswith(".") and p.is_file() and _printable_name(p.name)
        ]

    def item(self, stem: str) -> Item:
        """The item called ``stem``; raises DatasetError if there is none."""
        for it in self.items():
            if it.stem == stem:
                return it
        raise DatasetError(f"{self.name}: no image called {stem!r}")

    def label_format(self) -> str:
        """``"xml"`` if the existing labels are all VOC XML, else ``"json"`` (labelme, the default)."""
        exts = {p.suffix.lower() for p in self._label_files().values()}
        return "xml" if exts == {".xml"} else "json"

    # -- labels -------------------------------------------------------------------------
    def read_label(self, item: Item) -> ImageLabel | None:
        """The item's label, or None when it has no label file. Raises LabelFormatError."""
        if item.label is None:
            return None
        return read_label(item.label)

    def label_or_noface(self, item: Item, image_size: tuple[int, int] | None = None) -> ImageLabel:
        """The item's label; an unlabeled image is a no-face label of its size (w, h)."""
        lab = self.read_label(item)
        if lab is not None:
            return lab
        if image_size is None:
            img = read_image(item.image)
            image_size = (img.shape[1], img.shape[0])
        return ImageLabel(int(image_size[0]), int(image_size[1]))

    def set_label(self, stem: str, label: ImageLabel) -> Item:
        """Save ``label`` for image ``stem`` atomically, in the dataset's label format.

        An ``ImageLabel`` with no boxes marks the image as reviewed and holding no face.
        """
        item = self.item(stem)
        ext = ".xml" if (item.label is not None and item.label.suffix.lower() == ".xml") else (
            "." + self.label_format() if item.label is None else ".json")
        return self._write_label(item, label, ext)

    def _write_label(self, item: Item, label: ImageLabel, ext: str) -> Item:
        path = self.labels_dir / f"{item.stem}{ext}"
        with storage_errors(f"save the label of {item.image.name}"):
            write_label(path, label, item.image.name)
            if item.label is not None and item.label != path:
                item.label.unlink(missing_ok=True)
        return Item(item.stem, item.image, path)

    def clear_label(self, stem: str) -> None:
        """Remove the label file of ``stem`` (back to unlabeled)."""
        item = self.item(stem)
        if item.label is not None:
            with storage_errors(f"remove the label of {item.image.name}"):
                item.label.unlink(missing_ok=True)

    # -- adding and removing images -----------------------------------------------------
    def add_image(self, data: bytes, filename: str, label: ImageLabel | None = None,
                  label_ext: str | None = None) -> Item:
        """Add encoded image bytes under a unique name derived from ``filename``.

        The bytes are decoded first (ImageReadError names ``filename`` if they are not an image, or
        declare more pixels than ``facecore.io.MAX_IMAGE_PIXELS``); the file appears atomically, and two
        writers never take the same name. ``label`` boxes are normalized, so they stay right even if the
        label was made at another size (``import_*`` reports that). ``label_ext`` (".json"/".xml"): the
        label format, when the caller knows it (saves a listing per image on big imports).
        An ``OSError`` (read-only folder, full disk) becomes a ``StorageError``.
        """
        img = decode_image(data, filename)
        ext = Path(filename).suffix.lower()
        if ext not in IMAGE_EXTS:
            ext = ".jpg" if data[:2] == b"\xff\xd8" else ".png"
            if ext == ".png" and data[:8] != b"\x89PNG\r\n\x1a\n":
                data, ext = encode_jpeg(img), ".jpg"
        with storage_errors(f"add {filename[:120]} to {self.name}"):
            self.images_dir.mkdir(parents=True, exist_ok=True)
            stem, final = self._store_unique(data, _safe_stem(filename), ext, filename)
        item = Item(stem, final, None)
        if label is not None:
            ext = label_ext or "." + self.label_format()
            item = self._write_label(item, ImageLabel(img.shape[1], img.shape[0], label.boxes), ext)
        return item

    def _store_unique(self, data: bytes, base: str, ext: str, filename: str) -> tuple[str, Path]:
        """Write ``data`` as ``images/<base>[_n]<ext>`` under the first free stem. The search starts where
        the last one for ``base`` ended, so importing thousands of ``x.png`` stays linear."""
        fd, tmp = tempfile.mkstemp(prefix=f".upload.{os.getpid()}-", dir=self.images_dir)
        try:
            write_durable(fd, tmp, data)
            start = self._next_free.get(base, 0)
            for n in range(start, start + 100_000):
                stem = base if n == 0 else f"{base}_{n}"
                if any((self.images_dir / f"{stem}{e}").exists() for e in IMAGE_EXTS):
                    continue
                final = self.images_dir / f"{stem}{ext}"
                try:
                    os.link(tmp, final)  # fails if another writer took the name first
                except FileExistsError:
                    continue
                if any((self.images_dir / f"{stem}{e}").exists() for e in IMAGE_EXTS if e != ext):
                    final.unlink()  # another writer took the stem with another extension meanwhile
                    continue
                self._next_free[base] = n + 1
                return stem, final
            raise DatasetError(f"{self.name}: no free file name for {filename}")
        finally:
            os.unlink(tmp)

    def delete(self, stem: str) -> None:
        """Delete image ``stem`` and its label file."""
        item = self.item(stem)
        with storage_errors(f"delete {item.image.name}"):
            if item.label is not None:
                item.label.unlink(missing_ok=True)
            item.image.unlink(missing_ok=True)

    # -- summaries ----------------------------------------------------------------------
    def counts(self) -> Counts:
        """Counts of images, faces, no-face (incl. unlabeled) and labeled images.

        A malformed label counts as labeled but neither face nor no-face; ``validate`` reports it.
        """
        items = self.items()
        faces = no_face_labeled = 0
        for it in items:
            if it.label is None:
                continue
            try:
                lab = read_label(it.label)
            except LabelFormatError:
                continue
            if lab.has_face:
                faces += 1
            else:
                no_face_labeled += 1
        labeled = sum(it.labeled for it in items)
        unlabeled = len(items) - labeled
        aug = len(self.augmented.items()) if self.augmented.images_dir.is_dir() else 0
        return Counts(len(items), faces, no_face_labeled + unlabeled, labeled, unlabeled, aug)

    def validate(self) -> list[Problem]:
        """Find unreadable images, labels without an image, malformed labels, boxes outside the image,
        and labels whose size disagrees with their image."""
        problems: list[Problem] = []
        for folder in (self.images_dir, self.labels_dir):
            for p in (sorted(folder.iterdir()) if folder.is_dir() else []):
                if not _printable_name(p.name):
                    shown = p.name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
                    problems.append(Problem("bad_file_name", shown, f"{folder.name}/{shown}: the file name is not valid "
                                            "UTF-8, so the file is left out; rename it"))
        items = self.items()
        stems = {it.stem for it in items}
        if self.labels_dir.is_dir():
            seen: dict[str, str] = {}
            for p in sorted(self.labels_dir.iterdir()):
                if p.suffix.lower() in LABEL_EXTS and not p.name.startswith(".") and _printable_name(p.name):
                    if p.stem in seen:
                        problems.append(Problem("duplicate_label", str(p), f"{p.name}: {seen[p.stem]} labels the same "
                                                f"image and is the one used; delete one of them"))
                    seen.setdefault(p.stem, p.name)
        for stem, path in self._label_files().items():
            if stem not in stems:
                problems.append(Problem("orphan_label", str(path), f"{path.name}: label without an image"))
        for it in items:
            try:
                img = read_image(it.image)
            except ImageReadError as exc:
                problems.append(Problem("unreadable_image", str(it.image), str(exc)))
                continue
            if it.label is None:
                continue
            try:
                lab = read_label(it.label)
            except LabelFormatError as exc:
                problems.append(Problem("malformed_label", str(it.label), str(exc)))
                continue
            h, w = img.shape[:2]
            if (lab.width, lab.height) != (w, h):
                hint = ""
                if (lab.width, lab.height) == (h, w):
                    hint = (" (the photo is turned by its EXIF orientation and the label was drawn on the stored "
                            "pixels: import the photo and label again, which turns the boxes, or redraw them)")
                problems.append(Problem("size_mismatch", str(it.label),
                                        f"{it.label.name}: label says {lab.width}x{lab.height}, image is {w}x{h}{hint}"))
            if lab.has_face and B.outside_image(lab.boxes).any():
                problems.append(Problem("box_outside", str(it.label), f"{it.label.name}: a box reaches past the image edge"))
            if lab.has_face and not B.is_valid(lab.boxes).all():
                problems.append(Problem("degenerate_box", str(it.label), f"{it.label.name}: a box has no width or height"))
        return problems

    def fingerprint(self) -> str:
        """A short hash of file names, image sizes in bytes and label contents: changes when the data does."""
        h = hashlib.sha256()
        for it in self.items():
            h.update(it.image.name.encode())
            h.update(str(it.image.stat().st_size).encode())
            if it.label is not None:
                h.update(it.label.read_bytes())
        return h.hexdigest()[:16]

    # -- splitting ----------------------------------------------------------------------
    def split(self, fractions: tuple[float, float, float] = DEFAULT_SPLIT, seed: int = 0) -> Split:
        """Deterministic train/val/test split of the original images, by source photo.

        Face and no-face images are split separately so each split gets its share of both.
        Offline-augmented copies are not in it: see ``training_items``.
        """
        strata: dict[bool, list[Item]] = {True: [], False: []}
        skipped = []
        for it in self.items():
            try:
                face = it.label is not None and read_label(it.label).has_face
            except LabelFormatError as exc:
                # a broken label must not reach training; the caller says so (training warnings)
                skipped.append((it.image.name, str(exc)))
                continue
            strata[face].append(it)
        parts = {s: [] for s in SPLITS}
        for group in strata.values():
            for name, chosen in split_items(group, fractions, seed).items():
                parts[name].extend(chosen)
        return Split(*(tuple(sorted(parts[s], key=lambda i: i.stem)) for s in SPLITS), skipped=tuple(skipped))

    def training_items(self, split: Split) -> list[Item]:
        """Training items: the train split plus augmented copies of train-split sources only; a 2x2
        mosaic (``facecore.mosaic``) only when all four of its photos are in the train split, so a
        split that changed since the mosaics were made cannot leak val or test photos into training."""
        sources = {it.source for it in split.train}
        mosaics = self._mosaic_sources()
        aug = [it for it in self.augmented.items()
               if it.source in sources and all(s in sources for s in mosaics.get(it.stem, ()))]
        return list(split.train) + aug

    def _mosaic_sources(self) -> dict[str, list[str]]:
        """``{mosaic stem: its four source stems}`` from ``augmented/mosaic.json`` ({} if none or unreadable)."""
        try:
            entries = json.loads((self.augmented.root / MOSAIC_MANIFEST).read_text("utf-8"))
            return {str(k): [str(x) for x in v["sources"]] for k, v in entries.items()}
        except (OSError, ValueError, TypeError, KeyError, AttributeError, RecursionError):
            return {}

    # -- export -------------------------------------------------------------------------
    def export_labelme_zip(self, dest: str | os.PathLike | io.BytesIO | None = None) -> bytes | Path:
        """Zip the dataset as ``<name>/images/*`` and ``<name>/labels/*.json`` (labelme 5, imageData null).

        VOC labels are converted to labelme. Unlabeled images go without a JSON (no-face by convention).
        Returns the bytes when ``dest`` is None, else writes ``dest`` atomically and returns it.
        """
        if dest is not None and not isinstance(dest, io.BytesIO):
            self._check_export_dest(Path(dest))
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for it in self.items():
                zf.write(it.image, f"{self.name}/images/{it.image.name}", compress_type=zipfile.ZIP_STORED)
                if it.label is None:
                    continue
                try:
                    doc = labelme_document(read_label(it.label), it.image.name)
                except LabelFormatError:
                    # a broken label must not block the export: ship it as it is (validate() names it)
                    zf.write(it.label, f"{self.name}/labels/{it.label.name}")
                    continue
                zf.writestr(f"{self.name}/labels/{it.stem}.json", json.dumps(doc, indent=2))
        data = buf.getvalue()
        if dest is None:
            return data
        if isinstance(dest, io.BytesIO):
            dest.write(data)
            return dest
        return atomic_write_bytes(dest, data)

    def _check_export_dest(self, dest: Path) -> None:
        if dest.is_dir():
            raise DatasetError(f"{dest}: is a folder; give the .zip file to write, e.g. {dest / (self.name + '.zip')}")
        parent = dest.parent.resolve()
        for inside in (self.images_dir, self.labels_dir, self.augmented.root):
            inside = inside.resolve()
            if parent == inside or inside in parent.parents:
                raise DatasetError(f"{dest}: inside the dataset's {inside.name}/ folder, where it would be taken "
                                   "for data; write the .zip somewhere else")

    # -- import -------------------------------------------------------------------------
    def import_zip(self, source, max_total_bytes: int = MAX_ZIP_TOTAL_BYTES) -> ImportReport:
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
        except (zipfile.BadZipFile, OSError) as exc:
            raise ImportRejected(f"not a readable .zip file ({exc})") from exc
        with zf:
            infos = [i for i in zf.infolist() if not i.is_dir()]
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
            report = self._import_entries(files, lambda info: zf.read(info))
            report.skipped[:0] = unreadable
            return report

    def import_folder(self, folder: str | os.PathLike) -> ImportReport:
        """Import images and labelme/VOC labels found anywhere under ``folder`` (same rules as a zip)."""
        folder = Path(folder)
        if not folder.is_dir():
            raise ImportRejected(f"{folder}: not a folder")
        root = self.root.resolve()
        if folder.resolve() == root or root in folder.resolve().parents or folder.resolve() in root.parents:
            raise ImportRejected(f"{folder}: holds the dataset {self.name} itself (or lies inside it); "
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

        return self._import_entries(files, read)

    def _import_entries(self, files: dict, read) -> ImportReport:
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
        label_ext = "." + self.label_format()
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
                    label = parse_label_bytes(read(files[lab_name]), lab_name, (head.width, head.height), notes)
                    label, note = orient_label(label, head)
                    report.notes.extend((lab_name, n.removeprefix(f"{lab_name}: ")) for n in notes + [note] if n)
                except LabelFormatError as exc:
                    report.skipped.append((lab_name, f"{str(exc).removeprefix(f'{lab_name}: ')} "
                                                      "(image imported without its label)"))
                except _ENTRY_ERRORS as exc:
                    report.skipped.append((lab_name, f"{_entry_error(lab_name, exc)} (image imported without its label)"))
            try:
                item = self.add_image(data, PurePosixPath(name).name, label=label, label_ext=label_ext)
            except ImageReadError as exc:
                report.skipped.append((name, str(exc).removeprefix(f"{name}: ")))
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
# entry (zlib/bz2/lzma errors, EOF, CRC), an unsupported method or encryption, a vanished file.
_ENTRY_ERRORS = (OSError, zipfile.BadZipFile, EOFError, RuntimeError, NotImplementedError, ValueError)


def _entry_error(name: str, exc: BaseException) -> str:
    """Why entry ``name`` was skipped, without repeating its name (the report pairs them)."""
    if isinstance(exc, RuntimeError) and "encrypted" in str(exc):
        return "encrypted (password-protected) entry; zip it again without a password"
    if isinstance(exc, NotImplementedError):
        return "compression method not supported; zip it again with ordinary Deflate compression"
    if isinstance(exc, (ImageReadError, StorageError)):
        return str(exc).removeprefix(f"{name}: ")
    return f"could not be read ({type(exc).__name__}: {str(exc)[:160]})"


def split_items(items: list[Item], fractions=DEFAULT_SPLIT, seed: int = 0) -> dict[str, list[Item]]:
    """Split items by source photo into train/val/test with the given fractions.

    Sources are ordered by a seeded hash (so the same seed always gives the same split, on any
    machine) and cut at the rounded fractions; all items of one source go to the same split.
    """
    if len(fractions) != 3 or any(f < 0 for f in fractions) or not np.isclose(sum(fractions), 1.0):
        raise ValueError(f"split fractions must be three non-negative numbers adding up to 1, got {fractions}")
    by_source: dict[str, list[Item]] = {}
    for it in items:
        by_source.setdefault(it.source, []).append(it)
    order = sorted(by_source, key=lambda s: hashlib.sha256(f"{seed}:{s}".encode()).hexdigest())
    n = len(order)
    n_train = int(round(n * fractions[0]))
    n_val = int(round(n * fractions[1]))
    if n_train + n_val > n:
        n_val = n - n_train
    cuts = {"train": order[:n_train], "val": order[n_train:n_train + n_val], "test": order[n_train + n_val:]}
    return {k: [it for s in v for it in by_source[s]] for k, v in cuts.items()}


def copy_dataset(src: Dataset, dest_root: str | os.PathLike) -> Dataset:
    """Copy a dataset (images and labels, not augmented copies) to a new folder, e.g. to edit the sample."""
    dest_root = Path(dest_root)
    if dest_root.exists():
        raise DatasetError(f"{dest_root}: already exists; choose another name")

    def write(tmp: Path) -> None:
        shutil.copytree(src.images_dir, tmp / "images")
        if src.labels_dir.is_dir():
            shutil.copytree(src.labels_dir, tmp / "labels")
        else:
            (tmp / "labels").mkdir()

    replace_dir(dest_root, write)
    return Dataset(dest_root)
