"""The Train page under AppTest: settings, a real 2-epoch training in the background, the result."""

import importlib

import pytest

from streamlit.testing.v1 import AppTest

from conftest import ROOT, run_page, texts as _texts
from facecore import list_models
from facecore.facetracker.backbones import DETECTOR_BACKBONES
from facecore.jobs import JobSlot
from facecore.train import failure_kind
from facecore.testing import make_dataset


def _page():
    return run_page("pages/3_Train.py")


@pytest.fixture(autouse=True)
def train_slot(monkeypatch):
    """Each test's own training slot in place of the server's one ``facecore.train.JOB`` (which the page
    reads on every run), so a job left over by another test cannot make Start busy."""
    slot = JobSlot()
    monkeypatch.setattr(importlib.import_module("facecore.train"), "JOB", slot)
    monkeypatch.setattr(importlib.import_module("facecore.train.job"), "JOB", slot)
    yield slot
    slot.cancel()
    slot.wait(120)


@pytest.fixture
def tiny_ws(workspace_env):
    data, models = workspace_env
    make_dataset(data / "workspace" / "tiny", n_face=12, n_noface=4, size=(96, 72))
    return data, models


def _choose_tiny(at):
    at.sidebar.selectbox[0].select("tiny").run()
    at.selectbox(key="train_backbone").select("tinycnn").run()
    at.number_input(key="train_size_tinycnn").set_value(48).run()
    at.number_input(key="train_epochs_True").set_value(2).run()
    at.number_input(key="train_head_tinycnn").set_value(16).run()
    assert not at.exception, at.exception


def test_page_defaults_and_from_scratch_notice(tiny_ws):
    at = _page()
    assert at.selectbox(key="train_backbone").value == "blazeface"  # the face-pretrained default
    assert at.selectbox(key="train_backbone").options == list(DETECTOR_BACKBONES)  # the catalogue's
    assert at.radio(key="train_weights_blazeface").value == "blazeface"
    assert at.selectbox(key="train_size_blazeface").value == 192  # the full-range model
    assert "MediaPipe's face weights" in _texts(at.caption)
    at.selectbox(key="train_backbone").select("vgg16").run()
    assert at.radio(key="train_weights_vgg16").value == "imagenet"
    assert "Fast path" in _texts(at.caption)
    at.radio(key="train_weights_vgg16").set_value("none").run()
    assert "whole network trains from scratch" in _texts(at.warning)
    assert at.button(key="train_stop").disabled
    at.selectbox(key="train_backbone").select("tinycnn").run()
    assert at.radio(key="train_weights_tinycnn").options == ["None: train from scratch", "A weights file (.h5)"]


@pytest.mark.slow
def test_page_trains_a_model_and_shows_it(tiny_ws, train_slot):
    _, models = tiny_ws
    at = _page()
    _choose_tiny(at)
    at.button(key="train_start").click().run()
    assert not at.exception, at.exception
    assert train_slot.running or train_slot.job.status == "done"
    # One of Start and Stop is offered at a time (while it runs, a second Start is not possible)
    assert at.button(key="train_start").disabled != at.button(key="train_stop").disabled
    job = train_slot.wait(300)
    assert job.status == "done", job.error_message
    at.run()
    assert not at.exception, at.exception
    assert "tiny-tinycnn" in _texts(at.success)
    table = at.table[0].value
    assert list(table.index) == ["train", "val", "test"] and "mean IoU" in table
    assert [m.name for m in list_models(models)] == ["tiny-tinycnn"]
    assert not at.button(key="train_start").disabled


def test_page_offers_training_from_scratch_when_weights_are_unavailable(tiny_ws, monkeypatch, tmp_path, train_slot):
    # training runs in a worker process: offline there through its environment (an empty Keras cache, a
    # proxy that refuses every connection), not by patching this process's modules
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    for var in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "")
    monkeypatch.setenv("no_proxy", "")
    at = _page()
    at.sidebar.selectbox[0].select("tiny").run()
    at.selectbox(key="train_backbone").select("mobilenetv2").run()
    at.number_input(key="train_size_mobilenetv2").set_value(48).run()
    at.button(key="train_start").click().run()
    job = train_slot.wait(120)
    assert job.status == "failed" and failure_kind(job.error) == "weights"
    at.run()
    assert "could not download the ImageNet weights" in _texts(at.error)
    shown = _texts(at.error) + _texts(at.get("progress")) + " ".join(p.proto.text for p in at.get("progress"))
    assert shown.count("could not download the ImageNet weights") == 1  # once, not in the bar too
    at.selectbox(key="train_backbone").select("vgg16").run()  # another model: the offer no longer applies
    assert not [b for b in at.button if b.key == "train_scratch"]
    at.selectbox(key="train_backbone").select("mobilenetv2").run()
    at.button(key="train_scratch").click().run()
    assert not at.exception, at.exception
    assert train_slot.job.subject.config.weights is None
    assert train_slot.cancel()
    assert train_slot.wait(120).status in ("cancelled", "done")


