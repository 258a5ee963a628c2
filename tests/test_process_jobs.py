"""facecore.jobs.ProcessJob: work in a spawned worker process behind Job's polling interface (progress,
cancel, errors, one job at a time), a worker that dies, and the Train page's training leaving no
TensorFlow in the server's process."""

import functools
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from facecore.errors import BusyError, Cancelled, DatasetError
from facecore.jobs import JobSlot, Progress, ProcessJob, WorkerDied, WorkerError, run_in_worker

pytestmark = pytest.mark.slow  # every test spawns a Python (seconds on a busy machine)


class OddError(Exception):
    """An exception of a module the server would not unpickle from (like TensorFlow's)."""


def steps(progress, cancel, n=3, pause=0.05):
    for i in range(n):
        progress(Progress(i + 1, n, f"step {i + 1}", "epoch", extra={"history": [{"epoch": e} for e in range(i + 1)]}))
        time.sleep(pause)
        cancel.check("stopped here", partial=list(range(i + 1)))
    return {"pid": os.getpid(), "tf": "tensorflow" in sys.modules}


def fail(kind, progress, cancel):
    if kind == "dataset":
        raise DatasetError("no photos: add some")
    if kind == "odd":
        raise OddError("from a module the server does not load")
    raise ValueError("a bug")


def sleep_forever(progress, cancel):
    progress(Progress(0, 1, "sleeping"))
    time.sleep(120)


def wait_for(cond, timeout=300.0):
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.05)


def test_runs_in_another_process_reports_progress_and_returns():
    job = ProcessJob(steps, "demo", subject="s").start()
    assert job.running and job.pid not in (None, os.getpid())
    assert job.wait(120).status == "done", job.error_message
    assert job.result["pid"] == job.pid != os.getpid()
    # the last progress arrived with its extras (a live chart's per-epoch data)
    assert job.progress.done == 3 and job.progress.extra["history"] == [{"epoch": 0}, {"epoch": 1}, {"epoch": 2}]
    assert job.subject == "s" and job.error is None and not job.cancel()


def test_cancel_crosses_into_the_worker_and_partial_comes_back():
    job = ProcessJob(functools.partial(steps, n=10_000, pause=0.01), "demo").start()
    wait_for(lambda: job.progress.done >= 2)
    assert job.cancel() and job.cancelling
    assert job.wait(300).status == "cancelled"
    assert isinstance(job.error, Cancelled) and job.error_message == "stopped here"
    assert job.partial == list(range(int(job.partial[-1]) + 1)) and len(job.partial) >= 2


@pytest.mark.parametrize("kind, cls, message", [
    ("dataset", DatasetError, "no photos: add some"),  # facecore's own errors come back as themselves
    ("value", ValueError, "ValueError: a bug"),
    ("odd", WorkerError, "OddError: from a module the server does not load"),
])
def test_errors_come_back_with_their_message(kind, cls, message):
    job = ProcessJob(functools.partial(fail, kind), "demo").start().wait(120)
    assert job.status == "failed" and type(job.error) is cls and job.error_message == message
    if cls is WorkerError:
        assert job.error.type_names[0] == "OddError" and "raise OddError" in job.error.traceback
    with pytest.raises(cls):
        run_in_worker(fail, kind, None, None)


def test_a_killed_worker_fails_its_job_and_frees_the_slot():
    slot = JobSlot()
    job = slot.start(ProcessJob(sleep_forever, "train"))
    wait_for(lambda: job.progress.message == "sleeping")
    with pytest.raises(BusyError):  # one at a time, across the process boundary too
        slot.start(ProcessJob(steps, "train"))
    os.kill(job.pid, signal.SIGKILL)  # what the kernel's out-of-memory killer does
    assert job.wait(300).status == "failed" and isinstance(job.error, WorkerDied)
    assert "killed (SIGKILL)" in job.error_message and "ran out of memory" in job.error_message
    assert slot.start(ProcessJob(steps, "train")).wait(120).status == "done"


def test_run_in_worker_returns_what_the_function_returns():
    assert run_in_worker(divmod, 7, 2, job_name="divide") == (3, 1)


def total(array):
    return float(array.sum())


def test_a_large_payload_and_a_page_script_as_main(tmp_path, monkeypatch):
    """Work holding tens of MB (a calibration sample) goes through; a Streamlit server's ``__main__`` (the
    page script being run) is not executed again in the worker."""
    import types

    import numpy as np

    marker = tmp_path / "page-ran"
    page = tmp_path / "page.py"
    page.write_text(f"open({str(marker)!r}, 'w').close()\n")
    main = types.ModuleType("__main__")
    main.__file__ = str(page)
    monkeypatch.setitem(sys.modules, "__main__", main)
    big = np.ones((40, 256, 256, 3), np.float32)  # 31 MB: far over a pipe's buffer
    assert run_in_worker(total, big, job_name="big") == big.size
    assert not marker.exists()


def test_work_that_does_not_pickle_is_refused_before_starting():
    job = ProcessJob(lambda progress, cancel: 1, "demo")
    with pytest.raises(TypeError, match="must pickle"):
        job.start()
    assert job.status == "idle"


def test_training_from_the_train_page_leaves_no_tensorflow_in_the_server(workspace_env):
    """The Train page under AppTest in a fresh Python (this test process may hold TensorFlow from
    other tests): a real training runs, and that Python never imports or maps TensorFlow."""
    script = textwrap.dedent("""
        import sys
        from streamlit.testing.v1 import AppTest
        from facecore.testing import make_dataset
        from facecore.datasets.workspace import Workspace
        from facecore.train import JOB

        make_dataset(Workspace.from_env().data_root / "workspace" / "tiny", n_face=8, n_noface=2, size=(64, 48))
        at = AppTest.from_file("pages/3_Train.py", default_timeout=120)
        at.run()
        at.sidebar.selectbox[0].select("tiny").run()
        at.selectbox(key="train_backbone").select("tinycnn").run()
        at.number_input(key="train_size_tinycnn").set_value(32).run()
        at.number_input(key="train_epochs_True").set_value(1).run()
        at.button(key="train_start").click().run()
        job = JOB.wait(600)
        assert job is not None and job.status == "done", (job and job.status, job and job.error_message, at.error)
        at.run()
        assert not at.exception, at.exception
        assert "tiny-tinycnn" in " ".join(s.value for s in at.success)
        tf = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "tf_keras"))
        maps = [line for line in open("/proc/self/maps") if "libtensorflow" in line]
        print("TF MODULES", tf[:5], "MAPPED", maps[:2])
        assert not tf and not maps
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=os.path.dirname(os.path.dirname(__file__)),
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
