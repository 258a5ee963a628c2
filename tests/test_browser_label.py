"""A real browser on the Collect & Label page: drags face boxes (several per photo, moved in edit mode),
keyboard shortcuts, proposals drawn in orange next to a saved box; the label files on disk are checked.

Runs ``streamlit run streamlit_app.py`` on a free port against a temporary data folder and drives
Debian's Chromium through playwright (never a downloaded browser).
"""

import contextlib
import json
import shutil
import time

import pytest

from conftest import SAMPLE, chromium_or_skip

from facecore.testing import BROWSER_ARGS, CHROMIUM, serve_app

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


@contextlib.contextmanager
def label_page(url, first_name: str, height: int = 1200):
    """Chromium on the Collect & Label page, once ``first_name`` and the canvas are shown: ``(page, canvas)``."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=BROWSER_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": height})
            page.set_default_timeout(60_000)
            page.goto(f"{url}/Collect_and_Label")
            page.get_by_text(first_name).first.wait_for()
            canvas = page.locator("canvas").last
            canvas.wait_for()
            yield page, canvas
        finally:
            browser.close()


def test_drag_a_box_with_the_mouse_and_save(server, tmp_path):
    url, root = server
    first = sorted((root / "images").iterdir())[0]
    with label_page(url, first.name, 1200) as (page, canvas):
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
        page.get_by_role("button", name="Save boxes").click()
        label_file = root / "labels" / f"{first.stem}.json"
        wait_until(label_file.exists, 30, what=f"{label_file.name} to be written")
        idle(page)
        page.screenshot(path=str(tmp_path / "saved.png"))
        assert "1 of 3 labeled" in page.inner_text("body")

    doc = json.loads(label_file.read_text())
    (a, b), = [s["points"] for s in doc["shapes"]]
    expected = [start[0] / scale, start[1] / scale, end[0] / scale, end[1] / scale]
    assert [a[0], a[1], b[0], b[1]] == pytest.approx(expected, abs=4)  # within a few pixels of the drag
    assert [a[0], a[1], b[0], b[1]] == pytest.approx(typed, abs=0.11)  # what the inputs showed is what was saved
    assert (doc["imageWidth"], doc["imageHeight"]) == (640, 480)


def drag(page, canvas, start, end, steps=15):
    """A mouse drag between two points in canvas pixels."""
    box = canvas.bounding_box()
    x0, y0 = box["x"] + start[0], box["y"] + start[1]
    page.mouse.move(x0, y0)
    page.mouse.down()
    for k in range(1, steps + 1):
        page.mouse.move(x0 + (end[0] - start[0]) * k / steps, y0 + (end[1] - start[1]) * k / steps)
    page.mouse.up()


def box_count(page) -> int:
    """How many boxes the page's box selector lists (0 when there is none)."""
    return page.evaluate("() => { const g = [...document.querySelectorAll('[data-testid=stButtonGroup]')]"
                         ".find(e => (e.closest('[data-testid=stElementContainer]')?.innerText || '').includes('Box'));"
                         " return g ? [...g.querySelectorAll('button')].filter(b => b.innerText.trim()).length : 0; }")


def draw_until(page, canvas, start, end, n, tmp_path):
    """Drag a box and wait until the page lists ``n`` boxes (a drag landing during a rerun is lost: retry)."""
    for attempt in range(3):
        idle(page)
        drag(page, canvas, start, end)
        try:
            wait_until(lambda: box_count(page) >= n, 20, what=f"{n} boxes listed")
            return
        except AssertionError:
            page.screenshot(path=str(tmp_path / f"draw_{n}_{attempt}.png"))
            if attempt == 2:
                raise


def colour_pixels(png: bytes, rgb, tol=40) -> int:
    import cv2
    import numpy as np
    img = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1].astype(int)
    return int((np.abs(img - np.array(rgb)).max(axis=2) < tol).sum())


