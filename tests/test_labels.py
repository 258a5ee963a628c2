import json

import numpy as np
import pytest

from facecore import ImageLabel, LabelFormatError
from facecore.datasets.labels import (image_name, read_label, read_labelme, read_voc, write_labelme, write_voc)


def _labelme(points, **extra):
    doc = {"version": "5.0.1", "flags": {}, "shapes": [
        {"label": "face", "points": points, "group_id": None, "shape_type": "rectangle", "flags": {}}],
        "imagePath": "..\\images\\a.jpg", "imageData": None, "imageHeight": 480, "imageWidth": 640}
    doc.update(extra)
    return doc


@pytest.mark.parametrize("points", [
    [[64, 48], [320, 240]],
    [[320, 240], [64, 48]],  # drawn bottom-right to top-left
    [[320, 48], [64, 240]],
])
def test_read_labelme_any_corner(tmp_path, points):
    p = tmp_path / "a.json"
    p.write_text(json.dumps(_labelme(points)))
    lab = read_labelme(p)
    np.testing.assert_allclose(lab.boxes, [[0.1, 0.1, 0.5, 0.5]], atol=1e-6)
    assert (lab.width, lab.height) == (640, 480)


@pytest.mark.parametrize("label_name", ["face", "Face", "me", "person"])
def test_any_label_name_is_a_face(tmp_path, label_name):
    doc = _labelme([[1, 2], [30, 40]])
    doc["shapes"][0]["label"] = label_name
    p = tmp_path / "a.json"
    p.write_text(json.dumps(doc))
    assert read_labelme(p).has_face


def test_imagedata_present_is_fine(tmp_path):
    p = tmp_path / "a.json"
    p.write_text(json.dumps(_labelme([[1, 2], [30, 40]], imageData="aGVsbG8=")))
    assert read_labelme(p).has_face


@pytest.mark.parametrize("path,name", [
    ("..\\images\\abc.jpg", "abc.jpg"), ("../images/abc.jpg", "abc.jpg"), ("abc.jpg", "abc.jpg"),
    ("C:\\Users\\me\\data\\images\\x y.jpg", "x y.jpg"),
])
def test_image_name_windows_and_posix(path, name):
    assert image_name(path) == name


def test_labelme_round_trip(tmp_path):
    lab = ImageLabel(640, 480, [[0.1, 0.2, 0.3, 0.4], [0.5, 0.5, 0.9, 0.8]])
    p = write_labelme(tmp_path / "x.json", lab, "x.jpg")
    doc = json.loads(p.read_text())
    assert doc["imageData"] is None and doc["imagePath"] == "../images/x.jpg"
    assert doc["shapes"][0]["points"] == [[64.0, 96.0], [192.0, 192.0]]
    back = read_labelme(p)
    np.testing.assert_allclose(back.boxes, lab.boxes, atol=1e-6)
    assert not list(tmp_path.glob("*.tmp")), "atomic write left a temp file"


def test_noface_labelme_round_trip(tmp_path):
    p = write_labelme(tmp_path / "x.json", ImageLabel(64, 48), "x.jpg")
    assert not read_labelme(p).has_face


def test_voc_round_trip(tmp_path):
    lab = ImageLabel(200, 100, [[0.25, 0.1, 0.75, 0.9]])
    p = write_voc(tmp_path / "x.xml", lab, "x.jpg")
    back = read_voc(p)
    np.testing.assert_allclose(back.boxes, lab.boxes, atol=1e-6)
    np.testing.assert_allclose(read_label(p).boxes, lab.boxes, atol=1e-6)


def test_voc_labelimg_file(tmp_path):
    p = tmp_path / "x.xml"
    p.write_text("""<annotation><folder>images</folder><filename>x.jpg</filename>
      <size><width>640</width><height>480</height><depth>3</depth></size>
      <object><name>me</name><pose>Unspecified</pose><truncated>0</truncated><difficult>0</difficult>
      <bndbox><xmin>64</xmin><ymin>48</ymin><xmax>320</xmax><ymax>240</ymax></bndbox></object></annotation>""")
    np.testing.assert_allclose(read_voc(p).boxes, [[0.1, 0.1, 0.5, 0.5]], atol=1e-6)


BAD_JSON = [
    ("{not json", "invalid JSON"),
    ("[1, 2]", "top level"),
    (json.dumps({"shapes": [], "imageWidth": 10}), "imageHeight"),
    (json.dumps(_labelme([[1, 2]])), "two [x, y] points"),
    (json.dumps(_labelme([[1, "a"], [3, 4]])), "not a number"),
    (json.dumps(_labelme([[1, 2], [3, 4]], imageWidth=0)), "positive"),
    (json.dumps({**_labelme([[1, 2], [3, 4]]), "shapes": {"a": 1}}), "must be a list"),
]


@pytest.mark.parametrize("text,needle", BAD_JSON)
def test_malformed_labelme_names_file_and_problem(tmp_path, text, needle):
    p = tmp_path / "broken.json"
    p.write_text(text)
    with pytest.raises(LabelFormatError) as err:
        read_labelme(p)
    assert "broken.json" in str(err.value) and needle in str(err.value)


BAD_XML = [
    ("<annotation><size>", "invalid XML"),
    ("<doc/>", "not a Pascal VOC"),
    ("<annotation><object><bndbox/></object></annotation>", "<size>"),
    ("<annotation><size><width>10</width><height>10</height></size><object><name>f</name></object></annotation>", "bndbox"),
    ("<annotation><size><width>10</width><height>10</height></size><object><bndbox><xmin>1</xmin></bndbox></object></annotation>", "ymin"),
    ("<annotation><size><width>x</width><height>10</height></size></annotation>", "not a number"),
]


@pytest.mark.parametrize("text,needle", BAD_XML)
def test_malformed_voc_names_file_and_problem(tmp_path, text, needle):
    p = tmp_path / "broken.xml"
    p.write_text(text)
    with pytest.raises(LabelFormatError) as err:
        read_voc(p)
    assert "broken.xml" in str(err.value) and needle in str(err.value)


def test_unsupported_label_type(tmp_path):
    p = tmp_path / "a.txt"
    p.write_text("0 0.5 0.5 0.1 0.1")
    with pytest.raises(LabelFormatError, match="unsupported"):
        read_label(p)


def test_sample_labels_all_parse():
    from conftest import SAMPLE
    labels = sorted((SAMPLE / "labels").glob("*.json"))
    assert len(labels) >= 40
    for p in labels:
        lab = read_labelme(p)
        assert lab.has_face != p.stem.startswith("noface-"), p.name  # the no-face crops have no shapes
        assert (lab.boxes[:, :2] < lab.boxes[:, 2:]).all()


def test_several_faces_survive_labelme_and_voc_round_trips(tmp_path):
    """Every box is kept, in order, through labelme -> VOC -> labelme (issue 17: not only the first)."""
    lab = ImageLabel(640, 480, [[0.1, 0.2, 0.3, 0.4], [0.5, 0.5, 0.9, 0.8], [0.05, 0.6, 0.2, 0.95]])
    j = read_labelme(write_labelme(tmp_path / "a.json", lab, "a.jpg"))
    assert len(json.loads((tmp_path / "a.json").read_text())["shapes"]) == 3
    v = read_voc(write_voc(tmp_path / "a.xml", j, "a.jpg"))
    back = read_label(write_labelme(tmp_path / "b.json", v, "a.jpg"))
    for got in (j, v, back):
        assert got.boxes.shape == (3, 4)
        np.testing.assert_allclose(got.boxes, lab.boxes, atol=1 / 480)  # VOC rounds corners to whole pixels
