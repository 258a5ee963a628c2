"""Training a FaceTracker on a dataset, saving it to ``models/<name>/``, and the one background job.

``train(dataset, TrainConfig, progress, out_dir, cancel)`` does the whole run:

1. split the dataset by source photo (``Dataset.split``); the training set is the train split, plus
   its offline-augmented copies when ``augmentation="offline"``;
2. read every image once and resize it with ``facecore.preprocess.resize_for_model`` (the same
   function inference uses); a sample's box is its largest face (one box per image, as in the tutorials);
3. train: when the backbone is frozen (pretrained weights) and nothing augments on the fly, the fast
   path computes each sample's pooled backbone features once and trains only the heads on them;
   otherwise ``fit`` runs through the whole network (on-the-fly augmentation, training from scratch,
   fine-tuning). Early stopping and best-epoch restore watch ``val_loss`` (``loss`` without a val
   split); the learning rate halves on a plateau;
4. evaluate in eval mode on the train, val and test splits (the train figure catches models that
   only work in training mode). A network trained from scratch gets its BatchNorm statistics
   recomputed for its current weights after every epoch, before validation: without that, its
   moving statistics trail the weights and it does much worse in eval mode than in training;
5. save ``model.keras``, ``model.tflite`` and ``meta.json`` atomically (see ``save_model``).

This module imports TensorFlow only when training starts, so the CLI and pages load quickly.
"""

from __future__ import annotations

import copy
import json
import math
import os
import sys
import threading
import time
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np

from . import boxes as B
from .dataset import Dataset, Item
from .errors import Cancelled, DatasetError, FaceCoreError, ImageReadError, LabelFormatError
from .backbones import BLAZEFACE, CATALOGUE, DEFAULT_INPUT_SIZE, DETECTOR_BACKBONES, IMAGENET_BACKBONES
from .io import check_model_dir, read_image, replace_dir
from .jobs import Cancel, Job, JobSlot, Progress, ProgressFn
from .labels import read_label
from .preprocess import resize_for_model
from .registry import KERAS_FILE, TFLITE_FILE, read_meta, write_meta
from .workspace import Workspace, check_name

# Backbones come from facecore.backbones: "blazeface" (the default) fine-tunes MediaPipe's face detector
# (facecore.blaze_train); the others are the tutorials' FaceTracker (one box) on an ImageNet backbone, or
# tinycnn from scratch.
TRAIN_LAYERS = ("heads", "box", "all")


def preset(backbone: str, from_scratch: bool = False) -> dict:
    """Default epochs, batch size, learning rate, augmentation and head width for a choice of model,
    the same on the Train page and the CLI: BlazeFace fine-tunes the whole network with on-the-fly
    augmentation; a frozen ImageNet backbone trains its heads as the tutorials do (40 / 8 / 1e-4);
    a network from scratch needs larger steps, more epochs and narrower heads."""
    if backbone == BLAZEFACE:
        # box heads only: on people it never saw, retraining the face/no-face head made it say "face" on
        # hands and toys, and every layer forgot small faces (benchmarks/accuracy.py, README)
        return {"epochs": 20, "batch_size": 16, "learning_rate": 1e-3, "augmentation": "on_the_fly", "head_units": 2048,
                "train_layers": "box"}
    if from_scratch or backbone not in IMAGENET_BACKBONES:
        return {"epochs": 60, "batch_size": 16, "learning_rate": 1e-3, "augmentation": "on_the_fly", "head_units": 256}
    return {"epochs": 40, "batch_size": 8, "learning_rate": 1e-4, "augmentation": "offline", "head_units": 2048}
AUGMENTATION_MODES = ("off", "offline", "on_the_fly")
# Threads that decode images for training (bounded: each holds a full-size photo while it works).
LOAD_THREADS = max(1, min(4, os.cpu_count() or 1))
# The TFLite file must reproduce the Keras outputs to this tolerance, or it is not shipped.
TFLITE_TOLERANCE = 1e-3
MAX_INPUT_SIZE = 640  # README "Limits": larger inputs only cost memory (a batch at 20000 px is hundreds of GB)
MAX_HEAD_UNITS = 16384


class TrainingError(FaceCoreError):
    """Training could not run or did not produce a usable model (the message says why)."""


