"""Identity data for the "me / not me" classifier (the me_not_me tutorial, as a feature): face crops.

Layout: an *identity set* is a folder ``data/identities/<set>/`` with one sub-folder per identity,
each holding face crops::

    data/identities/<set>/<identity>/*.jpg     e.g. me/, not_me/ (any names)
    data/identities/<set>/comparison.json      the last backbone comparison run on this set

A crop is the labeled (or detected) face box grown by a margin ``k`` on every side (``k=0.5``
doubles width and height, as in the tutorial), clipped to the image. ``facecore.identity.train`` trains
the classifier on an identity set, ``facecore.identity.compare`` compares backbones on one, and
``facecore.identity.recognize`` names faces with it. Nothing here imports TensorFlow.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import boxes as B
from ..datasets.contents import CACHE_FILE, ContentIndex, DuplicateImageError, fingerprint
from ..errors import DatasetError, FaceCoreError, ImageReadError, StorageError
from ..images import IMAGE_EXTS, decode_image, encode_jpeg, read_image
from ..io import atomic_write_bytes, storage_errors
from ..jobs import Cancel, Progress, ProgressFn
from ..preprocess import resize_for_model
from ..datasets.workspace import check_name

IDENTITIES_DIR = "identities"
DEFAULT_K = 0.5
MAX_UPLOAD_BYTES = 25 * 1024**2


def check_identity_name(name: str, what: str = "identity") -> str:
    """``workspace.check_name`` with an identity's example names. Raises DatasetError."""
    return check_name(name, what, "'me', 'not_me'")


# ---------------------------------------------------------------------------------------------
# Crops


def crop_box(box, k: float = DEFAULT_K) -> np.ndarray:
    """The crop of face ``box`` (normalized ``[x1, y1, x2, y2]``): grown by ``k`` x its size on every
    side and clipped to the image. Returns float32 (4,)."""
    return B.expand(box, k)[0]


def crop_face(rgb: np.ndarray, box, k: float = DEFAULT_K) -> np.ndarray:
    """The face ``box`` of RGB ``rgb`` (H, W, 3) with margin ``k``, as an RGB uint8 crop.

    At the image border the crop is cut off (not padded), so it can be narrower than the grown box.
    Raises ValueError for a box with no pixels.
    """
    h, w = rgb.shape[:2]
    x1, y1, x2, y2 = np.rint(B.to_pixels(crop_box(box, k), w, h)[0]).astype(int).tolist()
    x1, y1 = max(0, min(x1, w)), max(0, min(y1, h))
    x2, y2 = max(0, min(x2, w)), max(0, min(y2, h))
    if x2 - x1 < 2 or y2 - y1 < 2:
        raise ValueError(f"face box {np.asarray(box).tolist()} has no pixels in a {w}x{h} image")
    return rgb[y1:y2, x1:x2].copy()


FACE_SCORE = 0.5  # detectors report weak candidates too (a trained BlazeFace from 0.05): they are no face


def largest_box(detections, min_score: float = FACE_SCORE) -> np.ndarray | None:
    """The box of the largest detection scoring ``min_score`` or more (the person in front), or None."""
    faces = [d for d in detections if d.score >= min_score]
    if not faces:
        return None
    return max(faces, key=lambda d: float(B.area(d.box)[0])).box


# ---------------------------------------------------------------------------------------------
# Identity sets on disk


def identities_root(data_root: str | os.PathLike) -> Path:
    """``<data>/identities``: where identity sets live."""
    return Path(data_root) / IDENTITIES_DIR


def list_identity_sets(data_root: str | os.PathLike) -> dict[str, "IdentitySet"]:
    """Identity sets under ``<data>/identities`` by name, sorted."""
    root = identities_root(data_root)
    if not root.is_dir():
        return {}
    return {p.name: IdentitySet(p) for p in sorted(root.iterdir()) if p.is_dir() and not p.name.startswith(".")}


def create_identity_set(data_root: str | os.PathLike, name: str) -> "IdentitySet":
    """A new empty identity set ``<data>/identities/<name>``; refuses an existing name."""
    name = check_identity_name(name, "identity set")
    root = identities_root(data_root) / name
    if root.exists():
        raise DatasetError(f"an identity set called {name!r} already exists; choose another name")
    with storage_errors(f"create the identity set {root}"):
        root.mkdir(parents=True)
    return IdentitySet(root)


@dataclass(frozen=True)
class BuildReport:
    """What adding crops did: ``added`` crops written, ``skipped`` (file or stem, why)."""

    added: int = 0
    skipped: list = field(default_factory=list)


