"""The logic behind the Collect & Label page: adding photos, saving boxes, the drawing canvas, gallery.
Model proposals (pre-labeling) are in ``facecore.datasets.prelabel``.

Boxes are the facecore convention (float32 normalized ``[x1, y1, x2, y2]``) except where a name
says pixels: the numeric inputs and the drawing canvas work in pixels and are converted here.

Label states of an image:
- ``face``: a label file with at least one box;
- ``no_face``: a label file with no shapes (the user reviewed it and found no face);
- ``unlabeled``: no label file yet (training treats it as no-face, the page asks for a decision);
- ``broken``: a label file that cannot be read (``Dataset.validate`` explains why).

Nothing here holds a list of items across calls: every function reads the folder afresh, so two
browser tabs labeling the same dataset each see the other's saved work, and every write is atomic.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import cv2
import numpy as np

from .. import boxes as B
from .archive import ImportReport
from .contents import DuplicateImageError
from .dataset import Dataset, Item
from ..detect import Detection, draw_detections, draw_overlay
from ..errors import DatasetError, FaceCoreError, ImageReadError, ImportRejected, LabelFormatError
from ..images import encode_jpeg, image_size, read_image
from .labels import ImageLabel, read_label
from .prelabel import Proposal, proposal_sources
from ..preprocess import shrink

FACE, NO_FACE, UNLABELED, BROKEN = "face", "no_face", "unlabeled", "broken"
STATUS_TEXT = {FACE: "face", NO_FACE: "no face", UNLABELED: "unlabeled", BROKEN: "broken label"}
# Gallery filters: name -> the statuses it shows.
FILTERS = {
    "all": (FACE, NO_FACE, UNLABELED, BROKEN),
    "labeled": (FACE, NO_FACE),
    "face": (FACE,),
    "no face": (NO_FACE,),
    "unlabeled": (UNLABELED,),
    "broken": (BROKEN,),
}
UPLOAD_TYPES = ("jpg", "jpeg", "png", "webp", "zip")

SAVED_COLOR = (0, 200, 0)  # RGB: a saved face box
PROPOSAL_COLOR = (255, 140, 0)  # RGB: a model's proposal, not saved yet


@dataclass(frozen=True)
class Entry:
    """One image and its label state; ``label`` is None when unlabeled or broken."""

    item: Item
    status: str
    label: ImageLabel | None = None
    error: str = ""

    @property
    def stem(self) -> str:
        return self.item.stem


# -- listing ---------------------------------------------------------------------------------
def entry(item: Item) -> Entry:
    """The label state of one item, read from disk now."""
    if item.label is None:
        return Entry(item, UNLABELED)
    try:
        lab = read_label(item.label)
    except LabelFormatError as exc:
        return Entry(item, BROKEN, None, str(exc))
    return Entry(item, FACE if lab.has_face else NO_FACE, lab)


def entries(dataset: Dataset) -> list[Entry]:
    """Every image of ``dataset`` (sorted by name) with its label state, read from disk now."""
    return [entry(it) for it in dataset.items()]


def filter_entries(all_entries: Iterable[Entry], name: str) -> list[Entry]:
    """The entries whose status the filter ``name`` (a key of ``FILTERS``) shows."""
    if name not in FILTERS:
        raise ValueError(f"unknown filter {name!r}; use one of {', '.join(FILTERS)}")
    keep = FILTERS[name]
    return [e for e in all_entries if e.status in keep]


def progress(all_entries: list[Entry]) -> tuple[int, int]:
    """``(labeled, total)``: images with a readable label file (face or no face) out of all images."""
    return sum(e.status in (FACE, NO_FACE) for e in all_entries), len(all_entries)


# -- navigation ------------------------------------------------------------------------------
def resolve_current(stems: list[str], current: str | None, previous_index: int = 0) -> str | None:
    """The stem to show: ``current`` if it still exists, else the image now at ``previous_index``
    (another tab may have deleted it), else None for an empty dataset."""
    if not stems:
        return None
    if current in stems:
        return current
    return stems[min(max(previous_index, 0), len(stems) - 1)]


def step(stems: list[str], current: str, delta: int) -> str:
    """The stem ``delta`` places after ``current``, wrapping around."""
    i = stems.index(current) if current in stems else 0
    return stems[(i + delta) % len(stems)]


def next_unlabeled(all_entries: list[Entry], current: str | None) -> str | None:
    """The first unlabeled image after ``current`` (wrapping around), or None when all are labeled."""
    stems = [e.stem for e in all_entries]
    start = stems.index(current) + 1 if current in stems else 0
    n = len(all_entries)
    for k in range(n):
        e = all_entries[(start + k) % n]
        if e.status == UNLABELED:
            return e.stem
    return None


# -- saving labels ---------------------------------------------------------------------------
def label_from_pixels(x1: float, y1: float, x2: float, y2: float, width: int, height: int) -> ImageLabel:
    """A one-face label from pixel corners (any order), clipped to the image.

    Raises FaceCoreError when the box is smaller than 2 pixels either way after clipping.
    """
    return label_from_pixel_boxes([[x1, y1, x2, y2]], width, height)


def label_from_pixel_boxes(boxes_px, width: int, height: int) -> ImageLabel:
    """A label with one face per pixel box ``[x1, y1, x2, y2]`` (corners in any order), clipped to the image.

    Raises FaceCoreError naming the box (1-based, as the page numbers them) that is not numbers or is
    smaller than 2 pixels either way after clipping; an empty list is refused too (use ``mark_no_face``).
    """
    try:
        px = np.asarray(boxes_px, np.float32).reshape(-1, 4)
    except (TypeError, ValueError):
        raise FaceCoreError(f"the boxes must be [x1, y1, x2, y2] numbers, got {boxes_px!r}") from None
    if len(px) == 0:
        raise FaceCoreError("no box to save: draw a box around each face, or mark the photo 'No face'")
    many = len(px) > 1
    for i, row in enumerate(px):
        name = f"box {i + 1}" if many else "the box"
        if not np.isfinite(row).all():
            raise FaceCoreError(f"{name}: the corners must be numbers")
    norm = B.clip(B.from_pixels(px, width, height))
    for i, (x1, y1, x2, y2) in enumerate(B.to_pixels(norm, width, height).tolist()):
        if x2 - x1 < 2 or y2 - y1 < 2:
            name = f"box {i + 1}" if many else "the box"
            raise FaceCoreError(f"{name} ({x1:.0f}, {y1:.0f}) - ({x2:.0f}, {y2:.0f}) is too small or outside the "
                                f"{width}x{height} image: draw it around the face")
    return ImageLabel(width, height, norm)


def save_pixel_box(dataset: Dataset, stem: str, box_px, size: tuple[int, int] | None = None) -> Item:
    """Save one face box given in pixels ``[x1, y1, x2, y2]`` for image ``stem`` (atomic write)."""
    return save_pixel_boxes(dataset, stem, [box_px], size)


def save_pixel_boxes(dataset: Dataset, stem: str, boxes_px, size: tuple[int, int] | None = None,
                     proposal: Proposal | None = None) -> Item:
    """Save every face box given in pixels (a list of ``[x1, y1, x2, y2]``) as the label of ``stem``
    (one atomic write; nothing is written when a box is refused). A box that is one of ``proposal``'s,
    or an earlier accepted proposal's, unchanged records its detector (``prelabel.proposal_sources``)."""
    item = dataset.item(stem)
    w, h = size or image_size(item.image)
    label = label_from_pixel_boxes(boxes_px, w, h)
    previous = None
    if item.label is not None:
        try:
            previous = read_label(item.label)
        except LabelFormatError:  # a broken label is being replaced: it recorded nothing usable
            previous = None
    by = proposal_sources(label.boxes, proposal, previous)
    return dataset.set_label(stem, ImageLabel(w, h, label.boxes, by) if by else label)