STOPPED = "training stopped; nothing was saved"


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run; saved in ``meta.json`` beside the model.

    ``weights``: ``"imagenet"``, ``None`` (train the whole network from scratch) or a weights file path.
    ``augmentation``: ``"off"``, ``"offline"`` (train on the dataset's augmented copies too) or
    ``"on_the_fly"`` (a fresh random augmentation of every sample in every epoch, ``augment`` config).
    ``fine_tune_epochs`` > 0 adds a second phase that unfreezes the top ``fine_tune_layers`` layers of a
    pretrained backbone at ``fine_tune_lr``. ``patience`` 0 turns early stopping off.
    Defaults follow the tutorials (VGG16 at 120 px, batch 8, Adam 1e-4).
    """

    name: str = "facetracker"
    backbone: str = BLAZEFACE
    input_size: int | None = None
    weights: str | None = "imagenet"
    alpha: float = 1.0
    head_units: int = 2048
    epochs: int = 40
    batch_size: int = 8
    learning_rate: float = 1e-4
    localization_weight: float = 2.0
    augmentation: str = "offline"
    augment: Any = None
    fine_tune_epochs: int = 0
    fine_tune_layers: int = 4
    fine_tune_lr: float = 1e-5
    patience: int = 8
    lr_patience: int = 3
    lr_factor: float = 0.5
    split: tuple[float, float, float] = (0.7, 0.15, 0.15)
    seed: int = 0
    cache_features: bool = True
    export_tflite: bool = True
    train_layers: str = "box"  # blazeface: "box" (box heads), "heads" (detection heads) or "all" layers

    def __post_init__(self):
        check_name(self.name, "model")
        if self.backbone not in DETECTOR_BACKBONES:
            raise TrainingError(f"unknown backbone {self.backbone!r}; choose one of {', '.join(DETECTOR_BACKBONES)}")
        if self.augmentation not in AUGMENTATION_MODES:
            raise TrainingError(f"unknown augmentation mode {self.augmentation!r}; "
                                f"choose one of {', '.join(AUGMENTATION_MODES)}")
        if isinstance(self.weights, str) and self.weights.strip().lower() in ("none", ""):
            object.__setattr__(self, "weights", None)
        if self.train_layers not in TRAIN_LAYERS:
            raise TrainingError(f"train_layers must be one of {', '.join(TRAIN_LAYERS)}, got {self.train_layers!r}")
        if self.backbone == BLAZEFACE:
            # BlazeFace starts from MediaPipe's face weights, whatever pretrained source was named
            if self.weights is not None:
                object.__setattr__(self, "weights", BLAZEFACE)
            object.__setattr__(self, "fine_tune_epochs", 0)
            if self.input_size is not None and int(self.input_size) not in CATALOGUE[BLAZEFACE].sizes:
                raise TrainingError(f"blazeface takes 128 px (short-range model) or 192 px (full-range model) "
                                    f"inputs, not {self.input_size}")
        for name, lo in (("epochs", 1), ("batch_size", 1), ("head_units", 1), ("fine_tune_epochs", 0),
                         ("fine_tune_layers", 0), ("patience", 0), ("lr_patience", 0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
                raise TrainingError(f"{name} must be a whole number >= {lo}, got {v!r}")
        for name in ("learning_rate", "fine_tune_lr", "localization_weight", "alpha"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise TrainingError(f"{name} must be a positive number, got {v!r}")
        if not 0 < self.lr_factor < 1:
            raise TrainingError(f"lr_factor must be between 0 and 1, got {self.lr_factor}")
        if self.input_size is not None and not 32 <= int(self.input_size) <= MAX_INPUT_SIZE:
            raise TrainingError(f"input size must be 32 to {MAX_INPUT_SIZE} px, got {self.input_size}")
        if self.head_units > MAX_HEAD_UNITS:
            raise TrainingError(f"head_units must be at most {MAX_HEAD_UNITS}, got {self.head_units}")
        split = tuple(float(f) for f in self.split)
        if len(split) != 3 or any(f < 0 for f in split) or split[0] <= 0:
            raise TrainingError(f"split must be three fractions (train, val, test) with train > 0, got {self.split}")
        object.__setattr__(self, "split", split)

    @property
    def size(self) -> int:
        """The input size in pixels (the backbone's default when ``input_size`` is None)."""
        return int(self.input_size or DEFAULT_INPUT_SIZE[self.backbone])

    @property
    def frozen(self) -> bool:
        """Pretrained weights: the backbone stays frozen (except for the optional fine-tuning phase)."""
        return self.weights is not None

    @property
    def uses_feature_cache(self) -> bool:
        """The fast path: frozen backbone and no on-the-fly augmentation."""
        return self.backbone != BLAZEFACE and self.frozen and self.cache_features and self.augmentation != "on_the_fly"

    def augment_config(self):
        """The ``AugmentConfig`` for on-the-fly augmentation (``augment`` may be a dict or None)."""
        from .augment import AugmentConfig

        if self.augment is None:
            return AugmentConfig()
        if isinstance(self.augment, dict):
            return AugmentConfig.from_dict(self.augment)
        return self.augment

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["split"] = list(self.split)
        d["input_size"] = self.size
        if self.augment is not None and not isinstance(self.augment, dict):
            d["augment"] = asdict(self.augment)
        return d


@dataclass
class Samples:
    """Decoded, resized samples: ``images`` uint8 (N, S, S, 3); ``has_face`` float32 (N, 1);
    ``boxes`` float32 (N, 4) (the largest face; zeros for no face); ``all_boxes`` every face per
    sample (for on-the-fly augmentation, which reads ``paths`` again at full size)."""

    stems: list[str]
    paths: list[Path]
    images: np.ndarray
    has_face: np.ndarray
    boxes: np.ndarray
    all_boxes: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.stems)

    @property
    def n_face(self) -> int:
        return int(self.has_face.sum())


def primary_box(boxes: np.ndarray) -> np.ndarray:
    """The largest of ``boxes`` (N, 4) normalized, as (4,); the model predicts one face per image."""
    b = np.asarray(boxes, np.float32).reshape(-1, 4)
    areas = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    return b[int(np.argmax(areas))]


def _label_boxes(item: Item) -> np.ndarray:
    if item.label is None:
        return np.zeros((0, 4), np.float32)
    # a box drawn past the edge is clipped: the sigmoid box head cannot reach targets outside 0..1
    boxes = B.clip(read_label(item.label).boxes)
    return boxes[B.is_valid(boxes)]


def load_samples(items, size: int, warnings: list[str] | None = None,
                 on_item: Callable[[int, int], None] | None = None,
                 cancel: Cancel | None = None) -> Samples:
    """Read and resize ``items``; unreadable images and malformed labels are skipped with a warning.

    Images are decoded on a few threads (OpenCV releases the GIL while decoding and resizing), in order.
    """
    from concurrent.futures import ThreadPoolExecutor

    stems, paths, imgs, cls, boxes, all_boxes = [], [], [], [], [], []
    items = list(items)

    def read(it: Item):
        if cancel is not None and cancel.cancelled:
            return None
        try:
            return _label_boxes(it), resize_for_model(read_image(it.image), size).astype(np.uint8)
        except (ImageReadError, LabelFormatError) as exc:
            return exc

    with ThreadPoolExecutor(max_workers=LOAD_THREADS, thread_name_prefix="facecore-read") as pool:
        results = pool.map(read, items)
        for i, (it, got) in enumerate(zip(items, results)):
            if got is None or (cancel is not None and cancel.cancelled):
                raise Cancelled(STOPPED)
            if isinstance(got, Exception):
                if warnings is not None:
                    warnings.append(f"skipped {it.image.name}: {got}")
                continue
            b, img = got
            stems.append(it.stem)
            paths.append(it.image)
            imgs.append(img)
            face = len(b) > 0
            cls.append([1.0 if face else 0.0])
            boxes.append(primary_box(b) if face else np.zeros(4, np.float32))
            all_boxes.append(b)
            if on_item is not None:
                on_item(i + 1, len(items))
    n = len(stems)
    return Samples(stems, paths, np.stack(imgs) if n else np.zeros((0, size, size, 3), np.uint8),
                   np.asarray(cls, np.float32).reshape(n, 1), np.asarray(boxes, np.float32).reshape(n, 4),
                   all_boxes)


# -- tf.data pipelines -----------------------------------------------------------------------------
def _labels(s: Samples):
    return s.has_face, s.boxes


def _array_dataset(x, s: Samples, batch: int, shuffle: bool, seed: int):
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((x, _labels(s)))
    if shuffle:
        ds = ds.shuffle(len(s), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch)
    if x.dtype == np.uint8:
        ds = ds.map(lambda a, y: (tf.cast(a, tf.float32), y))
    return ds.prefetch(2)


def _on_the_fly_dataset(s: Samples, size: int, batch: int, seed: int, aug_config):
    """A fresh augmentation of every training image in every epoch (albumentations in tf.numpy_function).

    Augmentation works on the full-size photo (crops are fractions of it), then resizes; a crop that
    loses the face turns the sample into a no-face sample, as in the tutorials.
    """
    import tensorflow as tf

    from .augment import augment_sample, build_augmenter

    augmenter = build_augmenter(aug_config)
    rng = np.random.default_rng(seed)
    seed_lock = threading.Lock()

    def load(i):
        i = int(i)
        with seed_lock:
            sample_seed = int(rng.integers(0, 2**31 - 1))
        try:
            rgb = read_image(s.paths[i])
        except ImageReadError:  # deleted since loading: fall back to the resized copy, unaugmented
            return s.images[i].astype(np.float32), s.has_face[i], s.boxes[i]
        img, b = augment_sample(augmenter, rgb, s.all_boxes[i], seed=sample_seed)
        x = resize_for_model(img, size)
        if len(b):
            return x, np.ones(1, np.float32), primary_box(b)
        return x, np.zeros(1, np.float32), np.zeros(4, np.float32)

    def tf_load(i):
        x, c, b = tf.numpy_function(load, [i], [tf.float32, tf.float32, tf.float32])
        x.set_shape((size, size, 3))
        c.set_shape((1,))
        b.set_shape((4,))
        return x, (c, b)

    ds = tf.data.Dataset.range(len(s)).shuffle(len(s), seed=seed, reshuffle_each_iteration=True)
    return ds.map(tf_load, num_parallel_calls=2).batch(batch).prefetch(2)


# -- callbacks ----------------------------------------------------------------------------------
def _make_callbacks(keras, phase: str, epoch_offset: int, total_epochs: int, report, cancel,
                    monitor: str, config: TrainConfig, history: list[dict], state: dict,
                    best: float = math.inf, best_weights=None, recalibrate: tuple | None = None):
    class Watch(keras.callbacks.Callback):
        """History, progress, cancel, non-finite loss, and the best epoch's weights (restored at the end).

        ``best`` / ``best_weights`` carry the previous phase's best: fine-tuning that never beats it
        leaves the phase-1 weights in place. ``recalibrate`` = (images, steps per epoch): after the
        last batch of every epoch, before validation, BatchNorm statistics are recomputed for the
        current weights (``facecore.model.recalibrate_batchnorm``), so that val figures, the best
        epoch and the saved model are those of the network in eval mode.
        """

        def __init__(self):
            super().__init__()
            self.best = best
            self.best_weights = best_weights
            self.t_epoch = time.monotonic()

        def on_epoch_begin(self, epoch, logs=None):
            self.t_epoch = time.monotonic()
            self.batches_before = state["batches_done"]

        def on_train_batch_end(self, batch, logs=None):
            loss = (logs or {}).get("loss")
            if loss is not None and not math.isfinite(float(loss)):
                state["nonfinite"] = f"{phase} epoch {epoch_offset + state['epoch'] + 1}, batch {batch + 1}"
                self.model.stop_training = True
            if cancel is not None and cancel.cancelled:
                state["cancelled"] = True
                self.model.stop_training = True
            # with steps_per_execution > 1 this runs once per group of steps; ``batch`` is the last one
            state["batches_done"] = self.batches_before + batch + 1
            if recalibrate is not None and batch + 1 == recalibrate[1] and not self.model.stop_training:
                from .model import recalibrate_batchnorm

                recalibrate_batchnorm(self.model.net, recalibrate[0], max(int(config.batch_size), 32))
            report(phase)

        def on_epoch_end(self, epoch, logs=None):
            logs = dict(logs or {})
            state["epoch"] = epoch + 1
            if state.get("nonfinite") or state.get("cancelled"):
                return
            row = {"epoch": epoch_offset + epoch + 1, "phase": phase,
                   "seconds": round(time.monotonic() - self.t_epoch, 3)}
            lr = self.model.optimizer.learning_rate
            row["lr"] = float(lr.numpy() if hasattr(lr, "numpy") else lr)
            for k, v in logs.items():
                if k != "learning_rate":
                    row[k] = float(v)
            if not all(math.isfinite(row[k]) for k in row if k.endswith("loss")):
                state["nonfinite"] = f"{phase} epoch {epoch_offset + epoch + 1} (validation)"
                self.model.stop_training = True
                return
            history.append(row)
            value = row.get(monitor, row.get("loss"))
            if value < self.best:
                self.best = value
                self.best_weights = self.model.net.get_weights()
                state["best_epoch"] = row["epoch"]
                state["best"] = value
            report(phase)

        def on_train_end(self, logs=None):
            if self.best_weights is not None:
                self.model.net.set_weights(self.best_weights)

    cbs = [Watch()]
    if config.patience > 0:
        cbs.append(keras.callbacks.EarlyStopping(monitor=monitor, mode="min", patience=config.patience))
    if config.lr_patience > 0:
        cbs.append(keras.callbacks.ReduceLROnPlateau(monitor=monitor, mode="min", factor=config.lr_factor,
                                                     patience=config.lr_patience, min_lr=1e-7))
    return cbs


# -- the training run -------------------------------------------------------------------------
def training_eta(state: dict) -> float | None:
    """Seconds left in the training stage, from ``state["batches_done"]`` / ``["batches_total"]``.

    The clock starts at the first report, after the first batch: building the training graph takes
    seconds to minutes and would otherwise inflate the rate; the time of validation and other
    end-of-epoch work is included, since the rate is measured over whole stretches of time. None until
    a second report has a rate to give.
    """
    now, done = time.monotonic(), state["batches_done"]
    if state.get("t_train") is None:
        state["t_train"], state["b_train"] = now, done
        return None
    counted = done - state.get("b_train", 0)
    if counted <= 0:
        return None
    return (now - state["t_train"]) / counted * max(state["batches_total"] - done, 0)


def _iso_now() -> str:
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")


def _predict(model, x: np.ndarray, batch: int) -> tuple[np.ndarray, np.ndarray]:
    if len(x) == 0:
        return np.zeros((0, 1), np.float32), np.zeros((0, 4), np.float32)
    prob, box = model.predict(x.astype(np.float32) if x.dtype == np.uint8 else x, batch_size=batch, verbose=0)
    return np.asarray(prob), np.asarray(box)


def train(dataset: Dataset, config: TrainConfig, progress: ProgressFn | None = None,
          out_dir: str | os.PathLike | None = None, cancel: Cancel | None = None) -> Path:
    """Train a FaceTracker on ``dataset`` with ``config`` and save it; returns the model folder.

    ``out_dir`` defaults to ``models/<config.name>`` of the workspace. ``progress`` is called with a
    ``facecore.jobs.Progress`` after every batch and epoch (from this thread): ``done`` is the overall
    fraction of 1.0, ``stage`` one of "loading", "features", "training", "fine-tuning", "evaluating",
    "saving", and ``extra`` holds ``epoch``, ``epochs`` and the per-epoch ``history`` so far.
    ``cancel`` stops after the current batch and raises ``Cancelled`` (nothing is saved). Raises ``WeightsUnavailable``
    (from ``facecore.model``) when pretrained weights cannot be loaded, ``DatasetError`` for data
    that cannot train a model, and ``TrainingError`` when the loss becomes non-finite.
    """
    t_start = time.monotonic()
    out_dir = Path(out_dir) if out_dir is not None else Workspace.from_env().model_dir(config.name)
    check_name(out_dir.name, "model")
    check_model_dir(out_dir, "facetracker")  # never replace a dataset or any folder that is not our model
    size = config.size
    warnings: list[str] = []
    history: list[dict] = []
    fast = config.uses_feature_cache
    ft_epochs = config.fine_tune_epochs if config.frozen else 0
    # Shares of the progress bar per stage.
    spans = {"loading": (0.0, 0.08), "features": (0.08, 0.2 if fast else 0.08),
             "training": (0.2 if fast else 0.08, 0.93), "evaluating": (0.93, 0.96), "saving": (0.96, 1.0)}
    state = {"epoch": 0, "batches_done": 0, "batches_total": 1, "t_train": None}
    if config.backbone == BLAZEFACE:
        spans.update(training=(0.08, 0.93))

    def emit(stage: str, frac_in_stage: float, message: str = "", eta: float | None = None, epoch=0, epochs=0):
        if cancel is not None and cancel.cancelled and stage not in ("training", "fine-tuning"):
            raise Cancelled(STOPPED)
        if progress is None:
            return
        lo, hi = spans.get(stage if stage != "fine-tuning" else "training")
        progress(Progress(lo + (hi - lo) * min(max(frac_in_stage, 0.0), 1.0), 1.0, message, stage, eta,
                          {"epoch": epoch, "epochs": epochs, "history": list(history)}))

    if config.backbone == BLAZEFACE:
        from .blaze_train import train_blazeface

        return train_blazeface(dataset, config, out_dir, emit, state, history, warnings, cancel, t_start,
                               make_callbacks=_make_callbacks, read_splits=read_splits, load_samples=load_samples,
                               save_model=save_model,
                               run_meta=_run_meta, check_stop=_check_stop, eta_of=training_eta)

    # 1. the network first: unavailable pretrained weights fail now, not after reading every image
    emit("loading", 0.0, "loading TensorFlow")
    import keras

    from . import losses as L
    from . import model as M

    emit("loading", 0.0, f"building {config.backbone} ({'pretrained' if config.frozen else 'from scratch'})")
    keras.utils.set_random_seed(config.seed)
    net = M.build_model(config.backbone, size, config.weights, config.head_units, config.alpha)

    # 2. data
    split, train_s, val_s, test_s = read_splits(dataset, config, size, emit, warnings, cancel)
    train_orig = train_s if config.augmentation != "offline" else load_samples(split.train, size)

    bs = int(config.batch_size)
    monitor = "val_loss" if len(val_s) else "loss"
    faces = train_s.has_face[:, 0] > 0.5
    M.init_heads_to_prior(net, train_s.boxes[faces].mean(axis=0), float(faces.mean()))

    feats = {}
    if fast:
        fm = M.feature_model(net)
        total = len(train_s) + len(val_s) + len(test_s) + (len(train_orig) if train_orig is not train_s else 0)
        seen = 0
        for key, s in (("train", train_s), ("val", val_s), ("test", test_s), ("train_orig", train_orig)):
            if key == "train_orig" and s is train_s:
                feats[key] = feats["train"]
                continue
            chunks = []
            for i in range(0, len(s), 64):
                chunks.append(np.asarray(fm.predict(s.images[i:i + 64].astype(np.float32), verbose=0)))
                seen += len(chunks[-1])
                emit("features", seen / max(total, 1), f"computing backbone features {seen}/{total}")
            feats[key] = (np.concatenate(chunks).astype(np.float32) if chunks
                          else np.zeros((0, int(fm.outputs[0].shape[-1])), np.float32))

    def report_fn(total_epochs: int):
        def report(phase: str):
            eta = training_eta(state)
            done_b = state["batches_done"]
            ep = len(history)
            emit(phase, done_b / max(state["batches_total"], 1),
                 f"{phase}: epoch {min(ep + 1, total_epochs)}/{total_epochs}", eta, ep, total_epochs)
        return report

    total_epochs = config.epochs + ft_epochs
    steps = math.ceil(len(train_s) / bs)
    state["batches_total"] = steps * total_epochs

    # 3. phase 1: heads on cached features, or the whole network on images
    trainer = L.FaceTracker(M.heads_of(net) if fast else net)
    # XLA halves the CPU time of a heads-only step (mostly Adam's update of the two wide Dense layers);
    # it is off for the full network, where compiling the backbone's gradient would take minutes on a CPU.
    # Heads steps take milliseconds, so running 16 per call halves an epoch by saving Python dispatch.
    trainer.compile(keras.optimizers.Adam(config.learning_rate), L.classification_loss, L.localization_loss,
                    config.localization_weight, jit_compile=bool(fast),
                    steps_per_execution=min(16, steps) if fast else 1)
    if fast:
        train_ds = _array_dataset(feats["train"], train_s, bs, True, config.seed)
        val_ds = _array_dataset(feats["val"], val_s, bs, False, config.seed) if len(val_s) else None
    else:
        train_ds = (_on_the_fly_dataset(train_s, size, bs, config.seed, config.augment_config())
                    if config.augmentation == "on_the_fly" else _array_dataset(train_s.images, train_s, bs, True, config.seed))
        val_ds = _array_dataset(val_s.images, val_s, bs, False, config.seed) if len(val_s) else None
    report = report_fn(total_epochs)
    emit("training", 0.0, f"training: epoch 1/{total_epochs} (building the training step)", None, 0, total_epochs)
    recal = None if config.frozen else (train_s.images, steps)
    cbs = _make_callbacks(keras, "training", 0, total_epochs, report, cancel, monitor, config, history, state,
                          recalibrate=recal)
    trainer.fit(train_ds, validation_data=val_ds, epochs=config.epochs, callbacks=cbs, verbose=0, shuffle=False)
    _check_stop(state, cancel)
    phase1_epochs = len(history)
    stopped_early = phase1_epochs < config.epochs

    # 4. optional phase 2: fine-tune the top of a pretrained backbone through images
    backbone_changed = not config.frozen
    if ft_epochs:
        n_unfrozen = M.unfreeze_top(net, config.fine_tune_layers)
        if n_unfrozen:
            backbone_changed = True
            state["batches_done"] = steps * config.epochs  # skipped epochs of phase 1 count as done
            state["t_train"] = None  # its steps run through the backbone: measure their rate afresh
            tuner = L.FaceTracker(net)
            tuner.compile(keras.optimizers.Adam(config.fine_tune_lr), L.classification_loss, L.localization_loss,
                          config.localization_weight)
            train_ds = (_on_the_fly_dataset(train_s, size, bs, config.seed + 1, config.augment_config())
                        if config.augmentation == "on_the_fly"
                        else _array_dataset(train_s.images, train_s, bs, True, config.seed + 1))
            val_ds = _array_dataset(val_s.images, val_s, bs, False, config.seed) if len(val_s) else None
            state["epoch"] = 0
            cbs = _make_callbacks(keras, "fine-tuning", phase1_epochs, total_epochs, report, cancel, monitor,
                                  config, history, state, state.get("best", math.inf), net.get_weights())
            tuner.fit(train_ds, validation_data=val_ds, epochs=ft_epochs, callbacks=cbs, verbose=0, shuffle=False)
            _check_stop(state, cancel)
        else:
            warnings.append("fine-tuning skipped: the top layers of the backbone have no weights to train")
        net.get_layer("backbone").trainable = False

    # 5. evaluate in eval mode
    emit("evaluating", 0.0, "evaluating on train, val and test")
    metrics = {}
    for key, s in (("train", train_orig), ("val", val_s), ("test", test_s)):
        if len(s) == 0:
            continue
        if backbone_changed:
            prob, box = _predict(net, s.images, bs * 4)
        else:
            prob, box = _predict(M.heads_of(net), feats["train_orig" if key == "train" else key], 256)
        metrics[key] = L.evaluate_predictions(s.has_face, s.boxes, prob, box, config.localization_weight)
    best_row = next((h for h in history if h["epoch"] == state.get("best_epoch")), None)
    if best_row and metrics.get("train", {}).get("mean_iou") is not None and best_row.get("mean_iou") is not None:
        # Training-mode figures use batch statistics; eval mode uses BatchNorm's moving statistics.
        gap = best_row["mean_iou"] - metrics["train"]["mean_iou"]
        if gap > 0.1:
            warnings.append(f"in eval mode the model reaches a mean IoU of {metrics['train']['mean_iou']:.2f} on "
                            f"its own training photos, {gap:.2f} below what training reported: its BatchNorm "
                            f"statistics do not match its weights. Train longer, or use pretrained weights.")
    checks = {}
    if not backbone_changed:
        # The saved network must give what the heads gave on cached features.
        k = min(8, len(train_orig))
        p_full, b_full = _predict(net, train_orig.images[:k], k)
        p_h, b_h = _predict(M.heads_of(net), feats["train_orig"][:k], k)
        checks["full_vs_cached_max_abs_diff"] = float(max(np.abs(p_full - p_h).max(), np.abs(b_full - b_h).max()))

    # 6. save
    emit("saving", 0.0, "saving the model")
    meta = {
        **_run_meta(out_dir, config, dataset, split, train_s),
        "history": history,
        "metrics": metrics,
        "input": {"shape": [None, size, size, 3], "dtype": "float32", "range": "RGB 0..255",
                  "preprocess": "facecore.preprocess.resize_for_model"},
        "outputs": ["prob (N, 1) sigmoid face probability",
                    "box (N, 4) sigmoid normalized [x1, y1, x2, y2]"],
        "training": {"seconds": round(time.monotonic() - t_start, 2), "feature_cache": fast,
                     "epochs_run": len(history), "best_epoch": state.get("best_epoch"),
                     "stopped_early": stopped_early, "fine_tuned": bool(ft_epochs and backbone_changed and config.frozen),
                     "warnings": warnings, "checks": checks},
    }
    sample = np.concatenate([train_orig.images[:2], val_s.images[:2]]).astype(np.float32)
    path = save_model(net, out_dir, meta, export_tflite=config.export_tflite, sample=sample)
    emit("saving", 1.0, f"saved {path}")
    return path


def read_splits(dataset: Dataset, config: TrainConfig, size: int, emit: Callable, warnings: list[str],
                cancel: Cancel | None = None) -> tuple:
    """Split ``dataset`` by source photo and read every photo at ``size`` (the train split with its
    offline copies when ``config.augmentation == "offline"``); returns ``(split, train, val, test)``
    ``Samples``. Reports "loading" progress through ``emit``; raises DatasetError when the train split
    cannot train a model (fewer than 2 photos, or no labeled face)."""
    emit("loading", 0.0, "splitting the dataset")
    split = dataset.split(config.split, config.seed)
    warnings.extend(f"left out {name}: {why}" for name, why in split.skipped)
    train_items = dataset.training_items(split) if config.augmentation == "offline" else list(split.train)
    if config.augmentation == "offline" and len(train_items) == len(split.train):
        warnings.append("augmentation 'offline' but the dataset has no augmented copies of its train split "
                        "(make them on the Augment page); trained on the original photos only")
    n_all = len(train_items) + len(split.val) + len(split.test)
    done = [0]

    def on_item(i, n):
        done[0] += 1
        if done[0] % 8 == 0 or done[0] == n_all:
            emit("loading", done[0] / max(n_all, 1), f"reading images {done[0]}/{n_all}")

    train_s = load_samples(train_items, size, warnings, on_item, cancel)
    val_s = load_samples(split.val, size, warnings, on_item, cancel)
    test_s = load_samples(split.test, size, warnings, on_item, cancel)
    if len(train_s) < 2:
        raise DatasetError(f"{dataset.name}: the train split has {len(train_s)} usable image(s); training needs "
                           f"at least 2 (better: dozens of labeled faces). Add and label photos first.")
    if train_s.n_face == 0:
        raise DatasetError(f"{dataset.name}: no image in the train split has a labeled face; label some faces "
                           f"on the Collect & Label page first")
    return split, train_s, val_s, test_s


def _run_meta(out_dir: Path, config: TrainConfig, dataset: Dataset, split, train_s: Samples) -> dict:
    """The ``meta.json`` keys every trained face detector shares."""
    return {"name": out_dir.name, "kind": "facetracker", "created": _iso_now(), "config": config.to_dict(),
            "dataset": {"name": dataset.name, "root": str(dataset.root), "fingerprint": dataset.fingerprint(),
                        "split": split.sizes(), "train_samples": len(train_s), "train_faces": train_s.n_face}}


def _check_stop(state: dict, cancel) -> None:
    if state.get("cancelled") or (cancel is not None and cancel.cancelled):
        raise Cancelled(STOPPED)
    if state.get("nonfinite"):
        raise TrainingError(f"the loss became non-finite (NaN or infinity) in {state['nonfinite']}; training "
                            f"stopped and nothing was saved. Lower the learning rate and try again.")


def save_model(net, out_dir: str | os.PathLike, meta: dict, export_tflite: bool = True,
               sample: np.ndarray | None = None, tflite_fixed_batch: bool = False) -> Path:
    """Write ``model.keras``, ``model.tflite`` (if ``export_tflite``) and ``meta.json`` (last) into a
    temporary folder beside ``out_dir``, then rename it to ``out_dir`` (replacing an older model).

    ``sample`` (N, S, S, 3) float32: the TFLite file is checked against Keras on it and dropped (with
    a warning in ``meta["training"]["warnings"]``) if any output differs by more than ``TFLITE_TOLERANCE``.
    ``tflite_fixed_batch``: the TFLite file takes exactly one photo (faster: see ``export_tflite``).
    The check runs one photo at a time.
    """
    from . import model as M

    out_dir = Path(out_dir)
    meta = copy.deepcopy(meta)
    warnings = meta.setdefault("training", {}).setdefault("warnings", [])

    def write(tmp: Path) -> None:
        net.save(tmp / KERAS_FILE)
        files = {"keras": KERAS_FILE}
        if export_tflite:
            try:
                M.export_tflite(net, tmp / TFLITE_FILE, fixed_batch=tflite_fixed_batch)
                diff = None
                if sample is not None and len(sample):
                    lite = M.TFLiteNet(tmp / TFLITE_FILE)
                    ref = net.predict(sample, verbose=0)
                    per = [lite(x[None]) for x in sample]
                    got = [np.concatenate([p[i] for p in per]) for i in range(len(per[0]))]
                    diff = float(max(np.abs(np.asarray(r) - g).max() for r, g in zip(ref, got)))
                if diff is not None and not diff <= TFLITE_TOLERANCE:
                    (tmp / TFLITE_FILE).unlink()
                    warnings.append(f"TFLite export differs from Keras by {diff:.2g}; not saved")
                else:
                    files["tflite"] = TFLITE_FILE
                    meta["tflite"] = {"file": TFLITE_FILE, "max_abs_diff": diff,
                                      "outputs": "prob (N, 1) and box (N, 4): tell them apart by the last "
                                                 "dimension (the interpreter's output order is not fixed)"}
            except Exception as exc:  # noqa: BLE001 - the Keras model is still good without it
                (tmp / TFLITE_FILE).unlink(missing_ok=True)
                warnings.append(f"TFLite export failed ({type(exc).__name__}: {exc}); model.keras is complete")
        meta["files"] = files
        write_meta(tmp, _jsonable(meta))

    replace_dir(out_dir, write, check=lambda d: check_model_dir(d, "facetracker"))
    return out_dir


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating, float)):
        return float(x) if math.isfinite(float(x)) else None
    if isinstance(x, Path):
        return str(x)
    return x


