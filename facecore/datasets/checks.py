"""What is wrong with a dataset, for people: ``Dataset.validate`` calls ``validate_dataset``.

Unreadable images, labels without an image or refused by the label rule (``facecore.datasets.labels``), sizes
that disagree, boxes past the edge, file names that are not UTF-8, the same photo twice (``duplicate_image``;
with different labels: ``conflicting_labels``) and photos that look like another one re-encoded or resized
(``near_duplicate``, a warning: ``WARNING_KINDS``). Datasets are duck-typed (``facecore.datasets.dataset.Dataset``):
this module never imports it.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import boxes as B
from .contents import CACHE_FILE, ContentIndex
from ..errors import ImageReadError, LabelFormatError
from ..images import read_image
from .labels import LABEL_EXTS, ImageLabel, read_label

WARNING_KINDS = ("near_duplicate",)  # worth a look, not an error: `validate` still exits 0 for these


@dataclass(frozen=True)
class Problem:
    """A validation finding: ``kind`` is a short code, ``path`` the file, ``message`` for people."""

    kind: str
    path: str
    message: str


def printable_name(name: str) -> bool:
    """False for a file name that is not valid UTF-8 (Python keeps its bytes as surrogates, which no
    page, JSON or zip can carry): such files are left out of listings and named by ``validate``."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def content_index(ds) -> ContentIndex:
    """The fingerprints of ``ds``'s photos (``facecore.datasets.contents``), cached beside them."""
    return ContentIndex.of(ds.images_dir, ds.root / CACHE_FILE, [it.image.name for it in ds.items()])


def label_summary(label: ImageLabel | None) -> str:
    """How training sees a label: ``"no face"`` (also unlabeled) or ``"N face(s)"``."""
    n = 0 if label is None else len(label.boxes)
    return f"{n} face(s)" if n else "no face"


def labels_agree(a: ImageLabel | None, b: ImageLabel | None, min_iou: float = 0.5) -> bool:
    """True when two labels of the same photo mean the same to training: both without a face (unlabeled
    counts as no face), or the same number of faces, each box matching one of the other's (IoU >= ``min_iou``)."""
    na, nb = (0 if x is None else len(x.boxes) for x in (a, b))
    if na != nb:
        return False
    if na == 0:
        return True
    return bool((B.iou_matrix(a.boxes, b.boxes).max(axis=1) >= min_iou).all())


def validate_dataset(ds) -> list[Problem]:
    """Every ``Problem`` of dataset ``ds`` (see the module docstring), errors first, near duplicates last."""
    problems = _bad_names(ds)
    items = ds.items()
    stems = {it.stem for it in items}
    if ds.labels_dir.is_dir():
        seen: dict[str, str] = {}
        for p in sorted(ds.labels_dir.iterdir()):
            if p.suffix.lower() in LABEL_EXTS and not p.name.startswith(".") and printable_name(p.name):
                if p.stem in seen:
                    problems.append(Problem("duplicate_label", str(p), f"{p.name}: {seen[p.stem]} labels the same "
                                            f"image and is the one used; delete one of them"))
                seen.setdefault(p.stem, p.name)
                if p.stem not in stems and seen[p.stem] == p.name:
                    problems.append(Problem("orphan_label", str(p), f"{p.name}: label without an image"))
    labels = {}
    for it in items:
        problems += _item_problems(it, labels)
    return problems + _duplicate_problems(ds, items, labels)


def _bad_names(ds) -> list[Problem]:
    out = []
    for folder in (ds.images_dir, ds.labels_dir):
        for p in (sorted(folder.iterdir()) if folder.is_dir() else []):
            if not printable_name(p.name):
                shown = p.name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
                out.append(Problem("bad_file_name", shown, f"{folder.name}/{shown}: the file name is not valid "
                                   "UTF-8, so the file is left out; rename it"))
    return out


def _item_problems(it, labels: dict) -> list[Problem]:
    """The problems of one image and its label; its readable label goes into ``labels`` (by image name)."""
    try:
        img = read_image(it.image)
    except ImageReadError as exc:
        return [Problem("unreadable_image", str(it.image), str(exc))]
    if it.label is None:
        labels[it.image.name] = None
        return []
    notes: list[str] = []
    try:
        lab = read_label(it.label, notes=notes)
    except LabelFormatError as exc:
        return [Problem("malformed_label", str(it.label), str(exc))]
    out = []
    h, w = img.shape[:2]
    if (lab.width, lab.height) != (w, h):
        hint = ""
        if (lab.width, lab.height) == (h, w):
            hint = (" (the photo is turned by its EXIF orientation and the label was drawn on the stored "
                    "pixels: import the photo and label again, which turns the boxes, or redraw them)")
        elif abs(lab.width / lab.height - w / h) > 0.02 * w / h:
            hint = " (another shape: training leaves this label out; redraw its boxes)"
        out.append(Problem("size_mismatch", str(it.label),
                           f"{it.label.name}: label says {lab.width}x{lab.height}, image is {w}x{h}{hint}"))
    if any("clipped" in n for n in notes):
        out.append(Problem("box_outside", str(it.label), f"{it.label.name}: a box reaches past the image edge "
                           "(training clips it)"))
    labels[it.image.name] = lab
    return out


def _duplicate_problems(ds, items, labels: dict) -> list[Problem]:
    """The same photo twice (and whether its copies disagree), then photos that look like another."""
    index = content_index(ds)
    members: dict[str, list[str]] = {}
    for name, root in index.groups().items():
        members.setdefault(root, []).append(name)
    out, near = [], []
    for root, names in sorted(members.items()):
        for name in sorted(names):
            if name == root:
                continue
            how = "same bytes" if index.prints[name].sha == index.prints[root].sha else "same pixels"
            out.append(Problem("duplicate_image", str(ds.images_dir / name),
                               f"{name}: the same photo as {root} ({how}); delete one of them"))
            if name in labels and root in labels and not labels_agree(labels[root], labels[name]):
                out.append(Problem("conflicting_labels", str(ds.images_dir / name),
                                   f"{name} and {root} are the same photo with different labels ("
                                   f"{label_summary(labels[name])} vs {label_summary(labels[root])}; unlabeled "
                                   f"counts as no face): fix one, or delete the copy"))
    for a, b in index.near_pairs():
        near.append(Problem("near_duplicate", str(ds.images_dir / b),
                            f"{b}: looks like {a} re-encoded or resized (a near duplicate); keep one unless "
                            "they really differ"))
    return out + near
