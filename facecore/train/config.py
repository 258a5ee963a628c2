"""What defines a training run: the model choices and ``TrainConfig`` (saved in ``meta.json`` beside the
model), whose defaults, per model through ``TrainConfig.for_backbone``, the Train page and the command
line both use."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from ..facetracker.backbones import BLAZEFACE_BACKBONE, CATALOGUE, DEFAULT_INPUT_SIZE, DETECTOR_BACKBONES, IMAGENET_BACKBONES
from ..datasets.splits import DEFAULT_SPLIT
from ..errors import FaceCoreError
from ..datasets.workspace import check_name

# Backbones come from facecore.facetracker.backbones: "blazeface" (the default) fine-tunes MediaPipe's face detector
# (facecore.blazeface.finetune); the others are the tutorials' FaceTracker (one box) on an ImageNet backbone, or
# tinycnn from scratch.
TRAIN_LAYERS = ("heads", "box", "all")
INPUT_SHAPES = ("auto", "square", "frame", "close")  # blazeface: the network's input (facecore.blazeface.finetune.pick_input_shape)


def model_defaults(backbone: str, from_scratch: bool = False) -> dict:
    """The settings that depend on the choice of model (``TrainConfig.for_backbone`` applies them):
    BlazeFace fine-tunes its box heads with on-the-fly augmentation; a frozen ImageNet backbone trains its
    heads as the tutorials do (40 / 8 / 1e-4); a network from scratch needs larger steps, more epochs
    and narrower heads."""
    if backbone == BLAZEFACE_BACKBONE:
        # box heads only: on people it never saw, retraining the face/no-face head made it say "face" on
        # hands and toys, and every layer forgot small faces (benchmarks/accuracy.py, README)
        return {"epochs": 20, "batch_size": 16, "learning_rate": 1e-3, "augmentation": "on_the_fly", "head_units": 2048,
                "train_layers": "box"}
    if from_scratch or backbone not in IMAGENET_BACKBONES:
        return {"epochs": 60, "batch_size": 16, "learning_rate": 1e-3, "augmentation": "on_the_fly", "head_units": 256}
    return {"epochs": 40, "batch_size": 8, "learning_rate": 1e-4, "augmentation": "offline", "head_units": 2048}


AUGMENTATION_MODES = ("off", "offline", "on_the_fly")
MAX_INPUT_SIZE = 640  # README "Limits": larger inputs only cost memory (a batch at 20000 px is hundreds of GB)
MAX_HEAD_UNITS = 16384


class TrainingError(FaceCoreError):
    """Training could not run or did not produce a usable model (the message says why)."""


STOPPED = "training stopped; nothing was saved"


PERSONALIZE = ("auto", "fine-tune")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run; saved in ``meta.json`` beside the model.

    ``weights``: ``"imagenet"``, ``None`` (train the whole network from scratch) or a weights file path.
    ``augmentation``: ``"off"``, ``"offline"`` (train on the dataset's augmented copies too) or
    ``"on_the_fly"`` (a fresh random augmentation of every sample in every epoch, ``augment`` config).
    ``fine_tune_epochs`` > 0 adds a second phase that unfreezes the top ``fine_tune_layers`` layers of a
    pretrained backbone at ``fine_tune_lr``. ``patience`` 0 turns early stopping off.
    The defaults are what the Train page and the command line train for the default model (BlazeFace
    fine-tuned, ``model_defaults(BLAZEFACE_BACKBONE)``); ``for_backbone`` gives another model's.
    """

    name: str = "facetracker"
    backbone: str = BLAZEFACE_BACKBONE
    input_size: int | None = None
    weights: str | None = "imagenet"
    alpha: float = 1.0
    head_units: int = 2048
    epochs: int = 20
    batch_size: int = 16
    learning_rate: float = 1e-3
    localization_weight: float = 2.0
    augmentation: str = "on_the_fly"
    augment: Any = None
    fine_tune_epochs: int = 0
    fine_tune_layers: int = 4
    fine_tune_lr: float = 1e-5
    patience: int = 8
    lr_patience: int = 3
    lr_factor: float = 0.5
    split: tuple[float, float, float] = DEFAULT_SPLIT
    seed: int = 0
    cache_features: bool = True
    export_tflite: bool = True
    train_layers: str = "box"  # blazeface: "box" (box heads), "heads" (detection heads) or "all" layers
    # blazeface: "square" (MediaPipe's letterboxed square), "frame" (the photos' shape, shorter side input_size:
    # small faces get more pixels), "close" (the full-range network in a 128 px square: 2.5x less work, for
    # faces close to the camera: only when chosen) or "auto" (frame when the labels hold several or small faces)
    input_shape: str = "auto"
    # blazeface: "auto" (with at most 40 labeled face photos, cross-validation on them chooses the built-in
    # detector, its box style fitted to the labels, or fine-tuning: facecore.train.personalize) or
    # "fine-tune" (always fine-tune, the val split keeping the start if no epoch beats it)
    personalize: str = "auto"

    def __post_init__(self):
        check_name(self.name, "model")
        if self.backbone not in DETECTOR_BACKBONES:
            raise TrainingError(f"unknown backbone {self.backbone!r}; choose one of {', '.join(DETECTOR_BACKBONES)}")
        if self.augmentation not in AUGMENTATION_MODES:
            raise TrainingError(f"unknown augmentation mode {self.augmentation!r}; "
                                f"choose one of {', '.join(AUGMENTATION_MODES)}")
        if isinstance(self.weights, str) and self.weights.strip().lower() in ("none", ""):
            object.__setattr__(self, "weights", None)
        if self.input_shape not in INPUT_SHAPES:
            raise TrainingError(f"input_shape must be one of {', '.join(INPUT_SHAPES)}, got {self.input_shape!r}")
        if self.personalize not in PERSONALIZE:
            raise TrainingError(f"personalize must be one of {', '.join(PERSONALIZE)}, got {self.personalize!r}")
        if self.train_layers not in TRAIN_LAYERS:
            raise TrainingError(f"train_layers must be one of {', '.join(TRAIN_LAYERS)}, got {self.train_layers!r}")
        if self.backbone == BLAZEFACE_BACKBONE:
            # BlazeFace starts from MediaPipe's face weights, whatever pretrained source was named
            if self.weights is not None:
                object.__setattr__(self, "weights", BLAZEFACE_BACKBONE)
            object.__setattr__(self, "fine_tune_epochs", 0)
            if self.input_size is not None and int(self.input_size) not in CATALOGUE[BLAZEFACE_BACKBONE].sizes:
                raise TrainingError(f"blazeface takes 128 px (short-range model) or 192 px (full-range model) "
                                    f"inputs, not {self.input_size}")
            if self.input_shape == "close" and self.size != 192:
                raise TrainingError("the close-up input runs the full-range (192 px) model at 128 px: keep the "
                                    "input size at 192, or choose another network input for the short-range model")
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

    @classmethod
    def for_backbone(cls, backbone: str = BLAZEFACE_BACKBONE, from_scratch: bool = False, **overrides) -> "TrainConfig":
        """The Train page's and the command line's defaults for a choice of model (``model_defaults``; no
        pretrained weights when ``from_scratch``), with ``overrides`` on top. ``for_backbone()`` equals
        ``TrainConfig()``."""
        settings = {"backbone": backbone, **model_defaults(backbone, from_scratch)}
        if from_scratch:
            settings["weights"] = None
        return cls(**{**settings, **overrides})

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
        return self.backbone != BLAZEFACE_BACKBONE and self.frozen and self.cache_features and self.augmentation != "on_the_fly"

    def augment_config(self):
        """The ``AugmentConfig`` for on-the-fly augmentation (``augment`` may be a dict or None)."""
        from ..augment import AugmentConfig

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
