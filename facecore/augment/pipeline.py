"""The augmentation pipeline (albumentations), boxes included: build it once, augment many samples.

The default pipeline is the tutorial's: a random crop, horizontal flip, brightness/contrast, gamma and
RGB shift, each with its probability; vertical flip (the tutorial's, off by default: a webcam never sees
an upside-down face, and such copies teach the model faces that do not occur), rotation, scale, blur and
noise are optional.
The crop is a *fraction* of the image (the tutorial's fixed 450x450 crop fails on images smaller than
that and keeps a different share of 640x480, 1280x720 and portrait photos).

Boxes are facecore's: float32 normalized ``[x1, y1, x2, y2]`` (N, 4), which is albumentations'
``"albumentations"`` format, so they go in and come out unconverted. A box that keeps less than
``min_visibility`` of its area after a crop is dropped: the sample becomes a no-face sample (class 0),
as in the tutorial. No-face images stay no-face.
"""

from __future__ import annotations

import hashlib
import os
import random
import threading
import warnings
from dataclasses import asdict, dataclass, fields
from typing import Any

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no network check on import

import albumentations as A  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402
from albumentations.augmentations.crops.transforms import BaseCrop  # noqa: E402

from .. import boxes as B  # noqa: E402
from ..datasets.dataset import AUG_SEP  # noqa: E402

LABEL_FIELD = "class_labels"


