"""Saved models, in one place: their names and files, ``meta.json``, versions, and loading face detectors.

A saved model is a folder ``models/<name>/``:

- ``meta.json`` (``META_FILE``), written last, read and written as a ``facecore.meta.ModelMeta``: ``kind``
  (``"facetracker"``, a face detector, or ``"identity"``), the training config, dataset, history, metrics
  and, for face detectors that are not the tutorials' FaceTracker, ``architecture``: ``"blazeface"`` (a
  fine-tuned BlazeFace, ``facecore.blazeface.saved``) or ``"blazeface-style"`` (the built-in BlazeFace with a
  fitted ``box_style``, no network file);
- ``model.keras`` (``KERAS_FILE``) and ``model.tflite`` (``TFLITE_FILE``): the network;
- ``model_int8.tflite`` (``INT8_FILE``): a FaceTracker's int8 copy (``quantize``), listed and loaded as
  ``"<name>@int8"`` (``INT8_SUFFIX``).

Built-in detectors (``facecore.detect.BUILT_IN``) need no folder. Nothing here imports TensorFlow until a
model is loaded; the detector modules never import this one (it imports them). Identity models are loaded by
``facecore.identity.recognize.load_identity`` (a task above this module). Pages cache loaded models
(``st.cache_resource``, keyed by ``model_version``); scripts keep the detector they load.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .errors import FaceCoreError, ModelFileError
from .io import atomic_write_bytes, recover_dir, recover_swaps, storage_errors
from .meta import BLAZEFACE_ARCH, FACETRACKER, IDENTITY, META_FILE, STYLE_ARCH, ModelMeta, fit_sample

__all__ = ["BLAZEFACE_ARCH", "META_FILE", "STYLE_ARCH"]  # re-exported: where saved models' names live

KERAS_FILE = "model.keras"
TFLITE_FILE = "model.tflite"
INT8_FILE = "model_int8.tflite"
INT8_SUFFIX = "@int8"


@dataclass(frozen=True)
class ModelInfo:
    """A saved model: its folder and its ``meta.json`` (a ``ModelMeta``; a parsed dict is converted)."""

    name: str
    path: Path
    meta: ModelMeta = field(default_factory=ModelMeta, compare=False)

    def __post_init__(self):
        if not isinstance(self.meta, ModelMeta):
            object.__setattr__(self, "meta", ModelMeta.of(self.meta, self.name))

    @property
    def kind(self) -> str:
        return self.meta.kind

    def headline(self) -> dict:
        """The test-split metrics (val when there is no test split), for tables ({} when meta.json has none)."""
        return self.meta.headline()

    @property
    def problem(self) -> str | None:
        """What is wrong in this model's ``meta.json`` for people (``ModelMeta.problem``), or None."""
        return self.meta.problem


# -- names and metadata -----------------------------------------------------------------------------
def split_name(name: str) -> tuple[str, bool]:
    """``"NAME@int8"`` -> ``("NAME", True)``; ``"NAME"`` -> ``("NAME", False)``."""
    name = str(name or "")
    return (name[: -len(INT8_SUFFIX)], True) if name.endswith(INT8_SUFFIX) else (name, False)


def model_folder(models_root: str | Path, name: str) -> Path:
    """The folder of model ``name`` (``NAME`` or ``NAME@int8``, the suffix kept) inside ``models_root``.
    Refuses (ModelFileError) names that are paths: absolute, with a separator or ``..``, or resolving
    outside the models folder (a symlink), so no load or write can reach another folder."""
    import os

    raw = str(name or "")
    base = split_name(raw)[0]
    if (not base or base in (".", "..") or "/" in raw or "\\" in raw or "\x00" in raw or os.path.isabs(raw)
            or base.startswith(".") or len(raw) > 200):
        raise ModelFileError(f"model name {raw[:80]!r} is not allowed: give the name of a folder in "
                             f"{models_root} (letters, digits, '_', '.', '-'), not a path")
    root = Path(models_root)
    try:
        inside = (root / base).resolve().parent == root.resolve()
    except (OSError, RuntimeError):
        inside = False
    if not inside:
        raise ModelFileError(f"model {raw!r} resolves outside the models folder {root}; refused")
    return root / raw