def test_coming_back_during_training_shows_its_settings(tiny_ws, train_slot):
    at = _page()
    _choose_tiny(at)
    at.number_input(key="train_epochs_True").set_value(200).run()  # long enough to come back while it runs
    at.button(key="train_start").click().run()
    try:
        assert train_slot.running
        # a new session: the form's widget state is gone, as after visiting another page (whose links
        # carry the dataset in the URL)
        back = AppTest.from_file(str(ROOT / "pages" / "3_Train.py"), default_timeout=120)
        back.query_params["dataset"] = "tiny"
        back.run()
        assert not back.exception, back.exception
        assert back.sidebar.selectbox[0].value == "tiny"
        assert back.selectbox(key="train_backbone").value == "tinycnn"
        assert back.number_input(key="train_size_tinycnn").value == 48
        assert back.number_input(key="train_epochs_True").value == 200
        assert back.number_input(key="train_head_tinycnn").value == 16
        assert back.text_input(key="train_name_tiny_tinycnn").value == "tiny-tinycnn"
        assert "its progress is below" in _texts(back.info)
    finally:
        train_slot.cancel()
        train_slot.wait(120)


def test_few_no_face_photos_warn(workspace_env):
    data, _ = workspace_env
    make_dataset(data / "workspace" / "allfaces", n_face=12, n_noface=1, size=(96, 72))
    at = _page()
    at.sidebar.selectbox[0].select("sample").run()  # a new session opens the user's own dataset
    assert not [w for w in at.warning if "have no face" in w.value]  # the sample: 16 of 106
    at.sidebar.selectbox[0].select("allfaces").run()
    assert [w for w in at.warning if "Only 1 of 13 photos (8%) have no face" in w.value]


def test_page_without_dataset(tmp_path, monkeypatch):
    monkeypatch.setenv("FACETRACK_DATA", str(tmp_path / "none"))
    monkeypatch.setenv("FACETRACK_MODELS", str(tmp_path / "models"))
    at = _page()
    assert "No dataset yet" in _texts(at.info)
    assert at.button(key="train_start").disabled


@pytest.mark.slow
@pytest.mark.parametrize("shape, shown", [("frame", "192x256 px (photo-shaped)"),
                                          ("close", "96x128 px (close-up: 128 px, fast)")])
def test_page_fine_tunes_blazeface_with_the_chosen_network_input(tiny_ws, train_slot, shape, shown):
    _, models = tiny_ws
    at = _page()
    at.sidebar.selectbox[0].select("tiny").run()
    at.number_input(key="train_epochs_blaze").set_value(2).run()
    assert at.radio(key="train_input_shape").value == "auto"
    at.radio(key="train_input_shape").set_value(shape).run()
    at.button(key="train_start").click().run()
    assert not at.exception, at.exception
    job = train_slot.wait(300)
    assert job.status == "done", job.error_message
    assert job.subject.config.backbone == "blazeface" and job.result[1].architecture == "blazeface"
    assert job.subject.config.input_shape == shape and job.result[1].input_shape == shape
    at.run()
    assert "tiny-blazeface" in _texts(at.success)
    assert f"network input {shown}" in " ".join(c.value for c in at.caption)
    from facecore.registry import detector_names

    assert "tiny-blazeface" in detector_names(models)


def test_box_style_fit_shows_progress_and_stops_on_cancel(workspace_env, monkeypatch):
    import threading
    import time

    from facecore.blazeface import builtin as blazeface

    gate, real = threading.Event(), blazeface.fit_dataset_style

    def held(*a, progress=None, **kw):  # the real fit, held at its first photo until the test lets it go
        def report(p):
            progress(p)
            gate.wait(600)  # the test lets it go (finally): a loaded CI machine took over 30 s to get there
        return real(*a, progress=report, **kw)

    monkeypatch.setattr(blazeface, "fit_dataset_style", held)
    at = _page()
    try:
        at.button(key="style_fit").click().run()
        job = at.session_state["train_style_job"]
        assert job.running and at.button(key="style_fit").disabled
        for _ in range(6000):  # until the fit reports its first photo (loading BlazeFace comes first)
            if job.progress.done:
                break
            time.sleep(0.05)
        at.run()
        assert "photo 1/" in " ".join(str(p.proto.text) for p in at.get("progress"))
        at.button(key="style_cancel").click().run()
    finally:
        gate.set()
    assert job.wait(300).status == "cancelled"
    at.run()
    assert "Box style fit stopped: nothing was saved." in _texts(at.warning)
    _, models = workspace_env
    assert not (models / "sample-boxstyle").exists()


def test_page_fits_a_box_style_detector(workspace_env):
    import shutil
    from pathlib import Path

    data, models = workspace_env
    shutil.copytree(Path("data/sample"), data / "workspace" / "faces")
    at = _page()
    at.sidebar.selectbox[0].select("faces").run()
    at.button(key="style_fit").click().run()
    assert not at.exception, at.exception
    job = at.session_state["train_style_job"]  # a background job of this session
    assert job.wait(120).status == "done", job.error_message
    at.run()
    assert "faces-boxstyle" in _texts(at.success), _texts(at.error)
    df = at.dataframe[0].value
    assert (df["IoU after"] > df["IoU before"]).all()
    from facecore.registry import load_detector

    det = load_detector("faces-boxstyle", models)
    assert det.name == "faces-boxstyle" and det.style.top < 0  # labels reach higher than BlazeFace's box
    # 60-odd labeled faces: the keypoint form, and the page says so
    assert det.style.method.startswith("keypoints") and det.style.matrix is not None
    assert "style from keypoints" in _texts(at.success)
