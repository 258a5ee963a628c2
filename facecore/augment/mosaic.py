"""2x2 mosaics: four photos in one, their face boxes moved along, for multi-face training photos.

Like YOLOv4's mosaic: the output (the size of the first photo) is split at a point near its middle into
four cells; each photo is scaled to cover its cell (aspect ratio kept) and cropped to it, and its boxes
follow. A box that keeps less than ``min_visibility`` of its area inside its cell is dropped, as
albumentations does for crops. Boxes are facecore's: float32 normalized ``[x1, y1, x2, y2]`` (N, 4).

Offline (``make_mosaics``), mosaics of four *train-split* photos are written into ``dataset.augmented``
as extra copies named ``<first photo>__aug<100000 + k>``: ``Dataset.training_items`` then trains on them
with the other augmented copies, and val/test photos never appear in one. ``augment_dataset`` removes
them (they are not its copies), so ``augment_and_mosaic`` writes them after it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import cv2
import numpy as np

from .. import boxes as B
from . import AugmentConfig, AugmentReport, augment_dataset
from .copies import CopyReport, DatasetLock, remove_copy, source_signature
from ..datasets.dataset import AUG_SEP, Dataset, Item
from ..errors import Cancelled, DatasetError, FaceCoreError
from ..images import encode_jpeg, read_image
from ..io import atomic_write_bytes, atomic_write_text
from ..jobs import Cancel, Progress, ProgressFn, ignore
from ..datasets.labels import ImageLabel, labelme_document, voc_document
from ..datasets.splits import DEFAULT_SPLIT, MOSAIC_MANIFEST

MOSAIC_BASE = 100_000  # copy numbers of mosaics: far above augment_dataset's (fewer than 1000 per photo)
MANIFEST = MOSAIC_MANIFEST


def mosaic(images: list[np.ndarray], boxes: list, size: tuple[int, int] | None = None,
           center: tuple[float, float] = (0.5, 0.5), offsets: list[tuple[float, float]] | None = None,
           min_visibility: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Four RGB photos and their normalized boxes -> one RGB image of ``size`` (w, h; default the first
    photo's) and its boxes (N, 4).

    ``center``: where the cells meet, as fractions of the width and height (top-left, top-right,
    bottom-left, bottom-right cells take the photos in that order). ``offsets``: per photo, which part of
    the scaled photo its cell shows, 0 (left/top) to 1 (right/bottom); default the middle.
    """
    if len(images) != 4 or len(boxes) != 4:
        raise ValueError(f"a mosaic needs 4 photos and 4 box arrays, got {len(images)} and {len(boxes)}")
    w, h = size or (images[0].shape[1], images[0].shape[0])
    cx, cy = int(round(w * float(np.clip(center[0], 0.1, 0.9)))), int(round(h * float(np.clip(center[1], 0.1, 0.9))))
    cells = [(0, 0, cx, cy), (cx, 0, w - cx, cy), (0, cy, cx, h - cy), (cx, cy, w - cx, h - cy)]
    out = np.zeros((h, w, 3), np.uint8)
    kept = []
    for k, (img, bx, (x0, y0, cw, ch)) in enumerate(zip(images, boxes, cells)):
        ih, iw = img.shape[:2]
        s = max(cw / iw, ch / ih)
        rw, rh = max(cw, int(np.ceil(iw * s))), max(ch, int(np.ceil(ih * s)))
        fx, fy = offsets[k] if offsets is not None else (0.5, 0.5)
        ox, oy = int(round((rw - cw) * float(np.clip(fx, 0, 1)))), int(round((rh - ch) * float(np.clip(fy, 0, 1))))
        interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
        out[y0:y0 + ch, x0:x0 + cw] = cv2.resize(img, (rw, rh), interpolation=interp)[oy:oy + ch, ox:ox + cw]
        px = B.as_boxes(bx).astype(np.float64) * [rw, rh, rw, rh] - [ox, oy, ox, oy]
        if not len(px):
            continue
        clipped = np.clip(px, 0, [cw, ch, cw, ch])
        full = np.maximum(px[:, 2] - px[:, 0], 0) * np.maximum(px[:, 3] - px[:, 1], 0)
        inside = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])
        ok = (full > 0) & (inside >= min_visibility * full) & (clipped[:, 2] - clipped[:, 0] >= 2) \
            & (clipped[:, 3] - clipped[:, 1] >= 2)
        kept.append(clipped[ok] + [x0, y0, x0, y0])
    px = np.concatenate(kept) if kept else np.zeros((0, 4))
    return out, B.clip(B.from_pixels(px.astype(np.float32), w, h)) if len(px) else B.EMPTY.copy()


