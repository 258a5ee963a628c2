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
from facecore.images import encode_jpeg
from facecore.datasets.labels import read_label
from facecore.testing import face_image, make_dataset

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
    n = len(list((SAMPLE / "images").iterdir()))
    assert at.progress[0].proto.text == f"{n} of {n} labeled"
    at.text_input(key="lab_copy_name").set_value("edit-me")
    at = run(button(at, "Copy to my workspace to edit").click())
    assert at.sidebar.selectbox[0].value == "edit-me"
    assert "Copied the sample" in texts(at)
    copy = Dataset.open(data / "workspace" / "edit-me")
    assert len(copy.items()) == n and len(list(copy.labels_dir.iterdir())) == n
    assert button(at, "Save boxes")  # editable now
    assert len(list((data / "sample" / "labels").iterdir())) == n  # the sample is untouched


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
    warned = " ".join(w.value for w in at.warning)
    assert "broken.jpg" in warned and "broken.jpg: broken.jpg" not in warned  # skipped, named once, the rest kept
    assert warned.count("broken.jpg") == 1
    assert at.progress[0].proto.text == "1 of 3 labeled"
    assert not at.file_uploader[0].value  # a fresh uploader: a rerun does not add them again
    run(at)
    assert len(ds.items()) == 3


def test_webcam_photos_saved_once_each(mine):
    at = view(start("mine"), "Add images")
    assert not at.camera_input  # the camera is off until the user asks for it
    run(at.toggle(key="lab_camera_on").set_value(True))
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
    run(at.selectbox(key="lab_det").set_value("haar"))  # the OpenCV cascade: no model file, deterministic
    run(button(at, "Propose boxes").click())
    assert "Proposal by **haar**" in texts(at)
    assert not list(real.labels_dir.iterdir())  # a proposal is not a label
    x1 = [n for n in at.number_input if n.label == "x1 (px)"][0].value
    assert x1 is not None and 150 < x1 < 400  # the proposal is loaded for adjusting
    run(button(at, "Accept proposal").click())
    assert [p.stem for p in real.labels_dir.iterdir()] == [stems[0]]
    assert read_label(real.labels_dir / f"{stems[0]}.json").has_face

    at = view(at, "Pre-label")
    run(at.selectbox(key="lab_det_batch").set_value("haar"))
    run(button(at, "Pre-label all unlabeled (2)").click())
    at.session_state["lab_prelabel_job"].wait(300)  # pre-labeling runs in the background
    run(at)
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
    picker = at.selectbox(key="lab_det_batch")
    assert picker.value == "tiny" and "haar" in picker.options  # the detector saved last is the default
    at.selectbox(key="lab_det_batch").set_value("tiny")
    at.slider(key="lab_min_score").set_value(0.0)
    at = run(button(at, "Pre-label all unlabeled (2)").click())
    if "lab_prelabel_job" in at.session_state:  # a fast job is collected in the same run already
        at.session_state["lab_prelabel_job"].wait(300)
        run(at)
    assert "tiny proposed 2 box(es) in 2 image(s)" in texts(at)
    assert not (mine.labels_dir / "img003.json").exists() and not (mine.labels_dir / "img004.json").exists()
    at = view(at, "Label")
    run(button(at, "Next unlabeled").click())
    assert "Proposal by **tiny**, score 0.90" in texts(at)
    x1, y1 = (n.value for n in at.number_input[:2])
    assert (x1, y1) == pytest.approx((0.2 * 160, 0.25 * 120), abs=0.2)  # proposal loaded for adjusting


def corners(at, values):
    for label, v in zip(("x1 (px)", "y1 (px)", "x2 (px)", "y2 (px)"), values):
        [n for n in at.number_input if n.label == label][0].set_value(v)
    return run(at)


def test_several_boxes_typed_selected_deleted_and_saved(mine):
    at = start("mine")
    run(button(at, "Next unlabeled").click())
    assert "img003.jpg" in texts(at)
    corners(at, (10, 10, 50, 60))
    run(button(at, "New box").click())
    assert [n.value for n in at.number_input[:4]] == [None] * 4  # empty inputs for the second box
    corners(at, (90, 20, 150, 100))
    assert at.button_group(key="lab_sel").value == 1
    at.checkbox(key="lab_auto").uncheck()
    run(button(at, "Save boxes").click())
    np.testing.assert_allclose(read_label(mine.labels_dir / "img003.json").pixel_boxes(),
                               [[10, 10, 50, 60], [90, 20, 150, 100]])
    assert "Saved 2 face box(es) of img003" in texts(at)
    # reloaded from disk: pick box 1, move it, delete box 2, save
    run(at.button_group(key="lab_sel").set_value(0))
    assert [n.value for n in at.number_input[:4]] == [10, 10, 50, 60]
    corners(at, (12, 10, 50, 60))
    assert "Not saved yet" in texts(at)
    run(at.button_group(key="lab_sel").set_value(1))
    run(button(at, "Delete box").click())
    run(button(at, "Save boxes").click())
    np.testing.assert_allclose(read_label(mine.labels_dir / "img003.json").pixel_boxes(), [[12, 10, 50, 60]])


