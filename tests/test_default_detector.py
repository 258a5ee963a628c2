"""One default detector for every page: the face detector saved last, else the built-in blazeface
(``facecore.registry.default_detector``), marked as the default in each page's picker."""

import json
import shutil

import pytest
from streamlit.testing.v1 import AppTest

from conftest import ROOT, run_page, texts
from facecore.detect import DEFAULT_DETECTOR
from facecore.registry import default_detector


def save_style_model(models, name: str, created: str, kind: str = "facetracker"):
    """A saved detector that needs no network file: the built-in BlazeFace with a (neutral) box style."""
    folder = models / name
    folder.mkdir()
    meta = {"name": name, "kind": kind, "created": created, "architecture": "blazeface-style",
            "config": {"backbone": "blazeface"}, "dataset": {"name": "sample"}, "metrics": {},
            "box_style": {"left": 0.0, "top": 0.0, "right": 0.0, "bottom": 0.0}}
    (folder / "meta.json").write_text(json.dumps(meta))
    return folder


@pytest.mark.parametrize("saved, expected", [
    ([], DEFAULT_DETECTOR),
    ([("older", "2026-01-01T00:00:00"), ("newer", "2026-02-01T00:00:00")], "newer"),
    ([("mine", "2026-01-01T00:00:00"), ("who", "2026-03-01T00:00:00", "identity")], "mine"),  # not a detector
])
def test_default_is_the_detector_saved_last_else_blazeface(tmp_path, saved, expected):
    for row in saved:
        save_style_model(tmp_path, *row)
    assert default_detector(tmp_path) == expected


@pytest.fixture
def saved_last(workspace_env):
    _, models = workspace_env
    save_style_model(models, "older", "2026-01-01T00:00:00")
    save_style_model(models, "mine-boxstyle", "2026-02-01T00:00:00")
    return "mine-boxstyle"


def _marked(select) -> str:
    """The option text the picker shows for its current value."""
    return select.options[select.index]


def test_webcam_picker_starts_on_the_default_and_says_so(saved_last):
    # Video and Recognize use the same picker (pages.common.detector_select); the Video page's default is
    # checked after an upload in tests/test_page_video.py
    select = run_page("pages/6_Webcam.py").sidebar.selectbox(key="webcam_detector")
    assert select.value == saved_last
    assert _marked(select) == f"{saved_last}  (default: saved last)"


def test_builtin_default_is_marked_built_in(workspace_env):
    select = run_page("pages/6_Webcam.py").sidebar.selectbox(key="webcam_detector")
    assert select.value == DEFAULT_DETECTOR and _marked(select) == f"{DEFAULT_DETECTOR}  (default: built in)"


def test_evaluate_starts_with_the_default_and_names_it(saved_last):
    at = run_page("pages/4_Evaluate.py")
    assert at.multiselect(key="eval_detectors").value[0] == saved_last
    assert f"Default: **{saved_last}**, the detector you saved last" in texts(at.caption)


def test_prelabel_picker_starts_on_the_default(saved_last, workspace_env):
    data, _ = workspace_env
    shutil.copytree(data / "sample", data / "workspace" / "mine")
    at = AppTest.from_file(str(ROOT / "pages" / "1_Collect_and_Label.py"), default_timeout=120)
    at.query_params["dataset"] = "mine"
    at.run()
    at.button_group(key="lab_view").set_value("Pre-label").run()
    assert not at.exception, at.exception
    select = at.selectbox(key="lab_det_batch")
    assert select.value == saved_last and _marked(select).endswith("(default: saved last)")
