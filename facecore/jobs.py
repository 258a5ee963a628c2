"""One progress record, one cancel token and one background job for all long work in facecore.

Every long piece of work (training a detector or an identity classifier, comparing backbones,
augmentation and mosaics, video processing, pre-labeling, evaluation) takes the same two arguments:

- ``progress``: a callable taking a ``Progress``, called from the working thread as units finish;
- ``cancel``: a ``Cancel`` token. The work checks it between units and, where it stops, raises
  ``facecore.errors.Cancelled``. Work that keeps what it finished (augmented copies, mosaics,
  proposals, images evaluated) passes its report so far as ``Cancelled.partial``; work that saves all
  or nothing (a model, a video) saves nothing and leaves older files as they were.

``Job`` runs such work on a background thread for a page that polls it, so that Streamlit's reruns
neither block on it nor stop it; ``ProcessJob`` runs it the same way in a spawned worker process (work
that imports TensorFlow: its gigabyte stays out of the server and goes when the work ends, and a worker
that runs out of memory or crashes fails its job, not the server); ``JobSlot`` keeps one job of a kind
running at a time (the server's one training, one augmentation per dataset).
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import pickle
import queue as queue_mod
import signal
import threading
import time
import traceback
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

    def __init__(self, event=None):
        # a multiprocessing Event crosses into a worker process (ProcessJob); a thread's one is enough otherwise
        self._event = event if event is not None else threading.Event()

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


class WorkerError(FaceCoreError):
    """An exception raised in a ``ProcessJob``'s worker, as the server sees it: the message as the job
    shows it, the original's class names (``type_names``, most derived first) and its traceback. The
    server does not unpickle classes from modules it would otherwise not import (TensorFlow's, Keras')."""

    def __init__(self, message: str, type_names: tuple[str, ...] = (), traceback_text: str = ""):
        super().__init__(message)
        self.type_names, self.traceback = tuple(type_names), traceback_text


class WorkerDied(WorkerError):
    """A ``ProcessJob``'s worker ended without a result: killed (out of memory) or crashed."""


# Exceptions of these modules cross back from a worker as themselves; others become a WorkerError.
_SAFE_ERROR_MODULES = ("builtins", "facecore.errors", __name__)
_PARENT_POLL_S = 2.0


def _error_record(exc: BaseException) -> dict:
    """What the server needs of a worker's exception, picklable whatever the exception holds."""
    record = {"types": tuple(c.__name__ for c in type(exc).__mro__ if c not in (BaseException, object)),
              "message": str(exc) if isinstance(exc, FaceCoreError) else f"{type(exc).__name__}: {exc}",
              "traceback": "".join(traceback.format_exception(exc)), "blob": None}
    if type(exc).__module__ in _SAFE_ERROR_MODULES:
        try:
            blob = pickle.dumps(exc)
            pickle.loads(blob)  # an exception whose __init__ takes other arguments may not come back
            record["blob"] = blob
        except Exception:  # noqa: BLE001 - then the WorkerError form below
            pass
    if isinstance(exc, Cancelled):
        try:
            record["partial"] = pickle.dumps(exc.partial)
        except Exception:  # noqa: BLE001 - the work stopped either way; what it kept is on disk
            record["partial"] = pickle.dumps(None)
    return record


def _error_from_record(record: dict) -> BaseException:
    if "partial" in record:
        return Cancelled(record["message"], pickle.loads(record["partial"]))
    if record["blob"] is not None:
        return pickle.loads(record["blob"])
    return WorkerError(record["message"], record["types"], record["traceback"])


def _skip_main_in_workers() -> None:
    """Spawned workers named ``facecore-*`` do not re-run the parent's ``__main__``.

    multiprocessing's spawn re-imports the parent's main module in the child; inside a Streamlit server
    that is the page script being run (Streamlit installs it as ``__main__``), which would execute the
    page in the worker. The work needs none of it: it arrives pickled, by module and name."""
    from multiprocessing import spawn

    if getattr(spawn.get_preparation_data, "facecore", False):
        return
    original = spawn.get_preparation_data

    def preparation_data(name):
        data = original(name)
        if str(name).startswith("facecore-"):
            data.pop("init_main_from_path", None)
            data.pop("init_main_from_name", None)
        return data

    preparation_data.facecore = True
    spawn.get_preparation_data = preparation_data


def _worker_main(inbox, out, cancel: Cancel, parent: int) -> None:
    """A ``ProcessJob``'s worker: read the pickled work, run it, send its progress, then one final message."""
    payload = inbox.recv_bytes()
    inbox.close()

    def orphaned() -> None:  # the server was killed: stop the work rather than train for no one
        while os.getppid() == parent:
            time.sleep(_PARENT_POLL_S)
        os._exit(1)

    threading.Thread(target=orphaned, daemon=True).start()

    def report(progress: Progress) -> None:
        try:
            out.put(("progress", pickle.dumps(progress)))
        except Exception:  # noqa: BLE001 - an extra that does not pickle: the figures still go
            out.put(("progress", pickle.dumps(Progress(progress.done, progress.total, progress.message,
                                                       progress.stage, progress.eta_s))))

    try:
        result = pickle.loads(payload)(report, cancel)
        final = ("done", pickle.dumps(result))
    except Cancelled as exc:
        final = ("cancelled", _error_record(exc))
    except BaseException as exc:  # noqa: BLE001 - sent to the server, which shows it
        traceback.print_exc()  # the server's log keeps the whole story
        final = ("failed", _error_record(exc))
    out.put(final)
    out.close()
    out.join_thread()


