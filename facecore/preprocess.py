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
