"""The active dataset sticks: across reruns after it is created or copied, across pages, and in the
page URL (``?dataset=``), so a reload, a new tab or a page URL opened directly keeps it.

AppTest checks the mechanism (``pages.common``) through the pages that use it; headless Chromium
checks create -> another page -> reload in a real browser.
"""

import pytest
from streamlit.testing.v1 import AppTest

from conftest import ROOT, chromium_or_skip

from facecore.testing import BROWSER_ARGS, CHROMIUM, make_dataset, serve_app


def _app(path="streamlit_app.py"):
    return AppTest.from_file(str(ROOT / path), default_timeout=120)


def _run(at):
    at.run()
    assert not at.exception, at.exception
    return at


def test_url_parameter_selects_the_dataset_on_a_direct_page_url(workspace_env):
    data, _ = workspace_env
    make_dataset(data / "workspace" / "mine", n_face=3, n_noface=1)
    at = _app("pages/2_Augment.py")
    at.query_params["dataset"] = "mine"
    _run(at)
    assert at.sidebar.selectbox(key="_dataset_picker").value == "mine"


def test_unknown_url_dataset_falls_back_and_the_url_follows_the_picker(workspace_env):
    data, _ = workspace_env
    make_dataset(data / "workspace" / "mine", n_face=3, n_noface=1)
    at = _app()
    at.query_params["dataset"] = "gone"
    _run(at)
    assert at.sidebar.selectbox(key="_dataset_picker").value == "mine"  # the user's own, not the sample
    assert at.query_params["dataset"] == "mine"
    at.sidebar.selectbox(key="_dataset_picker").select("sample")
    _run(at)
    assert at.query_params["dataset"] == "sample"
    at.sidebar.selectbox(key="_dataset_picker").select("mine")
    _run(at)
    assert at.query_params["dataset"] == "mine"
    _run(at)  # a plain rerun keeps it
    assert at.sidebar.selectbox(key="_dataset_picker").value == "mine"


def test_bare_url_opens_the_users_most_recent_dataset(workspace_env):
    import os

    data, _ = workspace_env
    assert _run(_app()).sidebar.selectbox(key="_dataset_picker").value == "sample"  # nothing of the user's yet
    older, newer = (make_dataset(data / "workspace" / n, n_face=2, n_noface=1) for n in ("alpha", "beta"))
    for ds, t in ((older, 2_000_000_000), (newer, 1_000_000_000)):  # alpha was worked on last
        for p in (ds.root, ds.images_dir, ds.labels_dir):
            os.utime(p, (t, t))
    at = _run(_app())  # a new tab: no session, no ?dataset=
    assert at.sidebar.selectbox(key="_dataset_picker").value == "alpha"
    assert at.query_params["dataset"] == "alpha"


def test_new_dataset_stays_active_over_reruns_and_pages(workspace_env):
    data, _ = workspace_env
    at = _run(_app())
    at.switch_page("pages/1_Collect_and_Label.py")
    _run(at)
    at.text_input[0].set_value("fresh")
    at.button(key="FormSubmitter:lab_new_dataset-Create dataset").click()
    _run(at)
    assert (data / "workspace" / "fresh" / "images").is_dir()
    for _ in range(2):  # the page reruns itself after creating; further reruns must not switch back
        _run(at)
        assert at.sidebar.selectbox(key="_dataset_picker").value == "fresh"
        assert at.query_params["dataset"] == "fresh"
    at.switch_page("pages/2_Augment.py")
    _run(at)
    assert at.sidebar.selectbox(key="_dataset_picker").value == "fresh"


def test_sidebar_links_name_home_and_carry_the_dataset(workspace_env):
    at = _run(_app())
    at.switch_page("pages/4_Evaluate.py")
    _run(at)
    links = [pl for pl in at.sidebar.get("page_link")]
    labels = [pl.proto.label for pl in links]
    assert labels[0] == "Home" and "Train" in labels and "Evaluate" in labels
    assert all("dataset=sample" in pl.proto.query_string for pl in links)


@pytest.mark.browser
def test_browser_created_dataset_survives_page_change_and_reload(tmp_path):
    chromium_or_skip()
    from playwright.sync_api import sync_playwright

    from test_browser_label import idle, wait_until

    data, models = tmp_path / "data", tmp_path / "models"
    make_dataset(data / "workspace" / "older", n_face=2, n_noface=1)
    models.mkdir()
    with serve_app(data, models, tmp_path) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=BROWSER_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.set_default_timeout(60_000)
            page.goto(f"{url}/Collect_and_Label")
            idle(page)
            page.get_by_text("New dataset").first.click()
            name = page.get_by_placeholder("my-faces")
            name.fill("brand-new")
            name.press("Enter")  # commit the text before the click: a click racing the input's own rerun loses it
            idle(page)
            created = data / "workspace" / "brand-new"
            for _ in range(3):  # a click that lands while Streamlit is still rerunning can be dropped by it
                page.get_by_role("button", name="Create dataset").click()
                idle(page)
                try:
                    wait_until(created.is_dir, 10, what="the dataset folder")
                    break
                except AssertionError:
                    continue
            idle(page)
            picker = page.locator("[data-testid=stSidebar] [data-testid=stSelectbox]")

            def picked() -> str:
                """The picker's shown value (an input's value or the box's text, by Streamlit version)."""
                return picker.evaluate("e => (e.querySelector('input') || {}).value || e.innerText")

            try:
                wait_until(lambda: "brand-new" in picked(), 30, what="the new dataset in the picker")
            except AssertionError as exc:  # say what the page showed: the CI log is all there is to go on
                raise AssertionError(f"{exc}; folder made: {created.is_dir()}; picker: {picked()!r}; url: "
                                     f"{page.url}; page:\n{page.locator('body').inner_text()[-1500:]}") from None
            page.wait_for_timeout(2000)  # the old bug switched back after about half a second
            idle(page)
            assert "brand-new" in picked(), (picked(), page.url)
            assert "dataset=brand-new" in page.url
            page.locator("[data-testid=stSidebar]").get_by_role("link", name="Train").click()
            page.get_by_role("heading", name="Train").first.wait_for()
            idle(page)
            assert "brand-new" in picked() and "dataset=brand-new" in page.url
            page.reload()
            page.get_by_role("heading", name="Train").first.wait_for()
            idle(page)
            assert "brand-new" in picked(), (picked(), page.url)
            # a direct page URL opens in the wide layout too
            page.goto(f"{url}/Evaluate?dataset=brand-new")
            idle(page)
            assert "brand-new" in picked(), (picked(), page.url)
            width = page.evaluate("document.querySelector('[data-testid=stMainBlockContainer]').offsetWidth")
            assert width > 900, f"main column {width}px wide: not the wide layout"
        finally:
            browser.close()
