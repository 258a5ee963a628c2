"""Worker processes: ``ProcessJob`` runs long work in one, and no worker runs the program's main script.

``ProcessJob`` is a ``facecore.jobs.thread.Job`` whose work runs in a spawned worker process (work that imports
TensorFlow: its gigabyte stays out of the server and goes when the work ends, and a worker that runs out of
memory or crashes fails its job, not the server); ``run_in_worker`` waits for one.

A process started with ``spawn`` or ``forkserver`` first re-imports the parent's ``__main__`` (as
``__mp_main__``) when it has a file or a module name. Under Streamlit, ``__main__`` is the page script
being run, and Streamlit swaps it in on every script run, from any session's thread, at any moment.
A worker started then ran the page again, outside Streamlit: about 150 "missing ScriptRunContext"
warnings and "to view a Streamlit app on a browser..." in the server's terminal per augmentation run,
and a page that needs the browser could kill the worker. Hiding ``__main__`` while the workers start
could not work: another session's run put it back in between.

``without_main_script()`` marks the threads that start facecore's workers: the preparation data of
every process started from such a thread leaves the main script out (facecore's workers run functions
of facecore modules; they need nothing from it). Other threads' processes are untouched.
"""

from __future__ import annotations

import contextlib
import functools
import multiprocessing
import os
import pickle
import queue as queue_mod
import signal
import threading
import time
import traceback
from typing import Any, Callable, TypeVar

from ..errors import Cancelled, FaceCoreError
from .progress import Cancel, Progress, ProgressFn
from .thread import CANCELLED, DONE, FAILED, IDLE, RUNNING, Job

T = TypeVar("T")

_MAIN_KEYS = ("init_main_from_path", "init_main_from_name")
_STATE = threading.local()
_INSTALL_LOCK = threading.Lock()


def _install() -> None:
    """Wrap ``multiprocessing.spawn.get_preparation_data`` once (the popen modules look it up at each start)."""
    from multiprocessing import spawn

    with _INSTALL_LOCK:
        original = spawn.get_preparation_data
        if getattr(original, "facecore_wrapped", False):
            return

        def get_preparation_data(name):
            data = original(name)
            if getattr(_STATE, "depth", 0):
                for key in _MAIN_KEYS:
                    data.pop(key, None)
            return data

        get_preparation_data.facecore_wrapped = True
        spawn.get_preparation_data = get_preparation_data


@contextlib.contextmanager
def without_main_script():
    """Processes started by this thread inside the block (``spawn``/``forkserver``: a pool's workers, a
    forkserver) do not import the program's main script."""
    _install()
    _STATE.depth = getattr(_STATE, "depth", 0) + 1
    try:
        yield
    finally:
        _STATE.depth -= 1


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
            out = self._ctx.Queue()
            # the work goes through a pipe of its own, sent by the watcher: a large payload (arrays) never
            # blocks this thread, and a worker that dies before reading it is seen as dead (BrokenPipeError)
            inbox, send = self._ctx.Pipe(duplex=False)
            self._process = self._ctx.Process(target=_worker_main, args=(inbox, out, self._cancel, os.getpid()),
                                              name=f"facecore-{self.name}", daemon=True)
            with without_main_script():  # under Streamlit, __main__ is the page: the worker must not run it
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
