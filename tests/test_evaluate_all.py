"""Evaluation over every face: greedy one-to-one matching, AP over all faces, recall, FPs per image."""

import numpy as np
import pytest

from facecore.detect import Detection
from facecore.evaluate.every_face import all_faces_metrics, match


def D(score, box):
    return Detection(score, np.asarray(box, np.float32))


FACE_A = [0.1, 0.1, 0.3, 0.3]
FACE_B = [0.6, 0.6, 0.8, 0.8]


def test_one_face_one_match():
    truth = np.array([FACE_A], np.float32)
    boxes = np.array([FACE_A, [0.11, 0.1, 0.31, 0.3]], np.float32)
    # the second (lower-scored) duplicate of the same face is a false positive
    assert match(boxes, np.array([0.9, 0.8]), truth, 0.5).tolist() == [True, False]
    assert match(boxes, np.array([0.7, 0.8]), truth, 0.5).tolist() == [False, True]


def test_greedy_match_takes_the_best_overlapping_free_face():
    truth = np.array([FACE_A, FACE_B], np.float32)
    boxes = np.array([FACE_B, FACE_A], np.float32)
    assert match(boxes, np.array([0.9, 0.8]), truth, 0.5).tolist() == [True, True]


@pytest.mark.parametrize("dets,ap50,recall,fp", [
    ([[D(0.9, FACE_A), D(0.8, FACE_B)], []], 1.0, 1.0, 0.0),            # both faces found
    ([[D(0.9, FACE_A)], []], 0.5, 0.5, 0.0),                             # one of two faces
    ([[D(0.9, FACE_A), D(0.8, FACE_B)], [D(0.95, FACE_A)]], 2 / 3, 1.0, 0.5),  # a wall's FP ranked first
    ([[D(0.4, FACE_A), D(0.3, FACE_B)], []], 1.0, 0.0, 0.0),            # found but below the threshold
])
def test_all_faces_metrics(dets, ap50, recall, fp):
    truth = [np.array([FACE_A, FACE_B], np.float32), np.zeros((0, 4), np.float32)]
    m = all_faces_metrics(truth, dets, threshold=0.5)
    assert m["faces"] == 2 and m["photos"] == 2
    assert m["ap50"] == pytest.approx(ap50)
    assert m["recall50"] == pytest.approx(recall)
    assert m["fp_per_image"] == pytest.approx(fp)


def test_single_box_detector_scores_half_on_two_face_photos():
    """The tutorials' one-box FaceTracker can find at most one of two faces: AP over all faces says so."""
    truth = [np.array([FACE_A, FACE_B], np.float32)] * 3
    one_box = [[D(0.9, FACE_A)]] * 3
    assert all_faces_metrics(truth, one_box)["ap50"] == pytest.approx(0.5)
