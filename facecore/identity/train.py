"""Training a "me / not me" identity classifier on an identity set (``facecore.identity.data``).

The classifier is a frozen ImageNet backbone (``facecore.facetracker.backbones.IDENTITY_BACKBONES``) + global average
pooling + a small dense head with a softmax over the identities. The backbone's pooled features are
computed once per crop, so only the head trains. It is saved as ``models/<name>/model.keras`` beside
``meta.json`` (``kind: "identity"``, a ``facecore.meta.ModelMeta``), so identity models never appear among
the face detectors; ``facecore.identity.recognize.load_identity`` loads it. TensorFlow is imported when training starts.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ..facetracker import backbones as BB
from ..errors import FaceCoreError
from .data import DEFAULT_K, IdentitySet, check_identity_name
from ..io import replace_dir
from ..jobs import Cancel, Progress, ProgressFn, ignore
from ..meta import IDENTITY, ModelMeta, check_model_dir
from ..registry import KERAS_FILE, TFLITE_FILE

STOPPED = "training stopped; nothing was saved"
RANDOM_FEATURES = ("trained on random frozen features (no ImageNet weights, e.g. offline): its accuracy means "
                   "nothing about real faces; train with ImageNet weights before trusting it")


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
        BB.get(self.backbone, BB.IDENTITY_BACKBONES)
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


class ImageNetWeightsMissing(FaceCoreError):
    """The ImageNet weights are not in the Keras cache and could not be downloaded (no network)."""


def weights_missing(error: BaseException | None) -> bool:
    """Whether a failed identity training failed for want of the ImageNet weights (the page then offers
    training with weights 'none'); also for the error as it comes back from a worker process."""
    name = ImageNetWeightsMissing.__name__
    return isinstance(error, ImageNetWeightsMissing) or name in getattr(error, "type_names", ())


def _missing_message(backbone: str, file: str, url: str, why: str) -> str:
    from ..facetracker.model import keras_cache_dir

    return (f"could not download the ImageNet weights for {backbone} ({why}). Place {file} (from {url}) in "
            f"{keras_cache_dir()}/ and retry, or train with weights 'none' (random frozen features: only for "
            "trying the app out).")


def build_backbone(backbone: str, input_size: int, weights: str | None):
    """A frozen ``keras.applications`` backbone (no top) taking RGB float 0..255, with its own input
    scaling in front (``facecore.facetracker.model.preprocess_layer``): returns a ``keras.Model`` (S, S, 3) -> (h, w, C)
    feature map.

    Raises FaceCoreError with the file to place in the Keras cache when ImageNet weights cannot be
    downloaded, or when a local weights file is missing.
    """
    import keras

    from ..facetracker.model import keras_cache_dir, preprocess_layer

    entry = BB.get(backbone, BB.IDENTITY_BACKBONES)
    if weights not in (None, "imagenet") and not Path(weights).is_file():
        raise FaceCoreError(f"weights file {weights} not found; give an existing .h5 file, 'imagenet' or none")
    shape = (input_size, input_size, 3)
    if weights == "imagenet":
        file, url = entry.imagenet_weights(input_size)
        if not (keras_cache_dir() / file).is_file() and not BB.reachable(url):  # seconds, not Keras' 12.5 s
            raise ImageNetWeightsMissing(_missing_message(backbone, file, url, "no network"))
    try:
        base = getattr(keras.applications, entry.keras_app)(include_top=False, weights=weights, input_shape=shape)
    except Exception as exc:  # Keras raises plain Exception/URLError/OSError for a failed download
        if weights != "imagenet":
            raise FaceCoreError(f"could not load weights {weights} into {backbone}: {exc}") from exc
        file, url = entry.imagenet_weights(input_size)
        raise ImageNetWeightsMissing(_missing_message(backbone, file, url, str(exc))) from exc
    base.trainable = False
    inp = keras.Input(shape, name="image")
    pre = preprocess_layer(entry.name, input_size)  # a stock layer: the saved model needs no custom code to load
    x = base(pre(inp) if pre is not None else inp, training=False)
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


def stratified_split(y: np.ndarray, val_fraction: float, seed: int, groups=None) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val): ``val_fraction`` of each class (at least one) goes to val, shuffled by ``seed``.
    ``groups`` (one key per crop, ``identity.crop_groups``): whole groups go to one side, so no photo has crops
    in both (a class whose crops all come from one photo is split by crop: then val says little)."""
    rng = np.random.default_rng(seed)
    groups = np.asarray(groups if groups is not None else np.arange(len(y)).astype(str))
    train, val = [], []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        keys = groups[idx] if len(set(groups[idx])) > 1 else idx.astype(str)
        units = list(dict.fromkeys(keys))
        units = [units[i] for i in rng.permutation(len(units))]
        n_val = min(max(1, int(round(len(units) * val_fraction))), len(units) - 1)
        chosen = set(units[:n_val])
        val.extend(i for i, k in zip(idx, keys) if k in chosen)
        train.extend(i for i, k in zip(idx, keys) if k not in chosen)
    return np.sort(np.asarray(train, np.int64)), np.sort(np.asarray(val, np.int64))


