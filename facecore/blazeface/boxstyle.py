"""Box style: how a dataset's boxes sit around a face detector's box, learned from a few labels.

People draw face boxes their own way (forehead to chin, loose or tight); a pretrained detector draws
its own. A ``BoxStyle`` maps one to the other, in one of two forms:

- **offsets** (4 numbers): each side of the detector's box moves by a fraction of its width or height;
- **keypoints** (a (14, 4) matrix): each corner of the label box, relative to the detector box's centre,
  is a linear function of the box's width and height and of its six keypoints (eyes, nose, mouth,
  ears) relative to that centre. Where the eyes and mouth sit tells where forehead and chin are better
  than a fixed offset does (a turned or tilted head), and the map is scale-free, so one fit serves near
  and far faces. Measured (``benchmarks/accuracy.py``): on people not fitted on, mean IoU with the
  labels 0.76 with offsets, 0.83 with keypoints.

Both forms are linear in the detector's raw regressors, so a trained BlazeFace carries its style inside
the saved graph (``facecore.blazeface.network.decode_matrix``). The keypoint form needs boxes and keypoints in
one isotropic space (the network's input square); offsets work in any.

``BoxStyle.fit`` picks the form (and how much to lean on a prior style) by cross-validated IoU on the
faces it is given, so a few labeled photos get a small correction and hundreds a full one.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from .. import boxes as B
from ..errors import FaceCoreError

NUM_KEYPOINTS = 6
N_FEATURES = 2 + 2 * NUM_KEYPOINTS
MIN_FACES = 3
MIN_KEYPOINT_FACES = 12  # below this the keypoint form is fitted only toward a prior
PRIOR_STRENGTHS = (3.0, 30.0)  # ridge weights toward a prior style's map, in faces' worth of evidence
# A light pull toward the offsets form: box width and height are nearly collinear (square boxes), and
# unpulled their weights grow large and opposite (measured: best held-out IoU at 0.01, 0.1 costs 0.01)
FREE_STRENGTH = 0.01
MAX_ABS = 10.0


def features(boxes: np.ndarray, keypoints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(F (N, 14), centres (N, 4))``: ``F = [w, h, k0x - cx, k0y - cy, ...]`` for boxes (N, 4)
    ``[x1, y1, x2, y2]`` and keypoints (N, 6, 2) in one space; ``centres`` = ``[cx, cy, cx, cy]``."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    k = np.asarray(keypoints, np.float64).reshape(len(b), NUM_KEYPOINTS, 2)
    c = np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2], axis=1)
    f = np.concatenate([b[:, 2:3] - b[:, 0:1], b[:, 3:4] - b[:, 1:2], (k - c[:, None, :]).reshape(len(b), -1)], axis=1)
    return f, np.concatenate([c, c], axis=1)


def offsets_matrix(left: float, top: float, right: float, bottom: float) -> np.ndarray:
    """(14, 4): the offsets form written as a keypoint map (keypoint rows zero)."""
    m = np.zeros((N_FEATURES, 4), np.float64)
    m[0, 0], m[0, 2] = left - 0.5, 0.5 + right
    m[1, 1], m[1, 3] = top - 0.5, 0.5 + bottom
    return m


@dataclass(frozen=True)
class BoxStyle:
    """How a dataset's boxes sit around a detector's face box.

    ``left``/``right`` move those sides by a fraction of the detector box's width, ``top``/``bottom`` by a
    fraction of its height (positive = right/down). ``matrix`` (14 rows of 4, or None) is the keypoint form:
    when set and keypoints are given, ``apply`` uses it instead of the offsets. The default moves nothing.
    ``fit`` records the IoU with the labels before and after on the faces it was fitted on, and ``cv_iou``,
    the cross-validated IoU that chose the form.
    """

    left: float = 0.0
    top: float = 0.0
    right: float = 0.0
    bottom: float = 0.0
    matrix: tuple[tuple[float, ...], ...] | None = None
    n_faces: int = 0
    iou_before: float | None = None
    iou_after: float | None = None
    cv_iou: float | None = None
    method: str = "offsets"
    source: str = ""

    def weights(self) -> np.ndarray:
        """(14, 4): the map from ``features`` to corners relative to the box centre (either form)."""
        if self.matrix is not None:
            return np.asarray(self.matrix, np.float64)
        return offsets_matrix(self.left, self.top, self.right, self.bottom)

    def apply(self, boxes: np.ndarray, keypoints: np.ndarray | None = None) -> np.ndarray:
        """Detector boxes (N, 4) normalized -> the dataset's style, clipped to [0, 1]. With ``keypoints``
        (N, 6, 2), in the same isotropic space as the boxes, the keypoint form is used if there is one."""
        b = np.asarray(boxes, np.float32).reshape(-1, 4)
        if self.matrix is not None and keypoints is not None and len(b):
            f, c = features(b, keypoints)
            return B.clip((c + f @ self.weights()).astype(np.float32))
        w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
        off = np.stack([self.left * w, self.top * h, self.right * w, self.bottom * h], axis=1)
        return B.clip(b + off)

    def scaled(self, ax: float, ay: float) -> "BoxStyle":
        """The same style in a space whose x is multiplied by ``ax`` and y by ``ay`` (a frame stretched to a
        square): offsets are unchanged, the map's weights scale by output axis over input axis."""
        if self.matrix is None:
            return self
        axis = np.array([ax, ay])
        rows = np.concatenate([axis, np.tile(axis, NUM_KEYPOINTS)])  # w, h, then x, y per keypoint
        cols = np.tile(axis, 2)  # x1, y1, x2, y2
        m = self.weights() * cols[None, :] / rows[:, None]
        return BoxStyle(**{**asdict(self), "matrix": tuple(tuple(float(v) for v in r) for r in m)})

    def to_dict(self) -> dict:
        d = asdict(self)
        d["matrix"] = None if self.matrix is None else [list(r) for r in self.matrix]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "BoxStyle":
        """Read ``to_dict``'s output; raises FaceCoreError on missing, non-finite or absurd numbers."""
        try:
            vals = {k: float(d[k]) for k in ("left", "top", "right", "bottom")}
        except (KeyError, TypeError, ValueError) as exc:
            raise FaceCoreError(f"a box style needs numbers left, top, right, bottom ({exc})") from exc
        if not all(math.isfinite(v) and abs(v) <= 1.0 for v in vals.values()):
            raise FaceCoreError(f"box style offsets must be finite fractions within [-1, 1], got {vals}")
        matrix = d.get("matrix")
        if matrix is not None:
            try:
                m = np.asarray(matrix, np.float64)
            except (TypeError, ValueError) as exc:
                raise FaceCoreError(f"a box style's matrix must be {N_FEATURES} rows of 4 numbers ({exc})") from exc
            if m.shape != (N_FEATURES, 4) or not np.isfinite(m).all() or np.abs(m).max() > MAX_ABS:
                raise FaceCoreError(f"a box style's matrix must be {N_FEATURES} rows of 4 finite numbers "
                                    f"within ±{MAX_ABS:g}")
            matrix = tuple(tuple(float(v) for v in r) for r in m)
        extra = {k: d.get(k) for k in ("n_faces", "iou_before", "iou_after", "cv_iou", "method", "source")
                 if d.get(k) is not None}
        return cls(**vals, matrix=matrix, **extra)

    @classmethod
    def fit(cls, detector_boxes: np.ndarray, label_boxes: np.ndarray, keypoints: np.ndarray | None = None,
            prior: "BoxStyle | None" = None, source: str = "", min_iou: float = 0.3) -> "BoxStyle":
        """Fit from pairs ``detector_boxes[i]`` / ``label_boxes[i]`` (both (N, 4), the same face; pairs
        overlapping by less than ``min_iou`` are left out). Offsets are the median of each side's move.
        With ``keypoints`` (N, 6, 2), in the boxes' space (isotropic), keypoint maps are fitted too (a
        robust least-absolute-deviation fit, free or pulled toward ``prior``'s map) and the form with the
        best cross-validated IoU is kept. Raises FaceCoreError with fewer than 3 usable faces."""
        d = np.asarray(detector_boxes, np.float32).reshape(-1, 4)
        g = np.asarray(label_boxes, np.float32).reshape(-1, 4)
        ok = B.iou(d, g) >= min_iou if len(d) else np.zeros(0, bool)
        d, g = d[ok], g[ok]
        if len(d) < MIN_FACES:
            raise FaceCoreError(f"fitting a box style needs at least {MIN_FACES} labeled faces that the detector "
                                f"finds; found {len(d)}. Label more photos with a face.")
        kp = None if keypoints is None else np.asarray(keypoints, np.float64).reshape(-1, NUM_KEYPOINTS, 2)[ok]
        fitters = _candidates(len(d), kp is not None, prior)
        scores = {name: _cv_iou(fn, d, g, kp) for name, fn in fitters.items()} if len(fitters) > 1 else {}
        method = max(scores, key=scores.get) if scores else "offsets"
        style = fitters[method](d, g, kp)
        return cls(style.left, style.top, style.right, style.bottom, matrix=style.matrix, n_faces=int(len(d)),
                   iou_before=float(B.iou(d, g).mean()),
                   iou_after=float(B.iou(style.apply(d, kp), g).mean()),
                   cv_iou=scores.get(method), method=method, source=source)


