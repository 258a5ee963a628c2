"""AppTest for the Evaluate page: Haar and a trained model side by side on the sample set."""

import pytest
from streamlit.testing.v1 import AppTest

from conftest import ROOT, press_evaluate
from facecore.detect import BUILT_IN

PAGE = str(ROOT / "pages" / "4_Evaluate.py")


def _captions(at):
    return [img.caption for el in at.get("image") for img in el.proto.imgs]


def _run(at=None):
    at = at if at is not None else AppTest.from_file(PAGE, default_timeout=180)
    at.run()
    assert not at.exception, at.exception
    return at


@pytest.mark.slow
def test_evaluate_haar_and_model_side_by_side(workspace_env):
    from test_inference import save_model_dir

    _, models = workspace_env
    save_model_dir(models / "tiny", name="tiny")
    at = _run()
    ms = at.multiselect(key="eval_detectors")
    assert ms.options == [*BUILT_IN, "tiny"] and ms.value == ["tiny", "blazeface", "haar"]
    assert at.selectbox(key="eval_split").value == "test"
    assert "Choose detectors" in " ".join(i.value for i in at.info)
    press_evaluate(at)
    df = at.dataframe[0].value
    assert list(df.columns) == ["tiny", "blazeface", "haar"]
    assert {"AP @ IoU 0.5", "AP @ IoU 0.3", "mean IoU (face images)", "recall @ IoU 0.5",
            "false-positive rate (no-face images)", "median latency (ms/image)", "AP @ IoU 0.5, every face",
            "false positives per image, every detection"} <= set(df.index)
    # the built-in, face-pretrained detector beats the tutorials' Haar baseline out of the box
    assert float(df.loc["AP @ IoU 0.5", "blazeface"]) > float(df.loc["AP @ IoU 0.5", "haar"])
    assert df.loc["images", "haar"] == "16" and df.loc["without a face", "haar"] == "3"
    fp = float(df.loc["false-positive rate (no-face images)", "haar"])  # measurable: the sample has negatives
    assert 0 <= fp <= 1
    assert "On **16 photos** of the **test** split" in " ".join(m.value for m in at.markdown)
    assert not [w for w in at.warning if "cannot be measured" in w.value]
    assert 0 <= float(df.loc["mean IoU (face images)", "haar"]) <= 1
    assert len(at.get("plotly_chart")) == 2
    assert at.selectbox(key="eval_grid_detector").value == "tiny"  # the user's model first, not the baseline
    # The grid: 12 photos by default, worst first, for the chosen detector.
    captions = _captions(at)
    assert len(captions) == 12 and all("·" in c for c in captions)
    at.selectbox(key="eval_grid_detector").select("haar")
    at.toggle(key="eval_only_errors").set_value(True)
    _run(at)
    captions = _captions(at)
    assert captions and all(any(k in c for k in ("missed", "misplaced", "false positive")) for c in captions)
    # An int8 copy, made from the page, is offered beside the model.
    at.button(key="eval_quantize").click()
    _run(at)
    assert any("tiny@int8` is ready" in s.value for s in at.success)
    assert at.multiselect(key="eval_detectors").options == [*BUILT_IN, "tiny", "tiny@int8"]
    # the results stay on screen: making the copy changes neither the selection nor the float model
    assert at.multiselect(key="eval_detectors").value == ["tiny", "blazeface", "haar"]
    assert list(at.dataframe[0].value.columns) == ["tiny", "blazeface", "haar"]
    # Changing the threshold invalidates the results until Evaluate is pressed again.
    at.slider(key="eval_threshold").set_value(0.9)
    _run(at)
    assert not at.dataframe and "press **Evaluate**" in " ".join(i.value for i in at.info).replace("Press", "press")


def test_evaluate_page_without_models_and_on_empty_split(workspace_env):
    data, _ = workspace_env
    from facecore.testing import make_dataset

    make_dataset(data / "workspace" / "two", n_face=1, n_noface=1)
    at = _run()
    assert "No trained model yet" in " ".join(i.value for i in at.info)
    assert at.multiselect(key="eval_detectors").value == ["blazeface", "haar"]
    at.sidebar.selectbox[0].select("two")
    at.selectbox(key="eval_split").select("val")
    _run(at)
    assert "split of `two` is empty" in " ".join(i.value for i in at.info)
    at.selectbox(key="eval_split").select("all")
    _run(at)
    press_evaluate(at)
    df = at.dataframe[0].value
    assert list(df.columns) == ["blazeface", "haar"] and df.loc["images", "haar"] == "2"