def mark_no_face(dataset: Dataset, stem: str, size: tuple[int, int] | None = None) -> Item:
    """Record that image ``stem`` holds no face (a label file with no shapes)."""
    item = dataset.item(stem)
    w, h = size or image_size(item.image)
    return dataset.set_label(stem, ImageLabel(w, h))


# -- the drawing canvas ----------------------------------------------------------------------
def canvas_scale(width: int, height: int, max_width: int = 640, max_height: int = 520) -> float:
    """Display scale for an image of ``width`` x ``height`` so it fits the canvas area (never enlarged past 2x)."""
    return min(max_width / width, max_height / height, 2.0)


def box_to_canvas_rect(box, width: int, height: int, scale: float) -> dict:
    """Normalized box (4,) -> canvas rectangle ``{left, top, width, height}`` in display pixels."""
    x1, y1, x2, y2 = B.to_pixels(box, width, height)[0].tolist()
    return {"left": x1 * scale, "top": y1 * scale, "width": (x2 - x1) * scale, "height": (y2 - y1) * scale}


def display_jpeg(rgb: np.ndarray, width: int, height: int, quality: int = 90) -> bytes:
    """JPEG bytes of RGB ``rgb`` resized to the canvas size ``width`` x ``height``.

    The canvas gets the decoded pixels, not the file: small to resend on every rerun, and oriented
    exactly like the pixel coordinates of the label (a browser may apply EXIF rotation differently).
    """
    h, w = rgb.shape[:2]
    interp = cv2.INTER_AREA if width < w else cv2.INTER_LINEAR
    return encode_jpeg(cv2.resize(rgb, (int(width), int(height)), interpolation=interp), quality)


