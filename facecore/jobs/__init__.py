"""One progress record, one cancel token and one background job for all long work in facecore.

Every long piece of work (training a detector or an identity classifier, comparing backbones,
augmentation and mosaics, video processing, pre-labeling, evaluation) takes the same two arguments:
``progress``, a callable taking a ``Progress``, and ``cancel``, a ``Cancel`` token whose ``check`` raises
``facecore.errors.Cancelled`` (the protocol: ``facecore.jobs.progress``).

``Job`` runs such work on a background thread for a page that polls it, so that Streamlit's reruns
neither block on it nor stop it (``facecore.jobs.thread``); ``ProcessJob`` runs it the same way in a spawned
worker process (work that imports TensorFlow: its gigabyte stays out of the server and goes when the work
ends, and a worker that runs out of memory or crashes fails its job, not the server; ``facecore.jobs.procs``);
``JobSlot`` keeps one job of a kind running at a time (the server's one training, one augmentation per
dataset). This module gathers them: import them all from here.
"""

from __future__ import annotations

import threading
from typing import Callable

from ..errors import BusyError
from .procs import ProcessJob, WorkerDied, WorkerError, run_in_worker
from .progress import Cancel, Progress, ProgressFn, ignore
from .thread import CANCELLED, DONE, FAILED, IDLE, RUNNING, Job

__all__ = ["CANCELLED", "DONE", "FAILED", "IDLE", "RUNNING", "Cancel", "Job", "JobSlot", "ProcessJob", "Progress",
           "ProgressFn", "WorkerDied", "WorkerError", "ignore", "run_in_worker"]


class JobSlot:
    """The latest job of one kind, with at most one running: ``start`` refuses a second while one runs
    (the server's one training; one augmentation of a dataset)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._job: Job | None = None

    @property
    def job(self) -> Job | None:
        return self._job

    @property
    def running(self) -> bool:
        job = self._job
        return job is not None and job.running

    def start(self, job: Job, busy: Callable[[Job], str] | None = None) -> Job:
        """Start ``job`` unless this slot's job is still running: then raise ``BusyError`` with
        ``busy(running job)`` as message."""
        with self._lock:
            if self._job is not None and self._job.running:
                raise BusyError(busy(self._job) if busy else f"{self._job.name} is still running; wait for it "
                                "to finish or stop it first")
            self._job = job.start()
            return job

    def cancel(self) -> bool:
        """Ask the running job to stop; False if none runs."""
        job = self._job
        return job is not None and job.cancel()

    def wait(self, timeout: float | None = None) -> Job | None:
        """Wait for the current job (if any) to end; returns it."""
        job = self._job
        return job.wait(timeout) if job is not None else None

    def forget(self) -> None:
        """Drop a finished job (its results are no longer shown)."""
        with self._lock:
            if self._job is not None and not self._job.running:
                self._job = None
