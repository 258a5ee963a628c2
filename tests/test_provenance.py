"""Labels record which boxes were accepted unchanged from a detector's proposals, and Evaluate says when a
detector is scored against its own boxes (or those of the network it started from)."""

import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from conftest import ROOT, press_evaluate
from facecore.datasets.dataset import Dataset
from facecore.evaluate.metrics import EvalImage
from facecore.datasets.labels import ImageLabel, labelme_document, parse_labelme, read_label, voc_document
from facecore.datasets.prelabel import Proposal, accept_proposal, accept_proposals, proposal_sources
from facecore.evaluate.provenance import own_labels, start_detectors

PAGE = str(ROOT / "pages" / "4_Evaluate.py")
SAMPLE = Path("data/sample")
BOXES = np.array([[0.1, 0.1, 0.4, 0.5], [0.5, 0.2, 0.8, 0.6]], np.float32)


def test_labelme_keeps_the_proposing_detector_per_box():
    label = ImageLabel(640, 480, BOXES, ("blazeface", ""))
    doc = labelme_document(label, "a.jpg")
    assert doc["shapes"][0]["proposed_by"] == "blazeface" and "proposed_by" not in doc["shapes"][1]
    assert parse_labelme(json.loads(json.dumps(doc))).proposed_by == ("blazeface", "")
    assert parse_labelme(labelme_document(ImageLabel(640, 480, BOXES), "a.jpg")).proposed_by == ()
    assert ImageLabel(640, 480, BOXES, ("", "")).proposed_by == ()  # nothing recorded
    assert "proposed_by" not in voc_document(label, "a.jpg")  # VOC has no place for it
    with pytest.raises(ValueError, match="the label has 2"):
        ImageLabel(640, 480, BOXES, ("blazeface",))
    doc["shapes"][0]["proposed_by"] = 7  # a foreign value is not a detector's name
    assert parse_labelme(doc).proposed_by == ()


def _dataset(tmp_path: Path, n: int = 3) -> Dataset:
    ds = Dataset.create(tmp_path / "ds")
    for f in sorted((SAMPLE / "images").glob("*.jpg"))[:n]:
        ds.add_image(f.read_bytes(), f.name)
    return ds


def test_accepted_proposals_record_their_detector_and_a_moved_box_does_not(tmp_path):
    from facecore.datasets.labeling import save_pixel_boxes

    ds = _dataset(tmp_path)
    a, b, c = [it.stem for it in ds.items()]
    accept_proposal(ds, a, Proposal(BOXES, (0.9, 0.8), "blazeface"))
    assert ds.read_label(ds.item(a)).proposed_by == ("blazeface", "blazeface")
    saved, _ = accept_proposals(ds, {b: Proposal(BOXES[:1], (0.9,), "my-model")})
    assert saved == [b] and ds.read_label(ds.item(b)).proposed_by == ("my-model",)
    # the Label view: box 1 saved as proposed, box 2 moved 20 px, a third one drawn
    prop = Proposal(BOXES, (0.9, 0.8), "blazeface")
    px = (BOXES * [640, 480, 640, 480]).tolist()
    px[1][0] += 20
    save_pixel_boxes(ds, c, [px[0], px[1], [10, 300, 90, 400]], (640, 480), proposal=prop)
    assert ds.read_label(ds.item(c)).proposed_by == ("blazeface", "", "")
    # saved again later with one more box: the unchanged proposal keeps its detector
    save_pixel_boxes(ds, c, [px[0], px[1], [10, 300, 90, 400], [300, 300, 400, 420]], (640, 480))
    assert ds.read_label(ds.item(c)).proposed_by == ("blazeface", "", "", "")
    # every box moved: nothing recorded
    save_pixel_boxes(ds, a, [[v + 15 for v in px[0]]], (640, 480))
    assert ds.read_label(ds.item(a)).proposed_by == ()


@pytest.mark.parametrize("boxes,expected", [(BOXES, ("det", "det")), (BOXES + 0.001, ("det", "det")),
                                            (BOXES + [0.03, 0, 0.03, 0], ("", "")), (np.zeros((0, 4)), ())])
