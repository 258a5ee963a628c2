"""AppTest for pages/7_Recognize.py and the recognition toggle of the shared detector picker."""

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from conftest import run_page, ROOT
from facecore.facetracker.backbones import IDENTITY_BACKBONES
from facecore.detect import BUILT_IN
from facecore.identity.data import IdentitySet
from facecore.identity.compare import comparison_row, save_comparison
from facecore.identity.train import IdentityConfig, TrainResult
from facecore.images import encode_jpeg
from identity_synth import person_image


def _page():
    return run_page("pages/7_Recognize.py", 180)


def _click(at, key):
    at.button(key=key).click().run()
    assert not at.exception, at.exception
    return at


def test_page_without_identity_sets(workspace_env):
    data, _ = workspace_env
    at = _page()
    assert "No identity set yet" in " ".join(i.value for i in at.info)
    at.text_input(key="recognize_new_set").set_value("../bad")
    _click(at, "recognize_create_set")
    assert "not allowed" in at.error[0].value
    at.text_input(key="recognize_new_set").set_value("me_not_me")
    _click(at, "recognize_create_set")
    assert (data / "identities" / "me_not_me").is_dir()
    assert at.selectbox(key="recognize_set").value == "me_not_me"
    assert "no identities yet" in " ".join(i.value for i in at.info)


def _crop(at):
    """Press Crop faces and let its background job finish (the page then shows what it added)."""
    _click(at, "recognize_build")
    assert at.session_state["recognize_build_job"].wait(120).status == "done"
    at.run()
    assert not at.exception, at.exception
    return at


def test_cropping_runs_as_a_job_with_cancel(workspace_env, monkeypatch):
    """Crop faces starts a background job with a progress bar and Cancel; its outcome shows when it ends."""
    import threading

    data, _ = workspace_env
    (data / "identities" / "me_not_me").mkdir(parents=True)
    at = _page()
    at.text_input(key="recognize_build_identity").set_value("me")
    gate = threading.Event()  # the job runs IdentitySet.build_from_dataset: hold it at its first photo
    from facecore.identity import data as identity

    real = identity.IdentitySet.build_from_dataset

    def held(self, *a, progress=None, **kw):
        def report(p):
            gate.wait(600)  # the test lets it go (finally): a loaded CI machine took over 30 s to get there
            progress(p)
        return real(self, *a, progress=report, **kw)

    monkeypatch.setattr(identity.IdentitySet, "build_from_dataset", held)
    try:
        _click(at, "recognize_build")
        job = at.session_state["recognize_build_job"]
        assert job.running and at.button(key="recognize_build").disabled
        assert at.button(key="recognize_build_cancel").label == "Cancel"
        at.button(key="recognize_build_cancel").click().run()
    finally:
        gate.set()
    assert job.wait(300).status == "cancelled"
    at.run()
    assert not at.exception, at.exception
    first = job.partial.added  # the crops of the photo done before Cancel stay
    assert f"Cropping stopped: {first} crop(s) added to 'me'" in " ".join(w.value for w in at.warning)
    assert "recognize_build_job" not in at.session_state
    _crop(at)  # again, to the end
    assert f"Added {90 - first} crop(s) to 'me'" in at.success[0].value
    assert {m.label: m.value for m in at.metric} == {"me": "90"}


