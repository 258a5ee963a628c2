"""A fine-tuned BlazeFace model (``models/<name>/`` with ``"architecture": "blazeface"`` in meta.json)
behind the ``Detector`` interface: every face in the frame, best first. ``facecore.registry`` opens it.

Inference runs ``model.tflite`` on LiteRT (XNNPACK, all cores), so a page that only detects never
imports TensorFlow; ``model.keras`` through ``tf.function`` is the fallback. ``model_input`` pads the frame
to the training photos' shape and resizes it whole to the model's square input
(``facecore.preprocess.resize_for_model``, as in training; the README's saved-model example uses it too), the graph
decodes every anchor, and MediaPipe's weighted NMS (``facecore.blazeface.builtin.weighted_nms``) gives the faces.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from .. import boxes as B
from .builtin import NMS_IOU, weighted_nms
from ..detect import Detection, Detector
from ..errors import FaceCoreError
from ..meta import ModelMeta
from ..preprocess import resize_for_model

MIN_SCORE = 0.02  # faces below this never leave the detector (pages filter with their own threshold);
# 0.02 rather than 0.05: a few more faces of 2x2 mosaics of unseen people ranked (AP50 0.973 -> 0.976, README)
AVERAGE_FLOOR = 0.3  # MediaPipe's own floor: a face's box is the average of its anchors scoring this much


def _pick(outputs) -> tuple[np.ndarray, np.ndarray]:
    """Outputs in any order -> ``(anchor_probs (A,), anchor_boxes (A, 4))`` of the first photo."""
    probs = boxes = None
    for o in outputs:
        o = np.asarray(o)
        if o.ndim == 3 and o.shape[-1] == 1:
            probs = o[0, :, 0]
        elif o.ndim == 3 and o.shape[-1] == 4:
            boxes = o[0]
    if probs is None or boxes is None:
        raise FaceCoreError("this BlazeFace model has no per-anchor outputs (anchor_probs, anchor_boxes); retrain it")
    return probs, boxes


def pad_to_aspect(frame: np.ndarray, aspect) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """Pad RGB (H, W, 3) with mid-grey, centred, to width / height = ``aspect`` (None or within 2 %: as is).
    Returns ``(padded, (sx, sy, ox, oy))``: a normalized x in the frame is ``ox + sx * x`` in the padded one."""
    h, w = frame.shape[:2]
    try:
        aspect = float(aspect)
    except (TypeError, ValueError):
        return frame, (1.0, 1.0, 0.0, 0.0)
    if not (0.2 <= aspect <= 5.0) or abs(w / h / aspect - 1.0) <= 0.02:
        return frame, (1.0, 1.0, 0.0, 0.0)
    pw, ph = max(w, round(h * aspect)), max(h, round(w / aspect))
    x0, y0 = (pw - w) // 2, (ph - h) // 2
    out = np.full((ph, pw, 3), 127, np.uint8)
    out[y0:y0 + h, x0:x0 + w] = frame
    return out, (w / pw, h / ph, x0 / pw, y0 / ph)


def model_input(frame: np.ndarray, meta, size: int | None = None):
    """The one way a frame goes into a saved BlazeFace model (``model.keras`` or ``model.tflite``) and its
    boxes come back; numpy and OpenCV only. ``frame``: RGB uint8 (H, W, 3) of any shape; ``meta``: the
    model's ``meta.json`` (a ``facecore.meta.ModelMeta``, or the parsed file); ``size``: the model's input
    side (default: ``ModelMeta.input_hw``, the ``input.shape`` it states).

    Returns ``(x, to_frame)``: ``x`` float32 (size, size, 3), RGB 0..255, the frame padded with mid-grey to
    the training photos' shape (``frame_aspect``) and resized whole (as the app runs it: the box
    style in the graph was fitted on faces stretched as theirs); ``to_frame(boxes)`` maps the model's
    normalized ``[x1, y1, x2, y2]`` boxes (any leading shape) to the frame's, float32."""
    meta = ModelMeta.of(meta)
    if size is None:
        hw = meta.input_hw  # raises ModelFileError (a FaceCoreError) for a size that is not one
        if hw is None:
            raise FaceCoreError("meta.json has no input size (input.shape); pass size= (the model's input side)")
        size = hw[0]
    padded, (sx, sy, ox, oy) = pad_to_aspect(frame, meta.frame_aspect)
    origin, scale = np.array([ox, oy, ox, oy], np.float32), np.array([sx, sy, sx, sy], np.float32)

    def to_frame(boxes) -> np.ndarray:
        return ((np.asarray(boxes, np.float32) - origin) / scale).astype(np.float32)

    return resize_for_model(padded, int(size)), to_frame


class TrainedBlazeDetector(Detector):
    """A fine-tuned BlazeFace: ``detect(rgb)`` -> every face (score >= ``min_score``), best first."""

    def __init__(self, name: str, size: int, run, meta, backend: str, min_score: float = MIN_SCORE):
        self.name, self.input_size, self._run, self.meta = name, int(size), run, ModelMeta.of(meta, name)
        self.backend, self.min_score = backend, float(min_score)
        self.fallback_reason = ""

    @classmethod
    def from_tflite(cls, path: Path, name: str, meta: ModelMeta, num_threads: int | None = None) -> "TrainedBlazeDetector":
        """Run ``model.tflite`` at ``path`` on LiteRT. Raises FaceCoreError when its outputs are not per anchor;
        a file the interpreter refuses raises its own error (``facecore.registry`` then tries ``model.keras``)."""
        from ..facetracker.inference import _interpreter_class, default_threads

        interp = _interpreter_class()(model_path=str(path), num_threads=num_threads or default_threads())
        interp.allocate_tensors()
        inp = interp.get_input_details()[0]
        size = int(inp["shape"][1])
        outs = [o["index"] for o in interp.get_output_details()]
        lock = threading.Lock()

        def run(x):
            with lock:
                interp.set_tensor(inp["index"], x[None])
                interp.invoke()
                return [interp.get_tensor(i) for i in outs]

        det = cls(name, size, run, meta, "tflite")
        det.detect(np.zeros((size, size, 3), np.uint8))  # warm up, and check the outputs
        return det

    @classmethod
    def from_keras(cls, net, name: str, meta: ModelMeta) -> "TrainedBlazeDetector":
        """Run a loaded ``model.keras`` network through ``tf.function`` (the fallback)."""
        import tensorflow as tf

        size = int(net.inputs[0].shape[1])
        fn = tf.function(lambda x: net(x, training=False))

        def run_keras(x):
            return [o.numpy() for o in fn(tf.constant(x[None]))]

        return cls(name, size, run_keras, meta, "tf.function")

    def detect(self, frame: np.ndarray) -> list[Detection]:
        """RGB uint8 (H, W, 3) -> every face, best first; boxes normalized to the frame.

        A frame of another shape than the training photos (``meta.frame_aspect``, width / height) is
        first padded to their shape (``model_input``, the step documented for the saved model's users)."""
        x, to_frame = model_input(frame, self.meta, self.input_size)
        probs, boxes = _pick(self._run(x))
        found = weighted_nms(boxes, probs, self.min_score, NMS_IOU, average_floor=AVERAGE_FLOOR)
        out = []
        for score, box in found:
            b = B.clip(B.order_corners(to_frame(box)))[0]
            if b[2] > b[0] and b[3] > b[1] and np.isfinite(score):
                out.append(Detection(score, b))
        return out