def random_mosaic(images: list[np.ndarray], boxes: list, rng: np.random.Generator, size=None,
                  jitter: float = 0.25, min_visibility: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """``mosaic`` with the meeting point drawn within ``jitter`` of the middle and random crop offsets."""
    center = tuple(rng.uniform(0.5 - jitter, 0.5 + jitter, 2))
    offsets = [tuple(rng.uniform(0, 1, 2)) for _ in range(4)]
    return mosaic(images, boxes, size, center, offsets, min_visibility)


def mosaic_number(stem: str) -> int | None:
    """``k`` of a mosaic copy ``<photo>__aug<100000 + k>``, None for anything else."""
    head, sep, tail = stem.rpartition(AUG_SEP)
    if not sep or not tail.isdigit() or int(tail) < MOSAIC_BASE:
        return None
    return int(tail) - MOSAIC_BASE


@dataclass
class MosaicReport(CopyReport):
    """What ``make_mosaics`` did: mosaics wanted, written, kept from before, stale ones removed, failures."""

    faces: int = 0  # boxes in the mosaics written


def _plan(train: list, count: int, seed: int) -> list[list[int]]:
    """Four train-photo indices per mosaic; mosaic k leads with photo k (cycling), so each photo leads
    about equally often, the three others are drawn at random among the rest."""
    rng = np.random.default_rng(seed)
    n = len(train)
    order = rng.permutation(n)
    plans = []
    for k in range(count):
        lead = int(order[k % n])
        others = rng.choice([i for i in range(n) if i != lead], 3, replace=False)
        plans.append([lead, *map(int, others)])
    return plans


def make_mosaics(dataset: Dataset, count: int, seed: int = 0, split_seed: int = 0,
                 fractions: tuple[float, float, float] = DEFAULT_SPLIT, min_visibility: float = 0.5,
                 progress: ProgressFn | None = None, cancel: Cancel | None = None) -> MosaicReport:
    """Write ``count`` 2x2 mosaics of train-split photos into ``dataset.augmented`` (0 removes them all).

    Each mosaic has the size of its first photo and a label in the dataset's format. Mosaics already on
    disk from the same request (same photos, unchanged) are kept; the others go, so the folder matches
    the request. Needs at least 4 train-split photos. ``progress`` gets mosaics done of the total
    (stage "mosaic") as they finish; ``cancel`` stops after the current one and raises ``Cancelled``
    whose ``partial`` is the report so far (finished mosaics stay).
    """
    if not isinstance(count, int) or not 0 <= count <= 100_000:
        raise DatasetError(f"the number of mosaics must be between 0 and 100000, got {count}")
    t0 = time.perf_counter()
    train = sorted(dataset.split(fractions, split_seed).train, key=lambda it: it.stem)
    if count and len(train) < 4:
        raise DatasetError(f"{dataset.name}: a mosaic needs 4 train-split photos, there are {len(train)}; "
                           "add labeled photos first")
    out = Dataset.create(dataset.augmented.root)
    with DatasetLock(out.root):  # the lock of augment_dataset: one writer of augmented/ at a time
        return _make_locked(dataset, out, train, count, seed, min_visibility, progress or ignore,
                            cancel or Cancel(), t0)


def _make_locked(dataset, out, train, count, seed, min_visibility, progress, cancel, t0) -> MosaicReport:
    label_ext = "." + dataset.label_format()
    by_stem = {it.stem: it for it in train}
    sigs = {it.stem: source_signature(it) for it in train}
    plans = _plan(train, count, seed) if count else []
    wanted = {}
    for k, plan in enumerate(plans):
        stem = f"{train[plan[0]].stem}{AUG_SEP}{MOSAIC_BASE + k}"
        wanted[stem] = {"sources": [train[i].stem for i in plan], "sigs": [sigs[train[i].stem] for i in plan],
                        "seed": seed, "min_visibility": min_visibility, "label_ext": label_ext}
    try:
        old = json.loads((out.root / MANIFEST).read_text("utf-8"))
    except (OSError, ValueError):
        old = {}
    report = MosaicReport(total=len(plans))
    for it in out.items():
        if mosaic_number(it.stem) is not None and (it.stem not in wanted or old.get(it.stem) != wanted[it.stem]):
            remove_copy(out, it.stem)
            report.removed += 1
    atomic_write_text(out.root / MANIFEST, json.dumps(wanted, indent=1))
    def show():
        progress(Progress(report.done, report.total, f"{report.done}/{report.total} mosaics", "mosaic"))

    show()
    for k, (stem, entry) in enumerate(wanted.items()):
        if cancel.cancelled:
            report.cancelled = True
            report.seconds = time.perf_counter() - t0
            raise Cancelled(f"mosaics stopped after {report.done} of {report.total}; they are kept", report)
        if (out.images_dir / f"{stem}.jpg").exists() and (out.labels_dir / f"{stem}{label_ext}").exists():
            report.skipped += 1
        else:
            try:
                report.faces += _write_one(dataset, out, stem, [by_stem[s] for s in entry["sources"]], seed, k,
                                           min_visibility, label_ext)
                report.written += 1
            except FaceCoreError as exc:
                report.failed.append((stem, str(exc)))
        show()
    report.seconds = time.perf_counter() - t0
    return report


def _write_one(dataset: Dataset, out: Dataset, stem: str, sources: list[Item], seed: int, k: int,
               min_visibility: float, label_ext: str) -> int:
    images, boxes = [], []
    for item in sources:
        img = read_image(item.image)
        images.append(img)
        boxes.append(dataset.label_or_noface(item, (img.shape[1], img.shape[0])).boxes)
    rng = np.random.default_rng([seed, k, 0x6D6F73])  # mosaic k depends only on (seed, k)
    img, bx = random_mosaic(images, boxes, rng, min_visibility=min_visibility)
    label = ImageLabel(img.shape[1], img.shape[0], bx)
    doc = (voc_document(label, f"{stem}.jpg") if label_ext == ".xml"
           else json.dumps(labelme_document(label, f"{stem}.jpg"), indent=2))
    # Label first, image last: the image appearing is what makes the copy exist (as in augment_dataset).
    atomic_write_text(out.labels_dir / f"{stem}{label_ext}", doc)
    atomic_write_bytes(out.images_dir / f"{stem}.jpg", encode_jpeg(img))
    return len(bx)


@dataclass
class AugmentRun:
    """What ``augment_and_mosaic`` did: the copies' report, and the mosaics' (None when none were asked
    for, or the run stopped before them)."""

    copies: AugmentReport
    mosaics: MosaicReport | None = None


def augment_and_mosaic(dataset: Dataset, config: AugmentConfig, per_image: int, seed: int = 0, split_seed: int = 0,
                       workers: int | None = None, mosaics: int = 0, progress: ProgressFn | None = None,
                       cancel: Cancel | None = None) -> AugmentRun:
    """``augment_dataset`` then ``make_mosaics(mosaics)`` (``mosaics=0``: none, and ``augment_dataset``
    has removed any from before): the Augment page's one job. ``progress`` reports stage "augment", then
    "mosaic"; on ``cancel`` the ``Cancelled`` error's ``partial`` is the ``AugmentRun`` so far."""
    try:
        run = AugmentRun(augment_dataset(dataset, config, per_image, seed=seed, split_seed=split_seed,
                                         workers=workers, progress=progress, cancel=cancel))
    except Cancelled as exc:
        raise Cancelled(str(exc), AugmentRun(exc.partial)) from None
    if mosaics <= 0:
        return run
    try:
        run.mosaics = make_mosaics(dataset, int(mosaics), seed=seed, split_seed=split_seed,
                                   min_visibility=config.min_visibility, progress=progress, cancel=cancel)
    except Cancelled as exc:
        raise Cancelled(str(exc), AugmentRun(run.copies, exc.partial)) from None
    return run