def canvas_rect_to_pixels(rect: dict, scale: float, width: int, height: int) -> list[float]:
    """Canvas rectangle ``{left, top, width, height}`` (display pixels, as the canvas reports it)
    -> image pixel box ``[x1, y1, x2, y2]`` clipped to the image, rounded to 0.1 px."""
    x1, y1 = rect["left"] / scale, rect["top"] / scale
    x2, y2 = x1 + rect["width"] / scale, y1 + rect["height"] / scale
    px = np.clip(np.array([min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)], np.float64),
                 0, [width, height, width, height])
    return [round(float(v), 1) for v in px]


def match_boxes(old_px, new_px, tol: float = 1.0) -> list[int | None]:
    """For each pixel box in ``new_px``, the index of the box in ``old_px`` it still equals (every corner
    within ``tol`` pixels; each old box matched once), or None for a box drawn, moved or resized since.

    The canvas reports all its boxes after every change, in its own order: this tells which ones the user
    touched, so untouched boxes keep their colour (saved, proposal) and the touched one gets selected.
    """
    old = np.asarray(old_px, np.float64).reshape(-1, 4)
    used: set[int] = set()
    out: list[int | None] = []
    for box in np.asarray(new_px, np.float64).reshape(-1, 4):
        hit = None
        for i, o in enumerate(old):
            if i not in used and np.abs(o - box).max() <= tol:
                hit = i
                break
        if hit is not None:
            used.add(hit)
        out.append(hit)
    return out


@dataclass(frozen=True)
class CanvasEdit:
    """The boxes being edited after a change on the canvas (image pixels ``[x1, y1, x2, y2]``): ``srcs``
    the origin of each (unchanged ones keep theirs, drawn or moved ones are ``"drawn"``), ``sel`` the box to
    select (the last one touched), ``renumber`` when a box was deleted or reordered there."""

    boxes: list[list[float]]
    srcs: list[str]
    sel: int | None
    renumber: bool


def apply_canvas(boxes, srcs: list[str], sel: int | None, canvas_px, tol: float = 1.0) -> CanvasEdit | None:
    """What the boxes the canvas reports (``canvas_px``, pixels, in the canvas's order) mean for the boxes
    being edited (``boxes`` with their ``srcs``, ``sel`` selected): None when the canvas shows the same boxes
    in the same order (``match_boxes`` within ``tol`` pixels), else the edited boxes."""
    px = [list(b) for b in canvas_px]
    match = match_boxes(boxes, px, tol)
    if len(px) == len(boxes) and all(m is not None for m in match) and match == sorted(match):
        return None
    touched = [i for i, m in enumerate(match) if m is None]
    new_sel = touched[-1] if touched else (min(sel or 0, len(px) - 1) if px else None)
    return CanvasEdit([list(boxes[m]) if m is not None else b for m, b in zip(match, px)],
                      [srcs[m] if m is not None else "drawn" for m in match], new_sel,
                      len(px) < len(boxes) or not touched)


def new_boxes(existing, proposed, min_iou: float = 0.5) -> list[int]:
    """Indices of the ``proposed`` boxes that overlap none of the ``existing`` ones by ``min_iou`` or more
    (same units for both): a proposal for a face already boxed adds nothing."""
    prop = np.asarray(proposed, np.float32).reshape(-1, 4)
    have = np.asarray(existing, np.float32).reshape(-1, 4)
    if not len(have):
        return list(range(len(prop)))
    overlap = B.iou_matrix(prop, have)
    return [i for i in range(len(prop)) if overlap[i].max() < min_iou]