# -- the background job (one per server) ----------------------------------------------------------
@dataclass(frozen=True)
class TrainRun:
    """What a training job works on (its ``Job.subject``): the settings, the dataset and the model folder."""

    config: TrainConfig
    dataset: str
    dataset_root: str
    out_dir: str


# The server's one training (a page rerun, or another session, finds it here).
JOB = JobSlot()


def start_training(dataset: Dataset, config: TrainConfig, out_dir: str | os.PathLike | None = None,
                   slot: JobSlot = JOB) -> Job:
    """Start training ``dataset`` with ``config`` into ``out_dir`` (default ``models/<config.name>``) as a
    background ``Job`` in ``slot``; raises ``BusyError`` while another training runs there.

    The job's ``result`` is ``(model folder, its meta.json content)``.
    """
    out = Path(out_dir) if out_dir is not None else Workspace.from_env().model_dir(config.name)

    def work(progress: ProgressFn, cancel: Cancel) -> tuple[Path, dict]:
        path = train(dataset, config, progress, out, cancel)
        return path, read_meta(path)

    def busy(job: Job) -> str:
        run = job.subject
        return (f"a training is already running on this server (model '{Path(run.out_dir).name}' on dataset "
                f"'{run.dataset}', {job.progress.fraction:.0%} done). Wait for it to finish or stop it first.")

    job = Job(work, "train", TrainRun(config, dataset.name, str(dataset.root), str(out)))
    return slot.start(job, busy)


