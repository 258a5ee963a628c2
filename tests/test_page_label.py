"""AppTest of pages/1_Collect_and_Label.py: datasets, uploads, webcam, numeric boxes, no-face, proposals,
gallery, export. The drawing canvas is a custom component (renders nothing here); the mouse is tested in
tests/test_browser_label.py."""

import io
import json
import shutil
import zipfile

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from conftest import ROOT, SAMPLE
from facecore import Dataset
from facecore.io import encode_jpeg
from facecore.labels import read_label
from synth import face_image, make_dataset

PAGE = str(ROOT / "pages" / "1_Collect_and_Label.py")


def run(x):
    """Run the app (``x`` is the AppTest or a widget just set) and check it raised nothing."""
    at = x.run()
    assert not at.exception, at.exception
    return at


def start(dataset: str | None = None):
    at = run(AppTest.from_file(PAGE, default_timeout=120))
    if dataset is not None:
        run(at.sidebar.selectbox[0].select(dataset))
    return at


def view(at, name):
    return run(at.button_group(key="lab_view").set_value(name))


def button(at, label):
    matches = [b for b in at.button if b.label == label]
    assert matches, f"no button {label!r} in {[b.label for b in at.button]}"
    return matches[0]


def texts(at):
    return " ".join(str(x.value) for kind in (at.success, at.info, at.warning, at.error, at.markdown, at.caption)
                    for x in kind)


def jpeg(seed, w=160, h=120):
    img, _ = face_image(np.random.default_rng(seed), w, h)
    return encode_jpeg(img)


@pytest.fixture
def mine(workspace_env):
    data, _ = workspace_env
    return make_dataset(data / "workspace" / "mine", n_face=3, n_noface=2)  # img003, img004 unlabeled


def test_sample_is_read_only_and_copy_switches_to_it(workspace_env):
    data, _ = workspace_env
    at = start()
    assert at.sidebar.selectbox[0].value == "sample"
    assert "read-only" in texts(at) and not [b for b in at.button if b.label in ("Save boxes", "No face")]
    assert at.progress[0].proto.text == "90 of 90 labeled"
    at.text_input(key="lab_copy_name").set_value("edit-me")
    at = run(button(at, "Copy to my workspace to edit").click())
    assert at.sidebar.selectbox[0].value == "edit-me"
    assert "Copied the sample" in texts(at)
    copy = Dataset.open(data / "workspace" / "edit-me")
    assert len(copy.items()) == 90 and len(list(copy.labels_dir.iterdir())) == 90
    assert button(at, "Save boxes")  # editable now
    assert len(list((data / "sample" / "labels").iterdir())) == 90  # the sample is untouched


def test_create_dataset_then_upload_images_zip_and_corrupt_file(workspace_env):
    data, _ = workspace_env
    at = start()
    at.text_input[0].set_value("fresh")
    run(at.button(key="FormSubmitter:lab_new_dataset-Create dataset").click())
    assert at.sidebar.selectbox[0].value == "fresh"
    assert "No images yet" in texts(at)
    at = view(at, "Add images")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("x/images/zipped.jpg", jpeg(5))
        zf.writestr("x/labels/zipped.xml", "<annotation><size><width>160</width><height>120</height></size><object>"
                    "<name>face</name><bndbox><xmin>5</xmin><ymin>6</ymin><xmax>50</xmax><ymax>60</ymax></bndbox>"
                    "</object></annotation>")
    at.file_uploader[0].set_value([("one.jpg", jpeg(1), "image/jpeg"), ("broken.jpg", b"\xff\xd8garbage", "image/jpeg"),
                                   ("two.jpg", jpeg(2), "image/jpeg"), ("set.zip", buf.getvalue(), "application/zip")])
    run(at)
    ds = Dataset.open(data / "workspace" / "fresh")
    assert sorted(p.name for p in ds.images_dir.iterdir()) == ["one.jpg", "two.jpg", "zipped.jpg"]
    np.testing.assert_allclose(read_label(ds.labels_dir / "zipped.json").pixel_boxes()[0], [5, 6, 50, 60])
    assert "Added 3 image(s) (1 with a label)" in texts(at)
    assert "broken.jpg" in " ".join(w.value for w in at.warning)  # skipped, named, the rest kept
    assert at.progress[0].proto.text == "1 of 3 labeled"
    assert not at.file_uploader[0].value  # a fresh uploader: a rerun does not add them again
    run(at)
    assert len(ds.items()) == 3