def test_an_imported_label_with_several_faces_keeps_them_all_when_saved_again(mine):
    (mine.labels_dir / "img003.json").write_text(json.dumps({"imageWidth": 160, "imageHeight": 120, "shapes": [
        {"label": "face", "shape_type": "rectangle", "points": p} for p in
        ([[5, 5], [40, 50]], [[60, 10], [100, 60]], [[110, 40], [150, 110]])]}))
    at = start("mine")
    run(at.selectbox(key="lab_jump").set_value("img003"))
    assert "(3 boxes)" in texts(at) and at.button_group(key="lab_sel").options == ["1", "2", "3"]
    at.checkbox(key="lab_auto").uncheck()
    run(button(at, "Save boxes").click())
    assert len(read_label(mine.labels_dir / "img003.json").boxes) == 3
    at = view(at, "Gallery")
    assert any(b.label.endswith("3 faces") for b in at.button)


def test_propose_on_a_labeled_photo_adds_orange_boxes_and_keeps_the_saved_one(real):
    stem = real.items()[0].stem
    truth = read_label(SAMPLE / "labels" / f"{stem}.json")
    # a saved box far from the face: the proposal (the face) must be added next to it, not replace it
    from facecore.datasets import labeling as L
    L.save_pixel_boxes(real, stem, [[2, 2, 40, 40]])
    at = start("real")
    assert at.session_state["lab_cand"]["srcs"] == ["saved"]
    run(at.selectbox(key="lab_det").set_value("haar"))
    run(button(at, "Propose boxes").click())
    cand = at.session_state["lab_cand"]
    shown, srcs = [list(b) for b in cand["boxes"]], list(cand["srcs"])
    assert srcs[0] == "saved" and shown[0] == [2, 2, 40, 40]  # not recoloured, not moved
    assert srcs[1:] and set(srcs[1:]) == {"proposal"}
    assert "Proposal by **haar**" in texts(at) and "orange box(es)" in texts(at)
    assert "Not saved yet" in texts(at)
    assert read_label(real.labels_dir / f"{stem}.json").pixel_boxes().tolist() == [[2, 2, 40, 40]]
    run(button(at, "Accept proposal").click())
    saved = read_label(real.labels_dir / f"{stem}.json")
    np.testing.assert_allclose(saved.pixel_boxes(), shown, atol=0.06)  # exactly the boxes that were shown
    assert max(float(L.B.iou(b, truth.boxes[0])[0]) for b in saved.boxes[1:]) > 0.4

    # proposing again on the now fully labeled photo adds nothing and offers nothing to accept
    run(at.selectbox(key="lab_jump").set_value(stem))
    run(button(at, "Propose boxes").click())
    assert "nothing new" in texts(at)
    assert not [b for b in at.button if b.label == "Accept proposal"]


def test_keyboard_shortcuts_are_on_the_buttons(mine):
    at = start("mine")
    keys = {b.label: b.proto.shortcut for b in at.button if b.proto.shortcut}
    assert keys == {"Previous": "a", "Next": "d", "Next unlabeled": "u", "Propose boxes": "p", "Save boxes": "s",
                    "No face": "n", "Delete box": "delete"}


def test_uploading_the_same_photos_twice_adds_nothing_and_says_so(mine):
    at = view(start("mine"), "Add images")
    photos = [(f"new{i}.jpg", jpeg(40 + i), "image/jpeg") for i in range(3)]
    at.file_uploader[0].set_value(photos)
    run(at)
    assert "Added 3 image(s)" in texts(at) and len(mine.items()) == 8
    at.file_uploader[0].set_value([(f"again_{n}", d, t) for n, d, t in photos])  # other names, same photos
    run(at)
    said = " ".join(i.value for i in at.info)
    assert "3 photo(s) already in the dataset" in said and "again_new0.jpg" in said and "images/new0.jpg" in said
    assert len(mine.items()) == 8 and "Added" not in texts(at)
    # a webcam snapshot of a photo already there is not saved either
    run(at.toggle(key="lab_camera_on").set_value(True))
    at.camera_input[0].upload("photo.jpg", (mine.images_dir / "img001.jpg").read_bytes())
    run(at)
    assert "Webcam photo not saved" in " ".join(i.value for i in at.info) and len(mine.items()) == 8


def test_gallery_flags_near_duplicates(mine):
    import cv2

    img, _ = face_image(np.random.default_rng(1), 160, 120)
    mine.add_image(encode_jpeg(img), "big.jpg")
    mine.add_image(encode_jpeg(cv2.resize(img, (80, 60), interpolation=cv2.INTER_AREA), 70), "big_small.jpg")
    at = view(start("mine"), "Gallery")
    (exp,) = [e for e in at.expander if "near duplicate" in e.label]
    assert exp.label.startswith("1 photo(s)") and "**big_small.jpg** ≈ big.jpg" in " ".join(m.value for m in exp.markdown)