def _fit_offsets(d, g, kp=None) -> BoxStyle:
    w, h = d[:, 2] - d[:, 0], d[:, 3] - d[:, 1]
    med = np.median((g - d) / np.stack([w, h, w, h], axis=1), axis=0).clip(-1, 1)
    return BoxStyle(*(float(round(x, 4)) for x in med))


def _fit_map(d, g, kp, prior: np.ndarray, strength: float, iters: int = 30) -> np.ndarray:
    """Least absolute deviations (iteratively reweighted least squares) of label corners on ``features``;
    a ridge pulls the map toward ``prior`` (14, 4) with ``strength`` faces' worth of weight."""
    f, c = features(d, kp)
    y = g.astype(np.float64) - c
    scale = float(np.mean(f ** 2, axis=0).mean())
    ridge = strength * scale * np.eye(N_FEATURES)
    target = prior
    wts = np.ones(len(f))
    floor = 1e-3 * float(np.median(f[:, :2]))
    for _ in range(iters):
        fw = f * wts[:, None]
        m = np.linalg.solve(f.T @ fw + ridge, fw.T @ y + ridge @ target)
        wts = 1.0 / np.maximum(np.abs(y - f @ m).sum(axis=1), floor)
        wts *= len(wts) / wts.sum()
    return m


