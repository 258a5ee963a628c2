"""A training started from the Train page in a real server, with the page open and refreshing its
progress every second, costs what the training costs: Streamlit's per-run cleanup must not clear the
Keras session under it (it cleared TensorFlow's kernel cache every second: 160+ CPU seconds for a
2-epoch tinycnn run that needs about 15), and the server log stays quiet."""

import os
import time
from pathlib import Path

import pytest

from conftest import chromium_or_skip

from facecore.testing import BROWSER_ARGS, CHROMIUM, make_dataset, serve_app

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_training_with_the_page_open_costs_what_training_costs(tmp_path):
    chromium_or_skip()
    from playwright.sync_api import sync_playwright

    from test_browser_label import idle

    data, models = tmp_path / "data", tmp_path / "models"
    make_dataset(data / "workspace" / "tiny", n_face=60, n_noface=20, size=(160, 120))
    models.mkdir()
    # file_watcher=None: the project's config (the file watcher is on, as for users)
    with serve_app(data, models, tmp_path, file_watcher=None, with_process=True) as (url, proc), \
            sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=BROWSER_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1200})
            page.set_default_timeout(120_000)
            page.goto(f"{url}/Train?dataset=tiny")
            page.get_by_role("button", name="Start training").wait_for()
            idle(page)
            page.locator("[data-testid=stSelectbox]").filter(has_text="Model").first.click()
            page.get_by_role("option", name="tinycnn").click()
            idle(page)
            epochs = page.get_by_role("spinbutton", name="Epochs", exact=True)
            epochs.fill("3")
            epochs.press("Enter")
            idle(page)
            c0, t0 = cpu_seconds(proc.pid), time.monotonic()
            page.get_by_role("button", name="Start training").click()
            page.get_by_text("Done in").wait_for(timeout=600_000)
            cpu, wall = cpu_seconds(proc.pid) - c0, time.monotonic() - t0
            # plotly draws the legend after Streamlit shows the chart: give it a moment on a busy machine
            figure, chart, end = page.locator("[data-testid=stPlotlyChart]").first, "", time.monotonic() + 30
            while not ("train" in chart and "val" in chart) and time.monotonic() < end:
                time.sleep(0.5)
                chart = figure.inner_text()
        finally:
            browser.close()
    log = (tmp_path / "streamlit.log").read_text(errors="replace")
    print(f"server: {cpu:.1f} CPU s, {wall:.1f} s wall for the training")
    assert cpu < 60, f"the server used {cpu:.0f} CPU s ({wall:.0f} s) for a 3-epoch tinycnn run on 80 photos"
    assert "train" in chart and "val" in chart  # one legend entry each
    assert "missing ScriptRunContext" not in log and "Traceback" not in log, log[-3000:]
    assert list(models.glob("*/meta.json"))