def failure_kind(error: BaseException | None) -> str:
    """Why a training job failed, for the page: "weights" (pretrained weights unavailable: offer training
    from scratch), "data", "training", "cancelled" or "internal"."""
    if isinstance(error, Cancelled):
        return "cancelled"
    model = sys.modules.get("facecore.model")  # WeightsUnavailable comes from there; unimported, it cannot be it
    if model is not None and isinstance(error, model.WeightsUnavailable):
        return "weights"
    if isinstance(error, DatasetError):
        return "data"
    return "training" if isinstance(error, FaceCoreError) else "internal"


_PRELOAD: list[threading.Thread] = []
_PRELOAD_LOCK = threading.Lock()


def preload_tensorflow() -> None:
    """Import TensorFlow, Keras and ``facecore.model`` in a background thread, once per process.

    The import takes seconds on an idle machine and minutes on a busy one; the Train page starts it
    when it opens, so that pressing *Start training* does not wait for it.
    """
    with _PRELOAD_LOCK:
        if _PRELOAD:
            return

        def run():
            try:
                from . import model  # noqa: F401 - imports keras and tensorflow
            except Exception:  # noqa: BLE001 - training reports the same error when it imports them
                pass

        t = threading.Thread(target=run, name="facecore-preload-tf", daemon=True)
        _PRELOAD.append(t)
        t.start()
