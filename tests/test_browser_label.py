"""A real browser drags a face box on the Collect & Label page and the label file appears on disk.

Runs ``streamlit run streamlit_app.py`` on a free port against a temporary data folder and drives
Debian's Chromium through playwright (never a downloaded browser).
"""

import json
import shutil
import time

import pytest

from conftest import BROWSER_ARGS, CHROMIUM, SAMPLE, chromium_or_skip, serve_app

pytestmark = pytest.mark.browser


def wait_until(check, timeout: float, step: float = 0.25, what: str = "condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = check()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


@pytest.fixture
def server(tmp_path):
    """Streamlit serving the app with one user dataset of three real, unlabeled photos."""
    chromium_or_skip()
    data, models = tmp_path / "data", tmp_path / "models"
    images = data / "workspace" / "mine" / "images"
    images.mkdir(parents=True)
    (images.parent / "labels").mkdir()
    models.mkdir()
    for p in sorted((SAMPLE / "images").iterdir())[:3]:
        shutil.copy(p, images / p.name)
    with serve_app(data, models, tmp_path) as url:
        yield url, images.parent


def idle(page, timeout_ms=60_000):
    """Wait until Streamlit finished the current run (its 'Running...' status widget is gone)."""
    page.wait_for_timeout(500)
    page.wait_for_function("!document.querySelector('[data-testid=stStatusWidget]')", timeout=timeout_ms)


def test_drag_a_box_with_the_mouse_and_save(server, tmp_path):
    from playwright.sync_api import sync_playwright

    url, root = server
    first = sorted((root / "images").iterdir())[0]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=BROWSER_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1200})
            page.set_default_timeout(60_000)
            page.goto(f"{url}/Collect_and_Label")
            page.get_by_text(first.name).first.wait_for()
            canvas = page.locator("canvas").last
            canvas.wait_for()
            idle(page)
            page.screenshot(path=str(tmp_path / "before.png"))
            numbers = page.locator("input[type=number]")

            box = canvas.bounding_box()
            scale = box["width"] / 640  # the sample photos are 640x480
            start, end = (180, 90), (330, 300)  # canvas pixels
            for attempt in range(3):  # a drag that lands during a rerun is lost: try again
                x0, y0 = box["x"] + start[0], box["y"] + start[1]
                page.mouse.move(x0, y0)
                page.mouse.down()
                for k in range(1, 16):
                    page.mouse.move(x0 + (end[0] - start[0]) * k / 15, y0 + (end[1] - start[1]) * k / 15)
                page.mouse.up()
                try:
                    page.wait_for_function(
                        "() => { const n = document.querySelectorAll('input[type=number]');"
                        " return n.length === 4 && [...n].every(e => e.value !== ''); }", timeout=20_000)
                    break
                except Exception:
                    if attempt == 2:
                        raise
                    idle(page)
            idle(page)
            typed = [float(numbers.nth(i).input_value()) for i in range(4)]
            page.screenshot(path=str(tmp_path / "drawn.png"))
            page.get_by_role("button", name="Save box").click()
            label_file = root / "labels" / f"{first.stem}.json"
            wait_until(label_file.exists, 30, what=f"{label_file.name} to be written")
            idle(page)
            page.screenshot(path=str(tmp_path / "saved.png"))
            assert "1 of 3 labeled" in page.inner_text("body")
        finally:
            browser.close()

    doc = json.loads(label_file.read_text())
    (a, b), = [s["points"] for s in doc["shapes"]]
    expected = [start[0] / scale, start[1] / scale, end[0] / scale, end[1] / scale]
    assert [a[0], a[1], b[0], b[1]] == pytest.approx(expected, abs=4)  # within a few pixels of the drag
    assert [a[0], a[1], b[0], b[1]] == pytest.approx(typed, abs=0.11)  # what the inputs showed is what was saved
    assert (doc["imageWidth"], doc["imageHeight"]) == (640, 480)
