"""Two synthetic "people" for identity tests: they differ clearly in face colour and shape."""

from __future__ import annotations

import cv2
import numpy as np

from facecore import Dataset, ImageLabel
from facecore.images import encode_jpeg

PEOPLE = ("ann", "bob")


def draw_person(img: np.ndarray, who: str, x1: int, y1: int, fw: int, fh: int) -> np.ndarray:
    """Draw ``who``'s face in the pixel box (x1, y1, fw, fh) of ``img``, in place; returns the normalized box."""
    h, w = img.shape[:2]
    cx, cy = x1 + fw // 2, y1 + fh // 2
    if who == "ann":  # round, warm skin, dark round eyes, red mouth
        cv2.ellipse(img, (cx, cy), (fw // 2, fh // 2), 0, 0, 360, (230, 170, 130), -1)
        for dx in (-fw // 5, fw // 5):
            cv2.circle(img, (cx + dx, cy - fh // 8), max(fw // 10, 1), (20, 20, 20), -1)
        cv2.ellipse(img, (cx, cy + fh // 5), (fw // 5, max(fh // 12, 1)), 0, 0, 180, (200, 0, 0), -1)
    else:  # square, blue-green, white square eyes, wide dark mouth
        cv2.rectangle(img, (x1, y1), (x1 + fw, y1 + fh), (40, 120, 170), -1)
        e = max(fw // 8, 1)
        for dx in (-fw // 4, fw // 4):
            cv2.rectangle(img, (cx + dx - e, cy - fh // 5 - e), (cx + dx + e, cy - fh // 5 + e), (255, 255, 255), -1)
        cv2.rectangle(img, (cx - fw // 3, cy + fh // 5), (cx + fw // 3, cy + fh // 5 + max(fh // 10, 1)), (10, 10, 60), -1)
    return np.array([x1, y1, x1 + fw, y1 + fh], np.float32) / np.array([w, h, w, h], np.float32)


def background(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    img = np.empty((h, w, 3), np.uint8)
    img[:] = rng.integers(60, 200, size=3)
    noise = rng.integers(0, 30, size=(h, w, 1), dtype=np.uint8)
    return cv2.add(img, np.repeat(noise, 3, axis=2))


def person_image(rng: np.random.Generator, who: str, w: int = 96, h: int = 96):
    """An RGB image (H, W, 3) with one face of ``who`` at a random place and size, and its box."""
    img = background(rng, w, h)
    fw = int(rng.integers(w // 4, w // 2))
    fh = min(int(fw * 1.2), h - 4)
    x1 = int(rng.integers(1, w - fw - 1))
    y1 = int(rng.integers(1, h - fh - 1))
    return img, draw_person(img, who, x1, y1, fw, fh)


def person_dataset(root, who: str, n: int = 12, seed: int = 0) -> Dataset:
    """A labeled dataset of ``n`` photos of ``who``."""
    rng = np.random.default_rng(seed)
    ds = Dataset.create(root)
    for i in range(n):
        img, box = person_image(rng, who)
        ds.add_image(encode_jpeg(img), f"{who}{i:03d}.jpg", label=ImageLabel(img.shape[1], img.shape[0], box))
    return ds
