"""Recognition: face detector -> crop grown by k -> identity classifier -> name and score per face.

``Recognizer`` is itself a ``facecore.detect.Detector``: its ``Detection``s carry the identity's
name as ``label`` and the classifier's probability as ``score``, so the Video and Webcam pages and
``draw_detections`` ("me 0.97") use it unchanged. Faces are kept when the wrapped detector's
score reaches ``face_threshold``; the pages' threshold then applies to the identity score.
"""

from __future__ import annotations

import threading
import time
from typing import NamedTuple

import numpy as np

from ..detect import Detection, Detector
from .data import DEFAULT_K, crop_face
from ..preprocess import resize_for_model


class IdentityClassifier:
    """A trained identity model: ``predict(crops) -> (N, C)`` probabilities over ``classes``.

    A Keras ``model`` runs through one ``tf.function`` traced for any batch size (never ``model.predict``
    per face); ``from_tflite`` runs a saved ``model.tflite`` on LiteRT instead, with no TensorFlow in the
    process (the Streamlit server). Under a lock: one instance may be shared by the webcam thread and page
    reruns. ``load_identity`` loads a saved one.
    """

    def __init__(self, model, classes: list[str], input_size: int, k: float = DEFAULT_K, name: str = "identity"):
        import tensorflow as tf

        self.model, self.classes, self.input_size, self.k, self.name = model, list(classes), int(input_size), float(k), name
        spec = tf.TensorSpec([None, self.input_size, self.input_size, 3], tf.float32)
        fn = tf.function(lambda x: model(x, training=False), input_signature=[spec])
        self._fn = lambda x: fn(x).numpy()
        self._lock = threading.Lock()
        self.backend = "tf.function"

    @classmethod
    def from_tflite(cls, path, classes: list[str], k: float = DEFAULT_K, name: str = "identity",
                    num_threads: int | None = None) -> "IdentityClassifier":
        """A saved ``model.tflite`` (one crop at a time: (1, S, S, 3) RGB 0..255 -> (1, C)) on LiteRT."""
        from ..facetracker.inference import _interpreter_class, default_threads

        interp = _interpreter_class()(model_path=str(path), num_threads=num_threads or default_threads())
        interp.allocate_tensors()
        inp, out = interp.get_input_details()[0], interp.get_output_details()[0]

        def run(x: np.ndarray) -> np.ndarray:
            rows = []
            for crop in x:  # the file takes one crop: a fixed batch folds its shapes (one XNNPACK partition)
                interp.set_tensor(inp["index"], crop[None].astype(np.float32))
                interp.invoke()
                rows.append(interp.get_tensor(out["index"])[0].copy())
            return np.asarray(rows, np.float32)

        self = cls.__new__(cls)
        self.model, self.classes, self.k, self.name = None, list(classes), float(k), name
        self.input_size = int(inp["shape"][1])
        self.n_outputs = int(out["shape"][-1])
        self._fn, self._lock, self.backend = run, threading.Lock(), "tflite"
        return self

    def predict(self, crops: list[np.ndarray]) -> np.ndarray:
        """RGB uint8 crops (any sizes) -> float32 (N, C) class probabilities."""
        if not crops:
            return np.zeros((0, len(self.classes)), np.float32)
        x = np.stack([resize_for_model(c, self.input_size) for c in crops])
        with self._lock:
            return np.asarray(self._fn(x), np.float32)

    def classify(self, crop: np.ndarray) -> tuple[str, float]:
        """The name and probability of the most likely identity of one crop."""
        p = self.predict([crop])[0]
        i = int(np.argmax(p))
        return self.classes[i], float(p[i])

    def measure_latency(self, runs: int = 20) -> float:
        """Median milliseconds to classify one crop (after a warm-up call)."""
        crop = np.full((self.input_size, self.input_size, 3), 128, np.uint8)
        self.predict([crop])
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            self.predict([crop])
            times.append(time.perf_counter() - t)
        return round(float(np.median(times)) * 1000, 3)


