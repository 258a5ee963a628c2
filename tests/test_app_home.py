import json

import pytest
from streamlit.testing.v1 import AppTest

from conftest import ROOT


def _run(path="streamlit_app.py"):
    at = AppTest.from_file(str(ROOT / path), default_timeout=180)
    at.run()
    assert not at.exception, at.exception
    return at


def test_home_shows_sample_counts(workspace_env):
    at = _run()
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Images"] == "106" and metrics["With a face"] == "90" and metrics["No face"] == "16"
    assert metrics["train split"] == "74" and metrics["val split"] == "16" and metrics["test split"] == "16"
    assert at.sidebar.selectbox[0].value == "sample"
    assert "No trained model yet" in " ".join(i.value for i in at.info)


def test_home_switches_dataset_and_lists_models(workspace_env):
    data, models = workspace_env
    from facecore.testing import make_dataset
    make_dataset(data / "workspace" / "mine", n_face=3, n_noface=2)
    (models / "m1").mkdir()
    (models / "m1" / "meta.json").write_text(json.dumps({
        "name": "m1", "kind": "facetracker", "created": "2026-11-24T10:00:00",
        "config": {"backbone": "mobilenetv2"}, "dataset": {"name": "sample"},
        "metrics": {"test": {"mean_iou": 0.71, "face_accuracy": 0.95}}}))
    (models / "half-written").mkdir()  # no meta.json yet: skipped, not an error
    at = _run()
    at.sidebar.selectbox[0].select("mine").run()
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Images"] == "5" and metrics["With a face"] == "3" and metrics["No face"] == "2"
    df = at.dataframe[0].value
    assert list(df["model"]) == ["m1"] and df["mean IoU"][0] == "0.710"


def test_home_with_no_dataset(tmp_path, monkeypatch):
    monkeypatch.setenv("FACETRACK_DATA", str(tmp_path / "none"))
    monkeypatch.setenv("FACETRACK_MODELS", str(tmp_path / "models"))
    at = _run()
    assert "No dataset yet" in " ".join(i.value for i in at.info)


@pytest.mark.slow
def test_importing_every_facecore_module_loads_no_streamlit():
    """At run time, transitively (tests/test_layers.py reads the import statements)."""
    import subprocess
    import sys
    code = ("import facecore, pkgutil, importlib, sys\n"
            "for m in pkgutil.iter_modules(facecore.__path__):\n"
            "    importlib.import_module('facecore.' + m.name)\n"
            "assert 'streamlit' not in sys.modules, 'facecore imported streamlit'\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
