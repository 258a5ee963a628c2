"""What the Augment page says about training matches what the Train page does (issue 23)."""

import shutil
import threading

from streamlit.testing.v1 import AppTest

from conftest import ROOT, SAMPLE, texts

PAGE = str(ROOT / "pages" / "2_Augment.py")


def _page(name: str = "mine"):
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.query_params["dataset"] = name
    at.run()
    assert not at.exception, at.exception
    return at


def test_offline_text_says_how_train_uses_the_copies_and_mosaics_say_their_cost(workspace_env):
    data, _ = workspace_env
    shutil.copytree(SAMPLE, data / "workspace" / "mine")
    at = _page()
    offline = texts(at.markdown)
    assert "*Offline copies* by default" in offline  # true: tests/test_page_train_form.py
    assert "photo-shaped" not in texts(at.info)
    at.checkbox(key="aug_mosaic").check().run()
    note = texts(at.info)
    assert "photo-shaped input" in note and "3.5x" in note and "twice as long per frame" in note


def test_start_of_a_run_does_not_read_zero_of_zero_copies(workspace_env, monkeypatch):
    import facecore.augment.mosaic

    data, _ = workspace_env
    shutil.copytree(SAMPLE, data / "workspace" / "mine")
    release = threading.Event()

    def slow_start(*args, **kwargs):  # the work before its first progress report (locks, split, old copies)
        release.wait(600)  # the test lets it go (finally), however slow the machine
        raise facecore.augment.mosaic.FaceCoreError("stopped by the test")

    monkeypatch.setattr(facecore.augment.mosaic, "augment_and_mosaic", slow_start)
    at = _page()
    try:
        at.button(key="aug_run").click().run()
        assert not at.exception, at.exception
        bars = [p.proto.text for p in at.get("progress")]
        assert bars and bars[0].startswith("Starting") and "0 / 0" not in bars[0]
    finally:
        release.set()
