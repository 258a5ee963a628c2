"""Measure a detector on labelled images: IoU, recall, AP, face presence, false positives, latency.

Every image gets ONE prediction, the detector's best detection (the face tracker predicts one face
per image; for Haar the highest-scoring of its boxes). Definitions, with ``threshold`` the score at
which a prediction counts as "a face is here":

- ``mean_iou``: over face images, IoU of the prediction with the best-matching true box, whatever
  its score (0 when the detector returns nothing).
- ``recall50``: share of face images whose prediction reaches ``threshold`` and IoU >= 0.5.
- ``ap50`` / ``ap30``: average precision with predictions of all images ranked by score; a prediction
  is a true positive when its image has a face and IoU >= 0.5 (0.3), else a false positive (every
  prediction on a no-face image is one). Positives = face images. All-point interpolated (VOC 2010+).
- ``face_accuracy``: share of images where "score >= threshold" agrees with "has a face".
- ``fp_rate_noface``: share of no-face images with a prediction at or above ``threshold``
  (None when there are no no-face images).
- ``median_ms``: median time of ``detector.detect`` per image (preprocessing included, reading not).

Unlabelled images count as no-face (the dataset convention); images or labels that cannot be read
are skipped and counted in ``skipped``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import boxes as B
from ..datasets.dataset import Dataset
from ..errors import Cancelled, DatasetError, FaceCoreError, ImageReadError, LabelFormatError
from ..images import IMAGE_EXTS, read_image
from .ap import average_precision, pr_curve  # noqa: F401  (re-exported: scripts import them from here)
from .every_face import all_faces_metrics
from ..jobs import Cancel, Progress, ProgressFn, ignore
from ..datasets.labels import LABEL_EXTS, read_label
from ..preprocess import resize_for_model
from ..meta import ModelMeta
from ..registry import split_name
from ..datasets.splits import DEFAULT_SPLIT, SPLITS

EVAL_SPLITS = (*SPLITS, "all")
METRIC_KEYS = ("ap50", "ap30", "mean_iou", "recall50", "face_accuracy", "fp_rate_noface", "median_ms")


@dataclass(frozen=True)
class EvalImage:
    """An image to evaluate on: its path and its true boxes (float32 (N, 4) normalized; empty = no face);
    ``proposed_by``: per box, the detector whose proposal was accepted unchanged (``ImageLabel.proposed_by``)."""

    stem: str
    path: Path
    boxes: np.ndarray
    proposed_by: tuple[str, ...] = ()

    @property
    def has_face(self) -> bool:
        return len(self.boxes) > 0


@dataclass
class ImageResult:
    """One image's outcome: the best prediction (``box`` None when there was none), its IoU with the
    best-matching true box (0 for no-face images), latency in ms, and ``error`` in [0, 1] (for sorting,
    worst first: 1 - IoU for a face found at ``threshold``, 1 for a missed face, the score for a
    false positive on a no-face image, half the score for a correct no-face image).
    ``outcome``: found, misplaced (IoU < 0.5), missed, false positive or correct no-face."""

    stem: str
    path: str
    true_boxes: np.ndarray
    score: float
    box: np.ndarray | None
    iou: float
    ms: float
    error: float = 0.0
    outcome: str = ""
    detections: list = field(default_factory=list)  # every detection (``Detection``), for every-face metrics


@dataclass
class EvalResult:
    """Metrics (``METRIC_KEYS`` plus counts), per-image results and the PR curve at IoU 0.5."""

    detector: str
    threshold: float
    metrics: dict
    images: list[ImageResult] = field(default_factory=list)
    pr_precision: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    pr_recall: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    pr_scores: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))

    def worst(self, n: int | None = None) -> list[ImageResult]:
        """Images by decreasing error (ties: lower IoU first)."""
        out = sorted(self.images, key=lambda r: (-r.error, r.iou, r.stem))
        return out if n is None else out[:n]

    def ious(self) -> np.ndarray:
        """IoU per face image (N,)."""
        return np.array([r.iou for r in self.images if len(r.true_boxes)], np.float32)

    def to_json(self) -> dict:
        """Metrics plus PR-curve data, JSON-serializable (NaN -> None)."""
        out = {k: _jsonable(v) for k, v in self.metrics.items()}
        out["detector"] = self.detector
        out["threshold"] = self.threshold
        out["pr_curve"] = {"precision": [round(float(v), 5) for v in self.pr_precision],
                           "recall": [round(float(v), 5) for v in self.pr_recall],
                           "score": [round(float(v), 5) for v in self.pr_scores]}
        return out


def _jsonable(v):
    if isinstance(v, (np.floating, float)):
        return None if not math.isfinite(float(v)) else round(float(v), 6)
    if isinstance(v, np.integer):
        return int(v)
    return v


# -- metrics (pure functions) --------------------------------------------------------------

def best_iou(pred_box, true_boxes) -> float:
    """IoU of one predicted box (4,) (or None) with the best-matching of ``true_boxes`` (N, 4); 0 if none."""
    if pred_box is None or len(true_boxes) == 0:
        return 0.0
    return float(B.iou_matrix(B.as_boxes(pred_box), true_boxes).max())


def compute_metrics(true_boxes: list, scores, pred_boxes: list, threshold: float = 0.5,
                    latencies_ms=None) -> dict:
    """Metrics of one prediction per image (definitions in the module docstring).

    ``true_boxes``: per image, float32 (N_i, 4) normalized (empty = no face); ``scores``: per image
    (0 when there is no prediction); ``pred_boxes``: per image (4,) or None.
    """
    n = len(true_boxes)
    if not (len(scores) == len(pred_boxes) == n):
        raise ValueError("true_boxes, scores and pred_boxes must have one entry per image")
    scores = np.asarray(scores, np.float64).reshape(-1)
    has_face = np.array([len(t) > 0 for t in true_boxes], bool)
    has_pred = np.array([b is not None for b in pred_boxes], bool)
    ious = np.array([best_iou(b, t) for b, t in zip(pred_boxes, true_boxes)], np.float64)
    found = scores >= threshold
    n_face, n_noface = int(has_face.sum()), int((~has_face).sum())
    out = {
        "n_images": n, "n_face": n_face, "n_noface": n_noface, "threshold": float(threshold),
        "mean_iou": float(ious[has_face].mean()) if n_face else float("nan"),
        "recall50": float((found & has_face & (ious >= 0.5)).sum() / n_face) if n_face else float("nan"),
        "face_accuracy": float((found == has_face).mean()) if n else float("nan"),
        "fp_rate_noface": float((found & has_pred & ~has_face).sum() / n_noface) if n_noface else float("nan"),
    }
    for key, t in (("ap50", 0.5), ("ap30", 0.3)):
        tp = has_face & (ious >= t)
        out[key] = average_precision(scores[has_pred], tp[has_pred], n_face)
    lat = np.asarray(latencies_ms if latencies_ms is not None else [], np.float64)
    out["median_ms"] = float(np.median(lat)) if len(lat) else float("nan")
    return out


# -- inputs --------------------------------------------------------------------------------

def _flat_folder_images(folder: Path) -> list[tuple[str, Path, Path | None]]:
    """``(stem, image, label or None)`` for the images in ``folder``, labels beside them (labelme's layout)."""
    out = []
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() not in IMAGE_EXTS or p.name.startswith(".") or not p.is_file():
            continue
        label = next((p.with_suffix(e) for e in LABEL_EXTS if p.with_suffix(e).is_file()), None)
        out.append((p.stem, p, label))
    return out


def collect_images(data: str | Path | Dataset, split: str = "test", seed: int = 0,
                   fractions: tuple[float, float, float] = DEFAULT_SPLIT) -> tuple[list[EvalImage], list[str]]:
    """Images and true boxes from a dataset split, or from any folder of images + labels.

    ``data``: a dataset (folder with ``images/`` and ``labels/``) or a plain folder with labelme/VOC
    files beside the images (``split`` must then be ``"all"``). ``split``: train, val, test (the
    dataset's deterministic split with ``seed``/``fractions``, as in training) or all.
    Returns ``(images, skipped)``, ``skipped`` holding a reason per unreadable label.
    """
    if split not in EVAL_SPLITS:
        raise FaceCoreError(f"unknown split {split!r}; use one of {', '.join(EVAL_SPLITS)}")
    root = data.root if isinstance(data, Dataset) else Path(data)
    if not root.is_dir():
        raise DatasetError(f"{root}: no such folder")
    if (root / "images").is_dir():
        ds = data if isinstance(data, Dataset) else Dataset.open(root)
        items = ds.items() if split == "all" else list(ds.split(fractions, seed)[split])
        entries = [(it.stem, it.image, it.label) for it in items]
    else:
        if split != "all":
            raise DatasetError(f"{root} has no images/ folder, so it has no {split} split: use --split all")
        entries = _flat_folder_images(root)
    images, skipped = [], []
    for stem, img, label in entries:
        if label is None:
            images.append(EvalImage(stem, img, B.EMPTY.copy()))
            continue
        try:
            lab = read_label(label)
        except LabelFormatError as exc:
            skipped.append(f"{label.name}: {exc}")
            continue
        images.append(EvalImage(stem, img, lab.boxes, lab.proposed_by))
    return images, skipped


# -- running a detector --------------------------------------------------------------------

def evaluate(detector, images: list[EvalImage], threshold: float = 0.5, progress: ProgressFn | None = None,
             cancel: Cancel | None = None) -> EvalResult:
    """Run ``detector.detect`` on each image and compute the metrics.

    ``progress`` gets photos done of all after each image; ``cancel`` stops before the next one with
    ``Cancelled``, whose ``partial`` is the result on the images done. Unreadable images are skipped
    (``skipped`` count).
    """
    results: list[ImageResult] = []
    skipped = 0
    total = len(images)
    progress, cancel = progress or ignore, cancel or Cancel()
    name = detector.name
    for i, im in enumerate(images):
        if cancel.cancelled:
            raise Cancelled(f"evaluation stopped after {i} of {total} photos",
                            _result(name, threshold, results, skipped))
        try:
            rgb = read_image(im.path)
        except ImageReadError:
            skipped += 1
            progress(Progress(i + 1, total, f"{i + 1}/{total} photos", "evaluate"))
            continue
        t0 = time.perf_counter()
        dets = detector.detect(rgb)
        ms = (time.perf_counter() - t0) * 1000
        best = max(dets, key=lambda d: d.score) if dets else None
        score = float(best.score) if best is not None else 0.0
        box = np.asarray(best.box, np.float32) if best is not None else None
        results.append(ImageResult(im.stem, str(im.path), im.boxes, score, box, best_iou(box, im.boxes), ms,
                                   detections=list(dets)))
        progress(Progress(i + 1, total, f"{i + 1}/{total} photos", "evaluate"))
    return _result(name, threshold, results, skipped)


def _result(name: str, threshold: float, results: list[ImageResult], skipped: int) -> EvalResult:
    """Outcomes and metrics of the images run so far."""
    for r in results:
        found = r.score >= threshold
        if len(r.true_boxes):
            if found and r.iou >= 0.5:
                r.outcome, r.error = "found", 1.0 - r.iou
            elif found:
                r.outcome, r.error = "misplaced", 1.0 - r.iou
            else:
                r.outcome, r.error = "missed", 1.0
        else:
            r.outcome, r.error = ("false positive", r.score) if found else ("correct no-face", r.score * 0.5)
    metrics = compute_metrics([r.true_boxes for r in results], [r.score for r in results],
                              [r.box for r in results], threshold, [r.ms for r in results])
    metrics["skipped"] = skipped
    every = all_faces_metrics([r.true_boxes for r in results], [r.detections for r in results], threshold)
    metrics.update(ap50_all=every["ap50"], recall50_all=every["recall50"], fp_per_image=every["fp_per_image"],
                   n_faces_all=every["faces"])
    n_pos = metrics["n_face"]
    has = [r.box is not None for r in results]
    tp = [len(r.true_boxes) > 0 and r.iou >= 0.5 for r in results]
    p, rc, s = pr_curve(np.array([r.score for r in results])[has] if results else [],
                        np.array(tp, bool)[has] if results else [], n_pos)
    return EvalResult(name, float(threshold), metrics, results, p, rc, s)


def split_config(meta: ModelMeta | dict | None) -> tuple[int, tuple[float, float, float]]:
    """The split ``(seed, fractions)`` a model was trained with (``config.seed`` and ``config.split``
    in its meta.json), else the defaults ``(0, DEFAULT_SPLIT)``."""
    cfg = ModelMeta.of(meta).config  # a broken meta.json (ModelMeta.problem): the defaults
    seed = cfg.get("seed")
    fractions = cfg.get("split")
    seed = seed if isinstance(seed, int) and not isinstance(seed, bool) else 0
    if (isinstance(fractions, (list, tuple)) and len(fractions) == 3
            and all(isinstance(f, (int, float)) and not isinstance(f, bool) and 0 <= f <= 1 for f in fractions)
            and abs(sum(fractions) - 1) < 1e-6):
        fractions = tuple(float(f) for f in fractions)
    else:
        fractions = DEFAULT_SPLIT
    return seed, fractions


@dataclass(frozen=True)
class SplitChoice:
    """The photos a side-by-side evaluation measures every chosen detector on: the split ``(seed,
    fractions)`` of the first trained model chosen (the defaults when only built-ins are chosen), the trained
    models chosen (base names, in order) and warnings for people about models whose photos there may not
    be unseen."""

    seed: int
    fractions: tuple[float, float, float]
    trained: tuple[str, ...]
    warnings: tuple[str, ...]


def choose_split(chosen: list[str], metas: dict[str, ModelMeta], dataset_name: str, split: str) -> SplitChoice:
    """The split to evaluate ``chosen`` detectors (``NAME`` or ``NAME@int8``) on. ``metas``: the meta.json
    of every trained model (``registry.list_models``), by name; names not in it are built-in detectors.
    A model trained on another dataset, or with another split than the first, gets a warning that its
    ``split`` photos here may not be photos it never saw."""
    trained = list(dict.fromkeys(b for b in (split_name(n)[0] for n in chosen) if b in metas))
    seed, fractions = split_config(metas[trained[0]] if trained else None)
    warnings = []
    for name in trained:
        meta = ModelMeta.of(metas[name], name)
        trained_on = meta.dataset_name
        if trained_on and trained_on != dataset_name:
            warnings.append(f"`{name}` was trained on the dataset `{trained_on}`, not `{dataset_name}`: its "
                            f"{split} split here is not guaranteed to be photos it never saw.")
        elif split_config(meta) != (seed, fractions):
            warnings.append(f"`{name}` was trained with another split than `{trained[0]}`: some of these "
                            f"{split} photos may be in its training set.")
    return SplitChoice(seed, fractions, tuple(trained), tuple(warnings))


def calibration_sample(meta: ModelMeta | dict, images: list[EvalImage], n: int = 8, name: str = "model") -> np.ndarray | None:
    """Up to ``n`` of ``images`` as a trained model sees them, float32 (n, H, W, 3) 0..255 with (H, W) the
    network input its meta.json states (``input.shape``, e.g. a photo-shaped BlazeFace's square canvas, else
    ``config.input_size``: ``ModelMeta.input_hw``), for ``registry.quantize`` to compare the int8 copy
    with the model on (it resizes them to the network's own input if meta.json was wrong). None when meta.json
    states no input size or there is no image. Raises ModelFileError (a size that is not one, e.g. "96px")
    or ImageReadError."""
    hw = ModelMeta.of(meta, name).input_hw
    if hw is None or not images:
        return None
    if hw[0] == hw[1]:
        return np.stack([resize_for_model(read_image(im.path), hw[0]) for im in images[:n]])
    import cv2

    return np.stack([cv2.resize(read_image(im.path), (hw[1], hw[0]), interpolation=cv2.INTER_AREA).astype(np.float32)
                     for im in images[:n]])


# -- presentation (tables and drawings for the Evaluate page; no Streamlit here) -----------

METRIC_LABELS = {
    "ap50": "AP @ IoU 0.5", "ap30": "AP @ IoU 0.3", "mean_iou": "mean IoU (face images)",
    "recall50": "recall @ IoU 0.5", "face_accuracy": "face-presence accuracy",
    "fp_rate_noface": "false-positive rate (no-face images)", "median_ms": "median latency (ms/image)",
    "ap50_all": "AP @ IoU 0.5, every face", "recall50_all": "recall @ IoU 0.5, every face",
    "fp_per_image": "false positives per image, every detection", "n_faces_all": "labeled faces",
    "n_images": "images", "n_face": "with a face", "n_noface": "without a face", "skipped": "skipped (unreadable)",
}


def comparison_table(results: dict) -> list[dict]:
    """Rows ``{"metric": label, <detector>: value, ...}`` for detectors side by side (None = n/a)."""
    rows = []
    for key, label in METRIC_LABELS.items():
        row = {"metric": label}
        for name, res in results.items():
            v = res.metrics.get(key)
            row[name] = None if v is None or (isinstance(v, float) and not math.isfinite(v)) else v
        rows.append(row)
    return rows


TRUE_COLOR = (0, 200, 0)  # RGB green: the label
MISS_COLOR = (150, 150, 150)  # grey: a prediction below the threshold


def render_result(r: ImageResult, threshold: float, max_side: int = 360) -> np.ndarray:
    """The image of ``r`` (shrunk to ``max_side``) with its true boxes in green and the prediction in
    orange ("face 0.97"; the proposal colour of the labeling page), grey when below ``threshold``. RGB
    uint8. Raises ImageReadError."""
    from ..detect import Detection, draw_boxes, draw_detections
    from ..preprocess import shrink

    img = shrink(read_image(r.path), max_side, max_side)
    img = draw_boxes(img, r.true_boxes, TRUE_COLOR, thickness=max(2, round(min(img.shape[:2]) / 160)))
    if r.box is not None:
        from ..datasets.labeling import PROPOSAL_COLOR

        color = PROPOSAL_COLOR if r.score >= threshold else MISS_COLOR
        img = draw_detections(img, [Detection(r.score, r.box)], threshold=0.0, color=color)
    return img
