import shutil
import time

import pytest
from streamlit.testing.v1 import AppTest

from conftest import ROOT, SAMPLE, chromium_or_skip

from facecore.testing import BROWSER_ARGS, CHROMIUM, make_dataset, serve_app
from facecore import Dataset
from pages.common import AUGMENT_CONFIG_KEY

PAGE = str(ROOT / "pages" / "2_Augment.py")


def _run(at=None):
    at = at or AppTest.from_file(PAGE, default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    return at


def _captions(at) -> list[str]:
    return [img.caption for el in at.get("image") for img in el.proto.imgs]


def _metrics(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def _button(at, label):
    return next(b for b in at.button if b.label == label)


def test_page_previews_the_sample_and_rerolls(workspace_env):
    at = _run()
    assert _metrics(at) == {"Photos": "106", "Train-split photos": "74", "Augmented copies": "0",
                            "Training images": "74"}
    assert at.slider(key="aug_vflip_p").value == 0.0  # no upside-down faces by default
    assert at.slider(key="aug_hflip_p").value == 0.5
    caps = _captions(at)
    assert len(caps) == 9 and caps[0] == "original 640x480"
    assert all(c.endswith("480x360") for c in caps[1:])  # 0.75 crop of 640x480
    before = [img.url for el in at.get("image") for img in el.proto.imgs]
    _button(at, "🎲 Re-roll").click()
    _run(at)
    assert at.session_state["aug_roll"] == 1
    after = [img.url for el in at.get("image") for img in el.proto.imgs]
    assert after[0] == before[0] and after[1:] != before[1:]
    # crop off: copies keep the photo's size
    at.toggle(key="aug_crop_on").set_value(False)
    _run(at)
    assert all(c.endswith("640x480") for c in _captions(at))
    assert at.session_state[AUGMENT_CONFIG_KEY].crop_p == 0.0
    at.selectbox(key="aug_preview_n").select(4)
    _run(at)
    assert len(_captions(at)) == 5
    _button(at, "Reset to the tutorial's settings").click()
    _run(at)
    assert at.toggle(key="aug_crop_on").value is True and at.session_state[AUGMENT_CONFIG_KEY].crop_p == 1.0


def test_page_runs_offline_augmentation_and_deletes_copies(workspace_env):
    data, _ = workspace_env
    ds = make_dataset(data / "workspace" / "mine", n_face=6, n_noface=2, size=(96, 72))
    at = _run()
    at.sidebar.selectbox[0].select("mine")
    _run(at)
    n_train = len(ds.split().train)
    assert _metrics(at)["Train-split photos"] == str(n_train)
    at.number_input(key="aug_per_image").set_value(3)
    _run(at)
    _button(at, "Augment the train split").click()
    _run(at)
    deadline = time.time() + 90
    while not at.success and time.time() < deadline:
        time.sleep(0.5)
        _run(at)
    assert at.success, "augmentation did not finish"
    assert f"Done: {3 * n_train} of {3 * n_train} copies ready" in at.success[0].value
    m = _metrics(at)
    assert m["Augmented copies"] == str(3 * n_train) and m["Training images"] == str(4 * n_train)
    assert len(ds.augmented.items()) == 3 * n_train
    _button(at, "Delete augmented copies").click()
    _run(at)
    assert "Deleted" in at.success[0].value and _metrics(at)["Augmented copies"] == "0"
    assert ds.augmented.items() == [] and len(ds.items()) == 8


def test_page_with_empty_dataset(workspace_env):
    data, _ = workspace_env
    (data / "workspace" / "blank" / "images").mkdir(parents=True)
    at = _run()
    at.sidebar.selectbox[0].select("blank")
    _run(at)
    assert "no photos yet" in " ".join(i.value for i in at.info)
    assert _button(at, "Augment the train split").disabled


# -- a real browser: the progress bar polls a background job and Cancel stops it ---------------

@pytest.fixture
def served_sample(tmp_path):
    """``streamlit run streamlit_app.py`` on a free port, with a copy of the sample set as the only dataset."""
    chromium_or_skip()
    data, models = tmp_path / "data", tmp_path / "models"
    shutil.copytree(SAMPLE, data / "sample", ignore=shutil.ignore_patterns("augmented"))
    models.mkdir()
    with serve_app(data, models, tmp_path) as url:
        yield url, Dataset(data / "sample")


def _wait(check, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.mark.browser
def test_browser_progress_cancel_and_delete(served_sample):
    from playwright.sync_api import sync_playwright

    url, ds = served_sample
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=BROWSER_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{url}/Augment", timeout=120_000)
            page.get_by_text("Offline augmentation").wait_for(timeout=120_000)
            page.get_by_text("original 640x480").wait_for(timeout=60_000)  # the preview grid
            copies = page.get_by_role("spinbutton", name="Copies per train photo")
            copies.fill("300")
            copies.press("Enter")
            page.get_by_text("74 x 300 = 22200 copies").wait_for(timeout=30_000)
            page.get_by_role("button", name="Augment the train split").click()
            page.get_by_text("Augmenting:").wait_for(timeout=60_000)  # the polled progress bar
            _wait(lambda: len(ds.augmented.items()) > 0, 60, "the first copies on disk")
            page.get_by_role("button", name="Cancel").click()
            page.get_by_text("Cancelled after").wait_for(timeout=60_000)
            on_disk = ds.augmented.items()
            assert 0 < len(on_disk) < 22200
            assert all(it.label is not None for it in on_disk)  # no half-written copy
            text = page.get_by_text("Cancelled after").inner_text()
            assert f"Cancelled after {len(on_disk)} of 22200 copies" in text
            page.get_by_role("button", name="Delete augmented copies").click()
            page.get_by_text("Deleted").wait_for(timeout=30_000)
            assert ds.augmented.items() == []
        finally:
            browser.close()
