"""``Job``: long work (``facecore.jobs.progress``'s protocol) on a background thread that a page polls, so that
Streamlit's reruns neither block on it nor stop it. ``facecore.jobs.procs.ProcessJob`` is the same job in a
worker process; ``facecore.jobs`` gathers both."""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Generic, TypeVar

from ..errors import Cancelled, FaceCoreError
from .progress import Cancel, Progress, ProgressFn

T = TypeVar("T")

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
