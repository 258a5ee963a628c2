"""The pages under AppTest on a hostile dataset (a 50000x50000 PNG bomb, a JPEG lying about its size,
a label nested 100,000 deep, a point-only label, a label with a BOM): every page renders, with a
message where something is wrong, and never a traceback."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from conftest import ROOT, press_evaluate
from hostile import deep_json, jpeg_lying_size, labelme, png_bomb, rect, zip_with_flags, jpeg_bytes
from facecore.testing import make_dataset


@pytest.fixture
def hostile_ws(workspace_env):
    data, models = workspace_env
    ds = make_dataset(data / "workspace" / "bad", n_face=8, n_noface=2)
    items = ds.items()
    items[0].label.write_bytes(deep_json())
    items[1].label.write_bytes(b"\xef\xbb\xbf" + items[1].label.read_bytes())
    items[2].label.write_bytes(labelme([rect(1, 1, 5, 5, kind="point")], 160, 120))
    (ds.images_dir / "bomb.png").write_bytes(png_bomb(50_000, 50_000))
    (ds.images_dir / "liar.jpg").write_bytes(jpeg_lying_size(20_000, 20_000))
    return ds


def _app(page: str) -> AppTest:
    at = AppTest.from_file(str(ROOT / page), default_timeout=240)
    at.session_state["active_dataset"] = "bad"
    return at


def _ok(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.mark.parametrize("page", ["streamlit_app.py", "pages/2_Augment.py", "pages/3_Train.py",
                                  "pages/4_Evaluate.py", "pages/7_Recognize.py"])
def test_pages_render_on_a_hostile_dataset(hostile_ws, page):
    _ok(_app(page))


@pytest.mark.parametrize("view", ["Label", "Gallery", "Pre-label", "Export"])
def test_collect_and_label_views_on_a_hostile_dataset(hostile_ws, view):
    at = _app("pages/1_Collect_and_Label.py")
    at.session_state["lab_view"] = view
    _ok(at)


def test_evaluate_runs_on_a_hostile_dataset(hostile_ws):
    at = _ok(_app("pages/4_Evaluate.py"))
    at.multiselect(key="eval_detectors").set_value(["haar"])
    at.selectbox(key="eval_split").set_value("all") if "all" in at.selectbox(key="eval_split").options else None
    press_evaluate(at)


def test_label_page_opens_every_photo(hostile_ws):
    """Jumping to each photo, broken ones included, shows it or a message instead of failing."""
    at = _ok(_app("pages/1_Collect_and_Label.py"))
    options = list(at.selectbox(key="lab_jump").options)  # "1/12  bomb ...": shown labels, one per photo
    assert len(options) == len(hostile_ws.items())
    errors = []
    for i, shown in enumerate(options):
        at.selectbox(key="lab_jump").select_index(i)
        _ok(at)
        errors += [str(e.value) for e in at.error]
        if " bomb" in shown:
            bomb_errors = [str(e.value) for e in at.error]
    assert any("megapixel" in e for e in bomb_errors), bomb_errors


def test_upload_of_hostile_files_reports_them(hostile_ws):
    """The upload path of Collect & Label (labeling.add_files), fed bombs and an odd zip."""
    from facecore.datasets.labeling import add_files

    z = zip_with_flags({"ok.jpg": jpeg_bytes(), "locked.jpg": jpeg_bytes()}, encrypt={"locked.jpg"})
    before = len(hostile_ws.items())
    rep = add_files(hostile_ws, [("bomb.png", png_bomb(50_000, 50_000)), ("liar.jpg", jpeg_lying_size(20_000, 20_000)),
                                 ("pack.zip", z), ("deep.zip", b"PK\x05\x06" + b"\x00" * 18)])
    assert len(rep.added) == 1
    why = " ".join(w for _, w in rep.skipped)
    assert "megapixel" in why and "encrypted" in why
    assert len(hostile_ws.items()) == before + 1


def test_augment_workers_never_rerun_the_page_script(hostile_ws):
    """Streamlit makes the page being run ``__main__``; pool workers must not run it again (the
    Collect & Label page even fails outside a browser session)."""
    import sys

    from facecore.augment import AugmentConfig, augment_dataset

    _ok(_app("pages/1_Collect_and_Label.py"))
    assert str(getattr(sys.modules["__main__"], "__file__", "")).endswith("1_Collect_and_Label.py")
    rep = augment_dataset(hostile_ws, AugmentConfig(), per_image=2, workers=2)
    assert rep.written > 0 and rep.written + 2 * len(rep.failed) == rep.total
    assert {stem for stem, _ in rep.failed} <= {"bomb", "liar"}  # the bombs fail with their message, alone
    assert all("limit" in why for _, why in rep.failed)


@pytest.fixture
def hostile_models(hostile_ws, workspace_env):
    import shutil

    from test_inference import save_model_dir

    _, models = workspace_env
    good = save_model_dir(models / "good", name="good")
    trunc = models / "trunc"
    shutil.copytree(good, trunc)
    data = (trunc / "model.tflite").read_bytes()
    (trunc / "model.tflite").write_bytes(data[: len(data) // 2])
    (trunc / "model.keras").write_bytes(b"PK\x03\x04 not really")
    liar = models / "liar"
    shutil.copytree(good, liar)
    (liar / "meta.json").write_text((good / "meta.json").read_text().replace('"input_size": 32', '"input_size": 100000'))
    (models / "deep").mkdir()
    (models / "deep" / "meta.json").write_text("[" * 100_000)
    (models / ".m.old-1-0badc0de").mkdir()
    return models


@pytest.mark.parametrize("page", ["pages/4_Evaluate.py", "pages/5_Video.py", "pages/6_Webcam.py", "pages/3_Train.py",
                                  "pages/7_Recognize.py", "streamlit_app.py"])
def test_pages_render_with_broken_models(hostile_models, page):
    _ok(_app(page))


def test_evaluate_page_reports_a_truncated_model(hostile_models):
    at = _ok(_app("pages/4_Evaluate.py"))
    ms = at.multiselect(key="eval_detectors")
    assert {"trunc", "liar", "good"} <= set(ms.options) and "deep" not in ms.options
    ms.set_value(["trunc", "liar"])
    press_evaluate(at)
    shown = " ".join(str(e.value) for e in at.error) + " ".join(str(e.value) for e in at.warning)
    assert "trunc" in shown and "model.keras" in shown  # the broken one is named, the liar evaluates