def _death(name: str, exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        sig = signal.Signals(-exitcode).name if -exitcode in signal.valid_signals() else f"signal {-exitcode}"
        why = (f"it was killed ({sig}), most often because the machine ran out of memory"
               if -exitcode == signal.SIGKILL else f"it crashed ({sig})")
    else:
        why = f"it exited with code {exitcode} before finishing"
    return (f"the {name} worker process stopped: {why}. Nothing of this run was saved; the app keeps running. "
            "Try again with a smaller batch or input size, or with fewer other jobs running.")


class ProcessJob(Job[T]):
    """A ``Job`` whose work runs in a spawned worker process; the same polling interface as ``Job``.

    ``work(progress, cancel)`` must pickle: a module-level function or a ``functools.partial`` of one
    (its arguments pickled too). Progress comes back through a queue (``extra`` included: the epoch
    history for a live chart), Cancel crosses as a multiprocessing Event, the result and the error come
    back when the work ends (an error as itself when it is one of ``facecore.errors``, else a
    ``WorkerError``). A worker that dies (killed when memory ran out, a crash) fails the job with a
    ``WorkerDied`` that says so. Each job's worker imports what it needs and exits when done.
    """

    def __init__(self, work: Callable[[ProgressFn, Cancel], T], name: str = "job", subject: Any = None):
        super().__init__(work, name, subject)
        self._ctx = multiprocessing.get_context("spawn")  # never fork a server with threads running
        self._cancel = Cancel(self._ctx.Event())
        self._process = None

    @property
    def pid(self) -> int | None:
        """The worker's process id (None before ``start``)."""
        return self._process.pid if self._process is not None else None

    def start(self) -> "ProcessJob[T]":
        try:
            payload = pickle.dumps(self._work)
        except Exception as exc:  # noqa: BLE001 - a programming error: say what must change
            raise TypeError(f"job {self.name!r}: its work must pickle (a module-level function or a "
                            f"functools.partial of one): {exc}") from exc
        with self._lock:
            if self._status != IDLE:
                raise RuntimeError(f"job {self.name!r} was already started")
            _skip_main_in_workers()
            out = self._ctx.Queue()
            # the work goes through a pipe of its own, sent by the watcher: a large payload (arrays) never
            # blocks this thread, and a worker that dies before reading it is seen as dead (BrokenPipeError)
            inbox, send = self._ctx.Pipe(duplex=False)
            self._process = self._ctx.Process(target=_worker_main, args=(inbox, out, self._cancel, os.getpid()),
                                              name=f"facecore-{self.name}", daemon=True)
            self._process.start()
            inbox.close()
            self._status, self.started = RUNNING, time.time()
            self._thread = threading.Thread(target=self._watch, args=(out, send, payload),
                                            name=f"facecore-{self.name}-watch", daemon=True)
            self._thread.start()
        return self

    def _next(self, out):
        """The worker's next message; None when it ended without one (died)."""
        while True:
            try:
                return out.get(timeout=0.25)
            except queue_mod.Empty:
                if not self._process.is_alive():
                    try:  # what it sent just before it ended may still be in the pipe
                        return out.get(timeout=1.0)
                    except queue_mod.Empty:
                        return None

    def _watch(self, out, send, payload: bytes) -> None:
        status, result, error = FAILED, None, None
        try:
            try:
                send.send_bytes(payload)
            except OSError:  # BrokenPipeError: the worker died before it read its work
                pass  # _next sees it dead and the job says so
            finally:
                send.close()
            while (msg := self._next(out)) is not None and msg[0] == "progress":
                self._report(pickle.loads(msg[1]))
            if msg is None:
                self._process.join(5)
                error = WorkerDied(_death(self.name, self._process.exitcode), ("WorkerDied",))
            elif msg[0] == "done":
                status, result = DONE, pickle.loads(msg[1])
            else:
                error = _error_from_record(msg[1])
                status = CANCELLED if msg[0] == "cancelled" else FAILED
        except BaseException as exc:  # noqa: BLE001 - e.g. a result that does not unpickle here
            error = exc
        finally:
            with self._lock:
                self._status, self._result, self._error, self.ended = status, result, error, time.time()
            self._process.join(10)
            out.close()


def _call(fn: Callable[..., T], args: tuple, kwargs: dict, progress: ProgressFn, cancel: Cancel) -> T:
    return fn(*args, **kwargs)


def run_in_worker(fn: Callable[..., T], *args, job_name: str = "job", **kwargs) -> T:
    """``fn(*args, **kwargs)`` in a ``ProcessJob``'s worker, waited for: its result, or its error raised
    here. For short work that reports no progress (an int8 conversion); ``fn`` and its arguments pickle."""
    job = ProcessJob(functools.partial(_call, fn, args, kwargs), job_name).start().wait()
    if job.error is not None:
        raise job.error
    return job.result


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
