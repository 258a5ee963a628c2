"""Synthetic face images with known boxes, so tests run anywhere without real data."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from facecore import Dataset, ImageLabel
from facecore.images import encode_jpeg


def face_image(rng: np.random.Generator, width: int = 160, height: int = 120, face: bool = True):
    """An RGB image (H, W, 3) with a cartoon face, and its normalized box (or None)."""
    img = np.empty((height, width, 3), np.uint8)
    img[:] = rng.integers(40, 200, size=3)
    noise = rng.integers(0, 25, size=(height, width, 1), dtype=np.uint8)
    img = cv2.add(img, np.repeat(noise, 3, axis=2))
    if not face:
        for _ in range(3):
            x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
            cv2.rectangle(img, (x, y), (x + 20, y + 15), tuple(int(c) for c in rng.integers(0, 255, 3)), -1)
        return img, None
    fw = int(rng.integers(width // 5, width // 2))
    fh = int(fw * 1.25)
    fh = min(fh, height - 4)
    x1 = int(rng.integers(1, width - fw - 1))
    y1 = int(rng.integers(1, height - fh - 1))
    cx, cy = x1 + fw // 2, y1 + fh // 2
    cv2.ellipse(img, (cx, cy), (fw // 2, fh // 2), 0, 0, 360, (224, 172, 140), -1)
    ex = max(fw // 6, 2)
    for dx in (-ex, ex):
        cv2.circle(img, (cx + dx, cy - fh // 8), max(fw // 12, 1), (30, 30, 30), -1)
    cv2.ellipse(img, (cx, cy + fh // 5), (fw // 5, max(fh // 14, 1)), 0, 0, 180, (120, 40, 40), -1)
    box = np.array([x1, y1, x1 + fw, y1 + fh], np.float32) / np.array([width, height, width, height], np.float32)
    return img, box


def make_dataset(root: Path, n_face: int = 12, n_noface: int = 4, size=(160, 120), seed: int = 0) -> Dataset:
    """A dataset folder with labelme labels for the face images and no label for the rest."""
    rng = np.random.default_rng(seed)
    ds = Dataset.create(root)
    for i in range(n_face + n_noface):
        face = i < n_face
        img, box = face_image(rng, *size, face=face)
        label = ImageLabel(size[0], size[1], box) if face else None
        ds.add_image(encode_jpeg(img), f"img{i:03d}.jpg", label=label)
    return ds
