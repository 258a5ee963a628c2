"""Evaluation over every face in every photo (several faces per photo), the way object detectors are scored.

``facecore.evaluate.metrics`` scores one prediction per photo (the tutorials' FaceTracker predicts one face) and
adds these figures to its metrics (``ap50_all``, ``recall50_all``, ``fp_per_image``); this module scores
every detection:

- every detection of every photo is ranked by score; going down the list, a detection is a true
  positive when it overlaps a not-yet-matched labeled face of its photo by IoU >= the threshold
  (greedy, best-overlapping face first: one face = one match), else a false positive;
- ``ap50`` / ``ap30``: all-point interpolated average precision over all labeled faces (VOC/COCO style);
- ``recall50``: labeled faces matched at IoU 0.5 by detections at or above ``threshold``;
- ``fp_per_image``: detections at or above ``threshold`` that match no face, per photo;
- ``faces`` / ``photos``: counts.
"""

from __future__ import annotations

import numpy as np

from .. import boxes as B
from .ap import average_precision
from ..errors import ImageReadError
from ..images import read_image
from ..jobs import Progress, ProgressFn


def match(pred_boxes: np.ndarray, scores: np.ndarray, true_boxes: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy matching in one photo: detections (D, 4) best-first by ``scores`` against faces (T, 4).
    Returns ``is_tp`` (D,) bool in the order of ``pred_boxes``."""
    d = len(pred_boxes)
    tp = np.zeros(d, bool)
    if d == 0 or len(true_boxes) == 0:
        return tp
    ious = B.iou_matrix(np.asarray(pred_boxes, np.float32), np.asarray(true_boxes, np.float32))
    taken = np.zeros(len(true_boxes), bool)
    for i in np.argsort(-np.asarray(scores), kind="stable"):
        cand = np.where(taken, -1.0, ious[i])
        j = int(np.argmax(cand))
        if cand[j] >= iou_threshold:
            tp[i], taken[j] = True, True
    return tp


def all_faces_metrics(truth: list[np.ndarray], detections: list[list], threshold: float = 0.5) -> dict:
    """``truth``: labeled boxes (T_i, 4) per photo; ``detections``: per photo a list of objects with
    ``score`` and ``box`` (``facecore.detect.Detection``). Returns the metrics named in the module doc."""
    n_faces = int(sum(len(t) for t in truth))
    out = {"faces": n_faces, "photos": len(truth)}
    for thr, key in ((0.5, "ap50"), (0.3, "ap30")):
        scores, tps = [], []
        for t, dets in zip(truth, detections):
            if not dets:
                continue
            s = np.array([d.score for d in dets], np.float32)
            b = np.stack([np.asarray(d.box, np.float32) for d in dets])
            scores.append(s)
            tps.append(match(b, s, t, thr))
        s = np.concatenate(scores) if scores else np.zeros(0, np.float32)
        tp = np.concatenate(tps) if tps else np.zeros(0, bool)
        out[key] = average_precision(s, tp, n_faces) if n_faces else None
        if thr == 0.5:
            shown = s >= threshold
            out["recall50"] = float((tp & shown).sum() / n_faces) if n_faces else None
            out["fp_per_image"] = float((~tp & shown).sum() / max(len(truth), 1))
    return out


def evaluate_all_faces(detector, images: list, threshold: float = 0.5, progress: ProgressFn | None = None) -> dict:
    """Run ``detector.detect`` on every image (``facecore.evaluate.metrics.EvalImage``: ``path``, ``boxes``) and
    score every face (unreadable images are skipped and counted in ``skipped``)."""
    truth, dets, skipped = [], [], 0
    for i, im in enumerate(images):
        try:
            rgb = read_image(im.path)
        except ImageReadError:
            skipped += 1
        else:
            truth.append(np.asarray(im.boxes, np.float32).reshape(-1, 4))
            dets.append(list(detector.detect(rgb)))
        if progress is not None:
            progress(Progress(i + 1, len(images), f"{i + 1}/{len(images)} photos", "evaluate"))
    out = all_faces_metrics(truth, dets, threshold)
    out["skipped"] = skipped
    return out