def saved_tflite(path, classes, k, name: str) -> "IdentityClassifier | None":
    """A saved identity ``model.tflite`` at ``path`` on LiteRT, or None when it cannot be used (the caller
    then loads ``model.keras``): its own input size and class count must agree with ``meta.json``'s
    ``classes`` and crop margin ``k``."""
    from ..facetracker.inference import MAX_INPUT_SIZE, MIN_INPUT_SIZE

    if not isinstance(classes, list) or not isinstance(k, (int, float)) or isinstance(k, bool) or not 0 <= k <= 10:
        return None
    try:
        clf = IdentityClassifier.from_tflite(path, [str(c) for c in classes], float(k), name=name)
    except (ValueError, RuntimeError, OSError):  # a file LiteRT refuses: model.keras may still load
        return None
    if not MIN_INPUT_SIZE <= clf.input_size <= MAX_INPUT_SIZE or clf.n_outputs != len(classes):
        return None
    return clf


class Recognition(NamedTuple):
    """One recognized face: ``box`` normalized (4,), ``name``, its probability ``score``,
    the detector's ``face_score`` and all class ``probs`` (C,)."""

    box: np.ndarray
    name: str
    score: float
    face_score: float
    probs: np.ndarray


class Recognizer(Detector):
    """Detector + identity classifier, as a Detector (several faces per frame).

    ``detect(frame)`` returns ``Detection(score=identity probability, box=face box, label=name)``
    for every face the detector scores at least ``face_threshold``, best identity score first.
    Thread-safe: the wrapped detector is called under its own lock (OpenCV's cascade is not
    thread-safe) and the classifier locks itself.
    """

    def __init__(self, detector: Detector, classifier: IdentityClassifier, k: float | None = None,
                 face_threshold: float = 0.5):
        self.detector, self.classifier = detector, classifier
        self.k = classifier.k if k is None else float(k)
        self.face_threshold = face_threshold
        self.name = f"{detector.name}+{classifier.name}"
        self.backend = detector.backend
        self._lock = threading.Lock()

    @property
    def classes(self) -> list[str]:
        return self.classifier.classes

    def _faces(self, frame: np.ndarray, face_threshold: float | None = None) -> list[Detection]:
        thr = self.face_threshold if face_threshold is None else face_threshold
        with self._lock:
            dets = self.detector.detect(frame)
        return [d for d in dets if d.score >= thr]

    def _classify(self, frames: list[np.ndarray], faces: list[list[Detection]]) -> list[list[Recognition]]:
        crops, where = [], []
        for fi, (frame, dets) in enumerate(zip(frames, faces)):
            for d in dets:
                try:
                    crops.append(crop_face(frame, d.box, self.k))
                    where.append((fi, d))
                except ValueError:
                    continue  # a degenerate box at the border: nothing to classify
        probs = self.classifier.predict(crops)
        out: list[list[Recognition]] = [[] for _ in frames]
        for (fi, d), p in zip(where, probs):
            i = int(np.argmax(p))
            out[fi].append(Recognition(np.asarray(d.box, np.float32), self.classes[i], float(p[i]), float(d.score), p))
        for rs in out:
            rs.sort(key=lambda r: -r.score)
        return out

    def recognize(self, frame: np.ndarray, face_threshold: float | None = None) -> list[Recognition]:
        """RGB uint8 frame (H, W, 3) -> one Recognition per detected face, best score first.
        ``face_threshold`` overrides the instance's for this call (a shared instance stays as it is)."""
        return self._classify([frame], [self._faces(frame, face_threshold)])[0]

    def recognize_batch(self, frames: list[np.ndarray]) -> list[list[Recognition]]:
        """Several frames; all their faces go through the classifier in one batch."""
        with self._lock:
            batch = self.detector.detect_batch(frames)
        faces = [[d for d in dets if d.score >= self.face_threshold] for dets in batch]
        return self._classify(frames, faces)

    def detect(self, frame: np.ndarray) -> list[Detection]:
        return [Detection(r.score, r.box, r.name) for r in self.recognize(frame)]

    def detect_batch(self, frames: list[np.ndarray]) -> list[list[Detection]]:
        return [[Detection(r.score, r.box, r.name) for r in rs] for rs in self.recognize_batch(frames)]


