"""Identity data and the "me / not me" classifier (the me_not_me tutorial, as a feature).

Layout: an *identity set* is a folder ``data/identities/<set>/`` with one sub-folder per identity,
each holding face crops::

    data/identities/<set>/<identity>/*.jpg     e.g. me/, not_me/ (any names)
    data/identities/<set>/comparison.json      the last backbone comparison run on this set

A crop is the labeled (or detected) face box grown by a margin ``k`` on every side (``k=0.5``
doubles width and height, as in the tutorial), clipped to the image. The classifier is a frozen
ImageNet backbone + global average pooling + a small dense head with a softmax over the identities;
it is saved as ``models/<name>/model.keras`` beside ``meta.json`` (``kind: "identity"``, see
``facecore.registry``), so identity models never appear among the face detectors.

TensorFlow is imported lazily: listing and building identity data does not need it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np

from . import boxes as B
from .cliargs import float_range, positive_float
from .errors import DatasetError, FaceCoreError, ImageReadError, StorageError
from .io import (IMAGE_EXTS, atomic_write_bytes, atomic_write_text, check_model_dir, decode_image, encode_jpeg,
                 read_image, replace_dir, storage_errors)
from .preprocess import resize_for_model
from .registry import META_FILE

IDENTITIES_DIR = "identities"
COMPARISON_FILE = "comparison.json"
MODEL_FILE = "model.keras"
DEFAULT_K = 0.5
BACKBONES = ("mobilenetv2", "resnet50", "vgg16", "efficientnetb0")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MAX_UPLOAD_BYTES = 25 * 1024**2


class TrainingCancelled(FaceCoreError):
    """The user stopped a training; nothing was saved."""


def check_identity_name(name: str, what: str = "identity") -> str:
    """Validate an identity or set name (letters, digits, ``_ . -``, up to 64) and return it stripped."""
    name = (name or "").strip()
    if not _NAME_RE.match(name) or name in (".", ".."):
        raise DatasetError(f"{what} name {name!r} is not allowed: use 1-64 letters, digits, '_', '.' or '-', "
                           "starting with a letter or digit (e.g. 'me', 'not_me')")
    return name


# ---------------------------------------------------------------------------------------------
# Crops


def crop_box(box, k: float = DEFAULT_K) -> np.ndarray:
    """The crop of face ``box`` (normalized ``[x1, y1, x2, y2]``): grown by ``k`` x its size on every
    side and clipped to the image. Returns float32 (4,)."""
    return B.expand(box, k)[0]


def crop_face(rgb: np.ndarray, box, k: float = DEFAULT_K) -> np.ndarray:
    """The face ``box`` of RGB ``rgb`` (H, W, 3) with margin ``k``, as an RGB uint8 crop.

    At the image border the crop is cut off (not padded), so it can be narrower than the grown box.
    Raises ValueError for a box with no pixels.
    """
    h, w = rgb.shape[:2]
    x1, y1, x2, y2 = np.rint(B.to_pixels(crop_box(box, k), w, h)[0]).astype(int).tolist()
    x1, y1 = max(0, min(x1, w)), max(0, min(y1, h))
    x2, y2 = max(0, min(x2, w)), max(0, min(y2, h))
    if x2 - x1 < 2 or y2 - y1 < 2:
        raise ValueError(f"face box {np.asarray(box).tolist()} has no pixels in a {w}x{h} image")
    return rgb[y1:y2, x1:x2].copy()


FACE_SCORE = 0.5  # detectors report weak candidates too (a trained BlazeFace from 0.05): they are no face


def largest_box(detections, min_score: float = FACE_SCORE) -> np.ndarray | None:
    """The box of the largest detection scoring ``min_score`` or more (the person in front), or None."""
    faces = [d for d in detections if d.score >= min_score]
    if not faces:
        return None
    return max(faces, key=lambda d: float(B.area(d.box)[0])).box


# ---------------------------------------------------------------------------------------------
# Identity sets on disk


def identities_root(data_root: str | os.PathLike) -> Path:
    """``<data>/identities``: where identity sets live."""
    return Path(data_root) / IDENTITIES_DIR


def list_identity_sets(data_root: str | os.PathLike) -> dict[str, "IdentitySet"]:
    """Identity sets under ``<data>/identities`` by name, sorted."""
    root = identities_root(data_root)
    if not root.is_dir():
        return {}
    return {p.name: IdentitySet(p) for p in sorted(root.iterdir()) if p.is_dir() and not p.name.startswith(".")}


def create_identity_set(data_root: str | os.PathLike, name: str) -> "IdentitySet":
    """A new empty identity set ``<data>/identities/<name>``; refuses an existing name."""
    name = check_identity_name(name, "identity set")
    root = identities_root(data_root) / name
    if root.exists():
        raise DatasetError(f"an identity set called {name!r} already exists; choose another name")
    with storage_errors(f"create the identity set {root}"):
        root.mkdir(parents=True)
    return IdentitySet(root)


@dataclass(frozen=True)
class BuildReport:
    """What adding crops did: ``added`` crops written, ``skipped`` (file or stem, why)."""

    added: int = 0
    skipped: list = field(default_factory=list)


class IdentitySet:
    """A folder of identity sub-folders, each with face crops (jpg/png)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    @classmethod
    def open(cls, root: str | os.PathLike) -> "IdentitySet":
        root = Path(root)
        if not root.is_dir():
            raise DatasetError(f"{root}: no such identity folder; it needs one sub-folder per identity (e.g. me/, not_me/)")
        return cls(root)

    @property
    def name(self) -> str:
        return self.root.name

    def __repr__(self) -> str:
        return f"IdentitySet({str(self.root)!r})"

    def identities(self) -> list[str]:
        """Identity names (sub-folders), sorted: this is the class order of a trained model."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))

    def images(self, identity: str) -> list[Path]:
        """The crops of ``identity``, sorted by name."""
        d = self.root / identity
        if not d.is_dir():
            return []
        return sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_EXTS and not p.name.startswith("."))

    def counts(self) -> dict[str, int]:
        """Number of crops per identity."""
        return {name: len(self.images(name)) for name in self.identities()}

    def fingerprint(self) -> str:
        """A short hash of the file names and sizes: changes when crops are added or removed."""
        h = hashlib.sha1()
        for ident in self.identities():
            for p in self.images(ident):
                h.update(f"{ident}/{p.name}:{p.stat().st_size}\n".encode())
        return h.hexdigest()[:12]

    def add_identity(self, identity: str) -> Path:
        d = self.root / check_identity_name(identity)
        with storage_errors(f"create the identity folder {d}"):
            d.mkdir(parents=True, exist_ok=True)
        return d

    def remove_identity(self, identity: str) -> None:
        d = self.root / check_identity_name(identity)
        if d.is_dir():
            with storage_errors(f"remove {d}"):
                shutil.rmtree(d)

    def add_crop(self, identity: str, rgb: np.ndarray, stem: str) -> Path:
        """Write an RGB crop as ``<identity>/<stem>.jpg`` (atomic; an existing stem gets a suffix)."""
        d = self.add_identity(identity)
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", stem).strip("._") or "face"
        path, n = d / f"{stem}.jpg", 1
        while path.exists():
            path, n = d / f"{stem}-{n}.jpg", n + 1
        return atomic_write_bytes(path, encode_jpeg(rgb))

    def add_upload(self, identity: str, data: bytes, filename: str, detector=None, k: float = DEFAULT_K) -> BuildReport:
        """Add an uploaded photo to ``identity``: with a ``detector``, the largest detected face cropped
        with margin ``k`` (a photo with no face is skipped); without one, the photo as it is (it
        should already be a face crop). Unreadable or huge files are skipped with the reason."""
        check_identity_name(identity)
        if len(data) > MAX_UPLOAD_BYTES:
            return BuildReport(0, [(filename, f"larger than {MAX_UPLOAD_BYTES // 1024**2} MB")])
        try:
            rgb = decode_image(data, filename)
        except ImageReadError as exc:
            return BuildReport(0, [(filename, str(exc))])
        stem = Path(filename).stem
        if detector is not None:
            box = largest_box(detector.detect(rgb))
            if box is None:
                return BuildReport(0, [(filename, "no face found")])
            try:
                rgb = crop_face(rgb, box, k)
            except ValueError as exc:  # a face box too small to crop
                return BuildReport(0, [(filename, str(exc))])
        self.add_crop(identity, rgb, stem)
        return BuildReport(1, [])

    def build_from_dataset(self, identity: str, dataset, k: float = DEFAULT_K,
                           progress: Callable[[int, int], None] | None = None) -> BuildReport:
        """Crop every labeled face of ``dataset`` (a ``facecore.Dataset``) with margin ``k`` into
        ``identity``, named ``<dataset>_<stem>_<i>.jpg``. Images without a face label are skipped;
        crops already there (same name) are not written twice. ``progress(done, total)``."""
        check_identity_name(identity)
        items = dataset.items()
        if not items:
            raise DatasetError(f"dataset {dataset.name!r} has no images to crop faces from")
        d = self.add_identity(identity)
        added, skipped = 0, []
        for n, item in enumerate(items, 1):
            try:
                label = dataset.read_label(item)
                if label is None or not label.has_face:
                    skipped.append((item.stem, "no face label"))
                    continue
                rgb = None
                for i, box in enumerate(label.boxes):
                    path = d / f"{dataset.name}_{item.stem}_{i}.jpg"
                    if path.exists():
                        continue
                    if rgb is None:
                        rgb = read_image(item.image)
                    try:
                        atomic_write_bytes(path, encode_jpeg(crop_face(rgb, box, k)))
                        added += 1
                    except ValueError as exc:
                        skipped.append((item.stem, str(exc)))
            except StorageError:
                raise  # a read-only or full disk fails every photo alike: say it once
            except FaceCoreError as exc:
                skipped.append((item.stem, str(exc)))
            if progress:
                progress(n, len(items))
        return BuildReport(added, skipped)

    def load(self, size: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """All crops resized to ``size`` -> (x float32 (N, size, size, 3) 0..255, y int (N,), class names).

        Unreadable files are skipped. Raises DatasetError unless there are two identities with
        at least two crops each (one to train on, one to validate with).
        """
        classes = [c for c in self.identities() if self.images(c)]
        if len(classes) < 2:
            have = ", ".join(f"{k}: {v}" for k, v in self.counts().items()) or "none"
            raise DatasetError(f"identity set {self.name!r} needs at least two identities with crops "
                               f"(e.g. me/ and not_me/); it has {have}")
        xs, ys = [], []
        for ci, c in enumerate(classes):
            n = 0
            for p in self.images(c):
                try:
                    xs.append(resize_for_model(read_image(p), size))
                except ImageReadError:
                    continue
                ys.append(ci)
                n += 1
            if n < 2:
                raise DatasetError(f"identity {c!r} has {n} readable crop(s); add at least two (better: dozens)")
        return np.stack(xs), np.asarray(ys, np.int64), classes


# ---------------------------------------------------------------------------------------------
# The classifier


@dataclass(frozen=True)
class IdentityConfig:
    """How to train an identity classifier.

    ``weights``: ``"imagenet"`` (Keras downloads and caches them), ``None`` (random frozen base: for
    tests, learns little on real faces) or a local ``.h5`` file. ``augment``: augmented copies made of
    each training crop (0 = off); val crops are never augmented. ``k`` is the crop margin used when
    recognizing (it should match the one the crops were made with).
    """

    backbone: str = "mobilenetv2"
    input_size: int = 128
    weights: str | None = "imagenet"
    augment: int = 0
    epochs: int = 30
    batch_size: int = 32
    learning_rate: float = 1e-3
    patience: int = 5
    val_fraction: float = 0.2
    dense_units: int = 128
    dropout: float = 0.3
    k: float = DEFAULT_K
    seed: int = 0

    def __post_init__(self):
        if self.backbone not in BACKBONES:
            raise FaceCoreError(f"unknown backbone {self.backbone!r}; choose one of {', '.join(BACKBONES)}")
        if not 32 <= self.input_size <= 512:
            raise FaceCoreError(f"input size {self.input_size} must be between 32 and 512 pixels")
        if self.augment < 0 or self.epochs < 1 or self.batch_size < 1:
            raise FaceCoreError("augment must be >= 0, epochs and batch size >= 1")
        if not 0 < self.val_fraction < 1:
            raise FaceCoreError("val fraction must be between 0 and 1")
        if not (0 < self.learning_rate < 10) or not (0 <= self.k <= 10) or self.augment > 100 or self.epochs > 10_000:
            # NaN fails every comparison, so it lands here too
            raise FaceCoreError(f"learning rate {self.learning_rate} (0..10), crop margin k {self.k} (0..10), augment "
                                f"{self.augment} (0..100) or epochs {self.epochs} (1..10000) is out of range")


# Files Keras looks for in ~/.keras/models/ (include_top=False), for the offline message.
_WEIGHT_FILES = {
    "mobilenetv2": "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{size}_no_top.h5",
    "resnet50": "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "vgg16": "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "efficientnetb0": "efficientnetb0_notop.h5",
}


def weights_file_name(backbone: str, input_size: int) -> str:
    """The ImageNet weights file Keras downloads for ``backbone`` (no top) into ``~/.keras/models/``."""
    size = min((96, 128, 160, 192, 224), key=lambda s: abs(s - input_size))
    return _WEIGHT_FILES[backbone].format(size=size)


def build_backbone(backbone: str, input_size: int, weights: str | None):
    """A frozen ``keras.applications`` backbone (no top) taking RGB float 0..255, with its own input
    scaling in front: returns a ``keras.Model`` (S, S, 3) -> (h, w, C) feature map.

    Raises FaceCoreError with the file to place in the Keras cache when ImageNet weights cannot be
    downloaded, or when a local weights file is missing.
    """
    import keras

    apps = {"mobilenetv2": keras.applications.MobileNetV2, "resnet50": keras.applications.ResNet50,
            "vgg16": keras.applications.VGG16, "efficientnetb0": keras.applications.EfficientNetB0}
    if backbone not in apps:
        raise FaceCoreError(f"unknown backbone {backbone!r}; choose one of {', '.join(BACKBONES)}")
    if weights not in (None, "imagenet") and not Path(weights).is_file():
        raise FaceCoreError(f"weights file {weights} not found; give an existing .h5 file, 'imagenet' or none")
    shape = (input_size, input_size, 3)
    try:
        base = apps[backbone](include_top=False, weights=weights, input_shape=shape)
    except Exception as exc:  # Keras raises plain Exception/URLError/OSError for a failed download
        if weights != "imagenet":
            raise FaceCoreError(f"could not load weights {weights} into {backbone}: {exc}") from exc
        cache = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"
        raise FaceCoreError(
            f"could not download the ImageNet weights for {backbone} (offline?): {exc}. Place "
            f"{weights_file_name(backbone, input_size)} in {cache}/ and retry, or train with weights "
            "'none' (random frozen features: only for trying the app out).") from exc
    base.trainable = False
    inp = keras.Input(shape, name="image")
    x = inp
    if backbone == "mobilenetv2":
        x = keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="scale")(x)
    elif backbone in ("resnet50", "vgg16"):
        # keras' "caffe" preprocessing (RGB -> BGR, minus the ImageNet mean) as a fixed 1x1 layer,
        # so the saved model needs no custom code to load.
        flip = keras.layers.Dense(3, trainable=False, name="caffe")
        x = flip(x)
        flip.set_weights([np.eye(3, dtype=np.float32)[::-1].copy(),
                          -np.array([103.939, 116.779, 123.68], np.float32)])
    # efficientnetb0 scales its input itself.
    x = base(x, training=False)
    return keras.Model(inp, x, name=f"{backbone}_base")


def build_head(features: np.ndarray, n_classes: int, dense_units: int, dropout: float, seed: int = 0):
    """The trainable head on pooled ``features`` (N, D) of the training crops: standardization
    (adapted to ``features``) -> Dense(relu) -> Dropout -> Dense(softmax)."""
    import keras

    # Pooled features of different backbones differ in scale by orders of magnitude (a random
    # MobileNetV2's are ~1e-13): a global rescale to unit median spread first, so that the
    # standardization's epsilon does not erase them, then per-feature standardization, lets one
    # learning rate suit all.
    # A feature (nearly) constant on the training crops gets a floor on its spread, so that a
    # val or live crop where it differs is not blown up.
    f = np.asarray(features, np.float64)
    std = f.std(axis=0)
    spread = float(np.median(std[std > 0])) if np.any(std > 0) else 1.0
    scale = keras.layers.Rescaling(1.0 / spread, name="rescale")
    mean = f.mean(axis=0) / spread
    var = np.maximum(std / spread, 0.1) ** 2
    norm = keras.layers.Normalization(mean=mean.astype(np.float32), variance=var.astype(np.float32), name="standardize")
    return keras.Sequential([
        keras.Input((features.shape[1],), name="features"),
        scale,
        norm,
        keras.layers.Dense(dense_units, activation="relu", name="dense"),
        keras.layers.Dropout(dropout, seed=seed, name="dropout"),
        keras.layers.Dense(n_classes, activation="softmax", name="identity"),
    ], name="head")


def assemble(base, head):
    """The full classifier: image (S, S, 3) float 0..255 -> class probabilities (C,)."""
    import keras

    inp = keras.Input(base.input_shape[1:], name="image")
    x = keras.layers.GlobalAveragePooling2D(name="gap")(base(inp))
    return keras.Model(inp, head(x), name="identity_classifier")


def crop_augmenter(seed: int = 0):
    """An albumentations pipeline for face crops (no boxes): flips, small shifts and rotations,
    brightness/contrast/gamma and a little blur. Deterministic for a ``seed``."""
    import albumentations as A

    return A.Compose([
        A.HorizontalFlip(p=0.5),
        A.Affine(scale=(0.9, 1.1), translate_percent=(-0.06, 0.06), rotate=(-15, 15), border_mode=1, p=0.7),
        A.RandomBrightnessContrast(0.25, 0.25, p=0.6),
        A.RandomGamma((80, 120), p=0.3),
        A.RGBShift(8, 8, 8, p=0.2),
        A.GaussianBlur(blur_limit=(3, 3), p=0.1),
    ], seed=seed)


def augment_images(x: np.ndarray, y: np.ndarray, copies: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``x`` (N, S, S, 3) float 0..255 plus ``copies`` augmented versions of each -> ((N*(1+copies), ...), labels)."""
    if copies <= 0:
        return x, y
    aug = crop_augmenter(seed)
    u8 = np.clip(x, 0, 255).astype(np.uint8)
    extra = [aug(image=img)["image"].astype(np.float32) for _ in range(copies) for img in u8]
    return np.concatenate([x, np.stack(extra)]), np.concatenate([y, np.tile(y, copies)])


