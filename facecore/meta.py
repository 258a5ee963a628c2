"""What a saved model's ``meta.json`` may say about its network, checked: ``facecore.registry`` reads the file,
this module tells a usable input size from a broken or lying one, so every page and command gives one clear
message instead of a traceback. The network's own input shape always decides (``fit_sample``)."""

from __future__ import annotations

from .errors import ModelFileError

META_FILE = "meta.json"


def meta_input_hw(meta: dict, name: str = "model") -> tuple[int, int] | None:
    """The network input ``(height, width)`` that ``meta.json`` states (``input.shape``, else
    ``config.input_size``), or None when it states none. Only a hint: the network's own input shape decides
    (``quantize``, the loaders). Raises ModelFileError naming the field when it is not a size in pixels."""
    from .inference import MAX_INPUT_SIZE, MIN_INPUT_SIZE

    inp, cfg = meta.get("input"), meta.get("config")
    for field_, value in (("input", inp), ("config", cfg)):
        if value is not None and not isinstance(value, dict):
            raise ModelFileError(f"model {name!r}: {META_FILE} field {field_!r} is {str(value)[:40]!r}, not an "
                                 "object; retrain the model (or fix its meta.json)")
    shape = (inp or {}).get("shape")
    if shape is not None:
        what, hw = f"input.shape {str(shape)[:60]}", shape[1:3] if isinstance(shape, list) and len(shape) == 4 else []
    else:
        size = (cfg or {}).get("input_size")
        if size is None:
            return None
        what, hw = f"config.input_size {str(size)[:40]!r}", [size, size]
    if len(hw) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and MIN_INPUT_SIZE <= v <= MAX_INPUT_SIZE
                               for v in hw):
        raise ModelFileError(f"model {name!r}: {META_FILE} says {what}, which is not an input size in pixels "
                             f"({MIN_INPUT_SIZE}..{MAX_INPUT_SIZE}); the network's own input is used where it "
                             "can be; retrain the model (or fix its meta.json)")
    return int(hw[0]), int(hw[1])


def meta_problem(meta: dict, name: str = "model") -> str | None:
    """One line for people on what is wrong in a model's ``meta.json`` (a field of the wrong type, an input
    size that is not one), or None."""
    for key in ("config", "dataset", "metrics", "input"):
        if meta.get(key) is not None and not isinstance(meta.get(key), dict):
            return f"model {name!r}: {META_FILE} field {key!r} is not an object; retrain the model (or fix its meta.json)"
    try:
        meta_input_hw(meta, name)
    except ModelFileError as exc:
        return str(exc)
    return None


def fit_sample(sample, net):
    """``sample`` frames (N, h, w, 3) resized to the network's own input (H, W) when they differ (a sample made
    from a meta.json that lies about the input, or for a photo-shaped model); None stays None."""
    if sample is None:
        return None
    import cv2
    import numpy as np

    sample = np.asarray(sample, np.float32)
    h, w = (int(v) for v in net.inputs[0].shape[1:3])
    if sample.ndim != 4 or sample.shape[1:3] == (h, w):
        return sample
    return np.stack([cv2.resize(x, (w, h), interpolation=cv2.INTER_AREA) for x in sample])
