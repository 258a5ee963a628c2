"""Small and distant faces: run a detector over the whole frame and over tiles at finer scales.

A face detector sees a frame shrunk to its network input: MediaPipe's full-range BlazeFace letterboxes
a 12 MP group photo into 192 px, so a 100 px face becomes 5 px, under its smallest anchors. Scanning
the frame in overlapping tiles, each shrunk to the same input, shows the network small faces at a
size it finds (an image pyramid, as sliding-window detectors and SAHI do). Detections of all levels
are merged by non-maximum suppression; a face cut by a tile's inner edge is left to the tile that
holds it whole (tiles overlap by more than the largest face a level looks for).

Levels: level 0 is the whole frame; level k tiles have a side of ``long side / 2**k`` source pixels,
for as long as no level looks at a photo closer than ``max_zoom`` network pixels per photo pixel and
``max_levels`` allows: a 400 x 300 crowd photo is seen whole and in 200 and 100 px tiles, a 12 MP
photo whole and in 2000, 1000 and 500 px tiles. ``STILLS`` scans every photo over 256 px (Evaluate,
pre-labeling, Recognize); ``VIDEO`` only frames over 1280 px (a 640 x 480 clip runs at full speed);
``WHOLE_FRAME`` is the webcam's fast path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import boxes as B
from .detect import Detection, Detector

EDGE_MARGIN = 0.02  # a box this close (fraction of the tile) to a tile's inner edge is cut by it
MERGE_IOU = 0.3
CONTAIN = 0.75  # a box lying this much inside a better one is the same face seen cut
# A tile keeps only faces under this share of its side: larger ones are cut by the next tile's edge too
MAX_IN_TILE = 0.5
GOOD_PX = 32  # a face this wide in the network's input is boxed as well as it gets


@dataclass(frozen=True)
class ScanConfig:
    """How finely to scan: ``max_levels`` tile levels below the whole frame (0: whole frame only);
    ``max_zoom``: the most network pixels per photo pixel a tile may get; ``overlap``: tiles overlap by
    this fraction of their side; ``min_side``: frames whose longer side is under this many pixels are
    only seen whole (the network's own input: nothing to gain)."""

    max_levels: int = 3
    max_zoom: float = 2.0
    overlap: float = 0.3
    min_side: int = 256
    net_size: int = 192

    def levels(self, h: int, w: int) -> list[int]:
        """Tile sides in source pixels, coarse to fine (not counting the whole frame)."""
        long = max(h, w)
        if long < self.min_side:
            return []
        out = []
        for k in range(1, self.max_levels + 1):
            side = int(math.ceil(long / 2 ** k))
            if self.net_size / side > self.max_zoom + 1e-6:
                break
            out.append(side)
        return out


WHOLE_FRAME = ScanConfig(max_levels=0)
STILLS = ScanConfig()
VIDEO = ScanConfig(min_side=1281)
DEFAULT_SCAN = STILLS


def tile_origins(length: int, side: int, overlap: float) -> list[int]:
    """Start offsets of tiles of ``side`` covering ``length`` pixels with at least ``overlap`` of a side
    shared between neighbours; the last tile ends on the edge."""
    if side >= length:
        return [0]
    n = int(math.ceil((length - side) / (side * (1 - overlap)))) + 1
    return [int(round(i * (length - side) / (n - 1))) for i in range(n)]


def tiles(h: int, w: int, side: int, overlap: float) -> list[tuple[int, int, int, int]]:
    """Tiles ``(x0, y0, x1, y1)`` in pixels of side ``side`` (clipped to the frame) covering an ``h`` x ``w`` frame."""
    return [(x, y, min(x + side, w), min(y + side, h))
            for y in tile_origins(h, side, overlap) for x in tile_origins(w, side, overlap)]


def _from_tile(dets: list[Detection], tile, h: int, w: int) -> list[Detection]:
    """A tile's detections (normalized in the tile) -> normalized in the frame, without those cut by an
    inner edge of the tile or larger than ``MAX_IN_TILE`` of it (a coarser level sees those whole)."""
    x0, y0, x1, y1 = tile
    tw, th = x1 - x0, y1 - y0
    out = []
    for d in dets:
        b = np.asarray(d.box, np.float32)
        if (b[0] < EDGE_MARGIN and x0 > 0) or (b[1] < EDGE_MARGIN and y0 > 0) \
                or (b[2] > 1 - EDGE_MARGIN and x1 < w) or (b[3] > 1 - EDGE_MARGIN and y1 < h):
            continue
        if (b[2] - b[0]) > MAX_IN_TILE or (b[3] - b[1]) > MAX_IN_TILE:
            continue
        fb = np.array([(x0 + b[0] * tw) / w, (y0 + b[1] * th) / h, (x0 + b[2] * tw) / w, (y0 + b[3] * th) / h],
                      np.float32)
        out.append(Detection(d.score, fb, d.label))
    return out


def merge(dets: list[Detection], zoom: list[float] | None = None, iou: float = MERGE_IOU,
          width: int = 1) -> list[Detection]:
    """Non-maximum suppression over detections of several levels (``zoom[i]``: network pixels per frame
    pixel of the level that found ``dets[i]``; ``width``: the frame's in pixels): best score first; a box
    overlapping a kept one by more than ``iou``, or lying mostly (``CONTAIN``) inside it or around it, is
    the same face. A face seen at several levels keeps the best score and the box of the coarsest level
    that saw it at least ``GOOD_PX`` network pixels wide (the detector's box style was fitted on faces
    that size), else of the finest."""
    order = sorted(range(len(dets)), key=lambda i: -dets[i].score)
    if not order:
        return []
    dets = [dets[i] for i in order]
    zm = np.asarray([1.0 if zoom is None else zoom[i] for i in order])
    boxes = np.stack([np.asarray(d.box, np.float32) for d in dets])
    area = np.maximum(boxes[:, 2] - boxes[:, 0], 0) * np.maximum(boxes[:, 3] - boxes[:, 1], 0)
    alive = np.ones(len(dets), bool)
    out = []
    for i, d in enumerate(dets):
        if not alive[i]:
            continue
        ix = np.maximum(0, np.minimum(boxes[i, 2], boxes[:, 2]) - np.maximum(boxes[i, 0], boxes[:, 0]))
        iy = np.maximum(0, np.minimum(boxes[i, 3], boxes[:, 3]) - np.maximum(boxes[i, 1], boxes[:, 1]))
        smaller = np.maximum(np.minimum(area, area[i]), 1e-12)
        same = alive & ((B.iou_matrix(boxes[i:i + 1], boxes)[0] > iou) | (ix * iy / smaller > CONTAIN))
        same[i] = True
        members = np.flatnonzero(same)
        px = (boxes[members, 2] - boxes[members, 0]) * width * zm[members]
        good = members[px >= GOOD_PX]
        pick = good[np.argmin(zm[good])] if len(good) else members[np.argmax(zm[members])]
        out.append(Detection(d.score, boxes[pick].copy(), d.label))
        alive &= ~same
    return out


def scan(detector: Detector, frame: np.ndarray, config: ScanConfig = DEFAULT_SCAN) -> list[Detection]:
    """Every face in RGB uint8 ``frame`` (H, W, 3): ``detector`` on the whole frame and on the tiles of
    ``config.levels``, merged; boxes normalized ``[x1, y1, x2, y2]`` in the frame, best first."""
    h, w = frame.shape[:2]
    found = list(detector.detect(frame))
    zoom = [config.net_size / max(h, w)] * len(found)
    for side in config.levels(h, w):
        for t in tiles(h, w, side, config.overlap):
            crop = np.ascontiguousarray(frame[t[1]:t[3], t[0]:t[2]])
            more = _from_tile(detector.detect(crop), t, h, w)
            found.extend(more)
            zoom.extend([config.net_size / side] * len(more))
    return merge(found, zoom, width=w)


class ScanningDetector(Detector):
    """``detector`` run by ``scan``: the same detector, finding faces too small for its input at one look.
    ``name`` and ``backend`` are the wrapped detector's (a scan is a way of running it, not a new model)."""

    def __init__(self, detector: Detector, config: ScanConfig = DEFAULT_SCAN):
        self.detector = detector
        self.config = config
        self.name = detector.name
        self.backend = getattr(detector, "backend", "")

    def detect(self, frame: np.ndarray) -> list[Detection]:
        """RGB uint8 (H, W, 3) -> every face at every level, best first (boxes normalized to the frame)."""
        return scan(self.detector, frame, self.config)

    def __getattr__(self, item):
        # style, min_score, variant... of the wrapped detector (only reached for names not set here)
        return getattr(self.__dict__["detector"], item)
