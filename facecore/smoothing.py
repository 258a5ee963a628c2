"""Box smoothing across frames, shared by the live stream (``facecore.live.processor``) and video files
(``facecore.video``): one face's box moves as a moving average, so boxes do not jitter.

Boxes are the facecore convention: float32 normalized ``[x1, y1, x2, y2]``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from . import boxes as B
from .detect import Detection


class BoxSmoother:
    """Moving average of each face's box across frames (or across detector samples of a video).

    Detections are matched to the previous update's smoothed boxes greedily by IoU, in the order given
    (best score first), each previous box used once; a matched box becomes
    ``alpha * previous + (1 - alpha) * current``; an unmatched one starts fresh, so a face that moves far
    (IoU < ``min_iou``) jumps instead of sliding. Scores and labels stay raw. ``alpha`` 0 turns it off.
    """

    def __init__(self, alpha: float = 0.6, min_iou: float = 0.3):
        self.alpha, self.min_iou = alpha, min_iou
        self._prev = B.EMPTY.copy()
        self._held: tuple[Detection, ...] = ()

    @property
    def held(self) -> tuple[Detection, ...]:
        """The detections the last ``update`` returned (what frames between samples keep showing)."""
        return self._held

    def reset(self) -> None:
        self._prev = B.EMPTY.copy()
        self._held = ()

    def update(self, detections: Sequence[Detection]) -> list[Detection]:
        """Smoothed copies of ``detections`` (same order); remembers them for the next update."""
        if not detections:
            self.reset()
            return []
        cur = B.as_boxes([d.box for d in detections])
        out = cur.copy()
        if self.alpha > 0 and len(self._prev):
            ious = B.iou_matrix(cur, self._prev)
            taken: set[int] = set()
            for i in range(len(cur)):
                for j in np.argsort(-ious[i]):
                    if ious[i, j] < self.min_iou:
                        break
                    if j not in taken:
                        taken.add(int(j))
                        out[i] = self.alpha * self._prev[j] + (1 - self.alpha) * cur[i]
                        break
        self._prev = out
        smoothed = [Detection(d.score, out[i].astype(np.float32), d.label) for i, d in enumerate(detections)]
        self._held = tuple(smoothed)
        return smoothed
