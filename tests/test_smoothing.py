"""facecore.smoothing.BoxSmoother: the one box smoother behind the live stream and video files."""

import numpy as np
import pytest

from facecore.detect import Detection
from facecore.smoothing import BoxSmoother


def det(score, box, label="face"):
    return Detection(score, np.asarray(box, np.float32), label)


A = [0.0, 0.0, 0.4, 0.4]
A_MOVED = [0.1, 0.1, 0.5, 0.5]  # IoU with A about 0.39: the same face, moved
FAR = [0.6, 0.6, 0.9, 0.9]  # no overlap with A


# 0.6 is the Webcam page's default, 0.5 and 0.95 the video's usual and largest, 0 turns it off
@pytest.mark.parametrize("alpha", [0.0, 0.5, 0.6, 0.8, 0.95])
def test_a_matched_box_is_the_weighted_average(alpha):
    sm = BoxSmoother(alpha)
    sm.update([det(0.9, A)])
    out = sm.update([det(0.8, A_MOVED, "bob")])
    want = alpha * np.array(A) + (1 - alpha) * np.array(A_MOVED)
    np.testing.assert_allclose(out[0].box, want, atol=1e-6)
    assert out[0].box.dtype == np.float32 and out[0].score == 0.8 and out[0].label == "bob"  # raw score and label
    assert sm.held == tuple(out)


@pytest.mark.parametrize("alpha", [0.5, 0.8])
def test_a_face_that_moves_far_jumps_and_a_lost_face_is_forgotten(alpha):
    sm = BoxSmoother(alpha)
    sm.update([det(0.9, A)])
    np.testing.assert_allclose(sm.update([det(0.9, FAR)])[0].box, FAR)  # no overlap: no sliding across
    assert sm.update([]) == [] and sm.held == ()
    np.testing.assert_allclose(sm.update([det(0.9, A)])[0].box, A)  # lost, then found: starts fresh


@pytest.mark.parametrize("min_iou, blended", [(0.3, True), (0.5, False)])
def test_min_iou_decides_what_counts_as_the_same_face(min_iou, blended):
    sm = BoxSmoother(0.5, min_iou=min_iou)
    sm.update([det(0.9, A)])
    out = sm.update([det(0.9, A_MOVED)])[0].box
    np.testing.assert_allclose(out, [0.05, 0.05, 0.45, 0.45] if blended else A_MOVED, atol=1e-6)


def test_each_previous_box_smooths_one_face_only():
    sm = BoxSmoother(0.5)
    sm.update([det(0.9, A)])
    # two detections overlap the one previous box: the first (best) gets it, the other starts fresh
    out = sm.update([det(0.9, A_MOVED), det(0.7, [0.02, 0.02, 0.42, 0.42])])
    np.testing.assert_allclose(out[0].box, [0.05, 0.05, 0.45, 0.45], atol=1e-6)
    np.testing.assert_allclose(out[1].box, [0.02, 0.02, 0.42, 0.42], atol=1e-6)


@pytest.mark.parametrize("alpha", [0.5, 0.7])
def test_smoothing_reduces_jitter_and_follows_boxes_in_any_order(alpha):
    rng = np.random.default_rng(0)
    true = np.array([0.3, 0.3, 0.6, 0.7], np.float32)
    other = np.array([0.7, 0.1, 0.9, 0.4], np.float32)
    sm = BoxSmoother(alpha)
    raw, smooth = [], []
    for i in range(60):
        noisy = true + rng.normal(0, 0.01, 4).astype(np.float32)
        # the two faces come in either order (best first changes): matching must follow the boxes
        dets = [det(0.9, noisy), det(0.8, other)] if i % 2 else [det(0.9, other), det(0.95, noisy)]
        out = sm.update(dets)
        assert [d.score for d in out] == [d.score for d in dets]
        k = 0 if i % 2 else 1
        np.testing.assert_allclose(out[1 - k].box, other, atol=1e-6)
        raw.append(noisy)
        smooth.append(out[k].box)
    raw, smooth = np.array(raw[10:]), np.array(smooth[10:])
    assert np.abs(smooth - true).mean() < 0.75 * np.abs(raw - true).mean()


def test_reset_forgets_the_previous_boxes():
    sm = BoxSmoother(0.9)
    sm.update([det(0.9, A)])
    sm.reset()
    assert sm.held == ()
    np.testing.assert_allclose(sm.update([det(0.9, A_MOVED)])[0].box, A_MOVED)


def test_live_and_video_use_this_smoother():
    from facecore.live import processor as live
    from facecore.video import pipeline

    assert live.BoxSmoother is BoxSmoother and pipeline.BoxSmoother is BoxSmoother
