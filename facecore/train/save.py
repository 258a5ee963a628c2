"""Saving a trained face detector: ``model.keras``, ``model.tflite`` (checked against Keras) and
``meta.json``, written atomically into ``models/<name>/``."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ..datasets.dataset import Dataset
from ..io import replace_dir
from ..meta import FACETRACKER, ModelMeta, check_model_dir
from ..registry import KERAS_FILE, TFLITE_FILE
from .config import TrainConfig
from .data import Samples

# The TFLite file must reproduce the Keras outputs to this tolerance, or it is not shipped.
TFLITE_TOLERANCE = 1e-3


def iso_now() -> str:
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")


def run_meta(out_dir: Path, config: TrainConfig, dataset: Dataset, split, train_s: Samples, size: int,
             **fields) -> ModelMeta:
    """The ``meta.json`` of a trained face detector: what every one shares (name, config, dataset, the
    ``size`` x ``size`` network input) and ``fields`` (``ModelMeta`` fields: metrics, history, training...)."""
    return ModelMeta(
        name=out_dir.name, kind=FACETRACKER, created=iso_now(), config=config.to_dict(),
        dataset={"name": dataset.name, "root": str(dataset.root), "fingerprint": dataset.fingerprint(),
                 "split": split.sizes(), "train_samples": len(train_s), "train_faces": train_s.n_face},
        input={"shape": [None, int(size), int(size), 3], "dtype": "float32", "range": "RGB 0..255",
               "preprocess": "facecore.preprocess.resize_for_model"}, **fields)


def save_model(net, out_dir: str | os.PathLike, meta: ModelMeta | dict, export_tflite: bool = True,
               sample: np.ndarray | None = None, tflite_fixed_batch: bool = False) -> Path:
    """Write ``model.keras``, ``model.tflite`` (if ``export_tflite``) and ``meta.json`` (last) into a
    temporary folder beside ``out_dir``, then rename it to ``out_dir`` (replacing an older model).
    ``meta``: a ``ModelMeta`` (``run_meta``), or a dict of its fields (checked: ``ModelMeta.from_dict``).

    ``sample`` (N, S, S, 3) float32: the TFLite file is checked against Keras on it and dropped (with
    a warning in the training's warnings) if any output differs by more than ``TFLITE_TOLERANCE``.
    ``tflite_fixed_batch``: the TFLite file takes exactly one photo (faster: see ``export_tflite``).
    The check runs one photo at a time.
    """
    from ..facetracker import model as M

    out_dir = Path(out_dir)
    meta = ModelMeta.from_dict(meta, out_dir.name, strict=True)
    training = {**meta.training, "warnings": list(meta.training.get("warnings") or [])}
    warnings, saved = training["warnings"], {}

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
                    saved["tflite"] = {"file": TFLITE_FILE, "max_abs_diff": diff,
                                       "outputs": "prob (N, 1) and box (N, 4): tell them apart by the last "
                                       "dimension (the interpreter's output order is not fixed)"}
            except Exception as exc:  # noqa: BLE001 - the Keras model is still good without it
                (tmp / TFLITE_FILE).unlink(missing_ok=True)
                warnings.append(f"TFLite export failed ({type(exc).__name__}: {exc}); model.keras is complete")
        meta.with_(training=training, files=files, **saved).save(tmp)

    replace_dir(out_dir, write, check=lambda d: check_model_dir(d, FACETRACKER))
    return out_dir
