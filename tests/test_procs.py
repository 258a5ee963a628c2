"""Worker processes never run the program's main script (under Streamlit: the page being run), even when
another thread swaps ``__main__`` while they start, as Streamlit's script runs do."""

import contextlib
import multiprocessing
import sys
import threading
import time
import types

import pytest

from facecore.augment import AugmentConfig, augment_dataset
from facecore.jobs.procs import without_main_script


@contextlib.contextmanager
def main_script_swapped_in(tmp_path):
    """Another thread keeps installing a ``__main__`` whose file appends to ``tmp_path/ran`` when run."""
    marker, script = tmp_path / "ran", tmp_path / "page.py"
    script.write_text(f"open({str(marker)!r}, 'a').write('x')\n")
    page = types.ModuleType("__main__")
    page.__file__ = str(script)
    stop, original = threading.Event(), sys.modules["__main__"]

    def swap():
        while not stop.is_set():
            sys.modules["__main__"] = page
            time.sleep(0.001)

    thread = threading.Thread(target=swap, daemon=True)
    thread.start()
    try:
        yield marker
    finally:
        stop.set()
        thread.join()
        sys.modules["__main__"] = original


@pytest.mark.parametrize("hidden", [False, True])
def test_a_spawned_process_runs_the_main_script_unless_started_without_it(tmp_path, hidden):
    ctx = multiprocessing.get_context("spawn")
    with main_script_swapped_in(tmp_path) as marker:
        with without_main_script() if hidden else contextlib.nullcontext():
            p = ctx.Process(target=time.sleep, args=(0,))  # a stdlib target: the worker imports nothing else
            p.start()
        p.join(60)
    assert p.exitcode == 0
    assert marker.exists() is not hidden  # without the guard the "page" ran in the worker: the test can fail


@pytest.mark.slow  # a process pool on 2 cores: about 3.5 s
def test_offline_augmentation_workers_do_not_run_the_page(tiny_dataset, tmp_path):
    with main_script_swapped_in(tmp_path) as marker:
        report = augment_dataset(tiny_dataset, AugmentConfig(), per_image=1, workers=2)
    assert report.written == report.total > 0 and not report.failed
    assert not marker.exists()
