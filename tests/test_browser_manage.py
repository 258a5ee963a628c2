"""Home -> Manage in Chromium: after deleting a model (a rerun with a message) the Models tab stays open,
and the rename field's accessible name has no raw markdown."""

import shutil

import pytest

from conftest import SAMPLE, chromium_or_skip
from facecore.testing import BROWSER_ARGS, CHROMIUM, serve_app
from test_default_detector import save_style_model

pytestmark = pytest.mark.browser


def test_manage_tabs_stay_where_the_user_acted(tmp_path):
    chromium_or_skip()
    from playwright.sync_api import sync_playwright

    data, models = tmp_path / "data", tmp_path / "models"
    models.mkdir()
    shutil.copytree(SAMPLE, data / "workspace" / "mine")
    save_style_model(models, "keep", "2026-01-01T00:00:00")
    save_style_model(models, "gone", "2026-02-01T00:00:00")
    with serve_app(data, models, tmp_path) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=BROWSER_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 2000})
            page.goto(f"{url}/?dataset=mine", timeout=120_000)
            page.get_by_role("textbox", name="Rename mine to").wait_for(timeout=120_000)
            assert page.get_by_role("textbox", name="Rename **mine** to").count() == 0
            page.get_by_role("tab", name="Models").click()
            page.get_by_role("button", name="Delete gone...").click()
            page.get_by_role("button", name="Yes, delete").click()
            page.get_by_text("Deleted model gone.").wait_for(timeout=60_000)
            assert page.get_by_role("tab", name="Models").get_attribute("aria-selected") == "true"
            page.get_by_role("button", name="Delete keep...").wait_for(timeout=10_000)
            assert not (models / "gone").exists()
        finally:
            browser.close()
