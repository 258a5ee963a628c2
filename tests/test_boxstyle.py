"""Box style: both forms, the fit and its choice of form, scaling, the in-graph decoding, the built-in style."""

import json

import numpy as np
import pytest

from facecore import boxes as B
from facecore.blazeface.boxstyle import N_FEATURES, NUM_KEYPOINTS, BoxStyle, features, offsets_matrix
from facecore.errors import FaceCoreError

SAMPLE = "data/sample"


def synthetic_faces(n: int, seed: int = 0):
    """Square detector boxes with six keypoints that move with head pose, in an isotropic space."""
    rng = np.random.default_rng(seed)
    size = rng.uniform(0.15, 0.35, n)
    cx, cy = rng.uniform(0.3, 0.7, n), rng.uniform(0.3, 0.7, n)
    boxes = np.stack([cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2], axis=1).astype(np.float32)
    layout = np.array([[-0.2, -0.1], [0.2, -0.1], [0.0, 0.05], [0.0, 0.25], [-0.45, 0.0], [0.45, 0.0]])
    pose = rng.normal(0, 0.08, (n, 1, 2))  # turn / nod: every keypoint shifts together
    kp = np.stack([cx, cy], 1)[:, None, :] + (layout[None] + pose + rng.normal(0, 0.005, (n, 6, 2))) * size[:, None, None]
    return boxes, kp.astype(np.float32)


def known_map() -> np.ndarray:
    m = offsets_matrix(-0.05, -0.3, 0.05, 0.1)
    m[2:, 1] = np.tile([0.0, 0.4], NUM_KEYPOINTS)  # the top follows the keypoints' nod
    m[2:, 3] = np.tile([0.0, 0.4], NUM_KEYPOINTS)
    return m


def test_features_and_offsets_matrix_agree_with_the_offsets_form():
    boxes, kp = synthetic_faces(20)
    style = BoxStyle(left=-0.1, top=-0.3, right=0.1, bottom=0.2)
    f, c = features(boxes, kp)
    assert f.shape == (20, N_FEATURES)
    assert np.allclose(B.clip((c + f @ offsets_matrix(-0.1, -0.3, 0.1, 0.2)).astype(np.float32)), style.apply(boxes), atol=1e-6)


def test_fit_recovers_a_keypoint_map_and_chooses_it():
    boxes, kp = synthetic_faces(200)
    truth = BoxStyle(matrix=tuple(map(tuple, known_map())))
    labels = truth.apply(boxes, kp)
    fitted = BoxStyle.fit(boxes, labels, keypoints=kp)
    assert fitted.method == "keypoints"
    assert fitted.iou_after > 0.97 and fitted.cv_iou > 0.97
    offsets_only = BoxStyle.fit(boxes, labels)
    assert offsets_only.method == "offsets" and offsets_only.matrix is None
    assert fitted.iou_after > offsets_only.iou_after + 0.02  # the nod is what the offsets cannot follow
    again = BoxStyle.from_dict(json.loads(json.dumps(fitted.to_dict())))
    assert np.allclose(again.apply(boxes, kp), fitted.apply(boxes, kp), atol=1e-5)


def test_a_few_faces_lean_on_the_prior_or_keep_to_offsets():
    boxes, kp = synthetic_faces(200, seed=1)
    truth = BoxStyle(matrix=tuple(map(tuple, known_map())))
    prior = BoxStyle.fit(boxes, truth.apply(boxes, kp), keypoints=kp)
    few_boxes, few_kp = synthetic_faces(8, seed=2)
    few = BoxStyle.fit(few_boxes, truth.apply(few_boxes, few_kp), keypoints=few_kp, prior=prior)
    assert few.method in ("offsets", "keypoints, prior 3", "keypoints, prior 30")  # never a free map from 8 faces
    test_boxes, test_kp = synthetic_faces(100, seed=3)
    iou = B.iou(few.apply(test_boxes, test_kp), truth.apply(test_boxes, test_kp)).mean()
    assert iou > 0.9


def test_scaled_style_is_the_same_style_in_a_stretched_space():
    boxes, kp = synthetic_faces(50)
    style = BoxStyle(-0.05, -0.3, 0.05, 0.1, matrix=tuple(map(tuple, known_map())))
    ax, ay = 0.75, 1.0  # a 4:3 frame stretched to a square: x shrinks
    stretched = style.scaled(ax, ay)
    out = stretched.apply(boxes * [ax, ay, ax, ay], kp * [ax, ay])
    assert np.allclose(out, B.clip(style.apply(boxes, kp) * [ax, ay, ax, ay]), atol=1e-5)


@pytest.mark.parametrize("matrix", [[[0.0] * 4] * 3, [[float("nan")] * 4] * N_FEATURES, [[99.0] * 4] * N_FEATURES,
                                    "not a matrix", [[0.0, 0.0, 0.0]] * N_FEATURES])
def test_from_dict_refuses_bad_matrices(matrix):
    with pytest.raises(FaceCoreError, match="matrix"):
        BoxStyle.from_dict({"left": 0, "top": 0, "right": 0, "bottom": 0, "matrix": matrix})


@pytest.mark.parametrize("which", ["none", "offsets", "default"])
def test_decode_matrix_applies_the_style_to_every_anchor(which):
    from facecore.blazeface.network import decode_matrix
    from facecore.blazeface.builtin import DEFAULT_STYLE, decode, ssd_anchors

    style = {"none": None, "offsets": BoxStyle(-0.1, -0.3, 0.1, 0.1), "default": DEFAULT_STYLE}[which]
    anchors = ssd_anchors("full")
    rng = np.random.default_rng(0)
    reg = rng.normal(0, 20, (len(anchors), 16)).astype(np.float32)
    reg[:, 2:4] = np.abs(reg[:, 2:4]) + 20
    boxes, kp, _ = decode(reg, np.zeros(len(anchors)), anchors, 192)
    if style is not None:
        f, c = features(boxes, kp)
        boxes = c + f @ style.weights()
    got = reg @ decode_matrix(192, style) + np.concatenate([anchors[:, :2], anchors[:, :2]], axis=1)
    assert np.allclose(got, boxes, atol=1e-5)


def test_default_style_still_fits_the_sample_with_keypoints():
    """DEFAULT_STYLE's keypoint map is the sample's: refitting gives the same IoU, and it beats offsets."""
    from facecore.blazeface.builtin import DEFAULT_STYLE, BlazeFaceDetector, style_pairs
    from facecore.evaluate.metrics import collect_images
    from facecore.images import read_image

    raw = BlazeFaceDetector(style=BoxStyle())
    cols = ([], [], [])
    for im in collect_images(SAMPLE, split="all")[0]:
        for col, v in zip(cols, style_pairs(raw, read_image(im.path), im.boxes)):
            col.extend(v)
    d, g, k = (np.asarray(c) for c in cols)
    assert DEFAULT_STYLE.method == "keypoints"
    now = B.iou(DEFAULT_STYLE.apply(d, k), g).mean()
    assert abs(now - DEFAULT_STYLE.iou_after) < 0.01
    assert now > B.iou(DEFAULT_STYLE.apply(d), g).mean() + 0.03  # the keypoints add to the offsets
