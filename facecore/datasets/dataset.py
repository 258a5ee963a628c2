"""Datasets on disk: a folder with ``images/`` and ``labels/``.

Conventions (the labelme tutorial workflow's):
- ``labels/<stem>.json`` (labelme) or ``labels/<stem>.xml`` (VOC) labels ``images/<stem>.<ext>``.
- An image without a label file is a no-face example for training. The labeling page also
  calls it *unlabeled*; marking "no face" writes a labelme file with no shapes.
- Offline-augmented copies live in ``augmented/{images,labels}`` and are named
  ``<source stem>__aug<k>``, so every copy can be traced to the photo it came from.

Splitting lives in ``facecore.datasets.splits`` and import/export in ``facecore.datasets.archive``; ``Dataset``'s methods
for them call those modules.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from . import archive
from .archive import ImportReport
from ..errors import DatasetError, LabelFormatError
from .checks import Problem, content_index, printable_name, validate_dataset
from .contents import ContentIndex, DuplicateImageError, fingerprint, remember
from ..images import IMAGE_EXTS, decode_image, encode_jpeg, read_image
from ..io import recover_dir, recover_swaps, storage_errors, write_durable
from .labels import LABEL_EXTS, ImageLabel, read_label, read_label_for, write_label
from .splits import DEFAULT_SPLIT, Split, split_dataset, training_items

AUG_SEP = "__aug"
_AUG_RE = re.compile(r"__aug\d+$")


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


def _safe_stem(name: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).stem).strip("._") or "image"
    # "__aug<k>" marks offline-augmented copies; an original must not look like one
    return stem.replace(AUG_SEP, "_aug")[:100]


class Dataset:
    """A dataset folder. Use ``Dataset.open`` for an existing one and ``Dataset.create`` for a new one."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self._next_free: dict[str, int] = {}  # base stem -> first suffix worth trying (linear imports)
        self._contents: ContentIndex | None = None  # what add_image compares with (``_index``)
        self._index_stamp = None

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
                if p.suffix.lower() in LABEL_EXTS and not p.name.startswith(".") and printable_name(p.name):
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
            if p.suffix.lower() in IMAGE_EXTS and not p.name.startswith(".") and p.is_file() and printable_name(p.name)
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
    def read_label(self, item: Item, notes: list[str] | None = None) -> ImageLabel | None:
        """The item's label fitted to its photo (``labels.read_label_for``: boxes clipped to the edge, a
        label of a scaled copy rescaled, ``notes`` says so), or None when it has no label file. Raises
        LabelFormatError, also for a box that cannot be a face or a label made for another shape of image."""
        if item.label is None:
            return None
        return read_label_for(item.label, item.image, notes)

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
        declare more pixels than ``facecore.images.MAX_IMAGE_PIXELS``); the file appears atomically, and two
        writers never take the same name. ``label`` boxes are normalized, so they stay right even if the
        label was made at another size (``import_*`` reports that). ``label_ext`` (".json"/".xml"): the
        label format, when the caller knows it (saves a listing per image on big imports).
        An ``OSError`` (read-only folder, full disk) becomes a ``StorageError``. A photo whose bytes or
        decoded pixels are already in the dataset is refused with ``DuplicateImageError`` naming both files.
        """
        img = decode_image(data, filename)
        ext = Path(filename).suffix.lower()
        if ext not in IMAGE_EXTS:
            ext = ".jpg" if data[:2] == b"\xff\xd8" else ".png"
            if ext == ".png" and data[:8] != b"\x89PNG\r\n\x1a\n":
                data, ext = encode_jpeg(img), ".jpg"
        fp = fingerprint(data, img)
        index = self._index()
        hit = index.find(fp)
        if hit is not None:  # content-addressed: the same photo is never added twice, whatever its name
            raise DuplicateImageError(filename, f"images/{hit[0]}", hit[1])
        with storage_errors(f"add {filename[:120]} to {self.name}"):
            self.images_dir.mkdir(parents=True, exist_ok=True)
            stem, final = self._store_unique(data, _safe_stem(filename), ext, filename)
        remember(final, fp)
        index.add(final.name, fp)
        self._index_stamp = self._images_stamp()
        item = Item(stem, final, None)
        if label is not None:
            ext = label_ext or "." + self.label_format()
            item = self._write_label(item, ImageLabel(img.shape[1], img.shape[0], label.boxes), ext)
        return item

    def _images_stamp(self):
        try:
            return self.images_dir.stat().st_mtime_ns
        except OSError:
            return None

    def _index(self) -> ContentIndex:
        """The content index for adds: built once per ``Dataset`` object and kept up to date by its own adds;
        built again when the folder changed otherwise (another tab or process, a delete)."""
        if self._contents is None or self._index_stamp != self._images_stamp():
            self._contents = self.contents() if self.images_dir.is_dir() else ContentIndex({})
            self._index_stamp = self._images_stamp()
        return self._contents

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
        """Find unreadable images, labels without an image, malformed or refused labels, boxes past the edge,
        labels whose size disagrees with their image, the same photo twice and near duplicates
        (``facecore.datasets.checks.validate_dataset``; ``checks.WARNING_KINDS`` are only worth a look)."""
        return validate_dataset(self)

    def contents(self) -> ContentIndex:
        """The fingerprints of the photos (``facecore.datasets.contents``): what adds, splits and ``validate`` compare."""
        return content_index(self)

    def fingerprint(self) -> str:
        """A short hash of file names, image sizes in bytes and label contents: changes when the data does."""
        h = hashlib.sha256()
        for it in self.items():
            h.update(it.image.name.encode())
            h.update(str(it.image.stat().st_size).encode())
            if it.label is not None:
                h.update(it.label.read_bytes())
        return h.hexdigest()[:16]

    # -- splitting (facecore.datasets.splits) ---------------------------------------------------------
    def split(self, fractions: tuple[float, float, float] = DEFAULT_SPLIT, seed: int = 0) -> Split:
        """Deterministic train/val/test split of the original images, by source photo (``splits.split_dataset``)."""
        return split_dataset(self, fractions, seed)

    def training_items(self, split: Split) -> list[Item]:
        """The train split plus the augmented copies of its photos (``splits.training_items``)."""
        return training_items(self, split)

    # -- import and export (facecore.datasets.archive) ------------------------------------------------
    def export_labelme_zip(self, dest: str | os.PathLike | io.BytesIO | None = None) -> bytes | Path:
        """Zip the dataset as labelme (``archive.export_labelme_zip``): the bytes, or ``dest`` written atomically."""
        return archive.export_labelme_zip(self, dest)

    def import_zip(self, source, max_total_bytes: int = archive.MAX_ZIP_TOTAL_BYTES) -> ImportReport:
        """Import images and labelme/VOC labels from a ``.zip`` (``archive.import_zip``)."""
        return archive.import_zip(self, source, max_total_bytes)

    def import_folder(self, folder: str | os.PathLike) -> ImportReport:
        """Import images and labelme/VOC labels found anywhere under ``folder`` (``archive.import_folder``)."""
        return archive.import_folder(self, folder)