# -- adding images ---------------------------------------------------------------------------
def add_files(dataset: Dataset, files: Iterable[tuple[str, bytes]]) -> ImportReport:
    """Add uploaded files ``(name, bytes)``: images (jpg, png, webp) one by one, ``.zip`` archives with
    labelme/VOC labels via ``Dataset.import_zip``.

    A corrupt, unsupported or refused file is skipped with the reason and the rest go on; nothing
    already in the dataset changes.
    """
    report = ImportReport()
    for name, data in files:
        ext = Path(name).suffix.lower().lstrip(".")
        if ext == "zip":
            try:
                sub: ImportReport = dataset.import_zip(data)
            except ImportRejected as exc:
                report.skipped.append((name, reason(exc, name)))
                continue
            report.added += sub.added
            report.labeled += sub.labeled
            report.skipped += [(f"{name}: {n}", reason(why, n)) for n, why in sub.skipped]
            report.notes += [(f"{name}: {n}", reason(what, n)) for n, what in sub.notes]
            report.duplicates += [(f"{name}: {n}", what) for n, what in sub.duplicates]
            continue
        if ext not in UPLOAD_TYPES:
            report.skipped.append((name, f"unsupported file type .{ext or '?'} (use jpg, png, webp or a .zip)"))
            continue
        try:
            report.added.append(dataset.add_image(data, name).stem)
        except DuplicateImageError as exc:  # the same photo is in the dataset already: say which one
            report.add_duplicate(name, exc)
        except (ImageReadError, DatasetError) as exc:
            report.skipped.append((name, reason(exc, name)))
    return report


def reason(error, name: str) -> str:
    """The message of ``error`` (an exception or text) for a report that already shows ``name`` next to it:
    facecore's messages start with the file they are about (``"broken.jpg: not a readable image"``), and
    the name must not appear twice (``"broken.jpg: broken.jpg: ..."``)."""
    text = str(error)
    for prefix in (f"{name}: ", f"{Path(name).name}: "):
        if text.startswith(prefix):
            return text[len(prefix):]
    return text


def snapshot_digest(data: bytes) -> str:
    """Content hash of a webcam snapshot, to save each one once however often the page reruns."""
    return hashlib.sha256(data).hexdigest()


def add_snapshot(dataset: Dataset, data: bytes, seen: set[str], now: float | None = None) -> Item | None:
    """Save a webcam snapshot as ``webcam_<date>_<time>.jpg`` unless its bytes are in ``seen``.

    Returns the new item, or None for a snapshot already saved. ``seen`` is updated. A snapshot whose
    photo is in the dataset already raises ``DuplicateImageError`` (once: it is then in ``seen``).
    """
    digest = snapshot_digest(data)
    if digest in seen:
        return None
    stamp = time.strftime("%Y%m%d_%H%M%S", time.localtime(now))
    try:
        item = dataset.add_image(data, f"webcam_{stamp}.jpg")
    except DuplicateImageError:
        seen.add(digest)
        raise
    seen.add(digest)
    return item


# -- model proposals -------------------------------------------------------------------------
# -- drawing ---------------------------------------------------------------------------------
def draw_label(rgb: np.ndarray, label: ImageLabel | None, proposal: Proposal | None = None,
               status: str | None = None, scores: bool = True) -> np.ndarray:
    """A copy of ``rgb`` with the saved boxes (green), a proposal's boxes (orange, with their scores unless
    ``scores`` is off) and, for images without a face box, the status written in the corner."""
    out = rgb
    if label is not None and label.has_face:
        out = draw_detections(out, [Detection(1.0, b) for b in label.boxes], threshold=0.0,
                              color=SAVED_COLOR, show_score=False)
    if proposal is not None:
        out = draw_detections(out, [Detection(s, b, "proposal") for s, b in zip(proposal.scores, proposal.boxes)],
                              threshold=0.0, color=PROPOSAL_COLOR, show_score=scores)
    if out is rgb:
        out = rgb.copy()
    if status in (NO_FACE, UNLABELED, BROKEN):
        draw_overlay(out, STATUS_TEXT[status])
    return out


def thumbnail(e: Entry, size: int = 192, proposal: Proposal | None = None) -> np.ndarray:
    """A thumbnail (longest side ``size``) of an entry's image with its boxes drawn; a proposal's boxes
    without their score tags, which at this size would cover the face. Raises ImageReadError."""
    return draw_label(shrink(read_image(e.item.image), size, size), e.label, proposal, e.status, scores=False)
