"""AppTest for the Evaluate page: Haar and a trained model side by side on the sample set."""

import pytest
from streamlit.testing.v1 import AppTest

from conftest import ROOT

PAGE = str(ROOT / "pages" / "4_Evaluate.py")


def _captions(at):
    return [img.caption for el in at.get("image") for img in el.proto.imgs]


def _run(at=None):
    at = at or AppTest.from_file(PAGE, default_timeout=180)
    at.run()
    assert not at.exception, at.exception
    return at


def test_evaluate_haar_and_model_side_by_side(workspace_env):
    from test_inference import save_model_dir

    _, models = workspace_env
    save_model_dir(models / "tiny", name="tiny")
    at = _run()
    ms = at.multiselect(key="eval_detectors")
    assert ms.options == ["haar", "tiny"] and ms.value == ["tiny", "haar"]
    assert at.selectbox(key="eval_split").value == "test"
    assert "Choose detectors" in " ".join(i.value for i in at.info)
    at.button(key="eval_start").click()
    _run(at)
    df = at.dataframe[0].value
    assert list(df.columns) == ["tiny", "haar"]
    assert {"AP @ IoU 0.5", "AP @ IoU 0.3", "mean IoU (face images)", "recall @ IoU 0.5",
            "false-positive rate (no-face images)", "median latency (ms/image)"} <= set(df.index)
    assert df.loc["images", "haar"] == "13" and df.loc["false-positive rate (no-face images)", "haar"] == "n/a"
    assert 0 <= float(df.loc["mean IoU (face images)", "haar"]) <= 1
    assert len(at.get("plotly_chart")) == 2
    # The grid: 12 photos by default, worst first, for the chosen detector.
    captions = _captions(at)
    assert len(captions) == 12 and all("·" in c for c in captions)
    at.selectbox(key="eval_grid_detector").select("haar")
    at.toggle(key="eval_only_errors").set_value(True)
    _run(at)
    captions = _captions(at)
    assert captions and all(("missed" in c) or ("misplaced" in c) for c in captions)
    # An int8 copy, made from the page, is offered beside the model.
    at.button(key="eval_quantize").click()
    _run(at)
    assert any("tiny@int8` is ready" in s.value for s in at.success)
    assert at.multiselect(key="eval_detectors").options == ["haar", "tiny", "tiny@int8"]
    # Changing the threshold invalidates the results until Evaluate is pressed again.
    at.slider(key="eval_threshold").set_value(0.9)
    _run(at)
    assert not at.dataframe and "press **Evaluate**" in " ".join(i.value for i in at.info).replace("Press", "press")


def test_evaluate_page_without_models_and_on_empty_split(workspace_env):
    data, _ = workspace_env
    from synth import make_dataset

    make_dataset(data / "workspace" / "two", n_face=1, n_noface=1)
    at = _run()
    assert "No trained model yet" in " ".join(i.value for i in at.info)
    assert at.multiselect(key="eval_detectors").value == ["haar"]
    at.sidebar.selectbox[0].select("two")
    at.selectbox(key="eval_split").select("val")
    _run(at)
    assert "split of `two` is empty" in " ".join(i.value for i in at.info)
    at.selectbox(key="eval_split").select("all")
    _run(at)
    at.button(key="eval_start").click()
    _run(at)
    df = at.dataframe[0].value
    assert list(df.columns) == ["haar"] and df.loc["images", "haar"] == "2"


def test_broken_model_shows_error_not_crash(workspace_env):
    _, models = workspace_env
    (models / "bad").mkdir()
    (models / "bad" / "meta.json").write_text('{"kind": "facetracker", "config": {"input_size": 32}}')
    (models / "bad" / "model.keras").write_bytes(b"not a model")
    at = _run()
    at.multiselect(key="eval_detectors").set_value(["bad", "haar"])
    at.button(key="eval_start").click()
    _run(at)
    assert any("could not load" in e.value for e in at.error)
    assert list(at.dataframe[0].value.columns) == ["haar"]


if __name__ == "__main__":
    pytest.main([__file__, "-q"])
