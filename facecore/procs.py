"""Worker processes that never run the program's main script.

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
import threading

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