def model_meta(name: str, models_root: str | Path) -> ModelMeta:
    """The ``meta.json`` of model ``name`` (``NAME@int8``: of ``NAME``); an empty ``ModelMeta`` for a
    built-in detector or a model whose metadata cannot be read."""
    base = split_name(name)[0]
    try:
        return ModelMeta.load(model_folder(models_root, base))
    except ModelFileError:
        return ModelMeta(name=base)


def list_models(models_root: str | Path, kind: str | None = None) -> list[ModelInfo]:
    """Models under ``models_root`` that have a readable ``meta.json``, newest first.

    A folder whose ``meta.json`` is missing or broken (e.g. a training still running) is skipped.
    """
    root = Path(models_root)
    out = []
    if not root.is_dir():
        return out
    recover_swaps(root)  # finish or undo a save killed half way; drop stale temp folders
    for p in root.iterdir():
        if p.name.startswith(".") or not (p / META_FILE).is_file():  # dot-named: a save in progress
            continue
        try:
            info = ModelInfo(p.name, p, ModelMeta.load(p))
        except ModelFileError:  # one broken model must not hide the others
            continue
        if kind is None or info.kind == kind:
            out.append(info)
    return sorted(out, key=lambda m: (m.meta.created, m.name), reverse=True)


def model_info(name: str, models_root: str | Path) -> ModelInfo:
    """The model called ``name`` in ``models_root``; raises FaceCoreError naming the ones there."""
    for m in list_models(models_root):
        if m.name == name:
            return m
    names = ", ".join(m.name for m in list_models(models_root)) or "none yet"
    raise FaceCoreError(f"no model called {name!r} in {models_root} (available: {names})")


def detector_names(models_root: str | Path) -> list[str]:
    """The built-in detectors (``blazeface`` first: the default) followed by the trained face-detector
    models, newest first; a model with an int8 copy (``quantize``) is followed by ``"<name>@int8"``."""
    from .detect import BUILT_IN

    names = list(BUILT_IN)
    for m in list_models(models_root, kind=FACETRACKER):
        names.append(m.name)
        if (m.path / INT8_FILE).is_file():
            names.append(m.name + INT8_SUFFIX)
    return names


def default_detector(models_root: str | Path) -> str:
    """The detector every page starts with (Video, Webcam, Evaluate, Recognize, pre-labeling): the face
    detector saved last (newest ``created``: a training or a fitted box style), else the built-in
    ``blazeface`` (``facecore.detect.DEFAULT_DETECTOR``)."""
    from .detect import DEFAULT_DETECTOR

    models = list_models(models_root, kind=FACETRACKER)
    return models[0].name if models else DEFAULT_DETECTOR


def identity_model_names(models_root: str | Path) -> list[str]:
    """Trained identity models in ``models_root``, newest first."""
    return [m.name for m in list_models(models_root, kind=IDENTITY)]


def model_version(name: str, models_root: str | Path) -> tuple:
    """Changes when model ``name`` is retrained (``meta.json`` is written last) or, for ``NAME@int8``,
    re-quantized: the files' ``st_mtime_ns`` (0 when missing, e.g. a built-in detector). Caches of
    loaded models and of results computed with them are keyed by it."""
    base, int8 = split_name(name)
    folder = Path(models_root) / base
    files = (folder / META_FILE, folder / INT8_FILE) if int8 else (folder / META_FILE,)
    return tuple(p.stat().st_mtime_ns if p.is_file() else 0 for p in files)


