"""Fast inference for a trained face tracker: TFLite (XNNPACK) first, a ``tf.function`` fallback; and
the runtimes every saved network runs on (a checked TFLite interpreter, a ``.keras`` loader).

A face tracker's network (``model.keras`` or ``model.tflite`` of a saved model, which
``facecore.registry`` finds and opens) takes float32 (N, S, S, 3) RGB 0..255 (preprocessing inside) and
returns ``[prob (N, 1), box (N, 4)]``, box normalized ``[x1, y1, x2, y2]``. Frames go through
``facecore.preprocess.resize_for_model``: the whole frame is resized, so the normalized box the model
predicts is already the box in the original frame.

``model.predict`` is never used per frame: its per-call overhead (~160 ms on a 2-core machine) is
far above the model's own cost.
"""

from __future__ import annotations

import os
import threading
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads: keep its C++ INFO logs out

import numpy as np  # noqa: E402

from .. import boxes as B  # noqa: E402
from ..detect import Detection, Detector  # noqa: E402
from ..errors import FaceCoreError, ModelFileError  # noqa: E402
from ..preprocess import resize_for_model  # noqa: E402

BACKENDS = ("tflite", "tflite-int8", "tf.function")


def default_threads() -> int:
    """All cores: XNNPACK scales with them and a webcam frame is latency-bound."""
    return max(1, os.cpu_count() or 1)


def _split_outputs(outputs) -> tuple[np.ndarray, np.ndarray]:
    """Model outputs (any order; TFLite may reorder them) -> ``(prob (N,), box (N, 4))``."""
    prob = box = None
    for out in outputs:
        out = np.asarray(out, np.float32)
        if out.ndim == 2 and out.shape[1] == 1:
            prob = out[:, 0]
        elif out.ndim == 2 and out.shape[1] == 4:
            box = out
    if prob is None or box is None:
        shapes = [tuple(np.shape(o)) for o in outputs]
        raise FaceCoreError(f"the model's outputs have shapes {shapes}; expected a probability (N, 1) and a box (N, 4)")
    return prob, box


# A model's input side in pixels must lie in this range, whatever meta.json claims (README "Limits").
MIN_INPUT_SIZE, MAX_INPUT_SIZE = 16, 1024
MAX_TFLITE_BYTES = 1024**3
_PROBED: dict[tuple, str] = {}  # (path, size, mtime_ns) -> "" when the file loads, else why not
_PROBE_LOCK = threading.Lock()
# Loads the file in a child process: a corrupt flatbuffer can crash the interpreter (SIGSEGV),
# which must take down the child, not the Streamlit server or the CLI.
_PROBE = """
import sys
import numpy as np
try:
    from ai_edge_litert.interpreter import Interpreter
except ImportError:
    import tensorflow as tf
    Interpreter = tf.lite.Interpreter
it = Interpreter(model_path=sys.argv[1], num_threads=1)
inp = it.get_input_details()[0]
shape = [int(v) for v in inp["shape"]]
if len(shape) != 4 or shape[1] != shape[2] or shape[3] != 3 or not %d <= shape[1] <= %d:
    sys.exit("input shape %%s is not (N, S, S, 3) with S in %d..%d" %% (shape,))
if shape[0] != 1:
    it.resize_tensor_input(inp["index"], [1] + shape[1:])
it.allocate_tensors()
it.set_tensor(inp["index"], np.zeros([1] + shape[1:], inp["dtype"]))
it.invoke()
""" % (MIN_INPUT_SIZE, MAX_INPUT_SIZE, MIN_INPUT_SIZE, MAX_INPUT_SIZE)


