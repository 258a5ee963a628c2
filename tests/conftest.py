import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from synth import make_dataset  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "sample"
SHARED = ROOT.parent / "shared" / "datasets"

# -- shared by the real-browser tests -------------------------------------------------------------

CHROMIUM = Path("/usr/bin/chromium")  # Debian's Chromium, never a downloaded browser
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]


def chromium_or_skip():
    """Skip the test unless Debian's Chromium and playwright are installed; returns playwright.sync_api."""
    if not CHROMIUM.exists():
        pytest.skip(f"needs Debian's chromium at {CHROMIUM} (apt-get install chromium)")
    return pytest.importorskip("playwright.sync_api")


@contextlib.contextmanager
def serve_app(data_root, models_root, tmp_path, timeout: float = 60, drop_ice_servers: bool = False,
              python: str | None = None, cwd=None, file_watcher: str | None = "none", with_process: bool = False):
    """``streamlit run streamlit_app.py`` on a free loopback port against ``data_root``/``models_root``.

    Yields the base URL once /_stcore/health answers; the server's output goes to
    ``tmp_path / "streamlit.log"``. With ``drop_ice_servers`` any FACETRACK_* STUN/TURN/ICE settings
    are left out of the server's environment (WebRTC over loopback needs none). ``python`` / ``cwd``: the
    interpreter and project folder to serve from (default: this one, the repository); ``file_watcher``
    sets ``server.fileWatcherType`` (None: whatever ``.streamlit/config.toml`` says); ``with_process``
    yields ``(url, Popen)`` instead of the URL.
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "FACETRACK_DATA": str(data_root), "FACETRACK_MODELS": str(models_root),
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    if drop_ice_servers:
        for k in [k for k in env if k.startswith("FACETRACK_") and ("TURN" in k or "STUN" in k or "ICE" in k)]:
            env.pop(k)
    log_path = tmp_path / "streamlit.log"
    log = open(log_path, "wb")
    proc = subprocess.Popen(
        [python or sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false",
         *(["--server.fileWatcherType", file_watcher] if file_watcher else [])],
        cwd=cwd or ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        end = time.monotonic() + timeout
        while True:
            assert proc.poll() is None, log_path.read_text(errors="replace")
            try:
                with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < end, f"streamlit did not answer at {url} within {timeout:.0f} s"
            time.sleep(0.3)
        yield (url, proc) if with_process else url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


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


def texts(elements) -> str:
    """All values of AppTest elements (info, caption, markdown, ...) joined into one string."""
    return " ".join(str(e.value) for e in elements)
