"""``train``: one training run, from a dataset and a ``TrainConfig`` to a saved model folder."""

from __future__ import annotations

import os
from pathlib import Path

from ..facetracker.backbones import BLAZEFACE_BACKBONE
from ..datasets.dataset import Dataset
from ..meta import FACETRACKER, check_model_dir
from ..jobs import Cancel, ProgressFn
from ..datasets.workspace import Workspace, check_name
from .config import TrainConfig
from .context import Run
from .facetracker import train_facetracker


def train(dataset: Dataset, config: TrainConfig, progress: ProgressFn | None = None,
          out_dir: str | os.PathLike | None = None, cancel: Cancel | None = None) -> Path:
    """Train a face detector on ``dataset`` with ``config`` and save it; returns the model folder.

    ``out_dir`` defaults to ``models/<config.name>`` of the workspace. ``progress`` is called with a
    ``facecore.jobs.Progress`` after every batch and epoch (from this thread): ``done`` is the overall
    fraction of 1.0, ``stage`` one of "loading", "features", "training", "fine-tuning", "evaluating",
    "saving", and ``extra`` holds ``epoch``, ``epochs`` and the per-epoch ``history`` so far.
    ``cancel`` stops after the current batch and raises ``Cancelled`` (nothing is saved). Raises
    ``WeightsUnavailable`` (from ``facecore.facetracker.model``) when pretrained weights cannot be loaded,
    ``DatasetError`` for data that cannot train a model, and ``TrainingError`` when the loss becomes
    non-finite.
    """
    out_dir = Path(out_dir) if out_dir is not None else Workspace.from_env().model_dir(config.name)
    run = Run(dataset, config, out_dir, progress, cancel)
    check_name(out_dir.name, "model")
    check_model_dir(out_dir, FACETRACKER)  # never replace a dataset or any folder that is not our model
    if config.backbone != BLAZEFACE_BACKBONE:
        return train_facetracker(run)
    from .blazeface import train_blazeface

    return train_blazeface(run)