@dataclass(frozen=True)
class AugmentConfig:
    """The augmentation pipeline. ``*_p`` are probabilities per sample (0 turns a transform off).

    Defaults are the tutorial's set without its vertical flip; rotation, scale, blur and noise are off too. ``crop_fraction`` is the
    crop's side as a fraction of the image's (0.75 keeps 480x360 of 640x480). The random seed is not
    part of the config: pass it to ``augment_sample`` / ``augment_dataset``.
    """

    crop_fraction: float = 0.75
    crop_p: float = 1.0
    hflip_p: float = 0.5
    vflip_p: float = 0.0  # upside-down faces do not occur on a webcam
    brightness_contrast_p: float = 0.2
    brightness_limit: float = 0.2
    contrast_limit: float = 0.2
    gamma_p: float = 0.2
    gamma_limit: float = 20.0  # percent: gamma drawn from [1 - l/100, 1 + l/100]
    rgb_shift_p: float = 0.2
    rgb_shift_limit: int = 20
    rotate_p: float = 0.0
    rotate_limit: float = 15.0  # degrees
    scale_p: float = 0.0
    scale_limit: float = 0.15  # scale drawn from [1 - l, 1 + l]
    blur_p: float = 0.0
    blur_limit: int = 5  # largest kernel size (odd, >= 3)
    noise_p: float = 0.0
    noise_std: float = 0.08  # largest noise std as a fraction of 255
    min_visibility: float = 0.5

    def __post_init__(self):
        for f in fields(self):
            v = getattr(self, f.name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not np.isfinite(v):
                raise ValueError(f"AugmentConfig.{f.name} must be a finite number, got {v!r}")
            if f.name.endswith("_p") and not 0.0 <= v <= 1.0:
                raise ValueError(f"AugmentConfig.{f.name} is a probability and must be in [0, 1], got {v}")
        if not 0.05 <= self.crop_fraction <= 1.0:
            raise ValueError(f"crop_fraction must be in [0.05, 1], got {self.crop_fraction}")
        if not 0.0 <= self.min_visibility <= 1.0:
            raise ValueError(f"min_visibility must be in [0, 1], got {self.min_visibility}")
        for name, lo, hi in (("brightness_limit", 0, 1), ("contrast_limit", 0, 1), ("gamma_limit", 0, 90),
                             ("rgb_shift_limit", 0, 255), ("rotate_limit", 0, 180), ("scale_limit", 0, 0.9),
                             ("blur_limit", 3, 51), ("noise_std", 0, 1)):
            if not lo <= getattr(self, name) <= hi:
                raise ValueError(f"{name} must be in [{lo}, {hi}], got {getattr(self, name)}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "AugmentConfig":
        """Inverse of ``to_dict``; unknown keys are ignored (configs saved by older versions load)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


class RandomFractionCrop(BaseCrop):
    """Crop ``fraction`` of the image's width and height at a random position (no resize)."""

    def __init__(self, fraction: float = 0.75, p: float = 1.0):
        super().__init__(p=p)
        self.fraction = float(fraction)

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        height, width = params["shape"][:2]
        ch = min(height, max(1, int(round(self.fraction * height))))
        cw = min(width, max(1, int(round(self.fraction * width))))
        y0 = self.py_random.randint(0, height - ch)
        x0 = self.py_random.randint(0, width - cw)
        return {"crop_coords": (x0, y0, x0 + cw, y0 + ch)}

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("fraction",)


def build_augmenter(config: AugmentConfig = AugmentConfig()) -> A.Compose:
    """The albumentations pipeline for ``config``, boxes in the ``"albumentations"`` format.

    Build it once and call ``augment_sample`` many times: building validates every transform.
    """
    c = config
    steps: list[A.BasicTransform] = []
    if c.crop_p > 0 and c.crop_fraction < 1.0:
        steps.append(RandomFractionCrop(c.crop_fraction, p=c.crop_p))
    if c.hflip_p > 0:
        steps.append(A.HorizontalFlip(p=c.hflip_p))
    if c.brightness_contrast_p > 0:
        steps.append(A.RandomBrightnessContrast(brightness_limit=c.brightness_limit,
                                                contrast_limit=c.contrast_limit, p=c.brightness_contrast_p))
    if c.gamma_p > 0:
        g = float(c.gamma_limit)
        steps.append(A.RandomGamma(gamma_limit=(100 - g, 100 + g), p=c.gamma_p))
    if c.rgb_shift_p > 0:
        s = int(c.rgb_shift_limit)
        steps.append(A.RGBShift(r_shift_limit=s, g_shift_limit=s, b_shift_limit=s, p=c.rgb_shift_p))
    if c.vflip_p > 0:
        steps.append(A.VerticalFlip(p=c.vflip_p))
    if c.rotate_p > 0:
        # "ellipse" keeps boxes tight: a face is closer to an ellipse than to its box's corners.
        steps.append(A.Rotate(limit=(-c.rotate_limit, c.rotate_limit), border_mode=cv2.BORDER_CONSTANT,
                              fill=0, rotate_method="ellipse", p=c.rotate_p))
    if c.scale_p > 0:
        steps.append(A.Affine(scale=(1 - c.scale_limit, 1 + c.scale_limit), keep_ratio=True,
                              border_mode=cv2.BORDER_CONSTANT, fill=0, p=c.scale_p))
    if c.blur_p > 0:
        k = int(c.blur_limit) | 1
        steps.append(A.Blur(blur_limit=(3, max(3, k)), p=c.blur_p))
    if c.noise_p > 0:
        steps.append(A.GaussNoise(std_range=(min(0.01, c.noise_std), c.noise_std), p=c.noise_p))
    with warnings.catch_warnings():
        # With every transform off the pipeline is the identity, which albumentations warns about.
        warnings.filterwarnings("ignore", message="Got processor for bboxes, but no transform")
        aug = A.Compose(
            steps,
            bbox_params=A.BboxParams(format="albumentations", label_fields=[LABEL_FIELD],
                                     min_visibility=c.min_visibility, clip=True,
                                     # Crop and flips never need boxes re-checked between steps (flips keep
                                     # every box inside and its area), so filtering once at the end gives
                                     # the same boxes at half the cost; rotation and scale do need it.
                                     check_each_transform=c.rotate_p > 0 or c.scale_p > 0),
        )
    # albumentations transforms keep per-call state; one lock per pipeline keeps a shared one safe.
    aug._facecore_lock = threading.Lock()
    return aug


def augment_sample(augmenter: A.Compose, image: np.ndarray, boxes, seed: int | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Augment one sample.

    ``image``: RGB uint8 (H, W, 3); ``boxes``: float32 (N, 4) normalized ``[x1, y1, x2, y2]`` (N may be 0).
    Returns ``(image, boxes)``: RGB uint8 (H', W', 3) and float32 (M, 4) normalized; M == 0 means the
    sample holds no face (a crop lost it, or there was none). The same ``seed`` gives the same result;
    ``None`` continues the pipeline's own random stream.
    """
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be RGB uint8 (H, W, 3), got {image.dtype} {image.shape}")
    b = B.clip(B.order_corners(boxes))
    # albumentations rejects zero-area boxes; a box squeezed to nothing by clipping marks no face.
    b = b[B.is_valid(b, 1e-6)]
    lock = getattr(augmenter, "_facecore_lock", None) or threading.Lock()
    with lock:
        if seed is not None:
            # One shared stream for all transforms: per-transform seeds would make e.g. the horizontal
            # and vertical flip draw the same number and always fire together.
            augmenter.set_random_state(np.random.default_rng(seed), random.Random(seed))
        out = augmenter(image=np.ascontiguousarray(image), bboxes=b, **{LABEL_FIELD: np.zeros(len(b), np.int64)})
    img = np.ascontiguousarray(out["image"], dtype=np.uint8)
    ob = np.asarray(out["bboxes"], np.float32).reshape(-1, 4)
    return img, B.clip(ob)


def preview_samples(augmenter: A.Compose, image: np.ndarray, boxes, n: int, seed: int = 0
                    ) -> list[tuple[np.ndarray, np.ndarray]]:
    """``n`` augmented versions of one image (``augment_sample`` with seeds derived from ``seed``)."""
    return [augment_sample(augmenter, image, boxes, copy_seed(seed, "preview", i)) for i in range(n)]


def copy_seed(seed: int, stem: str, k: int) -> int:
    """The random seed of copy ``k`` of photo ``stem``: independent of order, worker and machine."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{stem}:{k}".encode()).digest()[:8], "little") >> 1


def copy_stem(stem: str, k: int) -> str:
    return f"{stem}{AUG_SEP}{k:03d}"

