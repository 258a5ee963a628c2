"""The face-detector interface (``Detection``, ``Detector``), OpenCV's Haar detector, and the drawing
every page shares.

A detector takes an RGB uint8 frame (H, W, 3) and returns ``Detection``s, best first, each with a
score in [0, 1] and a box in the facecore convention (float32 normalized ``[x1, y1, x2, y2]``).
The other detectors subclass ``Detector`` in their own modules (``facecore.blazeface.builtin``,
``facecore.facetracker.inference``, ``facecore.blazeface.saved``, ``facecore.identity.recognize``); ``facecore.registry`` loads
any of them by name.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from typing import NamedTuple

import cv2
import numpy as np

from . import boxes as B
from .errors import FaceCoreError

HAAR = "haar"
BLAZEFACE = "blazeface"              # built in: MediaPipe's full-range BlazeFace (facecore.blazeface.builtin)
BLAZEFACE_SHORT = "blazeface-short"  # built in: its short-range sibling (faces filling the frame; faster)
BUILT_IN = (BLAZEFACE, BLAZEFACE_SHORT, HAAR)
DEFAULT_DETECTOR = BLAZEFACE


class Detection(NamedTuple):
    """One face: ``score`` in [0, 1]; ``box`` float32 (4,) normalized ``[x1, y1, x2, y2]``."""

    score: float
    box: np.ndarray
    label: str = "face"


class Detector(ABC):
    """A face detector: ``name`` (what the pages list), ``backend`` (what runs it, for captions), and
    ``detect`` / ``detect_batch`` on RGB uint8 frames (H, W, 3), best detection first.

    Subclasses implement ``detect``; ``detect_batch`` calls it per frame unless a subclass batches.
    """

    name: str = "detector"
    backend: str = ""

    @abstractmethod
    def detect(self, frame: np.ndarray) -> list[Detection]:
        """RGB uint8 (H, W, 3) -> every face found, best first (boxes normalized)."""

    def detect_batch(self, frames: list[np.ndarray]) -> list[list[Detection]]:
        """One detection list per RGB frame (frames may differ in size)."""
        return [self.detect(f) for f in frames]


class HaarDetector(Detector):
    """OpenCV's frontal-face Haar cascade (the me/not-me tutorial's detector): several faces per frame.

    The cascade has no probability; ``score`` squashes its level weight, ``1 - exp(-w / 2)``, so
    stronger detections rank higher in AP and a default threshold of 0.5 keeps the usual ones.

    Speed: the frame is shrunk to ``max_width`` (320) first: on a 640x480 webcam frame that cuts the
    cascade from ~60 ms to ~10-20 ms on 2 cores with the same recall on the six webcam sets
    (faces there are large); ``min_size`` is the smallest face side as a fraction of the frame's
    short side. Box shape: the cascade's square spans eyebrows to mouth, while people label the
    whole face (forehead to chin, about 1.3-1.4x taller on those sets), so boxes are stretched
    vertically by ``stretch`` (and moved down ``shift`` of their height) to be comparable with labels;
    ``stretch=1, shift=0`` gives the raw cascade box.
    OpenCV does not promise thread-safety of one classifier: one instance per thread, or the lock.
    """

    name = HAAR
    backend = "opencv"

    def __init__(self, scale_factor: float = 1.1, min_neighbors: int = 4, min_size: float = 0.1,
                 max_width: int = 320, stretch: float = 1.3, shift: float = 0.05):
        path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
        self._cascade = cv2.CascadeClassifier(path)
        if self._cascade.empty():
            raise FaceCoreError(f"could not load the Haar cascade {path}; reinstall opencv-python-headless<5")
        self.scale_factor, self.min_neighbors, self.min_size, self.max_width = scale_factor, min_neighbors, min_size, max_width
        self.stretch, self.shift = stretch, shift
        self._lock = threading.Lock()

    def detect(self, frame: np.ndarray) -> list[Detection]:
        """RGB uint8 (H, W, 3) -> every face found, best first (boxes normalized)."""
        h, w = frame.shape[:2]
        gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        scale = min(1.0, self.max_width / w)
        if scale < 1.0:
            gray = cv2.resize(gray, (max(1, int(round(w * scale))), max(1, int(round(h * scale)))),
                              interpolation=cv2.INTER_AREA)
        side = max(int(self.min_size * min(gray.shape[:2])), 20)
        if min(gray.shape[:2]) < side:
            return []
        with self._lock:
            rects, _, weights = self._cascade.detectMultiScale3(
                gray, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
                minSize=(side, side), outputRejectLevels=True)
        if len(rects) == 0:
            return []
        rects = np.asarray(rects, np.float32) / scale
        px = np.concatenate([rects[:, :2], rects[:, :2] + rects[:, 2:]], axis=1)
        norm = B.from_pixels(px, w, h)
        bh = norm[:, 3] - norm[:, 1]
        cy = (norm[:, 1] + norm[:, 3]) / 2 + self.shift * bh
        norm[:, 1], norm[:, 3] = cy - bh * self.stretch / 2, cy + bh * self.stretch / 2
        norm = B.clip(norm)
        scores = 1.0 - np.exp(-np.maximum(np.asarray(weights, np.float32).reshape(-1), 0) / 2.0)
        order = np.argsort(-scores)
        return [Detection(float(scores[i]), norm[i]) for i in order]


def above(detections: list[Detection], threshold: float) -> list[Detection]:
    """Detections whose score reaches ``threshold``."""
    return [d for d in detections if d.score >= threshold]


BOX_COLOR = (255, 0, 0)  # RGB red, the tutorials' colour


def draw_detections(frame: np.ndarray, detections: list[Detection], threshold: float = 0.5,
                    blur: bool = False, color=BOX_COLOR, show_score: bool = True,
                    overlay: str | None = None) -> np.ndarray:
    """A copy of RGB ``frame`` with each detection at or above ``threshold`` boxed and labelled
    ("face 0.97" on a filled bar, the tutorial style), or blurred when ``blur`` is set;
    ``overlay`` (e.g. ``Timer.text()``) is written in the top-left corner."""
    out = frame.copy()
    h, w = out.shape[:2]
    thick = max(1, round(min(h, w) / 240))
    for det in above(detections, threshold):
        x1, y1, x2, y2 = B.to_pixels_int(det.box, w, h)[0].tolist()
        if x2 <= x1 or y2 <= y1:
            continue
        if blur:
            roi = out[y1:y2, x1:x2]
            k = max(3, (min(roi.shape[:2]) // 3) | 1)
            out[y1:y2, x1:x2] = cv2.GaussianBlur(roi, (k, k), 0)
            continue
        cv2.rectangle(out, (x1, y1), (x2, y2), color, thick)
        if show_score:
            text = f"{det.label} {det.score:.2f}"
            scale = 0.5 * thick
            (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
            ty = y1 - th - base - 4 if y1 - th - base - 4 >= 0 else y1
            cv2.rectangle(out, (x1, ty), (x1 + tw + 6, ty + th + base + 4), color, -1)
            cv2.putText(out, text, (x1 + 3, ty + th + 2), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick, cv2.LINE_AA)
    if overlay:
        draw_overlay(out, overlay)
    return out


def draw_boxes(image: np.ndarray, boxes, color=(0, 255, 0), thickness: int | None = None) -> np.ndarray:
    """A copy of RGB ``image`` with normalized ``[x1, y1, x2, y2]`` ``boxes`` (N, 4) outlined, unlabelled;
    the line width scales with the image unless ``thickness`` is given."""
    out = image.copy()
    h, w = out.shape[:2]
    t = thickness or max(1, round(min(h, w) / 150))
    for x1, y1, x2, y2 in B.to_pixels_int(boxes, w, h).tolist() if len(boxes) else []:
        cv2.rectangle(out, (x1, y1), (x2, y2), color, t)
    return out


def draw_overlay(frame: np.ndarray, text: str) -> np.ndarray:
    """Draw a status line (e.g. "24.8 fps | 3.1 ms") in the top-left corner, in place; returns ``frame``."""
    scale = max(0.4, frame.shape[0] / 960)
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    cv2.rectangle(frame, (0, 0), (tw + 10, th + base + 8), (0, 0, 0), -1)
    cv2.putText(frame, text, (5, th + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return frame


class Timer:
    """Exponential moving average of FPS and latency, for overlays (not thread-safe)."""

    def __init__(self, alpha: float = 0.1):
        self.alpha, self.fps, self.latency_ms, self._last = alpha, 0.0, 0.0, None

    def update(self, latency_s: float) -> None:
        now = time.perf_counter()
        if self._last is not None:
            dt = now - self._last
            if dt > 0:
                self.fps = 1 / dt if self.fps == 0 else (1 - self.alpha) * self.fps + self.alpha / dt
        self._last = now
        ms = latency_s * 1000
        self.latency_ms = ms if self.latency_ms == 0 else (1 - self.alpha) * self.latency_ms + self.alpha * ms

    def text(self) -> str:
        return f"{self.fps:.1f} fps | {self.latency_ms:.1f} ms"