def test_webcam_photos_saved_once_each(mine):
    at = view(start("mine"), "Add images")
    at.camera_input[0].upload("photo.jpg", jpeg(11))
    run(at)
    assert "Saved webcam photo webcam_" in texts(at)
    run(at)  # reruns keep the same snapshot: it must not be saved twice
    webcam = [it for it in mine.items() if it.stem.startswith("webcam_")]
    assert len(webcam) == 1
    at.camera_input[0].upload("photo.jpg", jpeg(12))
    run(at)
    assert len([it for it in mine.items() if it.stem.startswith("webcam_")]) == 2


def test_numeric_box_saves_label_then_no_face(mine):
    at = start("mine")
    assert at.progress[0].proto.text == "3 of 5 labeled"
    assert "img000.jpg" in texts(at) and "face" in texts(at)
    run(button(at, "Next unlabeled").click())
    assert "img003.jpg" in texts(at) and "unlabeled" in texts(at)
    for label, v in zip(("x1 (px)", "y1 (px)", "x2 (px)", "y2 (px)"), (70, 80, 12.5, 20)):  # any corner order
        [n for n in at.number_input if n.label == label][0].set_value(v)
    run(at)
    run(button(at, "Save boxes").click())
    lab = read_label(mine.labels_dir / "img003.json")
    np.testing.assert_allclose(lab.pixel_boxes()[0], [12.5, 20, 70, 80])
    assert json.loads((mine.labels_dir / "img003.json").read_text())["shapes"][0]["points"] == [[12.5, 20.0], [70.0, 80.0]]
    assert at.progress[0].proto.text == "4 of 5 labeled"
    assert "img004.jpg" in texts(at)  # moved on to the next unlabeled image
    run(button(at, "No face").click())
    assert json.loads((mine.labels_dir / "img004.json").read_text())["shapes"] == []
    assert at.progress[0].proto.text == "5 of 5 labeled"
    run(button(at, "Previous").click())
    run(button(at, "Save boxes").click())  # the saved box is loaded into the inputs: saving again keeps it
    np.testing.assert_allclose(read_label(mine.labels_dir / "img003.json").pixel_boxes()[0], [12.5, 20, 70, 80])


def test_bad_box_is_refused_and_nothing_written(mine):
    at = start("mine")
    run(button(at, "Next unlabeled").click())
    run(button(at, "Save boxes").click())
    assert "Draw a box" in " ".join(e.value for e in at.error)
    for label, v in zip(("x1 (px)", "y1 (px)", "x2 (px)", "y2 (px)"), (10, 10, 11, 50)):
        [n for n in at.number_input if n.label == label][0].set_value(v)
    run(at)
    run(button(at, "Save boxes").click())
    assert "too small" in " ".join(e.value for e in at.error)
    assert not (mine.labels_dir / "img003.json").exists()


@pytest.fixture
def real(workspace_env):
    """Three real photos from the sample, unlabeled."""
    data, _ = workspace_env
    ds = Dataset.create(data / "workspace" / "real")
    for p in sorted((SAMPLE / "images").iterdir())[:3]:
        shutil.copy(p, ds.images_dir / p.name)
    return ds


def test_propose_accept_and_bulk_prelabel(real):
    stems = [it.stem for it in real.items()]
    at = start("real")
    run(button(at, "Propose boxes").click())
    assert "Proposal by **haar**" in texts(at)
    assert not list(real.labels_dir.iterdir())  # a proposal is not a label
    x1 = [n for n in at.number_input if n.label == "x1 (px)"][0].value
    assert x1 is not None and 150 < x1 < 400  # the proposal is loaded for adjusting
    run(button(at, "Accept proposal").click())
    assert [p.stem for p in real.labels_dir.iterdir()] == [stems[0]]
    assert read_label(real.labels_dir / f"{stems[0]}.json").has_face

    at = view(at, "Pre-label")
    run(button(at, "Pre-label all unlabeled (2)").click())
    assert "haar proposed" in texts(at) and "box(es) in 2 image(s)" in texts(at)
    assert len(list(real.labels_dir.iterdir())) == 1  # still only the accepted one
    at = view(at, "Gallery")
    run(at.button_group(key="lab_filter").set_value("unlabeled"))
    assert len([b for b in at.button if b.key and b.key.startswith("gal_open_")]) == 2
    at = view(at, "Pre-label")
    run(button(at, "Accept all 2 proposals").click())
    assert sorted(p.stem for p in real.labels_dir.iterdir()) == sorted(stems)
    assert at.progress[0].proto.text == "3 of 3 labeled"


