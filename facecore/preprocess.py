"""The one image preprocessing shared by training and inference.

The whole frame is resized (not cropped, not letterboxed) to ``size`` x ``size``: a normalized box
means the same thing before and after, so a predicted box maps back to the original pixels
exactly, whatever the frame's shape. Backbone-specific scaling happens inside the model.
"""

from __future__ import annotations

import cv2
import numpy as np


def resize_for_model(rgb: np.ndarray, size: int) -> np.ndarray:
    """RGB uint8 (H, W, 3) -> float32 (size, size, 3) with values 0..255 (INTER_AREA when shrinking)."""
    h, w = rgb.shape[:2]
    interp = cv2.INTER_AREA if (h > size or w > size) else cv2.INTER_LINEAR
    return cv2.resize(rgb, (size, size), interpolation=interp).astype(np.float32)


def shrink(rgb: np.ndarray, width: int | None, height: int | None = None) -> np.ndarray:
    """RGB (H, W, 3) scaled down (aspect kept, INTER_AREA) to fit ``width`` x ``height`` (``None``: no limit
    that way), for display; ``rgb`` itself when it already fits. Normalized boxes need no mapping."""
    h, w = rgb.shape[:2]
    s = min(width / w if width else 1.0, height / h if height else 1.0)
    if s >= 1:
        return rgb
    return cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