COLORS = [(0, 170, 0), (220, 0, 0), (0, 90, 220), (230, 140, 0), (150, 0, 170), (0, 160, 160)]


def color_for(name: str, classes: list[str]) -> tuple[int, int, int]:
    """A stable RGB colour per identity (green for the first class, red for the second, ...)."""
    i = classes.index(name) if name in classes else len(classes)
    return COLORS[i % len(COLORS)]


def draw_recognitions(frame: np.ndarray, recognitions: list[Recognition], classes: list[str]) -> np.ndarray:
    """A copy of RGB ``frame`` with each face boxed and labelled "name 0.97", one colour per identity."""
    from ..detect import draw_detections

    out = frame
    for r in recognitions:
        out = draw_detections(out, [Detection(r.score, r.box, r.name)], threshold=0.0, color=color_for(r.name, classes))
    return out.copy() if out is frame else out


# -- loading saved identity models (the detectors are facecore.registry's) ------------------------------
def load_identity(model_dir) -> IdentityClassifier:
    """An identity model folder (``kind: "identity"``) as an ``IdentityClassifier``. The network's own
    input size and class count must agree with ``meta.json``. Raises FaceCoreError."""
    from pathlib import Path

    from ..errors import FaceCoreError, ModelFileError
    from ..facetracker.inference import MAX_INPUT_SIZE, MIN_INPUT_SIZE, load_keras_model
    from ..meta import IDENTITY, META_FILE, ModelMeta
    from ..registry import KERAS_FILE, TFLITE_FILE

    d = Path(model_dir)
    try:
        meta = ModelMeta.load(d, strict=True)  # a class list or crop margin of the wrong type: refused
    except ModelFileError as exc:
        raise FaceCoreError(f"{d}: {exc}; train an identity model on the Recognize page first") from exc
    if meta.kind != IDENTITY:
        raise FaceCoreError(f"{d.name} is a {meta.kind} model, not an identity classifier")
    k = DEFAULT_K if meta.crop_margin is None else meta.crop_margin
    if (d / TFLITE_FILE).is_file():  # LiteRT: no TensorFlow in the process that recognizes faces
        clf = saved_tflite(d / TFLITE_FILE, meta.classes, k, d.name)
        if clf is not None:
            return clf
    if not (d / KERAS_FILE).is_file():
        raise FaceCoreError(f"{d}: {KERAS_FILE} is missing; retrain the identity model")
    try:
        model = load_keras_model(d / KERAS_FILE)
    except ModelFileError as exc:  # a truncated or foreign file: say which one
        raise FaceCoreError(f"{d / KERAS_FILE}: cannot load the model ({exc}); retrain it") from exc
    # the network's own input size and class count win over meta.json's (a lying size would allocate GBs)
    size = int(model.inputs[0].shape[1] or 0)
    classes, n_out = meta.classes, int(model.outputs[0].shape[-1] or 0)
    if not MIN_INPUT_SIZE <= size <= MAX_INPUT_SIZE or not classes or len(classes) != n_out or not 0 <= k <= 10:
        raise FaceCoreError(f"{d}: {META_FILE} does not match {KERAS_FILE} (input {size} px, {n_out} classes, "
                            f"crop margin {k!r}); retrain the identity model")
    return IdentityClassifier(model, [str(c) for c in classes], size, float(k), name=d.name)


def load_recognizer(detector_name: str, identity_name: str, models_root, face_threshold: float = 0.5) -> Recognizer:
    """Detector ``detector_name`` (``facecore.registry.load_detector``) + identity model ``identity_name``
    from ``models_root``, as a ``Recognizer``."""
    from ..registry import load_detector, model_folder

    return Recognizer(load_detector(detector_name, models_root),
                      load_identity(model_folder(models_root, identity_name)), face_threshold=face_threshold)