def _candidates(n: int, has_kp: bool, prior: BoxStyle | None) -> dict:
    def as_style(m: np.ndarray, base: BoxStyle) -> BoxStyle:
        m = np.clip(m, -MAX_ABS, MAX_ABS)
        return BoxStyle(base.left, base.top, base.right, base.bottom,
                        matrix=tuple(tuple(float(round(v, 5)) for v in r) for r in m))

    out = {"offsets": _fit_offsets}
    if not has_kp:
        return out
    if n >= MIN_KEYPOINT_FACES:
        def free(d, g, kp):
            base = _fit_offsets(d, g)
            return as_style(_fit_map(d, g, kp, base.weights(), FREE_STRENGTH), base)

        out["keypoints"] = free
    if prior is not None and prior.matrix is not None:
        pm = prior.weights()
        for s in PRIOR_STRENGTHS:
            out[f"keypoints, prior {s:g}"] = (lambda s: lambda d, g, kp: as_style(_fit_map(d, g, kp, pm, s),
                                                                                  _fit_offsets(d, g)))(s)
    return out


def _cv_iou(fit, d, g, kp, folds: int = 5) -> float:
    """Mean IoU of ``fit`` on held-out faces: leave-one-out up to 10 faces, else ``folds``-fold."""
    n = len(d)
    k = n if n <= 10 else folds
    part = np.arange(n) % k
    ious = np.zeros(n)
    for i in range(k):
        test = part == i
        train = ~test
        if train.sum() < MIN_FACES:
            continue
        style = fit(d[train], g[train], None if kp is None else kp[train])
        ious[test] = B.iou(style.apply(d[test], None if kp is None else kp[test]), g[test])
    return float(ious.mean())