def check_tflite_file(path: str | os.PathLike, probe: bool = True) -> None:
    """Make sure a ``.tflite`` file is safe to hand to an interpreter: a TFLite flatbuffer (identifier
    ``TFL3`` at bytes 4..8, root offset inside the file), of a sane size, which loads and runs once in a
    child process (``probe``; once per file version, cached). Raises ModelFileError saying what is wrong."""
    import subprocess
    import sys

    path = Path(path)
    try:
        st = path.stat()
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot read the model file ({exc.strerror or exc})") from exc
    if st.st_size < 64 or len(head) < 8 or head[4:8] != b"TFL3":
        raise ModelFileError(f"{path}: not a TFLite model file (corrupt or truncated; export the model again)")
    if st.st_size > MAX_TFLITE_BYTES:
        raise ModelFileError(f"{path}: {st.st_size / 1e9:.1f} GB is over the {MAX_TFLITE_BYTES / 1e9:.0f} GB limit")
    if int.from_bytes(head[:4], "little") >= st.st_size:
        raise ModelFileError(f"{path}: truncated TFLite file (its root table lies past the end); export it again")
    if not probe:
        return
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    with _PROBE_LOCK:
        why = _PROBED.get(key)
        if why is None:
            try:
                r = subprocess.run([sys.executable, "-c", _PROBE, str(path)], capture_output=True, text=True,
                                   timeout=120, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
                if r.returncode == 0:
                    why = ""
                elif r.returncode < 0:
                    why = f"the TFLite interpreter crashed on it (signal {-r.returncode})"
                else:
                    lines = [ln for ln in (r.stderr or "").strip().splitlines() if ln.strip()]
                    why = (lines[-1] if lines else f"exit status {r.returncode}")[:300]
            except subprocess.TimeoutExpired:
                why = "loading it took over 120 s"
            except OSError as exc:
                why = f"could not start the check ({exc})"
            _PROBED[key] = why
    if why:
        raise ModelFileError(f"{path}: unusable TFLite model ({why}); export or quantize the model again")


def _check_input_size(size, where: str) -> int:
    if size is None or not MIN_INPUT_SIZE <= int(size) <= MAX_INPUT_SIZE:
        raise ModelFileError(f"{where}: input size {size} is outside {MIN_INPUT_SIZE}..{MAX_INPUT_SIZE} pixels")
    return int(size)


class TFLiteRunner:
    """A TFLite interpreter (XNNPACK delegate, on by default), batch 1.

    An interpreter is not thread-safe and the detector is shared by sessions and the webcam
    thread, so every invoke holds the lock. The input size is the file's own (``input_size``);
    ``expect`` (e.g. from meta.json) is only checked against it.
    """

    def __init__(self, path: Path, expect: int | None, num_threads: int, backend: str = "tflite"):
        self.backend = backend
        check_tflite_file(path)
        Interpreter = _interpreter_class()
        self._interp = Interpreter(model_path=str(path), num_threads=num_threads)
        inp = self._interp.get_input_details()[0]
        shape = [int(v) for v in inp["shape"]]
        if len(shape) != 4 or shape[1] != shape[2] or shape[3] != 3:
            raise ModelFileError(f"{path.name} takes input {shape}; expected (N, S, S, 3)")
        input_size = self.input_size = _check_input_size(shape[1], path.name)
        if expect is not None and expect != input_size:
            raise ModelFileError(f"{path.name} takes {input_size}x{input_size}x3, but meta.json says {expect}x{expect}x3")
        if shape[0] != 1:
            self._interp.resize_tensor_input(inp["index"], [1, input_size, input_size, 3])
        self._interp.allocate_tensors()
        self._in = inp["index"]
        self._outs = [d["index"] for d in self._interp.get_output_details()]
        self._lock = threading.Lock()

    def __call__(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        probs, boxes = [], []
        for x in batch:
            with self._lock:
                self._interp.set_tensor(self._in, x[None])
                self._interp.invoke()
                outs = [self._interp.get_tensor(i).copy() for i in self._outs]
            p, b = _split_outputs(outs)
            probs.append(p)
            boxes.append(b)
        return np.concatenate(probs), np.concatenate(boxes)


def _interpreter_class():
    """``ai_edge_litert``'s Interpreter when installed, else ``tf.lite.Interpreter`` (same API;
    TF 2.21 still ships it, with a deprecation warning we silence). A ``model_path`` is checked by
    ``check_tflite_file`` first (a ValueError when unusable, as the interpreter raises for bad files),
    so no caller can hand the interpreter a file that would crash the process."""
    try:
        from ai_edge_litert.interpreter import Interpreter  # type: ignore
    except ImportError:
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter

    def make(**kw):
        if kw.get("model_path"):
            try:
                check_tflite_file(kw["model_path"])
            except ModelFileError as exc:
                raise ValueError(str(exc)) from None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return Interpreter(**kw)

    return make


class KerasRunner:
    """The Keras model compiled once with ``tf.function`` (one trace for any batch size)."""

    backend = "tf.function"

    def __init__(self, model, input_size: int | None):
        import tensorflow as tf

        own = model.inputs[0].shape[1] if getattr(model, "inputs", None) else None
        # the network's own input size wins over any meta.json value (a lying 100000 would allocate 112 GiB)
        input_size = self.input_size = _check_input_size(own if own is not None else input_size, "model.keras")
        self.model = model
        spec = tf.TensorSpec([None, input_size, input_size, 3], tf.float32)
        self._fn = tf.function(lambda x: model(x, training=False), input_signature=[spec])

    def __call__(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        outs = self._fn(batch)
        return _split_outputs([o.numpy() for o in outs])


def load_keras_model(path: str | os.PathLike):
    """Load ``model.keras`` for inference (no optimizer). Raises FaceCoreError with the reason."""
    import zipfile

    import keras

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: file not found")
    if not zipfile.is_zipfile(path):
        raise ModelFileError(f"could not load {path}: corrupt or truncated (not a .keras archive); train or save the model again")
    try:
        return keras.models.load_model(str(path), compile=False)
    except Exception as exc:  # noqa: BLE001  keras raises many types for a bad file
        raise ModelFileError(f"could not load {path}, the file is damaged or not a model of this app "
                             f"({type(exc).__name__}: {str(exc)[:300]})") from exc


class FaceTrackerDetector(Detector):
    """A trained face tracker behind the ``Detector`` interface: one face (the best box) per frame.

    ``detect(rgb)`` returns ``[Detection(prob, box)]`` when ``prob >= threshold`` (default 0: always
    one detection, so evaluation sees every score; pages filter with their own threshold), else ``[]``.
    ``backend`` says which path runs: ``"tflite"`` or ``"tf.function"``; ``fallback_reason`` why
    TFLite is not used, when it is not. Safe to share between threads.
    """

    def __init__(self, name: str, input_size: int, runner, meta: dict | None = None, threshold: float = 0.0,
                 fallback_reason: str = ""):
        self.name = name
        self.input_size = int(input_size)
        self.meta = meta or {}
        self.threshold = float(threshold)
        self.fallback_reason = fallback_reason
        self._run = runner

    @property
    def backend(self) -> str:
        return self._run.backend

    @classmethod
    def from_keras(cls, model, name: str = "model", threshold: float = 0.0) -> "FaceTrackerDetector":
        """Wrap an in-memory Keras model (tf.function path), e.g. right after training."""
        size = int(model.inputs[0].shape[1])
        return cls(name, size, KerasRunner(model, size), {}, threshold)

    def warm_up(self) -> None:
        """Run once on a blank frame so the first real frame does not pay for tracing/allocation."""
        self.predict(np.zeros((1, self.input_size, self.input_size, 3), np.float32))

    def predict(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Preprocessed batch float32 (N, S, S, 3) 0..255 -> ``(prob (N,), box (N, 4))`` normalized, raw."""
        batch = np.ascontiguousarray(batch, np.float32)
        if batch.ndim != 4 or batch.shape[1:] != (self.input_size, self.input_size, 3):
            raise ValueError(f"expected (N, {self.input_size}, {self.input_size}, 3), got {batch.shape}")
        return self._run(batch)

    def _to_detections(self, prob: float, box: np.ndarray) -> list[Detection]:
        if not np.isfinite(prob) or prob < self.threshold:
            return []
        # The box head's two corners are not constrained to come in order; the frame bounds it.
        return [Detection(float(prob), B.clip(B.order_corners(box))[0])]

    def detect(self, frame: np.ndarray) -> list[Detection]:
        """RGB uint8 (H, W, 3) -> ``[Detection]`` (empty below ``threshold``); box normalized to the frame."""
        prob, box = self.predict(resize_for_model(frame, self.input_size)[None])
        return self._to_detections(prob[0], box[0])

    def detect_batch(self, frames: list[np.ndarray]) -> list[list[Detection]]:
        """Several RGB frames (any shapes) -> one detection list per frame."""
        if len(frames) == 0:
            return []
        batch = np.stack([resize_for_model(f, self.input_size) for f in frames])
        prob, box = self.predict(batch)
        return [self._to_detections(p, b) for p, b in zip(prob, box)]


def int8_tflite(net, name: str, check_path: Path, sample: np.ndarray | None = None) -> tuple[bytes, float]:
    """Convert Keras network ``net`` (of model ``name``) to a TFLite file with dynamic-range int8 weights
    (activations are quantized on the fly): about 4x smaller and 2-4x faster on CPUs with int8 dot
    products (VGG16 at 120 px: ~94 -> ~24 ms of CPU per frame), at a small cost in precision measured here.

    ``sample``: float32 (N, S, S, 3) 0..255 frames to compare against the Keras model (random noise
    when None); ``check_path``: a file the copy is written to for that check, removed afterwards.
    Returns ``(the file's bytes, largest output difference)``. Raises FaceCoreError.
    """
    import tempfile

    import tensorflow as tf

    size = int(net.inputs[0].shape[1])
    try:
        with tempfile.TemporaryDirectory(prefix="facecore-int8-") as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            net.export(str(Path(tmp) / "saved"), format="tf_saved_model", verbose=False)
            conv = tf.lite.TFLiteConverter.from_saved_model(str(Path(tmp) / "saved"))
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            data = conv.convert()
    except Exception as exc:  # noqa: BLE001  converter errors come in many types
        raise FaceCoreError(f"could not quantize {name!r}: {type(exc).__name__}: {exc}") from exc
    check_path.write_bytes(data)
    try:
        lite = TFLiteRunner(check_path, size, default_threads(), "tflite-int8")
        if sample is None:
            sample = np.random.default_rng(0).uniform(0, 255, (4, size, size, 3)).astype(np.float32)
        ref = KerasRunner(net, size)(np.asarray(sample, np.float32))
        got = lite(np.asarray(sample, np.float32))
        diff = float(max(np.abs(r - g).max() for r, g in zip(ref, got)))
    finally:
        check_path.unlink(missing_ok=True)
    return data, diff