def test_evaluation_runs_as_a_job_and_stops_on_cancel(workspace_env, monkeypatch):
    """Evaluate starts a background job with a progress bar and Cancel; Cancel stops it and says so."""
    import threading
    import time

    from facecore.evaluate import metrics as E

    gate, real = threading.Event(), E.evaluate

    def held(det, images, progress=None, **kw):  # the real evaluation, held after its first photo
        def report(p):
            progress(p)
            gate.wait(600)  # the test lets it go (finally): a loaded CI machine took over 30 s to get there
        return real(det, images, progress=report, **kw)

    monkeypatch.setattr(E, "evaluate", held)
    at = _run()
    at.multiselect(key="eval_detectors").set_value(["haar", "blazeface"])
    try:
        at.button(key="eval_start").click()
        _run(at)
        job = at.session_state["eval_job"]
        assert job.running and at.button(key="eval_start").disabled
        for _ in range(6000):
            if job.progress.done:
                break
            time.sleep(0.05)
        _run(at)
        assert "haar: 1/16 photos" in " ".join(str(p.proto.text) for p in at.get("progress"))
        at.button(key="eval_cancel").click()
        _run(at)
    finally:
        gate.set()
    assert job.wait(300).status == "cancelled"
    _run(at)
    assert "Evaluation stopped: 0 detector(s) measured before Cancel." in " ".join(w.value for w in at.warning)
    assert not at.dataframe and "eval_job" not in at.session_state


def test_split_without_negatives_says_false_positives_are_not_measured(workspace_env):
    data, _ = workspace_env
    from facecore.testing import make_dataset

    make_dataset(data / "workspace" / "faces", n_face=4, n_noface=0)
    at = AppTest.from_file(PAGE, default_timeout=180)
    at.query_params["dataset"] = "faces"
    at = _run(at)
    at.selectbox(key="eval_split").select("all")
    _run(at)
    press_evaluate(at)
    assert at.dataframe[0].value.loc["false-positive rate (no-face images)", "haar"] == "n/a"
    assert [w for w in at.warning if "False positives cannot be measured" in w.value]
    assert not [s for s in at.success if "no mistakes" in s.value]  # never "perfect" without negatives


def test_broken_model_shows_error_not_crash(workspace_env):
    _, models = workspace_env
    (models / "bad").mkdir()
    (models / "bad" / "meta.json").write_text('{"kind": "facetracker", "config": {"input_size": 32}}')
    (models / "bad" / "model.keras").write_bytes(b"not a model")
    at = _run()
    at.multiselect(key="eval_detectors").set_value(["bad", "haar"])
    press_evaluate(at)
    assert any("could not load" in e.value for e in at.error)
    assert list(at.dataframe[0].value.columns) == ["haar"]


if __name__ == "__main__":
    pytest.main([__file__, "-q"])


@pytest.mark.slow
def test_evaluate_boxes_the_small_faces_of_a_group_photo(workspace_env):
    """Two 2400 x 1800 photos of eight 60 px faces each: the Small faces toggle (on by default) finds them."""
    from facecore.images import encode_jpeg
    from facecore.datasets.labels import ImageLabel
    from facecore.testing import group_photo
    from facecore.datasets.workspace import Workspace

    ws = Workspace.from_env()
    ds = ws.create_dataset("group")
    for seed in (0, 1):
        photo, boxes = group_photo(2400, 1800, 8, 60, seed=seed)
        ds.add_image(encode_jpeg(photo), f"group{seed}.jpg", ImageLabel(2400, 1800, boxes))
    at = _run()
    if at.selectbox(key="_dataset_picker").value != "group":  # a new session opens the dataset changed last
        at.selectbox(key="_dataset_picker").select("group").run()
    at.multiselect(key="eval_detectors").set_value(["blazeface"])
    at.selectbox(key="eval_split").select("all")
    assert at.toggle(key="eval_small_faces").value is True
    press_evaluate(at)
    scanned = float(at.dataframe[0].value.loc["AP @ IoU 0.5, every face", "blazeface"])
    at.toggle(key="eval_small_faces").set_value(False)
    press_evaluate(at)
    whole = float(at.dataframe[0].value.loc["AP @ IoU 0.5, every face", "blazeface"])
    assert scanned >= 0.8 and whole <= 0.3, (scanned, whole)
