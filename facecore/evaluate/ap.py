"""Precision-recall and average precision, shared by the one-box (``facecore.evaluate.metrics``) and the
every-face (``facecore.evaluate.every_face``) evaluations."""

from __future__ import annotations

import numpy as np


def pr_curve(scores, is_tp, n_pos: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision and recall after each prediction, predictions ranked by decreasing score.

    ``scores`` (M,), ``is_tp`` (M,) bool, ``n_pos`` = number of positives. Returns
    ``(precision (M,), recall (M,), sorted scores (M,))``; recall is 0 everywhere when ``n_pos`` is 0.
    """
    scores = np.asarray(scores, np.float64).reshape(-1)
    is_tp = np.asarray(is_tp, bool).reshape(-1)
    order = np.argsort(-scores, kind="stable")
    tp = np.cumsum(is_tp[order])
    fp = np.cumsum(~is_tp[order])
    precision = tp / np.maximum(tp + fp, 1)
    recall = tp / n_pos if n_pos > 0 else np.zeros_like(precision)
    return precision.astype(np.float32), recall.astype(np.float32), scores[order].astype(np.float32)


def average_precision(scores, is_tp, n_pos: int) -> float:
    """All-point interpolated AP (area under the precision envelope). NaN when ``n_pos`` is 0."""
    if n_pos <= 0:
        return float("nan")
    precision, recall, _ = pr_curve(scores, is_tp, n_pos)
    if len(precision) == 0:
        return 0.0
    r = np.concatenate([[0.0], recall.astype(np.float64)])
    p = np.concatenate([[0.0], precision.astype(np.float64)])
    p = np.maximum.accumulate(p[::-1])[::-1]  # envelope: best precision at this recall or beyond
    return float(np.sum((r[1:] - r[:-1]) * p[1:]))
