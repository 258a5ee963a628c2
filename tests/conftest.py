import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from facecore.testing import CHROMIUM, SAMPLE, make_dataset  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "datasets"

# -- shared by the real-browser tests -------------------------------------------------------------

def chromium_or_skip():
    """Skip the test unless Debian's Chromium and playwright are installed; returns playwright.sync_api."""
    if not CHROMIUM.exists():
        pytest.skip(f"needs Debian's chromium at {CHROMIUM} (apt-get install chromium)")
    return pytest.importorskip("playwright.sync_api")


@pytest.fixture
def tiny_dataset(tmp_path):
    """12 synthetic face images + 4 no-face images, 160x120, labelme labels."""
    return make_dataset(tmp_path / "tiny")


@pytest.fixture
def workspace_env(tmp_path, monkeypatch):
    """Point the app at a temporary data/ (with a copy of the sample set) and models/ folder."""
    data = tmp_path / "data"
    (data / "workspace").mkdir(parents=True)
    shutil.copytree(SAMPLE, data / "sample")
    models = tmp_path / "models"
    models.mkdir()
    monkeypatch.setenv("FACETRACK_DATA", str(data))
    monkeypatch.setenv("FACETRACK_MODELS", str(models))
    return data, models


def run_page(path: str, timeout: int = 120):
    """Run a page (path relative to the project root) under AppTest and check it raised nothing."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / path), default_timeout=timeout)
    at.run()
    assert not at.exception, at.exception
    return at


def press_evaluate(at, timeout: float = 180):
    """Press the Evaluate page's Evaluate and let its background job finish: the next run shows the results."""
    at.button(key="eval_start").click().run()
    assert not at.exception, at.exception
    if "eval_job" in at.session_state:  # none when no chosen detector could be loaded
        assert at.session_state["eval_job"].wait(timeout).status == "done"
        at.run()
        assert not at.exception, at.exception
    return at


def texts(elements) -> str:
    """All values of AppTest elements (info, caption, markdown, ...) joined into one string."""
    return " ".join(str(e.value) for e in elements)


# -- one retry for the real-browser tests ---------------------------------------------------------
BROWSER_RERUNS = 1


def pytest_collection_modifyitems(config, items):
    """Give each ``browser`` test one retry (pytest-rerunfailures, when installed).

    Why: these tests drive Chromium, a Streamlit server and sometimes WebRTC on the same two cores as the
    rest of the suite, and under that load a run can miss a step (a rerun that Streamlit drops, a canvas
    echo that arrives late). A test that fails twice still fails CI; ``-p no:rerunfailures`` turns this
    off. Every retry is named in the summary (``-raR`` in pyproject.toml), so a test that needs it is visible.
    """
    if not config.pluginmanager.hasplugin("rerunfailures"):
        return
    for item in items:
        if item.get_closest_marker("browser") and not item.get_closest_marker("flaky"):
            item.add_marker(pytest.mark.flaky(reruns=BROWSER_RERUNS, reruns_delay=2))