def test_several_boxes_move_one_and_keyboard_shortcuts(server, tmp_path):
    url, root = server
    images = sorted((root / "images").iterdir())
    with label_page(url, images[0].name, 1400) as (page, canvas):
        draw_until(page, canvas, (40, 40), (160, 200), 1, tmp_path)
        draw_until(page, canvas, (400, 60), (560, 260), 2, tmp_path)
        draw_until(page, canvas, (250, 330), (350, 450), 3, tmp_path)
        idle(page)
        # Edit mode (the toolbar's pencil): drag box 1 by its middle 50 px to the right.
        edit = page.locator(".dc-toolbar button[title='Edit'], .dc-toolbar button[aria-label='Edit']").first
        s = canvas.bounding_box()["width"] / 640  # display pixels per image pixel
        first_x = page.locator("input[type=number]").first

        def moved():
            return abs(float(first_x.input_value() or -99) - 90 / s) < 6

        for attempt in range(3):  # a drag landing while the canvas reloads its boxes is lost: try again
            idle(page)
            if moved():
                break
            if edit.get_attribute("aria-pressed") != "true":
                edit.click()
            drag(page, canvas, (100, 120), (150, 120))
            try:
                wait_until(moved, 10, what="box 1 moved and selected")
                break
            except AssertionError:
                if attempt == 2:
                    raise
        idle(page)
        # Still in edit mode: click box 3 to select it, then the toolbar's bin deletes it.
        box = canvas.bounding_box()
        page.mouse.click(box["x"] + 300, box["y"] + 390)
        page.locator(".dc-toolbar button[title='Delete selected'], "
                     ".dc-toolbar button[aria-label='Delete selected']").first.click()
        wait_until(lambda: box_count(page) == 2, 20, what="box 3 deleted")
        idle(page)
        page.screenshot(path=str(tmp_path / "two_boxes.png"))
        page.evaluate("document.activeElement && document.activeElement.blur()")  # no field has the keys
        page.keyboard.press("s")  # Save boxes
        label0 = root / "labels" / f"{images[0].stem}.json"
        wait_until(label0.exists, 30, what="S to save the boxes")
        idle(page)
        # Auto-advance went to the next unlabeled photo: N marks it no-face, A goes back.
        page.get_by_text(images[1].name).first.wait_for()
        page.keyboard.press("n")
        label1 = root / "labels" / f"{images[1].stem}.json"
        wait_until(label1.exists, 30, what="N to mark no face")
        idle(page)
        for back in (images[1], images[0]):
            page.keyboard.press("a")
            page.get_by_text(f"{back.name} · 640x480").first.wait_for()
            idle(page)
        # Shortcuts do nothing while typing in a field.
        page.locator("input[type=number]").first.click()
        page.wait_for_function("document.activeElement && document.activeElement.tagName === 'INPUT'")
        page.keyboard.press("n")
        idle(page)
        page.wait_for_timeout(1000)
        page.screenshot(path=str(tmp_path / "typing.png"))
    doc = json.loads(label0.read_text())
    boxes = [s["points"] for s in doc["shapes"]]
    assert len(boxes) == 2  # both faces, none dropped
    xs = sorted(b[0][0] for b in boxes)
    assert xs[0] == pytest.approx((40 + 50) / s, abs=6)  # box 1 was moved 50 canvas px right
    assert xs[1] == pytest.approx(400 / s, abs=6)
    assert json.loads(label1.read_text())["shapes"] == []
    assert len(json.loads(label0.read_text())["shapes"]) == 2  # 'n' typed in a field did not mark it no-face


def test_propose_on_a_labeled_photo_draws_orange_and_keeps_green(server, tmp_path):
    url, root = server
    first = sorted((root / "images").iterdir())[0]
    label = root / "labels" / f"{first.stem}.json"
    label.write_text(json.dumps({"imageWidth": 640, "imageHeight": 480, "shapes": [
        {"label": "face", "shape_type": "rectangle", "points": [[10, 10], [120, 140]]}]}))
    with label_page(url, first.name, 1300) as (page, canvas):
        idle(page)
        area = page.locator(".dc-container").first
        before = area.screenshot()
        for attempt in range(2):  # proposing again is harmless: a face already boxed is not added twice
            page.get_by_role("button", name="Propose boxes").click()
            try:
                page.get_by_text("orange box(es)").first.wait_for(timeout=30_000)
                break
            except Exception:
                if attempt == 1:
                    raise
                idle(page)
        idle(page)
        # The canvas loads the new boxes after the run and may paint them over more than one frame: wait
        # for a frame with both the orange proposal and the green saved box (a box left blue or gone fails).
        green, orange = (0, 200, 0), (255, 140, 0)

        def both_painted():
            png = area.screenshot()
            (tmp_path / "proposed.png").write_bytes(png)  # the last frame seen, to look at if this fails
            return png if colour_pixels(png, orange) > 300 and colour_pixels(png, green) > 300 else None

        after = wait_until(both_painted, 45, step=0.5, what="the orange proposal beside the green saved box")
    assert colour_pixels(before, orange) < 50 and colour_pixels(before, green) > 300
    assert colour_pixels(after, orange) > 300  # the proposal is drawn, in orange
    assert colour_pixels(after, green) > 300  # the saved box keeps its colour
    assert len(json.loads(label.read_text())["shapes"]) == 1  # nothing saved by proposing
