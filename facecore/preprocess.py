"""The one image preprocessing shared by training and inference.

The whole frame is resized (not cropped, not letterboxed) to ``size`` x ``size``: a normalized box
means the same thing before and after, so a predicted box maps back to the original pixels
exactly, whatever the frame's shape. Backbone-specific scaling happens inside the model.
"""

from __future__ import annotations

import cv2
import numpy as np


def area_resize(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """RGB uint8 (H, W, 3) -> (height, width, 3): INTER_AREA's averaging when shrinking, at a fraction of its
    cost. OpenCV's INTER_AREA is fast only for whole-number factors (640 -> 320: 0.1 ms) and slow otherwise
    (640 -> 192: 1.2-1.7 ms, as long as the network that follows): the frame is first averaged down by the
    largest whole factor that divides both sides and keeps it at least the target's size, then bilinear
    takes the rest (under 2x, where it still reads every pixel's neighbourhood). Mean difference from one
    INTER_AREA step on the sample photos at 192 x 144: 1.4 grey levels of 255 (bilinear alone: 3.1).
    INTER_LINEAR when enlarging."""
    h, w = rgb.shape[:2]
    if width >= w and height >= h:
        return cv2.resize(rgb, (width, height), interpolation=cv2.INTER_LINEAR)
    k = int(min(w / width, h / height))
    while k >= 2 and (w % k or h % k):
        k -= 1
    if k >= 2:
        rgb = cv2.resize(rgb, (w // k, h // k), interpolation=cv2.INTER_AREA)  # OpenCV's whole-factor path
        h, w = rgb.shape[:2]
    if w < 2 * width and h < 2 * height:
        return cv2.resize(rgb, (width, height), interpolation=cv2.INTER_LINEAR)
    return cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)


def resize_for_model(rgb: np.ndarray, size: int) -> np.ndarray:
    """RGB uint8 (H, W, 3) -> float32 (size, size, 3) with values 0..255 (``area_resize``)."""
    return area_resize(rgb, size, size).astype(np.float32)


def shrink(rgb: np.ndarray, width: int | None, height: int | None = None) -> np.ndarray:
    """RGB (H, W, 3) scaled down (aspect kept, INTER_AREA) to fit ``width`` x ``height`` (``None``: no limit
    that way), for display; ``rgb`` itself when it already fits. Normalized boxes need no mapping."""
    h, w = rgb.shape[:2]
    s = min(width / w if width else 1.0, height / h if height else 1.0)
    if s >= 1:
        return rgb
    return cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
