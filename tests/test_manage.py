"""Managing what you made: rename / delete datasets (never the sample), download / delete models;
in facecore and through the home page's Manage section."""

import io
import json
import zipfile

import pytest
from streamlit.testing.v1 import AppTest

from conftest import ROOT, texts
from facecore import DatasetError, FaceCoreError, Workspace
from facecore.registry import delete_model, list_models, model_zip
from facecore.testing import make_dataset


def _model(models, name, kind="facetracker", files=("model.keras", "model.tflite")):
    folder = models / name
    folder.mkdir(parents=True)
    meta = {"name": name, "kind": kind, "created": "2026-11-24T10:00:00", "config": {"backbone": "mobilenetv2"},
            "dataset": {"name": "sample"}}
    meta["metrics"] = ({"val": {"accuracy": 0.9, "loss": 0.3}} if kind == "identity"
                       else {"test": {"mean_iou": 0.71, "face_accuracy": 0.95}})
    (folder / "meta.json").write_text(json.dumps(meta))
    for f in files:
        (folder / f).write_bytes(f"weights of {name}/{f}".encode())
    return folder


def test_rename_and_delete_dataset(workspace_env):
    data, _ = workspace_env
    ws = Workspace.from_env()
    make_dataset(data / "workspace" / "mine", n_face=2, n_noface=1)
    make_dataset(data / "workspace" / "taken", n_face=1, n_noface=0)
    ds = ws.rename_dataset("mine", "ours")
    assert ds.name == "ours" and len(ds.items()) == 3 and not (data / "workspace" / "mine").exists()
    with pytest.raises(DatasetError, match="already exists"):
        ws.rename_dataset("ours", "taken")
    with pytest.raises(DatasetError, match="not allowed"):
        ws.rename_dataset("ours", "../escape")
    for bad in (lambda: ws.rename_dataset("sample", "x"), lambda: ws.delete_dataset("sample")):
        with pytest.raises(DatasetError, match="shipped example"):
            bad()
    with pytest.raises(DatasetError, match="no dataset called"):
        ws.delete_dataset("nope")
    ws.delete_dataset("ours")
    assert list(ws.datasets()) == ["sample", "taken"]
    assert not [p for p in (data / "workspace").iterdir() if p.name.startswith(".ours")]  # no leftovers
    assert (data / "sample" / "images").is_dir()


def test_model_zip_and_delete(workspace_env):
    _, models = workspace_env
    _model(models, "det", files=("model.keras", "model.tflite", "model_int8.tflite"))
    zf = zipfile.ZipFile(io.BytesIO(model_zip("det", models)))
    assert sorted(zf.namelist()) == ["det/meta.json", "det/model.keras", "det/model.tflite", "det/model_int8.tflite"]
    assert zf.read("det/model.keras") == b"weights of det/model.keras"
    assert json.loads(zf.read("det/meta.json"))["name"] == "det"
    with pytest.raises(FaceCoreError):
        model_zip("nope", models)
    (models / "not-a-model").mkdir()  # a folder without meta.json is not offered for deletion
    for bad in ("not-a-model", "../models", "nope"):
        with pytest.raises(FaceCoreError):
            delete_model(bad, models)
    delete_model("det", models)
    assert list_models(models) == [] and (models / "not-a-model").is_dir()


def _home():
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=180)
    at.run()
    assert not at.exception, at.exception
    return at


def _click(at, label):
    [b] = [b for b in at.button if b.label == label]
    b.click().run()
    assert not at.exception, at.exception
    return at


def test_home_renames_then_deletes_the_active_dataset(workspace_env):
    data, _ = workspace_env
    make_dataset(data / "workspace" / "mine", n_face=2, n_noface=1)
    at = _home()
    assert at.sidebar.selectbox(key="_dataset_picker").value == "mine"  # a new session opens the user's own
    at.sidebar.selectbox(key="_dataset_picker").select("sample").run()
    assert "cannot be renamed or deleted" in texts(at.caption)  # sample active: nothing offered
    at.sidebar.selectbox(key="_dataset_picker").select("mine").run()
    at.text_input(key="manage_new_name").set_value("renamed")
    at.button(key="FormSubmitter:manage_rename-Rename").click().run()
    assert not at.exception, at.exception
    assert (data / "workspace" / "renamed").is_dir() and not (data / "workspace" / "mine").exists()
    assert at.sidebar.selectbox(key="_dataset_picker").value == "renamed"
    assert at.query_params["dataset"] == "renamed"
    _click(at, "Delete dataset renamed...")
    assert "This cannot be undone" in texts(at.warning) and (data / "workspace" / "renamed").is_dir()
    _click(at, "Cancel")
    assert (data / "workspace" / "renamed").is_dir()
    _click(at, "Delete dataset renamed...")
    _click(at, "Yes, delete")
    assert not (data / "workspace" / "renamed").exists()
    assert at.sidebar.selectbox(key="_dataset_picker").value == "sample"
    assert "Deleted dataset **renamed**" in texts(at.success)


def test_home_models_table_download_and_delete(workspace_env):
    _, models = workspace_env
    _model(models, "det")
    _model(models, "me", kind="identity", files=("model.keras",))
    at = _home()
    df = at.dataframe[0].value
    assert "None" not in df.astype(str).to_numpy().ravel().tolist() and not df.isna().to_numpy().any()
    ident = df[df["model"] == "me"].iloc[0]
    assert ident["mean IoU"] == "" and ident["identity accuracy"] == "0.900"
    assert df[df["model"] == "det"].iloc[0]["mean IoU"] == "0.710"
    at.selectbox(key="manage_model").select("det").run()
    assert [d for d in at.get("download_button") if d.proto.label == "Download det.zip"]
    _click(at, "Delete det...")
    _click(at, "Yes, delete")
    assert not (models / "det").exists() and (models / "me").is_dir()
    assert list(at.dataframe[0].value["model"]) == ["me"]