def stratified_split(y: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val): ``val_fraction`` of each class (at least one) goes to val, shuffled by ``seed``."""
    rng = np.random.default_rng(seed)
    train, val = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        n_val = min(max(1, int(round(len(idx) * val_fraction))), len(idx) - 1)
        val.extend(idx[:n_val])
        train.extend(idx[n_val:])
    return np.sort(np.asarray(train)), np.sort(np.asarray(val))


def _features(feature_fn, x: np.ndarray, batch: int, progress, cancel) -> np.ndarray:
    out = []
    for i in range(0, len(x), batch):
        if cancel is not None and cancel():
            raise TrainingCancelled("training stopped; nothing was saved")
        out.append(np.asarray(feature_fn(x[i:i + batch])))
        if progress:
            progress("features", min(i + batch, len(x)), len(x), {})
    return np.concatenate(out)


def dir_size(path: str | os.PathLike) -> int:
    """Bytes of all files under ``path``."""
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


@dataclass
class TrainResult:
    """A trained identity model: where it is saved and its ``meta.json`` content."""

    path: Path
    meta: dict


# progress(stage, done, total, logs): stage "features" (batches of crops) or "epoch" (logs = metrics).
Progress = Callable[[str, int, int, dict], None]


def train_identity(identity_set: IdentitySet, config: IdentityConfig, out_dir: str | os.PathLike,
                   progress: Progress | None = None, cancel: Callable[[], bool] | None = None) -> TrainResult:
    """Train a classifier on the crops of ``identity_set`` and save it to ``out_dir``.

    The backbone is frozen, so its pooled features are computed once per crop (augmented copies
    included) and only the head trains, for up to ``config.epochs`` epochs with early stopping on
    the val loss; the best epoch's weights are kept. Saves ``model.keras`` and ``meta.json``
    atomically. Raises DatasetError for too little data, TrainingCancelled when ``cancel()`` is true,
    FaceCoreError for a non-finite loss.
    """
    import keras
    import tensorflow as tf

    from .recognize import IdentityClassifier

    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    check_identity_name(out_dir.name, "model")
    check_model_dir(out_dir, "identity")  # never replace a dataset or any folder that is not our model
    x, y, classes = identity_set.load(config.input_size)
    train_idx, val_idx = stratified_split(y, config.val_fraction, config.seed)
    x_tr, y_tr = augment_images(x[train_idx], y[train_idx], config.augment, config.seed)
    x_va, y_va = x[val_idx], y[val_idx]

    keras.utils.set_random_seed(config.seed)
    base = build_backbone(config.backbone, config.input_size, config.weights)
    pool = keras.Sequential([base, keras.layers.GlobalAveragePooling2D()])
    feature_fn = tf.function(lambda b: pool(b, training=False), reduce_retracing=True)
    both = np.concatenate([x_tr, x_va])
    feats = _features(feature_fn, both, 32, progress, cancel)
    f_tr, f_va = feats[:len(x_tr)], feats[len(x_tr):]

    head = build_head(f_tr, len(classes), config.dense_units, config.dropout, config.seed)
    head.compile(optimizer=keras.optimizers.Adam(config.learning_rate),
                 loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history: list[dict] = []
    best = {"loss": np.inf, "epoch": 0, "weights": head.get_weights()}

    class _Watch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs = {k: float(v) for k, v in (logs or {}).items()}
            history.append({"epoch": epoch + 1, **logs})
            if not all(np.isfinite(v) for v in logs.values()):
                self.model.stop_training = True
                return
            if logs["val_loss"] < best["loss"]:
                best.update(loss=logs["val_loss"], epoch=epoch + 1, weights=self.model.get_weights())
            elif epoch + 1 - best["epoch"] >= config.patience:
                self.model.stop_training = True  # early stopping: the val loss stopped improving
            if progress:
                progress("epoch", epoch + 1, config.epochs, logs)
            if cancel is not None and cancel():
                self.model.stop_training = True

    head.fit(f_tr, y_tr, validation_data=(f_va, y_va), epochs=config.epochs,
             batch_size=config.batch_size, shuffle=True, verbose=0, callbacks=[_Watch()])
    if cancel is not None and cancel():
        raise TrainingCancelled("training stopped; nothing was saved")
    if history and not all(np.isfinite(v) for v in history[-1].values()):
        raise FaceCoreError(f"training diverged at epoch {history[-1]['epoch']} (loss is not finite); "
                            "lower the learning rate and retry")
    head.set_weights(best["weights"])  # the best checkpoint (lowest val loss)
    val_loss, val_acc = (float(v) for v in head.evaluate(f_va, y_va, verbose=0))
    tr_loss, tr_acc = (float(v) for v in head.evaluate(f_tr, y_tr, verbose=0))

    model = assemble(base, head)
    clf = IdentityClassifier(model, classes, config.input_size, config.k, name=out_dir.name)
    latency = clf.measure_latency()
    meta = {
        "name": out_dir.name, "kind": "identity",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": asdict(config), "classes": classes, "input_size": config.input_size, "crop_margin": config.k,
        "dataset": {"name": identity_set.name, "path": str(identity_set.root), "fingerprint": identity_set.fingerprint(),
                    "counts": identity_set.counts(),
                    "split": {"train": int(len(train_idx)), "train_augmented": int(len(x_tr)), "val": int(len(val_idx))}},
        "history": history, "best_epoch": best["epoch"],
        "metrics": {"train": {"accuracy": tr_acc, "loss": tr_loss}, "val": {"accuracy": val_acc, "loss": val_loss}},
        "params": int(model.count_params()), "trainable_params": int(head.count_params()),
        "latency_ms": latency, "train_seconds": round(time.perf_counter() - t0, 2),
    }

    def write(tmp: Path) -> None:
        model.save(tmp / MODEL_FILE)
        meta["size_bytes"] = dir_size(tmp)
        atomic_write_text(tmp / META_FILE, json.dumps(meta, indent=2))

    path = replace_dir(out_dir, write, check=lambda d: check_model_dir(d, "identity"))
    return TrainResult(path, meta)


# ---------------------------------------------------------------------------------------------
# Comparison run


COMPARISON_COLUMNS = ["model", "backbone", "augment", "val_accuracy", "val_loss", "params", "size_mb",
                      "latency_ms", "epochs", "train_seconds"]


def comparison_row(result: TrainResult) -> dict:
    """One row of the comparison table (the tutorial's: accuracy, loss, parameters, size, latency)."""
    m = result.meta
    return {"model": m["name"], "backbone": m["config"]["backbone"], "augment": m["config"]["augment"],
            "val_accuracy": round(m["metrics"]["val"]["accuracy"], 4), "val_loss": round(m["metrics"]["val"]["loss"], 4),
            "params": m["params"], "size_mb": round(m["size_bytes"] / 1e6, 2), "latency_ms": m["latency_ms"],
            "epochs": len(m["history"]), "train_seconds": m["train_seconds"]}


def compare(identity_set: IdentitySet, backbones, augment_options, base_config: IdentityConfig,
            models_root: str | os.PathLike, prefix: str = "cmp",
            progress: Callable[[int, int, str, str, int, int, dict], None] | None = None,
            cancel: Callable[[], bool] | None = None) -> list[dict]:
    """Train one model per (backbone, augmentation) pair on the same data and split; each is saved
    as ``models/<prefix>-<backbone>-aug<N>``. Returns the table rows (``COMPARISON_COLUMNS``) and
    writes them to the set's ``comparison.json``.

    ``progress(run, runs, run name, stage, done, total, logs)``.
    """
    prefix = check_identity_name(prefix, "prefix")
    runs = [(b, a) for b in backbones for a in augment_options]
    if not runs:
        raise FaceCoreError("choose at least one backbone to compare")
    rows = []
    for i, (backbone, aug) in enumerate(runs):
        name = f"{prefix}-{backbone}-aug{aug}"
        cfg = replace(base_config, backbone=backbone, augment=int(aug))

        def step(stage, done, total, logs, _i=i, _name=name):
            if progress:
                progress(_i, len(runs), _name, stage, done, total, logs)

        rows.append(comparison_row(train_identity(identity_set, cfg, Path(models_root) / name, step, cancel)))
        save_comparison(identity_set, rows, base_config)
    return rows


def save_comparison(identity_set: IdentitySet, rows: list[dict], config: IdentityConfig) -> Path:
    doc = {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "config": asdict(config),
           "counts": identity_set.counts(), "rows": rows}
    return atomic_write_text(identity_set.root / COMPARISON_FILE, json.dumps(doc, indent=2))


def load_comparison(identity_set: IdentitySet) -> dict | None:
    """The last comparison run on this set (``{"created", "config", "counts", "rows"}``), or None."""
    p = identity_set.root / COMPARISON_FILE
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    return doc if isinstance(doc, dict) and isinstance(doc.get("rows"), list) else None


# ---------------------------------------------------------------------------------------------
# Command line


def _progress_printer(prefix: str = ""):
    def show(stage, done, total, logs):
        if stage == "features":
            print(f"\r{prefix}features {done}/{total}", end="", flush=True)
            if done == total:
                print()
        else:
            print(f"{prefix}epoch {done}/{total} " + " ".join(f"{k}={v:.4f}" for k, v in logs.items()), flush=True)
    return show


def _weights_arg(value: str | None):
    return None if value in (None, "", "none", "None") else value


def _config(args, backbone: str, augment: int) -> IdentityConfig:
    return IdentityConfig(backbone=backbone, input_size=args.input_size, weights=_weights_arg(args.weights),
                          augment=augment, epochs=args.epochs, batch_size=args.batch_size,
                          learning_rate=args.lr, patience=args.patience, k=args.k, seed=args.seed)


def _cli_build(args) -> int:
    from .dataset import Dataset

    ids = IdentitySet(args.data)
    ids.root.mkdir(parents=True, exist_ok=True)
    rep = ids.build_from_dataset(args.identity, Dataset.open(args.from_dataset), k=args.k)
    print(f"added {rep.added} crop(s) to {ids.root / args.identity}; skipped {len(rep.skipped)}")
    print(json.dumps(ids.counts(), indent=2))
    return 0


def _cli_counts(args) -> int:
    print(json.dumps(IdentitySet.open(args.data).counts(), indent=2))
    return 0


def _cli_train(args) -> int:
    res = train_identity(IdentitySet.open(args.data), _config(args, args.backbone, args.augment), args.out,
                         progress=_progress_printer())
    print(json.dumps({"model": str(res.path), **comparison_row(res)}, indent=2))
    return 0


def _cli_compare(args) -> int:
    ids = IdentitySet.open(args.data)
    backbones = [b.strip() for b in args.backbones.split(",") if b.strip()]
    augs = [0, args.augment] if args.augment > 0 else [0]
    printer, shown = _progress_printer(), set()

    def show(i, n, name, stage, done, total, logs):
        if i not in shown:
            shown.add(i)
            print(f"[{i + 1}/{n}] {name}")
        printer(stage, done, total, logs)

    rows = compare(ids, backbones, augs, _config(args, backbones[0] if backbones else "mobilenetv2", 0),
                   args.out_root, args.prefix, progress=show)
    import pandas as pd

    print(pd.DataFrame(rows, columns=COMPARISON_COLUMNS).to_string(index=False))
    return 0


def _train_args(p) -> None:
    p.add_argument("--data", required=True, help="identity folder: one sub-folder of face crops per identity")
    p.add_argument("--weights", default="imagenet", help="imagenet (default), none, or a local .h5 file")
    p.add_argument("--input-size", type=int, default=128)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=positive_float, default=1e-3)
    p.add_argument("--patience", type=int, default=5, help="early stopping: epochs without a better val loss")
    p.add_argument("--k", type=float_range(0, 10), default=DEFAULT_K, help="crop margin used when recognizing")
    p.add_argument("--seed", type=int, default=0)