def test_proposal_sources_match_unchanged_boxes_only(boxes, expected):
    assert proposal_sources(boxes, Proposal(BOXES, (0.9, 0.8), "det")) == expected
    assert proposal_sources(boxes) == ()


@pytest.mark.parametrize("meta,expected", [
    ({"architecture": "blazeface-style"}, ("blazeface",)),
    ({"architecture": "blazeface", "config": {"weights": "blazeface", "input_size": 192}}, ("blazeface",)),
    ({"architecture": "blazeface", "config": {"weights": "blazeface", "input_size": 128}}, ("blazeface-short",)),
    ({"architecture": "blazeface", "config": {"weights": None, "input_size": 192}}, ()),
    ({"config": {"backbone": "mobilenetv2", "weights": "imagenet"}}, ()),
    ({}, ()), (None, ()), ({"architecture": "blazeface", "config": "broken"}, ()),
])
def test_start_detectors_name_the_network_a_model_started_from(meta, expected):
    assert start_detectors(meta) == expected


def test_own_labels_counts_the_detectors_and_its_start_networks_boxes():
    images = [EvalImage("a", Path("a.jpg"), BOXES, ("blazeface", "")),
              EvalImage("b", Path("b.jpg"), BOXES[:1], ("mine",)),
              EvalImage("c", Path("c.jpg"), BOXES[:0]),
              EvalImage("d", Path("d.jpg"), BOXES)]
    own = own_labels(images, "blazeface")
    assert (own.boxes, own.unchanged, own.from_itself, own.from_start) == (5, 1, 1, 0)
    assert "1 of the 5 face boxes" in own.message() and "`blazeface`'s own proposals" in own.message()
    style = own_labels(images, "mine", {"architecture": "blazeface-style"})
    assert (style.from_itself, style.from_start, style.start) == (1, 1, "blazeface")
    assert "`blazeface`, the network `mine` started from" in style.message()
    assert own_labels(images, "mine@int8").from_itself == 1  # the int8 copy is the same model
    none = own_labels(images, "haar")
    assert none.unchanged == 0 and none.message() == ""


@pytest.mark.slow
def test_evaluate_warns_when_labels_are_the_detectors_own_proposals(workspace_env):
    """Pre-label with BlazeFace, accept, evaluate: the page says BlazeFace is scored against its own boxes
    (not Haar); once every box is redrawn by hand the warning is gone."""
    from facecore.blazeface.builtin import BlazeFaceDetector
    from facecore.datasets.labeling import save_pixel_boxes
    from facecore.datasets.prelabel import prelabel

    data, _ = workspace_env
    ds = Dataset.create(data / "workspace" / "pre")
    for f in sorted((SAMPLE / "images").glob("*.jpg"))[:6]:
        ds.add_image(f.read_bytes(), f.name)
    result = prelabel(ds, BlazeFaceDetector("full"), min_score=0.5)
    saved, _ = accept_proposals(ds, result.proposals)
    n_boxes = sum(len(p.boxes) for p in result.proposals.values())
    assert len(saved) >= 4
    at = AppTest.from_file(PAGE, default_timeout=180)
    at.query_params["dataset"] = "pre"
    at.run()
    at.multiselect(key="eval_detectors").set_value(["blazeface", "haar"])
    at.selectbox(key="eval_split").select("all")
    at.run()
    press_evaluate(at)
    warned = [w.value for w in at.warning if "scored against its own boxes" in w.value]
    assert len(warned) == 1 and "`blazeface`" in warned[0] and "`haar`" not in warned[0]
    assert f"{n_boxes} of the {n_boxes} face boxes" in warned[0]
    assert float(at.dataframe[0].value.loc["mean IoU (face images)", "blazeface"]) > 0.95  # its own boxes
    # a person moves every box: the labels are theirs now, and the page says nothing
    for stem in saved:
        label = read_label(ds.item(stem).label)
        save_pixel_boxes(ds, stem, (label.pixel_boxes() + [0, -12, 0, 0]).tolist(), (label.width, label.height))
    press_evaluate(at)
    assert not [w for w in at.warning if "scored against its own boxes" in w.value]
