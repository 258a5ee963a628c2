"""The server's one background training (``JOB``), started by the Train page, and the TensorFlow
preload that page starts when it opens."""

from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from ..dataset import Dataset
from ..errors import Cancelled, DatasetError, FaceCoreError
from ..jobs import Cancel, Job, JobSlot, ProgressFn
from ..registry import read_meta
from ..workspace import Workspace
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

    The job's ``result`` is ``(model folder, its meta.json content)``.
    """
    out = Path(out_dir) if out_dir is not None else Workspace.from_env().model_dir(config.name)

    def work(progress: ProgressFn, cancel: Cancel) -> tuple[Path, dict]:
        path = train(dataset, config, progress, out, cancel)
        return path, read_meta(path)

    def busy(job: Job) -> str:
        run = job.subject
        return (f"a training is already running on this server (model '{Path(run.out_dir).name}' on dataset "
                f"'{run.dataset}', {job.progress.fraction:.0%} done). Wait for it to finish or stop it first.")

    job = Job(work, "train", TrainRun(config, dataset.name, str(dataset.root), str(out)))
    return slot.start(job, busy)


def failure_kind(error: BaseException | None) -> str:
    """Why a training job failed, for the page: "weights" (pretrained weights unavailable: offer training
    from scratch), "data", "training", "cancelled" or "internal"."""
    if isinstance(error, Cancelled):
        return "cancelled"
    model = sys.modules.get("facecore.model")  # WeightsUnavailable comes from there; unimported, it cannot be it
    if model is not None and isinstance(error, model.WeightsUnavailable):
        return "weights"
    if isinstance(error, DatasetError):
        return "data"
    return "training" if isinstance(error, FaceCoreError) else "internal"


_PRELOAD: list[threading.Thread] = []
_PRELOAD_LOCK = threading.Lock()


def preload_tensorflow() -> None:
    """Import TensorFlow, Keras and ``facecore.model`` in a background thread, once per process.

    The import takes seconds on an idle machine and minutes on a busy one; the Train page starts it
    when it opens, so that pressing *Start training* does not wait for it.
    """
    with _PRELOAD_LOCK:
        if _PRELOAD:
            return

        def run():
            try:
                from .. import model  # noqa: F401 - imports keras and tensorflow
            except Exception:  # noqa: BLE001 - training reports the same error when it imports them
                pass

        t = threading.Thread(target=run, name="facecore-preload-tf", daemon=True)
        _PRELOAD.append(t)
        t.start()
