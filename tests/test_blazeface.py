"""The built-in BlazeFace detector: anchors, decoding, weighted NMS, box style, and real photos."""

import json

import numpy as np
import pytest

from facecore.blazeface import builtin as BF
from facecore import boxes as B
from facecore.detect import BLAZEFACE, DEFAULT_DETECTOR, Detection
from facecore.registry import detector_names, load_detector
from facecore.evaluate.metrics import collect_images, evaluate
from facecore.images import read_image

SAMPLE = "data/sample"


@pytest.mark.parametrize("variant,count,size", [("short", 896, 128), ("full", 2304, 192)])
def test_anchor_grid_matches_mediapipe(variant, count, size):
    a = BF.ssd_anchors(variant)
    assert a.shape == (count, 3)
    assert BF.VARIANTS[variant].size == size
    assert a[:, :2].min() > 0 and a[:, :2].max() < 1
    if variant == "short":
        # 16x16 cells x 2 anchors, then 8x8 cells x 6 anchors; first cell centre (0.5 / 16)
        assert np.allclose(a[0, :2], [1 / 32, 1 / 32]) and np.allclose(a[1, :2], [1 / 32, 1 / 32])
        assert np.allclose(a[512, :2], [1 / 16, 1 / 16]) and np.allclose(a[517, :2], [1 / 16, 1 / 16])
        assert np.allclose(a[518, :2], [3 / 16, 1 / 16])


def test_decode_inverts_the_regression():
    anchors = np.array([[0.5, 0.5, 0.1], [0.25, 0.75, 0.1]], np.float32)
    reg = np.zeros((2, 16), np.float32)
    reg[0, :4] = [12.8, -6.4, 32.0, 64.0]  # centre moved by (0.1, -0.05); size (0.25, 0.5) of 128 px
    reg[1, 4:6] = [6.4, 0.0]
    boxes, kp, scores = BF.decode(reg, np.array([0.0, 100.0]), anchors, 128)
    assert np.allclose(boxes[0], [0.6 - 0.125, 0.45 - 0.25, 0.6 + 0.125, 0.45 + 0.25])
    assert np.allclose(kp[1, 0], [0.3, 0.75])
    assert np.allclose(scores, [0.5, 1.0])
    assert np.isfinite(BF.decode(reg, np.array([-1e9, 1e9]), anchors, 128)[2]).all()  # clipped like MediaPipe


def test_weighted_nms_averages_overlaps_and_keeps_separate_faces():
    boxes = np.array([[0.1, 0.1, 0.3, 0.3], [0.12, 0.1, 0.32, 0.3], [0.6, 0.6, 0.8, 0.8], [0.0, 0.0, 1, 1]], np.float32)
    scores = np.array([0.9, 0.6, 0.8, 0.1], np.float32)
    out = BF.weighted_nms(boxes, scores, min_score=0.5)
    assert [round(s, 2) for s, _ in out] == [0.9, 0.8]
    expected = (boxes[0] * 0.9 + boxes[1] * 0.6) / 1.5
    assert np.allclose(out[0][1], expected, atol=1e-6)
    assert np.allclose(out[1][1], boxes[2])
    assert BF.weighted_nms(boxes, scores, min_score=0.95) == []


def test_box_style_fit_recovers_a_known_offset():
    rng = np.random.default_rng(0)
    det = np.sort(rng.uniform(0.1, 0.9, (40, 4)).astype(np.float32).reshape(40, 2, 2), axis=1)
    det = np.stack([det[:, 0, 0], det[:, 0, 1], det[:, 1, 0], det[:, 1, 1]], axis=1)
    det = det[(det[:, 2] - det[:, 0] > 0.1) & (det[:, 3] - det[:, 1] > 0.1)]
    truth = BF.BoxStyle(left=-0.05, top=-0.2, right=0.05, bottom=0.1)
    labels = truth.apply(det)
    inside = (labels > 0).all(1) & (labels < 1).all(1)  # clipping would bias the median
    fitted = BF.BoxStyle.fit(det[inside], labels[inside])
    assert np.allclose([fitted.left, fitted.top, fitted.right, fitted.bottom], [-0.05, -0.2, 0.05, 0.1], atol=1e-3)
    assert fitted.iou_after > fitted.iou_before and fitted.iou_after > 0.99
    again = BF.BoxStyle.from_dict(json.loads(json.dumps(fitted.to_dict())))
    assert again.top == fitted.top


@pytest.mark.parametrize("bad", [{}, {"left": "x", "top": 0, "right": 0, "bottom": 0},
                                 {"left": float("nan"), "top": 0, "right": 0, "bottom": 0},
                                 {"left": 5, "top": 0, "right": 0, "bottom": 0}])
def test_box_style_refuses_bad_numbers(bad):
    from facecore.errors import FaceCoreError

    with pytest.raises(FaceCoreError):
        BF.BoxStyle.from_dict(bad)


def test_box_style_needs_faces():
    from facecore.errors import FaceCoreError

    with pytest.raises(FaceCoreError, match="at least 3"):
        BF.BoxStyle.fit(np.zeros((2, 4)), np.zeros((2, 4)))


def test_letterbox_round_trip():
    rgb = np.zeros((480, 640, 3), np.uint8)
    sq, geom = BF.letterbox(rgb, 128)
    assert sq.shape == (128, 128, 3) and sq.min() >= -1 and sq.max() <= 1
    box = np.array([[0.25, 0.25, 0.75, 0.75]], np.float32)
    sx, sy, ox, oy = geom
    in_square = np.array([[0.25 * sx + ox, 0.25 * sy + oy, 0.75 * sx + ox, 0.75 * sy + oy]], np.float32)
    assert np.allclose(BF.unletterbox(in_square, geom), box, atol=1e-6)