class IdentitySet:
    """A folder of identity sub-folders, each with face crops (jpg/png)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    @classmethod
    def open(cls, root: str | os.PathLike) -> "IdentitySet":
        root = Path(root)
        if not root.is_dir():
            raise DatasetError(f"{root}: no such identity folder; it needs one sub-folder per identity (e.g. me/, not_me/)")
        return cls(root)

    @property
    def name(self) -> str:
        return self.root.name

    def __repr__(self) -> str:
        return f"IdentitySet({str(self.root)!r})"

    def identities(self) -> list[str]:
        """Identity names (sub-folders), sorted: this is the class order of a trained model."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))

    def images(self, identity: str) -> list[Path]:
        """The crops of ``identity``, sorted by name."""
        d = self.root / identity
        if not d.is_dir():
            return []
        return sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_EXTS and not p.name.startswith("."))

    def counts(self) -> dict[str, int]:
        """Number of crops per identity."""
        return {name: len(self.images(name)) for name in self.identities()}

    def fingerprint(self) -> str:
        """A short hash of the file names and sizes: changes when crops are added or removed."""
        h = hashlib.sha1()
        for ident in self.identities():
            for p in self.images(ident):
                h.update(f"{ident}/{p.name}:{p.stat().st_size}\n".encode())
        return h.hexdigest()[:12]

    def add_identity(self, identity: str) -> Path:
        d = self.root / check_identity_name(identity)
        with storage_errors(f"create the identity folder {d}"):
            d.mkdir(parents=True, exist_ok=True)
        return d

    def remove_identity(self, identity: str) -> None:
        d = self.root / check_identity_name(identity)
        if d.is_dir():
            with storage_errors(f"remove {d}"):
                shutil.rmtree(d)

    def contents(self) -> ContentIndex:
        """Fingerprints of every crop of every identity (``facecore.datasets.contents``), named ``<identity>/<file>``."""
        prints = {}
        for ident in self.identities():
            d = self.root / ident
            idx = ContentIndex.of(d, d / CACHE_FILE, [p.name for p in self.images(ident)])
            prints.update({f"{ident}/{n}": fp for n, fp in idx.prints.items()})
        return ContentIndex(prints)

    def add_crop(self, identity: str, rgb: np.ndarray, stem: str, index: ContentIndex | None = None) -> Path:
        """Write an RGB crop as ``<identity>/<stem>.jpg`` (atomic; an existing stem gets a suffix). A crop whose
        bytes or pixels are already in the set, under any identity, raises ``DuplicateImageError`` naming both
        (``index``: the set's ``contents()``, when the caller adds many)."""
        d = self.add_identity(identity)
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", stem).strip("._") or "face"
        data = encode_jpeg(rgb)
        fp = fingerprint(data)
        index = index if index is not None else self.contents()
        hit = index.find(fp)
        if hit is not None:
            raise DuplicateImageError(f"{identity}/{stem}.jpg", hit[0], hit[1])
        path, n = d / f"{stem}.jpg", 1
        while path.exists():
            path, n = d / f"{stem}-{n}.jpg", n + 1
        atomic_write_bytes(path, data)
        index.add(f"{identity}/{path.name}", fp)
        return path

    def add_upload(self, identity: str, data: bytes, filename: str, detector=None, k: float = DEFAULT_K) -> BuildReport:
        """Add an uploaded photo to ``identity``: with a ``detector``, the largest detected face cropped
        with margin ``k`` (a photo with no face is skipped); without one, the photo as it is (it
        should already be a face crop). Unreadable or huge files are skipped with the reason."""
        check_identity_name(identity)
        if len(data) > MAX_UPLOAD_BYTES:
            return BuildReport(0, [(filename, f"larger than {MAX_UPLOAD_BYTES // 1024**2} MB")])
        try:
            rgb = decode_image(data, filename)
        except ImageReadError as exc:
            return BuildReport(0, [(filename, str(exc))])
        stem = Path(filename).stem
        if detector is not None:
            box = largest_box(detector.detect(rgb))
            if box is None:
                return BuildReport(0, [(filename, "no face found")])
            try:
                rgb = crop_face(rgb, box, k)
            except ValueError as exc:  # a face box too small to crop
                return BuildReport(0, [(filename, str(exc))])
        try:
            self.add_crop(identity, rgb, stem)
        except DuplicateImageError as exc:  # Add photos clicked twice: the same crops are not added again
            return BuildReport(0, [(filename, f"already there as {exc.existing} ({exc.how})")])
        return BuildReport(1, [])

    def build_from_dataset(self, identity: str, dataset, k: float = DEFAULT_K,
                           progress: ProgressFn | None = None, cancel: Cancel | None = None) -> BuildReport:
        """Crop every labeled face of ``dataset`` (a ``facecore.Dataset``) with margin ``k`` into
        ``identity``, named ``<dataset>_<stem>_<i>.jpg``. Images without a face label are skipped;
        crops already there (same name) are not written twice. ``progress``: photos done of all;
        ``cancel`` stops before the next photo with ``Cancelled`` (the crops written stay: ``partial`` is
        the ``BuildReport`` so far)."""
        check_identity_name(identity)
        items = dataset.items()
        if not items:
            raise DatasetError(f"dataset {dataset.name!r} has no images to crop faces from")
        d = self.add_identity(identity)
        index = self.contents()
        added, skipped = 0, []
        for n, item in enumerate(items, 1):
            if cancel is not None:
                cancel.check(f"cropping stopped after {n - 1} of {len(items)} photos", BuildReport(added, skipped))
            try:
                label = dataset.read_label(item)
                if label is None or not label.has_face:
                    skipped.append((item.stem, "no face label"))
                    continue
                rgb = None
                for i, box in enumerate(label.boxes):
                    path = d / f"{dataset.name}_{item.stem}_{i}.jpg"
                    if path.exists():
                        continue
                    if rgb is None:
                        rgb = read_image(item.image)
                    try:
                        self.add_crop(identity, crop_face(rgb, box, k), path.stem, index)
                        added += 1
                    except DuplicateImageError as exc:
                        skipped.append((item.stem, f"already there as {exc.existing} ({exc.how})"))
                    except ValueError as exc:
                        skipped.append((item.stem, str(exc)))
            except StorageError:
                raise  # a read-only or full disk fails every photo alike: say it once
            except FaceCoreError as exc:
                skipped.append((item.stem, str(exc)))
            if progress:
                progress(Progress(n, len(items), f"cropping {n}/{len(items)}", "crop"))
        return BuildReport(added, skipped)

    def load(self, size: int, with_groups: bool = False):
        """All crops resized to ``size`` -> (x float32 (N, size, size, 3) 0..255, y int (N,), class names), and
        with ``with_groups`` the source group of each crop (``crop_groups``: crops of one photo, or copies of
        one crop, share a group, so a split by group never puts one photo in train and val).

        Unreadable files are skipped. Raises DatasetError unless there are two identities with
        at least two crops each (one to train on, one to validate with).
        """
        classes = [c for c in self.identities() if self.images(c)]
        if len(classes) < 2:
            have = ", ".join(f"{k}: {v}" for k, v in self.counts().items()) or "none"
            raise DatasetError(f"identity set {self.name!r} needs at least two identities with crops "
                               f"(e.g. me/ and not_me/); it has {have}")
        xs, ys, names = [], [], []
        for ci, c in enumerate(classes):
            n = 0
            for p in self.images(c):
                try:
                    xs.append(resize_for_model(read_image(p), size))
                except ImageReadError:
                    continue
                ys.append(ci)
                names.append(f"{c}/{p.name}")
                n += 1
            if n < 2:
                raise DatasetError(f"identity {c!r} has {n} readable crop(s); add at least two (better: dozens)")
        out = np.stack(xs), np.asarray(ys, np.int64), classes
        return (*out, crop_groups(names, self.contents())) if with_groups else out


_FACE_INDEX = re.compile(r"_\d+$")  # build_from_dataset names crops <dataset>_<stem>_<face index>


def crop_groups(names: list[str], index: ContentIndex) -> list[str]:
    """The source photo of each crop (``<identity>/<file>``): the faces of one dataset photo
    (``<dataset>_<stem>_<i>.jpg``) share one, and so do crops that are the same picture (identical, or
    re-encoded or resized: ``facecore.datasets.contents``)."""
    same = index.groups(near_too=True)
    out = []
    for name in names:
        ident, file = name.split("/", 1)
        stem = Path(file).stem
        key = f"{ident}/{_FACE_INDEX.sub('', stem)}" if stem.count("_") >= 2 else name
        out.append(key)
    # join the name groups with the content groups (union-find over both)
    parent = {k: k for k in set(out) | set(same.values())}

    def root(k):
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    for name, key in zip(names, out):
        if name in same:
            a, b = root(key), root(same[name])
            if a != b:
                parent[max(a, b)] = min(a, b)
    return [root(k) for k in out]