def test_gallery_filter_and_open(mine):
    at = view(start("mine"), "Gallery")
    run(at.button_group(key="lab_filter").set_value("unlabeled"))
    opens = [b for b in at.button if b.key and b.key.startswith("gal_open_")]
    assert [b.key for b in opens] == ["gal_open_img003", "gal_open_img004"]
    assert len(at.image) == 2  # the two thumbnails
    run(opens[1].click())
    assert at.button_group(key="lab_view").value == "Label"
    assert "img004.jpg" in texts(at)


def test_delete_image(mine):
    at = start("mine")
    run(button(at, "Next").click())
    run(button(at, "Delete permanently").click())
    assert "Deleted img001.jpg" in texts(at)
    assert not (mine.images_dir / "img001.jpg").exists() and not (mine.labels_dir / "img001.json").exists()
    assert at.progress[0].proto.text == "2 of 4 labeled"


def test_export_round_trip(mine, monkeypatch, tmp_path):
    """The bytes handed to the download button are a labelme zip that imports back to the same labels."""
    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

    captured = {}
    original = MemoryMediaFileStorage.load_and_get_id

    def capture(self, path_or_data, mimetype, kind, filename=None):
        if filename and filename.endswith(".zip"):
            captured[filename] = path_or_data
        return original(self, path_or_data, mimetype, kind, filename)

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", capture)
    at = start("mine")
    run(button(at, "Next unlabeled").click())
    run(button(at, "No face").click())  # img003 no face; img004 stays unlabeled
    at = view(at, "Export")
    assert at.get("download_button")[0].proto.label.startswith("Download mine_labelme.zip")
    data = captured["mine_labelme.zip"]
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    assert "mine/labels/img004.json" not in names and "mine/images/img004.jpg" in names
    back = Dataset.create(tmp_path / "back")
    report = back.import_zip(data)
    assert len(report.added) == 5 and report.labeled == 4
    for it in mine.items():
        a, b = mine.read_label(it), back.read_label(back.item(it.stem))
        assert (a is None) == (b is None)
        if a is not None:
            np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-6)


def test_no_dataset_yet_then_bad_and_good_names(tmp_path, monkeypatch):
    monkeypatch.setenv("FACETRACK_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("FACETRACK_MODELS", str(tmp_path / "models"))
    at = start()
    assert "No dataset yet" in " ".join(w.value for w in at.sidebar.warning)
    at.text_input[0].set_value("../evil")
    at = run(at.button(key="FormSubmitter:lab_new_dataset-Create dataset").click())
    assert "not allowed" in " ".join(e.value for e in at.error)
    assert not (tmp_path / "data" / "workspace").exists() or not any((tmp_path / "data" / "workspace").iterdir())
    at.text_input[0].set_value("first")
    at = run(at.button(key="FormSubmitter:lab_new_dataset-Create dataset").click())
    assert at.sidebar.selectbox[0].value == "first" and (tmp_path / "data" / "workspace" / "first" / "images").is_dir()
    assert at.progress[0].proto.text == "0 of 0 labeled"


@pytest.mark.slow
def test_prelabel_with_a_trained_model(mine, workspace_env):
    """A model saved in models/ is offered next to haar and its proposals are shown, not saved."""
    from test_inference import save_model_dir, tiny_model

    _, models = workspace_env
    model = tiny_model()
    # Untrained weights put a degenerate box in the middle; fix the heads' output instead:
    # box (0.2, 0.25)-(0.6, 0.75) with probability 0.9 whatever the image.
    layers = {layer.name: layer for layer in model._flatten_layers()}
    for name, target in (("box", [0.2, 0.25, 0.6, 0.75]), ("prob", [0.9])):
        kernel, _ = layers[name].get_weights()
        t = np.array(target, np.float32)
        layers[name].set_weights([np.zeros_like(kernel), np.log(t / (1 - t))])
    save_model_dir(models / "tiny", model=model, tflite=False)
    at = view(start("mine"), "Pre-label")
    assert at.selectbox(key="lab_det_batch").options == ["haar", "tiny"]
    at.selectbox(key="lab_det_batch").set_value("tiny")
    at.slider(key="lab_min_score").set_value(0.0)
    at = run(button(at, "Pre-label all unlabeled (2)").click())
    assert "tiny proposed 2 box(es) in 2 image(s)" in texts(at)
    assert not (mine.labels_dir / "img003.json").exists() and not (mine.labels_dir / "img004.json").exists()
    at = view(at, "Label")
    run(button(at, "Next unlabeled").click())
    assert "Proposal by **tiny**, score 0.90" in texts(at)
    x1, y1 = (n.value for n in at.number_input[:2])
    assert (x1, y1) == pytest.approx((0.2 * 160, 0.25 * 120), abs=0.2)  # proposal loaded for adjusting