def _features(feature_fn, x: np.ndarray, batch: int, progress: ProgressFn, cancel: Cancel) -> np.ndarray:
    out = []
    for i in range(0, len(x), batch):
        cancel.check(STOPPED)
        out.append(np.asarray(feature_fn(x[i:i + batch])))
        done = min(i + batch, len(x))
        progress(Progress(done, len(x), f"backbone features {done}/{len(x)}", "features"))
    return np.concatenate(out)


def dir_size(path: str | os.PathLike) -> int:
    """Bytes of all files under ``path``."""
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


@dataclass
class TrainResult:
    """A trained identity model: where it is saved and its ``meta.json``."""

    path: Path
    meta: ModelMeta


def overall_fraction(progress: Progress) -> float:
    """How far one ``train_identity`` run is, 0..1, from its progress: features are the first half,
    epochs the second."""
    if progress.stage == "features":
        return 0.5 * progress.fraction
    return 0.5 + 0.5 * progress.fraction if progress.stage == "epoch" else 0.0


def train_identity(identity_set: IdentitySet, config: IdentityConfig, out_dir: str | os.PathLike,
                   progress: ProgressFn | None = None, cancel: Cancel | None = None) -> TrainResult:
    """Train a classifier on the crops of ``identity_set`` and save it to ``out_dir``.

    The backbone is frozen, so its pooled features are computed once per crop (augmented copies
    included) and only the head trains, for up to ``config.epochs`` epochs with early stopping on
    the val loss; the best epoch's weights are kept. Saves ``model.keras`` and ``meta.json``
    atomically. ``progress`` reports stage "features" (crops done of all), then "epoch" (epochs done
    of ``config.epochs``, ``extra``: this epoch's ``logs`` and the ``history`` so far). Raises
    DatasetError for too little data, ``Cancelled`` (nothing saved) when ``cancel`` is cancelled,
    FaceCoreError for a non-finite loss.
    """
    import keras
    import tensorflow as tf

    from .recognize import IdentityClassifier

    t0 = time.perf_counter()
    progress, cancel = progress or ignore, cancel or Cancel()
    out_dir = Path(out_dir)
    check_identity_name(out_dir.name, "model")
    check_model_dir(out_dir, IDENTITY)  # never replace a dataset or any folder that is not our model
    x, y, classes, groups = identity_set.load(config.input_size, with_groups=True)
    train_idx, val_idx = stratified_split(y, config.val_fraction, config.seed, groups)
    x_tr, y_tr = augment_images(x[train_idx], y[train_idx], config.augment, config.seed)
    x_va, y_va = x[val_idx], y[val_idx]

    keras.utils.set_random_seed(config.seed)
    base = build_backbone(config.backbone, config.input_size, config.weights)
    pool = keras.Sequential([base, keras.layers.GlobalAveragePooling2D()])
    feature_fn = tf.function(lambda b: pool(b, training=False), reduce_retracing=True)
    both = np.concatenate([x_tr, x_va])
    feats = _features(feature_fn, both, 32, progress, cancel)
    f_tr, f_va = feats[:len(x_tr)], feats[len(x_tr):]

    head, history, best_epoch = _fit_head(f_tr, y_tr, f_va, y_va, len(classes), config, progress, cancel)
    val_loss, val_acc = (float(v) for v in head.evaluate(f_va, y_va, verbose=0))
    tr_loss, tr_acc = (float(v) for v in head.evaluate(f_tr, y_tr, verbose=0))

    model = assemble(base, head)
    clf = IdentityClassifier(model, classes, config.input_size, config.k, name=out_dir.name)
    latency = clf.measure_latency()
    meta = ModelMeta(
        name=out_dir.name, kind=IDENTITY, created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        config=asdict(config), classes=list(classes), crop_margin=config.k,
        input={"shape": [None, config.input_size, config.input_size, 3], "dtype": "float32",
               "range": "RGB 0..255 (a face crop)"},
        dataset={"name": identity_set.name, "path": str(identity_set.root), "fingerprint": identity_set.fingerprint(),
                 "counts": identity_set.counts(),
                 "split": {"train": int(len(train_idx)), "train_augmented": int(len(x_tr)), "val": int(len(val_idx))}},
        history=history, best_epoch=best_epoch,
        metrics={"train": {"accuracy": tr_acc, "loss": tr_loss}, "val": {"accuracy": val_acc, "loss": val_loss}},
        warnings=[RANDOM_FEATURES] if config.weights is None else [], latency_ms=latency,
        extra={"input_size": config.input_size, "params": int(model.count_params()),
               "trainable_params": int(head.count_params()), "train_seconds": round(time.perf_counter() - t0, 2)})
    saved = {}

    def write(tmp: Path) -> None:
        model.save(tmp / KERAS_FILE)
        saved["meta"] = meta.with_(tflite=export_identity_tflite(model, tmp, clf), size_bytes=dir_size(tmp))
        saved["meta"].save(tmp)

    path = replace_dir(out_dir, write, check=lambda d: check_model_dir(d, IDENTITY))
    return TrainResult(path, saved["meta"])