# -- loading ----------------------------------------------------------------------------------------
def load_detector(name: str, models_root: str | Path):
    """A ``facecore.detect.Detector``: a built-in one (``"blazeface"``, ``"blazeface-short"``, ``"haar"``) or
    the model folder ``name`` in ``models_root`` (``NAME@int8`` for its int8 copy), whatever its
    architecture. Raises FaceCoreError."""
    from .detect import BLAZEFACE, BLAZEFACE_SHORT, HAAR, HaarDetector

    if name == HAAR:
        return HaarDetector()
    if name in (BLAZEFACE, BLAZEFACE_SHORT):
        from .blazeface.builtin import BlazeFaceDetector

        return BlazeFaceDetector("full" if name == BLAZEFACE else "short", name=name)
    path = model_folder(models_root, name)  # refuses a name that is a path outside models_root
    base, int8 = split_name(path.name)
    meta = model_meta(base, models_root)
    if meta.architecture == STYLE_ARCH:
        from .blazeface.builtin import BlazeFaceDetector
        from .blazeface.boxstyle import BoxStyle

        return BlazeFaceDetector("full", style=BoxStyle.from_dict(meta.box_style or {}), name=base)
    if meta.architecture == BLAZEFACE_ARCH and not int8:
        return _load_trained_blazeface(path, meta)
    return load_facetracker(path)


def load_facetracker(model_dir: str | Path, threshold: float = 0.0, num_threads: int | None = None,
                     backend: str = "auto"):
    """A tutorials' FaceTracker folder as a ``facecore.facetracker.inference.FaceTrackerDetector``.

    ``backend``: ``"auto"`` (``model.tflite``, else ``model.keras`` through tf.function), ``"tflite"``,
    ``"tf.function"`` (forced) or ``"tflite-int8"`` (the int8 copy, as a folder name ending in ``@int8``
    also asks). Raises FaceCoreError when the folder holds no usable model.
    """
    from .facetracker.inference import BACKENDS, FaceTrackerDetector, KerasRunner, TFLiteRunner, default_threads

    d = Path(model_dir)
    base, int8 = split_name(d.name)
    if int8:
        d, backend = d.with_name(base), "tflite-int8"
    if backend not in ("auto", *BACKENDS):
        raise ValueError(f"backend must be auto, {', '.join(BACKENDS)}, not {backend!r}")
    if not d.is_dir():
        recover_dir(d)  # a save killed between its two renames
    if not d.is_dir():
        raise FaceCoreError(f"no model called {d.name!r} (looked in {d.parent})")
    try:
        meta = ModelMeta.load(d)
        if not meta.config:
            raise ValueError(meta.problem or "no config object")
    except (ModelFileError, ValueError) as exc:
        raise FaceCoreError(f"model {d.name!r}: {META_FILE} is missing or has no config.input_size "
                            f"(is training still running?) ({type(exc).__name__}: {exc})") from exc
    size = meta.input_side  # a hint only: the model file's own input shape decides
    threads = num_threads or default_threads()
    if backend == "tflite-int8":
        if not (d / INT8_FILE).is_file():
            raise FaceCoreError(f"model {d.name!r} has no int8 copy yet: make one on the Evaluate page "
                                f"or with `python -m facecore quantize --model {d.name}`")
        try:
            runner = TFLiteRunner(d / INT8_FILE, None, threads, "tflite-int8")
        except Exception as exc:  # noqa: BLE001
            raise FaceCoreError(f"model {d.name!r}: {INT8_FILE} could not be loaded ({exc})") from exc
        det = FaceTrackerDetector(d.name + INT8_SUFFIX, runner.input_size, runner, meta, threshold)
    else:
        runner, reason = _tflite_or_keras(d, lambda p: TFLiteRunner(p, None, threads),
                                          lambda net: KerasRunner(net, int(size) if size else None), backend)
        det = FaceTrackerDetector(d.name, runner.input_size, runner, meta, threshold, reason)
    det.warm_up()
    return det


def _load_trained_blazeface(folder: Path, meta: ModelMeta, num_threads: int | None = None):
    """A fine-tuned BlazeFace folder (``architecture: "blazeface"``) as a ``TrainedBlazeDetector``."""
    from .blazeface.saved import TrainedBlazeDetector

    det, reason = _tflite_or_keras(folder, lambda p: TrainedBlazeDetector.from_tflite(p, folder.name, meta, num_threads),
                                   lambda net: TrainedBlazeDetector.from_keras(net, folder.name, meta))
    det.fallback_reason = reason
    return det


