"""The server's one background training (``JOB``), started by the Train page: a ``ProcessJob``, so
TensorFlow loads in a worker process that exits when the training ends, never in the server."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

from ..datasets.dataset import Dataset
from ..errors import Cancelled, DatasetError, FaceCoreError
from ..jobs import Cancel, Job, JobSlot, ProcessJob, ProgressFn
from ..meta import ModelMeta
from ..datasets.workspace import Workspace
from .config import TrainConfig
from .run import train


@dataclass(frozen=True)
class TrainRun:
    """What a training job works on (its ``Job.subject``): the settings, the dataset and the model folder."""

    config: TrainConfig
    dataset: str
    dataset_root: str
    out_dir: str


# The server's one training (a page rerun, or another session, finds it here).
JOB = JobSlot()


def start_training(dataset: Dataset, config: TrainConfig, out_dir: str | os.PathLike | None = None,
                   slot: JobSlot = JOB) -> Job:
    """Start training ``dataset`` with ``config`` into ``out_dir`` (default ``models/<config.name>``) as a
    background ``Job`` in ``slot``; raises ``BusyError`` while another training runs there.

    The job's ``result`` is ``(model folder, its meta.json as a ModelMeta)``. The training runs in a worker
    process (``facecore.jobs.ProcessJob``): the server never imports TensorFlow.
    """
    out = Path(out_dir) if out_dir is not None else Workspace.from_env().model_dir(config.name)
    work = functools.partial(_train_and_read, Dataset(dataset.root), config, out)

    def busy(job: Job) -> str:
        run = job.subject
        return (f"a training is already running on this server (model '{Path(run.out_dir).name}' on dataset "
                f"'{run.dataset}', {job.progress.fraction:.0%} done). Wait for it to finish or stop it first.")

    job = ProcessJob(work, "train", TrainRun(config, dataset.name, str(dataset.root), str(out)))
    return slot.start(job, busy)


def _train_and_read(dataset: Dataset, config: TrainConfig, out: Path, progress: ProgressFn,
                    cancel: Cancel) -> tuple[Path, ModelMeta]:
    """The training job's work, in the worker process."""
    path = train(dataset, config, progress, out, cancel)
    return path, ModelMeta.load(path)


def failure_kind(error: BaseException | None) -> str:
    """Why a training job failed, for the page: "weights" (pretrained weights unavailable: offer training
    from scratch), "data", "training", "cancelled" or "internal"."""
    if isinstance(error, Cancelled):
        return "cancelled"
    # WeightsUnavailable comes from facecore.facetracker.model, which imports TensorFlow: the worker's error says its name
    if "WeightsUnavailable" in getattr(error, "type_names", ()) or type(error).__name__ == "WeightsUnavailable":
        return "weights"
    if isinstance(error, DatasetError):
        return "data"
    return "training" if isinstance(error, FaceCoreError) else "internal"