def _fit_head(f_tr, y_tr, f_va, y_va, n_classes: int, config: IdentityConfig, progress: ProgressFn,
              cancel: Cancel):
    """Train the dense head on the backbone's features, with early stopping on the val loss; returns
    ``(head with the best epoch's weights, the epoch history, the best epoch)``. Raises ``Cancelled`` and,
    for a non-finite loss, FaceCoreError."""
    import keras

    head = build_head(f_tr, n_classes, config.dense_units, config.dropout, config.seed)
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
            progress(Progress(epoch + 1, config.epochs, f"epoch {epoch + 1}/{config.epochs}", "epoch",
                              extra={"logs": logs, "history": list(history)}))
            if cancel.cancelled:
                self.model.stop_training = True

    head.fit(f_tr, y_tr, validation_data=(f_va, y_va), epochs=config.epochs,
             batch_size=config.batch_size, shuffle=True, verbose=0, callbacks=[_Watch()])
    cancel.check(STOPPED)
    if history and not all(np.isfinite(v) for v in history[-1].values()):
        raise FaceCoreError(f"training diverged at epoch {history[-1]['epoch']} (loss is not finite); "
                            "lower the learning rate and retry")
    head.set_weights(best["weights"])  # the best checkpoint (lowest val loss)
    return head, history, best["epoch"]


TFLITE_TOLERANCE = 1e-3  # class probabilities: LiteRT against Keras on the same crops


def export_identity_tflite(model, folder: Path, clf) -> dict:
    """Write ``model.tflite`` beside ``model.keras`` (one crop a call), so that recognizing faces needs no
    TensorFlow in the app's server (LiteRT runs it); checked against Keras on a few crops and left out,
    with the reason in the returned dict, if it disagrees or the conversion fails."""
    from ..facetracker.model import export_tflite
    from .recognize import IdentityClassifier

    path = folder / TFLITE_FILE
    try:
        export_tflite(model, path, fixed_batch=True)
        rng = np.random.default_rng(0)
        crops = [rng.integers(0, 256, (clf.input_size, clf.input_size, 3), dtype=np.uint8) for _ in range(3)]
        diff = float(np.abs(IdentityClassifier.from_tflite(path, clf.classes).predict(crops) - clf.predict(crops)).max())
    except Exception as exc:  # noqa: BLE001 - model.keras is complete without it
        path.unlink(missing_ok=True)
        return {"file": None, "reason": f"{type(exc).__name__}: {exc}"}
    if not diff <= TFLITE_TOLERANCE:
        path.unlink(missing_ok=True)
        return {"file": None, "reason": f"differs from Keras by {diff:.2g}"}
    return {"file": TFLITE_FILE, "max_abs_diff": diff}