def add_parser(sub) -> None:
    p = sub.add_parser("identity", help="me / not me: build identity crops, train and compare classifiers")
    isub = p.add_subparsers(dest="identity_command", required=True)
    b = isub.add_parser("build", help="crop the labeled faces of a dataset into one identity folder")
    b.add_argument("--data", required=True, help="identity set folder, e.g. data/identities/me_not_me")
    b.add_argument("--identity", required=True, help="identity name, e.g. me")
    b.add_argument("--from-dataset", required=True, help="labeled dataset folder (images/ + labels/)")
    b.add_argument("--k", type=float_range(0, 10), default=DEFAULT_K, help="margin: k x the face size on every side")
    b.set_defaults(func=_cli_build)
    c = isub.add_parser("counts", help="crops per identity")
    c.add_argument("--data", required=True)
    c.set_defaults(func=_cli_counts)
    t = isub.add_parser("train", help="train a classifier (frozen backbone + dense head)")
    _train_args(t)
    t.add_argument("--backbone", default="mobilenetv2", choices=BACKBONES)
    t.add_argument("--augment", type=int, default=0, help="augmented copies per training crop")
    t.add_argument("--out", required=True, help="model folder to write, e.g. models/me_not_me")
    t.set_defaults(func=_cli_train)
    m = isub.add_parser("compare", help="train several backbones with and without augmentation; print the table")
    _train_args(m)
    m.add_argument("--backbones", default=",".join(BACKBONES), help="comma-separated")
    m.add_argument("--augment", type=int, default=5, help="also train with this many copies per crop (0: only without)")
    m.add_argument("--out-root", default="models", help="folder for the models (<prefix>-<backbone>-aug<N>)")
    m.add_argument("--prefix", default="cmp")
    m.set_defaults(func=_cli_compare)
