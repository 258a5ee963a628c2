"""The README's layout (a virtualenv in ``.venv`` inside the project, ``streamlit run`` from it) idles.

Streamlit watches the main script's folder recursively; with watchdog's inotify observer that includes
``.venv``, whose thousands of files the server's own imports open, so the kernel's event queue
overflows and every overflow re-walks the whole tree (seen: a core busy for as long as the server
ran). ``.streamlit/config.toml`` must keep such a server quiet: this test runs the real server with the
python of a real virtualenv inside a project folder, opens one page in Chromium and measures.

``python tests/test_idle_server.py [--watcher watchdog|poll|none]`` prints the same figures.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, SAMPLE, chromium_or_skip

from facecore.testing import BROWSER_ARGS, CHROMIUM, serve_app

pytestmark = pytest.mark.browser

OVERFLOW = "Inotify queue overflowed"
CPU_WINDOW_S = 10.0
MAX_CORE_SHARE = 0.10


def _venv_python(project: Path) -> Path | None:
    py = project / ".venv" / "bin" / "python"
    if not py.exists():
        return None
    ok = subprocess.run([str(py), "-c", "import streamlit, facecore"], cwd=project, capture_output=True)
    return py if ok.returncode == 0 else None


def project_with_inner_venv(tmp_path: Path) -> tuple[Path, Path]:
    """(project folder, python of a virtualenv in its ``.venv``).

    The project itself when it has a working ``.venv`` (the README's layout); otherwise (CI keeps its
    venv elsewhere) a copy of the app with a fresh ``.venv`` whose site-packages are hard links to this
    interpreter's, so the imports open files inside the watched folder as they would in the real layout.
    """
    py = _venv_python(ROOT)
    if py is not None:
        return ROOT, py
    proj = tmp_path / "project"
    proj.mkdir()
    for name in ("streamlit_app.py", "pages", "facecore", ".streamlit"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, proj / name)
    venv = proj / ".venv"
    made = subprocess.run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", "--without-pip",
                           "--system-site-packages", str(venv)], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot create a virtualenv inside a project copy: {made.stderr.strip()[-300:]}")
    site = Path(next(p for p in sys.path if p.endswith("site-packages") and p.startswith(sys.prefix)))
    inner = venv / "lib" / site.parent.name / "site-packages"
    shutil.rmtree(inner, ignore_errors=True)
    linked = subprocess.run(["cp", "-al", str(site), str(inner)], capture_output=True, text=True)
    if linked.returncode != 0:
        pytest.skip(f"cannot hard-link this interpreter's packages into the project copy's .venv "
                    f"({linked.stderr.strip()[-200:]}); run the test from a .venv inside the project")
    py = _venv_python(proj)
    if py is None:
        pytest.skip("the virtualenv made inside the project copy cannot import streamlit and facecore")
    return proj, py


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure_idle(tmp_path: Path, watcher: str | None = None) -> dict:
    """Serve the app from a project with an inner .venv, open the home page, then measure ``CPU_WINDOW_S``
    seconds of idle. ``watcher`` overrides ``server.fileWatcherType`` (None: the project's config)."""
    from playwright.sync_api import sync_playwright

    project, python = project_with_inner_venv(tmp_path)
    data, models = tmp_path / "data", tmp_path / "models"
    (data / "workspace").mkdir(parents=True)
    shutil.copytree(SAMPLE, data / "sample")
    models.mkdir()
    with serve_app(data, models, tmp_path, python=str(python), cwd=project, file_watcher=watcher,
                   with_process=True) as (url, proc):
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=BROWSER_ARGS)
            try:
                page = browser.new_page()
                page.set_default_timeout(90_000)
                page.goto(url)
                page.get_by_text("Active dataset").first.wait_for()
                page.wait_for_function("!document.querySelector('[data-testid=stStatusWidget]')")
                time.sleep(2.0)  # let the page's last messages settle
                c0, t0 = cpu_seconds(proc.pid), time.monotonic()
                time.sleep(CPU_WINDOW_S)
                share = (cpu_seconds(proc.pid) - c0) / (time.monotonic() - t0)
            finally:
                browser.close()
    log = (tmp_path / "streamlit.log").read_text(errors="replace")
    return {"project": str(project), "python": str(python), "core_share": share,
            "overflows": log.count(OVERFLOW), "log": log}


def test_server_in_project_with_inner_venv_idles_quietly(tmp_path):
    chromium_or_skip()
    r = measure_idle(tmp_path)
    assert r["overflows"] == 0, f"{r['overflows']} inotify overflows:\n{r['log'][-2000:]}"
    assert r["core_share"] < MAX_CORE_SHARE, \
        f"idle server used {r['core_share']:.0%} of a core over {CPU_WINDOW_S:.0f} s ({r['python']})"


if __name__ == "__main__":
    import argparse
    import tempfile

    ap = argparse.ArgumentParser(description="idle CPU and inotify overflows of the served app")
    ap.add_argument("--watcher", choices=["auto", "watchdog", "poll", "none"], default=None,
                    help="override server.fileWatcherType (default: .streamlit/config.toml)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        r = measure_idle(Path(d), args.watcher)
    print(f"watcher {args.watcher or 'config'}: {r['core_share']:.1%} of a core idle over {CPU_WINDOW_S:.0f} s, "
          f"{r['overflows']} inotify overflow line(s); python {r['python']}")