def test_blazeface_is_the_default_detector(tmp_path):
    names = detector_names(tmp_path)
    assert names[0] == BLAZEFACE == DEFAULT_DETECTOR and "haar" in names and "blazeface-short" in names


def test_blazeface_finds_faces_on_the_sample_and_none_on_a_wall():
    det = load_detector(BLAZEFACE, "models")
    images, _ = collect_images(SAMPLE, split="all")
    res = evaluate(det, images[::3])
    assert res.metrics["ap50"] >= 0.8, res.metrics
    assert res.metrics["mean_iou"] >= 0.6, res.metrics
    wall = np.full((480, 640, 3), 180, np.uint8)
    wall[:, ::40] = 90  # stripes, no face
    assert [d for d in det.detect(wall) if d.score >= 0.5] == []


def test_blazeface_finds_two_faces_side_by_side():
    a = read_image(next(iter(sorted((__import__("pathlib").Path(SAMPLE) / "images").glob("*.jpg")))))
    two = np.concatenate([a, a[:, ::-1]], axis=1)
    dets = [d for d in load_detector(BLAZEFACE, "models").detect(two) if d.score >= 0.5]
    assert len(dets) == 2
    assert isinstance(dets[0], Detection) and dets[0].score >= dets[1].score
    xs = sorted(float((d.box[0] + d.box[2]) / 2) for d in dets)
    assert xs[0] < 0.5 < xs[1]


def test_default_style_still_fits_the_sample():
    """DEFAULT_STYLE is the sample's style; refitting it gives the same numbers (within noise)."""
    raw = BF.BlazeFaceDetector(style=BF.BoxStyle())
    images, _ = collect_images(SAMPLE, split="all")
    d, g = [], []
    for im in images:
        dets = raw.detect(read_image(im.path))
        if dets and len(im.boxes):
            d.append(dets[0].box)
            g.append(im.boxes[int(np.argmax(B.iou_matrix(dets[0].box[None], im.boxes)[0]))])
    fitted = BF.BoxStyle.fit(np.asarray(d), np.asarray(g))
    for side in ("left", "top", "right", "bottom"):
        assert abs(getattr(fitted, side) - getattr(BF.DEFAULT_STYLE, side)) < 0.02, (side, fitted)


def test_boxstyle_cli_saves_a_detector_and_refuses_a_dataset_folder(tmp_path, capsys):
    from facecore.__main__ import main

    out = tmp_path / "models" / "sample-style"
    assert main(["boxstyle", "--data", SAMPLE, "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["metrics"]["test"]["mean_iou"] > printed["metrics"]["test"]["mean_iou_before"] + 0.15
    det = load_detector("sample-style", tmp_path / "models")
    assert det.style.top < -0.2
    # pointed at a dataset, it refuses instead of replacing its photos
    import shutil

    ds = tmp_path / "ds"
    shutil.copytree(SAMPLE, ds)
    assert main(["boxstyle", "--data", SAMPLE, "--out", str(ds)]) == 2
    assert (ds / "images").is_dir() and len(list((ds / "images").iterdir())) > 90


@pytest.mark.parametrize("shape,aspect,padded", [((720, 1280), 4 / 3, (960, 1280)), ((480, 640), 4 / 3, (480, 640)),
                                                 ((480, 640), None, (480, 640)), ((640, 480), 4 / 3, (640, 853)),
                                                 ((480, 640), "wide", (480, 640)), ((480, 640), 1e9, (480, 640))])
def test_trained_blazeface_pads_frames_to_the_training_aspect(shape, aspect, padded):
    from facecore.blazeface.saved import pad_to_aspect

    frame = np.zeros((*shape, 3), np.uint8)
    frame[shape[0] // 4:shape[0] // 2, shape[1] // 4:shape[1] // 2] = 255  # a white box at [.25, .25, .5, .5]
    out, (sx, sy, ox, oy) = pad_to_aspect(frame, aspect)
    assert out.shape[:2] == padded
    ys, xs = np.nonzero(out[..., 0] == 255)
    box = np.array([xs.min() / padded[1], ys.min() / padded[0], (xs.max() + 1) / padded[1], (ys.max() + 1) / padded[0]])
    assert np.allclose((box - [ox, oy, ox, oy]) / [sx, sy, sx, sy], [0.25, 0.25, 0.5, 0.5], atol=2e-3)


@pytest.mark.parametrize("floor, x1", [(0.0, 0.1 * 0.9 + 0.25 * 0.1), (0.05, 0.1 * 0.9 + 0.25 * 0.1), (0.3, 0.1),
                                       (0.95, 0.1)])
def test_weighted_nms_averages_only_anchors_above_the_average_floor(floor, x1):
    """A strong face (0.9) and a faint overlapping anchor (0.1): the faint one joins the average only when it
    reaches the floor, and is suppressed either way; a floor above the best score still keeps the best."""
    boxes = np.array([[0.1, 0.1, 0.5, 0.5], [0.25, 0.1, 0.65, 0.5]], np.float32)  # IoU 0.45 > NMS's 0.3
    scores = np.array([0.9, 0.1], np.float32)
    found = BF.weighted_nms(boxes, scores, 0.02, average_floor=floor)
    assert len(found) == 1 and found[0][0] == pytest.approx(0.9)
    assert found[0][1][0] == pytest.approx(x1, abs=1e-5)