def _tflite_or_keras(folder: Path, from_tflite, from_keras, backend: str = "auto"):
    """``(from_tflite(folder/model.tflite), "")``, or, when that file is missing or unusable (or ``backend``
    is ``"tf.function"``), ``(from_keras(the loaded model.keras), why TFLite is not used)``. A FaceCoreError
    other than a bad file (e.g. a network with the wrong outputs) is raised, as is any failure when
    ``backend`` is ``"tflite"``."""
    from .facetracker.inference import load_keras_model

    tfl, reason = folder / TFLITE_FILE, ""
    if backend in ("auto", "tflite"):
        if not tfl.is_file():
            reason = f"no {TFLITE_FILE}"
            if backend == "tflite":
                raise FaceCoreError(f"model {folder.name!r} has no {TFLITE_FILE}")
        else:
            try:
                return from_tflite(tfl), ""
            except Exception as exc:  # noqa: BLE001  a corrupt file raises ValueError/RuntimeError
                if isinstance(exc, FaceCoreError) and not isinstance(exc, ModelFileError):
                    raise
                reason = f"{TFLITE_FILE} could not be loaded ({type(exc).__name__}: {exc})"
                if backend == "tflite":
                    raise FaceCoreError(f"model {folder.name!r}: {reason}") from exc
    if not (folder / KERAS_FILE).is_file():
        raise FaceCoreError(f"model {folder.name!r} has neither a usable {TFLITE_FILE} nor {KERAS_FILE}"
                            + (f" ({reason})" if reason else ""))
    return from_keras(load_keras_model(folder / KERAS_FILE)), reason


# -- making and managing saved models ---------------------------------------------------------------
def quantize(model_dir: str | Path, sample=None) -> dict:
    """Write ``model_int8.tflite`` beside ``model.keras`` (``facecore.facetracker.inference.int8_tflite``: about 4x
    smaller, 2-4x faster on CPUs), loaded as ``NAME@int8``. ``sample``: float32 (N, h, w, 3) 0..255 frames
    to compare it with the float model on, resized to the network's own input (``meta.fit_sample``). Returns ``{"file", "max_abs_diff", "mb"}``. Raises FaceCoreError."""
    from .facetracker.inference import int8_tflite, load_keras_model

    d = Path(model_dir)
    if not (d / KERAS_FILE).is_file():
        raise FaceCoreError(f"model {d.name!r} has no {KERAS_FILE} to quantize")
    net = load_keras_model(d / KERAS_FILE)
    data, diff = int8_tflite(net, d.name, d / f".{INT8_FILE}.check", fit_sample(sample, net))
    atomic_write_bytes(d / INT8_FILE, data)
    return {"file": str(d / INT8_FILE), "max_abs_diff": diff, "mb": round(len(data) / 1e6, 2)}


def delete_model(name: str, models_root: str | Path) -> None:
    """Delete model ``name`` (its whole folder, int8 copy included). Raises FaceCoreError for a name
    that is not a saved model here; the folder leaves the model list at once (renamed to a hidden name
    before its files are removed)."""
    import shutil
    import uuid

    folder = model_folder(models_root, name)
    info = model_info(folder.name, models_root)  # only a saved model, never an arbitrary folder
    trash = folder.parent / f".{info.name}.deleted-{uuid.uuid4().hex[:8]}"
    with storage_errors(f"delete model {name!r}"):
        folder.rename(trash)
    shutil.rmtree(trash, ignore_errors=True)


def model_zip(name: str, models_root: str | Path) -> bytes:
    """Model ``name`` as a zip for download: ``<name>/model.keras``, ``model.tflite``, ``meta.json`` (and
    ``model_int8.tflite`` when made), whichever exist. Raises FaceCoreError for an unknown model."""
    import io
    import zipfile

    info = model_info(model_folder(models_root, name).name, models_root)
    files = [p for p in sorted(info.path.iterdir()) if p.is_file() and not p.name.startswith(".")]
    buf = io.BytesIO()
    with storage_errors(f"read model {name!r}"), zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in files:
            # .keras and .tflite files barely compress: storing them saves time, not space
            kind = zipfile.ZIP_DEFLATED if p.suffix == ".json" else zipfile.ZIP_STORED
            zf.write(p, f"{info.name}/{p.name}", compress_type=kind)
    return buf.getvalue()