@pytest.mark.slow
def test_build_upload_train_and_recognize(workspace_env):
    data, models = workspace_env
    (data / "identities" / "me_not_me").mkdir(parents=True)
    at = _page()
    # 1. "me" from the labeled sample dataset
    at.text_input(key="recognize_build_identity").set_value("me")
    _crop(at)
    assert "Added 90 crop(s) to 'me'" in at.success[0].value
    assert "16 photo(s) of 'sample' skipped: they have no face label" in at.warning[0].value
    assert {m.label: m.value for m in at.metric} == {"me": "90"}
    # ... and "not_me" from uploaded photos used as they are (plus one corrupt file, skipped)
    rng = np.random.default_rng(0)
    files = [(f"bob{i}.jpg", encode_jpeg(person_image(rng, "bob")[0]), "image/jpeg") for i in range(8)]
    at.text_input(key="recognize_upload_identity").set_value("not_me")
    at.checkbox(key="recognize_upload_crop").uncheck()
    at.file_uploader(key="recognize_upload").set_value(files + [("broken.jpg", b"nope", "image/jpeg")])
    at.run()
    _click(at, "recognize_add")
    assert "Added 8 photo(s) to 'not_me'" in at.success[0].value and "broken.jpg" not in at.success[0].value
    assert "broken.jpg" in at.warning[0].value  # a skipped photo is a warning, not a success
    assert {m.label: m.value for m in at.metric} == {"me": "90", "not_me": "8"}

    # 2. train (random frozen weights: the page warns); the backbones offered are the catalogue's
    assert at.selectbox(key="recognize_train_backbone").options == list(IDENTITY_BACKBONES)
    assert at.multiselect(key="recognize_cmp_backbones").options == list(IDENTITY_BACKBONES)
    at.selectbox(key="recognize_train_weights").set_value("none")
    at.selectbox(key="recognize_train_size").set_value(64)
    at.number_input(key="recognize_train_epochs").set_value(3)
    at.number_input(key="recognize_train_aug").set_value(0)
    at.text_input(key="recognize_train_name").set_value("mine")
    at.run()
    assert any("random" in w.value for w in at.warning)
    _click(at, "recognize_train_go")
    assert at.button(key="recognize_train_go").disabled  # training runs in the background, one at a time
    assert at.session_state["recognize_train_job"].wait(300).status == "done"
    at.run()
    assert "Saved model 'mine'" in at.success[0].value
    assert (models / "mine" / "model.keras").is_file()
    labels = [m.label for m in at.metric]
    assert "Val accuracy" in labels and "Latency / face" in labels
    assert len(at.get("plotly_chart")) == 1  # the training history once (the live chart is gone)

    # 3. the comparison table and chart of the set (written here from the real trained model's metadata)
    import json
    meta = json.loads((models / "mine" / "meta.json").read_text())
    ids = IdentitySet(data / "identities" / "me_not_me")
    from facecore.meta import ModelMeta

    row = comparison_row(TrainResult(models / "mine", ModelMeta.from_dict(meta)))
    save_comparison(ids, [row], IdentityConfig(**meta["config"]))
    at.run()
    df = at.dataframe[0].value  # the comparison table (section 3) comes first
    assert list(df["model"]) == ["mine"] and df["params"][0] == meta["params"]

    # 4. recognize a sample photo: Haar finds the face, the classifier names it
    assert at.selectbox(key="recognize_model").value == "mine"
    stems = at.selectbox(key="recognize_sample").options
    at.selectbox(key="recognize_sample").set_value(stems[1]).run()
    assert not at.exception, at.exception
    captions = [c for im in at.image for c in im.captions]
    assert any(c.startswith(f"{stems[1]}.jpg: 1 face(s)") for c in captions), captions
    table = at.dataframe[-1].value
    assert len(table) == 1 and table["name"][0] in ("me", "not_me")
    assert set(table.columns) >= {"name", "score", "face score", "p(me)", "p(not_me)"}


PICKER = """
import streamlit as st
from pages.common import detector_picker
name, det = detector_picker()
st.write(f"{name}|{type(det).__name__}|{getattr(det, 'classes', None)}")
"""


@pytest.mark.slow
def test_detector_picker_recognition_toggle(workspace_env):
    data, models = workspace_env
    at = AppTest.from_string(PICKER, default_timeout=120)
    at.run()
    assert not at.exception and len(at.checkbox) == 0  # no identity model: no toggle
    at.selectbox(key="detector").select("haar").run()
    assert at.markdown[0].value == "haar|HaarDetector|None"

    from facecore.identity.data import create_identity_set
    from facecore.identity.train import train_identity
    ids = create_identity_set(data, "s")
    rng = np.random.default_rng(1)
    for who in ("ann", "bob"):
        for i in range(3):
            ids.add_crop(who, person_image(rng, who)[0], f"{who}{i}")
    train_identity(ids, IdentityConfig(input_size=64, weights=None, epochs=1), models / "who")
    at.run()
    assert at.checkbox(key="detector_recognize").value is False
    at.checkbox(key="detector_recognize").check().run()
    assert not at.exception, at.exception
    assert at.selectbox(key="detector_identity").value == "who"
    assert at.markdown[0].value == "haar+who|Recognizer|['ann', 'bob']"
    # options read as shown: the default one carries a note after its name
    assert [o.split()[0] for o in at.selectbox(key="detector").options] == list(BUILT_IN)  # identity models are not detectors

    # the Webcam page gets the toggle through the shared picker, with no code of its own
    web = AppTest.from_file(str(ROOT / "pages" / "6_Webcam.py"), default_timeout=120)
    web.run()
    assert not web.exception, web.exception
    web.checkbox(key="webcam_detector_recognize").check().run()
    assert not web.exception, web.exception
    assert web.selectbox(key="webcam_detector_identity").value == "who"
