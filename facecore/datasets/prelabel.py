"""Model proposals for labeling: a detector proposes face boxes, the user accepts them (or not).

``propose`` asks a detector about one photo; ``prelabel`` runs it over the unlabeled photos of a dataset
in batches (a background job on the Collect & Label page) and saves nothing; ``accept_proposal(s)`` save
what the user accepted. Boxes are the facecore convention: float32 normalized ``[x1, y1, x2, y2]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from .. import boxes as B
from .dataset import Dataset, Item
from ..detect import Detection, Detector
from ..errors import Cancelled, DatasetError, FaceCoreError
from ..images import image_size, read_image
from ..jobs import Cancel, Progress, ProgressFn
from .labels import LABEL_EXTS, ImageLabel


@dataclass(frozen=True)
class Proposal:
    """The faces a detector proposed for an image; saved only when the user accepts them.

    ``boxes``: float32 (N, 4) normalized ``[x1, y1, x2, y2]``, best first; ``scores``: one per box in
    [0, 1]. A single box (4,) with one score is accepted too.
    """

    boxes: np.ndarray
    scores: tuple[float, ...]
    detector: str

    def __post_init__(self):
        boxes = np.asarray(self.boxes, np.float32).reshape(-1, 4)
        scores = tuple(float(s) for s in np.atleast_1d(np.asarray(self.scores, np.float64)).ravel())
        if len(boxes) == 0 or len(scores) != len(boxes):
            raise ValueError(f"a proposal needs one score per box, got {len(boxes)} box(es) and {len(scores)} score(s)")
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "scores", scores)

    @property
    def score(self) -> float:
        """The best box's score."""
        return max(self.scores)

    @property
    def box(self) -> np.ndarray:
        """The best box, float32 (4,)."""
        return self.boxes[int(np.argmax(self.scores))]


@dataclass
class PrelabelResult:
    """Outcome of a batch pre-label run: proposals by stem, images with no detection, failures (stem, why),
    images skipped because they were labeled meanwhile."""

    proposals: dict[str, Proposal] = field(default_factory=dict)
    no_face: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # labeled meanwhile: left alone
    cancelled: bool = False

    @property
    def done(self) -> int:
        return len(self.proposals) + len(self.no_face) + len(self.failed) + len(self.skipped)

def _proposal(dets: list[Detection], name: str, min_score: float = 0.0) -> Proposal | None:
    """Every detection scoring at least ``min_score`` whose box stays valid inside the image, best first."""
    keep = []
    for d in dets:
        if float(d.score) < min_score:
            continue
        box = B.clip(d.box)[0]
        if B.is_valid(box[None]).all():
            keep.append((float(d.score), box))
    if not keep:
        return None
    keep.sort(key=lambda t: -t[0])
    return Proposal(np.stack([b for _, b in keep]), tuple(s for s, _ in keep), name)


def propose(detector: Detector, rgb: np.ndarray, min_score: float = 0.0) -> Proposal | None:
    """Every face the detector finds in ``rgb`` (H, W, 3) scoring at least ``min_score``, as one Proposal
    (best first), or None when it finds none."""
    return _proposal(detector.detect(rgb), detector.name, min_score)


def _has_label(dataset: Dataset, stem: str) -> bool:
    return any((dataset.labels_dir / f"{stem}{ext}").exists() for ext in LABEL_EXTS)


