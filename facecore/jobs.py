"""One progress record, one cancel token and one background job for all long work in facecore.

Every long piece of work (training a detector or an identity classifier, comparing backbones,
augmentation and mosaics, video processing, pre-labeling, evaluation) takes the same two arguments:

- ``progress``: a callable taking a ``Progress``, called from the working thread as units finish;
- ``cancel``: a ``Cancel`` token. The work checks it between units and, where it stops, raises
  ``facecore.errors.Cancelled``. Work that keeps what it finished (augmented copies, mosaics,
  proposals, images evaluated) passes its report so far as ``Cancelled.partial``; work that saves all
  or nothing (a model, a video) saves nothing and leaves older files as they were.

``Job`` runs such work on a background thread for a page that polls it, so that Streamlit's reruns
neither block on it nor stop it; ``JobSlot`` keeps one job of a kind running at a time (the server's
one training, one augmentation per dataset).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, TypeVar

from .errors import BusyError, Cancelled, FaceCoreError

T = TypeVar("T")


@dataclass(frozen=True)
class Progress:
    """How far some work is: ``done`` of ``total`` (any unit: copies, frames, epochs, or a fraction of
    1.0), what it is doing (``message``, ``stage``), the seconds it expects to need still (``eta_s``)
    and whatever else the work reports (``extra``: metrics, the epoch history, the item just done)."""

    done: float = 0
    total: float = 0
    message: str = ""
    stage: str = ""
    eta_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict, hash=False)

    @property
    def fraction(self) -> float:
        """``done / total`` in 0..1 (0 while the total is unknown)."""
        return min(max(self.done / self.total, 0.0), 1.0) if self.total else 0.0


ProgressFn = Callable[[Progress], None]


def ignore(progress: Progress) -> None:
    """A ``progress`` callable that shows nothing (work called without one uses it)."""


class Cancel:
    """A cancel token: ``cancel()`` from any thread; the work polls ``cancelled`` or calls ``check``."""

    def __init__(self):
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self, message: str = "stopped", partial: Any = None) -> None:
        """Raise ``Cancelled(message, partial)`` if cancelled."""
        if self._event.is_set():
            raise Cancelled(message, partial)

    def __repr__(self) -> str:
        return f"Cancel(cancelled={self.cancelled})"


IDLE, RUNNING, DONE, FAILED, CANCELLED = "idle", "running", "done", "failed", "cancelled"


class Job(Generic[T]):
    """``work(progress, cancel)`` on a daemon thread. Every property is a snapshot safe to read from
    any thread.

    ``status``: idle -> running -> done (``result`` holds what ``work`` returned), cancelled (it raised
    ``Cancelled``; ``partial`` is what it kept) or failed (``error`` holds the exception,
    ``error_message`` a line to show). ``subject`` is whatever the caller wants to remember about the
    job (its settings, the dataset), for display.
    """

    def __init__(self, work: Callable[[ProgressFn, Cancel], T], name: str = "job", subject: Any = None):
        self.name = name
        self.subject = subject
        self._work = work
        self._cancel = Cancel()
        self._lock = threading.Lock()
        self._status = IDLE
        self._progress = Progress()
        self._progress_at: float | None = None
        self._result: T | None = None
        self._error: BaseException | None = None
        self.started: float | None = None  # time.time()
        self.ended: float | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> "Job[T]":
        with self._lock:
            if self._status != IDLE:
                raise RuntimeError(f"job {self.name!r} was already started")
            self._status, self.started = RUNNING, time.time()
            self._thread = threading.Thread(target=self._run, name=f"facecore-{self.name}", daemon=True)
            self._thread.start()
        return self

    def cancel(self) -> bool:
        """Ask the work to stop at its next check; False if the job is not running."""
        with self._lock:
            if self._status != RUNNING:
                return False
            self._cancel.cancel()
            return True

    def wait(self, timeout: float | None = None) -> "Job[T]":
        """Wait for the work to end (at most ``timeout`` seconds); returns the job."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self

    def _report(self, progress: Progress) -> None:
        with self._lock:
            self._progress, self._progress_at = progress, time.time()

    def _run(self) -> None:
        status, result, error = FAILED, None, None
        try:
            result = self._work(self._report, self._cancel)
            status = DONE
        except Cancelled as exc:
            status, error = CANCELLED, exc
        except BaseException as exc:  # noqa: BLE001 - kept for the page to show, not lost in a thread
            error = exc  # SystemExit and the like too: the thread ends either way, the job says why
        finally:
            with self._lock:
                self._status, self._result, self._error, self.ended = status, result, error, time.time()

    @property
    def status(self) -> str:
        return self._status

    @property
    def running(self) -> bool:
        return self._status == RUNNING

    @property
    def finished(self) -> bool:
        return self._status in (DONE, FAILED, CANCELLED)

    @property
    def cancelling(self) -> bool:
        """Cancel was asked and the work has not stopped yet."""
        return self._cancel.cancelled and self._status == RUNNING

    @property
    def progress(self) -> Progress:
        return self._progress

    @property
    def result(self) -> T | None:
        return self._result

    @property
    def error(self) -> BaseException | None:
        return self._error

    @property
    def partial(self) -> Any:
        """What cancelled work kept (``Cancelled.partial``), else None."""
        return self._error.partial if isinstance(self._error, Cancelled) else None

    @property
    def error_message(self) -> str:
        """The error as one line for a user: facecore's own messages as they are, others with their type."""
        e = self._error
        if e is None:
            return ""
        return str(e) if isinstance(e, FaceCoreError) else f"{type(e).__name__}: {e}"

    @property
    def elapsed_s(self) -> float:
        if self.started is None:
            return 0.0
        return (self.ended or time.time()) - self.started

    @property
    def eta_now(self) -> float | None:
        """The last reported ``eta_s`` counted down since it came, so that the figure moves between reports."""
        p, at = self._progress, self._progress_at
        if p.eta_s is None or at is None or not self.running:
            return None
        return max(0.0, p.eta_s - (time.time() - at))


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