def prelabel(dataset: Dataset, detector: Detector, stems: Iterable[str] | None = None,
             progress: ProgressFn | None = None, cancel: Cancel | None = None, min_score: float = 0.0,
             skip_labeled: bool | None = None, batch_size: int = 8) -> PrelabelResult:
    """Propose boxes for each unlabeled image (or for ``stems``); saves nothing.

    ``progress`` gets images done of all after each image (``extra``: its ``stem`` and ``proposal``, or
    None). ``cancel`` stops after the current image with ``Cancelled``, whose ``partial`` is the result
    so far (``cancelled=True``). With ``skip_labeled`` (the
    default when ``stems`` is None) images labeled meanwhile, e.g. in another tab, are skipped.
    Each proposal holds every face found scoring at least ``min_score``; an image with none counts as
    no face. The detector gets ``batch_size`` images at a time (``detect_batch``).
    """
    items = {it.stem: it for it in dataset.items()}  # listed once: per-image lookups would be O(n^2)
    todo = [s for s, it in items.items() if it.label is None] if stems is None else list(stems)
    if skip_labeled is None:
        skip_labeled = stems is None
    name, chunk = detector.name, max(1, batch_size)
    result = PrelabelResult()
    total, done = len(todo), 0
    for first in range(0, total, chunk):
        stems_now, frames, why = todo[first:first + chunk], {}, {}
        for stem in stems_now:
            try:
                if stem not in items:
                    raise DatasetError(f"{dataset.name}: no image called {stem!r} (deleted?)")
                if skip_labeled and _has_label(dataset, stem):
                    result.skipped.append(stem)
                    continue
                frames[stem] = read_image(items[stem].image)
            except FaceCoreError as exc:
                why[stem] = str(exc)
        try:
            found = detector.detect_batch(list(frames.values()))
        except FaceCoreError as exc:
            why.update({s: str(exc) for s in frames})
            found = []
        dets = dict(zip(frames, found))
        for stem in stems_now:
            prop = None
            if stem in why:
                result.failed.append((stem, why[stem]))
            elif stem in dets:
                prop = _proposal(dets[stem], name, min_score)
                if prop is not None:
                    result.proposals[stem] = prop
                else:
                    result.no_face.append(stem)
            done += 1
            if progress is not None:
                progress(Progress(done, total, f"{done} of {total}: {stem}", "prelabel",
                                  extra={"stem": stem, "proposal": prop}))
            if cancel is not None and cancel.cancelled and done < total:
                result.cancelled = True
                raise Cancelled(f"pre-labeling stopped after {done} of {total} images; its proposals are kept",
                                result)
    return result


UNCHANGED_IOU = 0.98  # a saved box overlapping a proposed one this much is that proposal, accepted unchanged
# (the canvas rounds corners to 0.1 px; a box moved by even a few pixels falls below)


def accept_proposal(dataset: Dataset, stem: str, proposal: Proposal) -> Item:
    """Save every box of ``proposal`` as the label of ``stem`` (the user accepted it); each box records
    the detector that proposed it (``ImageLabel.proposed_by``)."""
    item = dataset.item(stem)
    w, h = image_size(item.image)
    return dataset.set_label(stem, ImageLabel(w, h, proposal.boxes, (proposal.detector,) * len(proposal.boxes)))


def proposal_sources(boxes: np.ndarray, proposal: Proposal | None = None,
                     previous: ImageLabel | None = None) -> tuple[str, ...]:
    """For each of ``boxes`` (normalized (N, 4)) about to be saved: the detector whose proposal it is,
    unchanged (IoU >= ``UNCHANGED_IOU`` with a box of ``proposal``, or with a box of the ``previous``
    label that recorded one), else ``""`` (drawn, typed or moved by a person)."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    known = []
    if proposal is not None:
        known += [(b, proposal.detector) for b in proposal.boxes]
    if previous is not None:
        known += [(b, s) for b, s in zip(previous.boxes, previous.proposed_by) if s]
    if not known or not len(boxes):
        return ()
    iou = B.iou_matrix(boxes, np.stack([b for b, _ in known]).astype(np.float32))
    best = iou.argmax(axis=1)
    return tuple(known[j][1] if iou[i, j] >= UNCHANGED_IOU else "" for i, j in enumerate(best))


def accept_proposals(dataset: Dataset, proposals: dict[str, Proposal]) -> tuple[list[str], list[tuple[str, str]]]:
    """Bulk accept: save each proposal whose image is still unlabeled.

    Returns ``(saved stems, skipped (stem, why))``; an image labeled or deleted since the proposal
    was made (another tab) keeps its label.
    """
    saved, skipped = [], []
    for stem, prop in proposals.items():
        try:
            item = dataset.item(stem)
            if item.label is not None:
                skipped.append((stem, "already labeled; kept the saved label"))
                continue
            accept_proposal(dataset, stem, prop)
            saved.append(stem)
        except FaceCoreError as exc:
            skipped.append((stem, str(exc)))
    return saved, skipped
