"""Anchor matching, losses and in-graph augmentation of BlazeFace fine-tuning, on small hand-made cases."""

import numpy as np
import pytest

from facecore.blazeface import losses as BL


def anchors_grid(n: int = 8) -> np.ndarray:
    """(n*n, 2) anchor centres on a regular grid."""
    c = (np.arange(n) + 0.5) / n
    return np.stack(np.meshgrid(c, c), axis=-1).reshape(-1, 2).astype(np.float32)


def boxes_around(centres: np.ndarray, size: float) -> np.ndarray:
    return np.concatenate([centres - size / 2, centres + size / 2], axis=1).astype(np.float32)


def test_pad_boxes_keeps_the_largest_faces_and_masks_the_rest():
    many = np.array([[0, 0, 0.1 * (i + 1), 0.1 * (i + 1)] for i in range(5)], np.float32)
    out, mask = BL.pad_boxes([many, np.zeros((0, 4), np.float32)], k=3)
    assert out.shape == (2, 3, 4) and mask.tolist() == [[1, 1, 1], [0, 0, 0]]
    assert np.allclose(sorted(out[0, :, 2]), [0.3, 0.4, 0.5])  # the three largest of five


def test_matching_gives_every_face_its_anchors_and_a_no_face_photo_none():
    centres = anchors_grid()
    pred = boxes_around(centres, 0.25)[None].repeat(2, axis=0)  # every anchor predicts a box around itself
    faces = np.array([[[0.05, 0.05, 0.30, 0.30], [0.60, 0.55, 0.85, 0.80]], [[0, 0, 0, 0], [0, 0, 0, 0]]], np.float32)
    mask = np.array([[1, 1], [0, 0]], np.float32)
    positive, ignore, target = (np.asarray(t) for t in BL.match_anchors(pred, centres, faces, mask))
    inside = [((centres[:, 0] >= f[0]) & (centres[:, 0] <= f[2]) & (centres[:, 1] >= f[1]) & (centres[:, 1] <= f[3]))
              for f in faces[0]]
    for k, sel in enumerate(inside):  # both faces have positives, all inside them, targeting that face
        pos = positive[0] > 0
        assert (pos & sel).any()
        assert np.allclose(target[0][pos & sel], faces[0, k])
    assert not (positive[0].astype(bool) & ~(inside[0] | inside[1])).any()
    assert positive[1].sum() == 0 and ignore[1].sum() == 0  # no face: every anchor a negative
    assert not (positive.astype(bool) & ignore.astype(bool)).any()


def test_corner_loss_is_zero_on_the_label_and_scales_with_face_size():
    target = np.array([[[0.2, 0.2, 0.4, 0.4], [0.1, 0.1, 0.9, 0.9]]], np.float32)
    positive = np.ones((1, 2), np.float32)
    assert float(np.asarray(BL.corner_loss(target, target, positive))[0]) == pytest.approx(0.0)
    shifted = target + np.array([0.02, 0, 0.02, 0], np.float32)
    per = np.asarray(BL.corner_loss(shifted, target, np.array([[1, 0]], np.float32)))[0]
    per_big = np.asarray(BL.corner_loss(shifted, target, np.array([[0, 1]], np.float32)))[0]
    assert per == pytest.approx(0.2, abs=1e-5) and per_big == pytest.approx(0.05, abs=1e-5)  # relative to size


@pytest.mark.parametrize("logit,positive,smaller", [(4.0, 1.0, True), (-4.0, 0.0, True), (-4.0, 1.0, False)])
def test_focal_loss_is_small_for_confident_right_answers(logit, positive, smaller):
    loss = float(np.asarray(BL.focal_loss(np.array([[logit]], np.float32), np.array([[positive]], np.float32),
                                          np.zeros((1, 1), np.float32)))[0])
    assert (loss < 0.01) == smaller


def test_focal_loss_skips_ignored_anchors():
    logits = np.array([[5.0, -5.0]], np.float32)
    loss = BL.focal_loss(logits, np.zeros((1, 2), np.float32), np.array([[1.0, 0.0]], np.float32))
    assert float(np.asarray(loss)[0]) < 1e-3  # the confident wrong anchor is ignored


def test_augmentation_moves_boxes_with_the_pixels():
    """A white square labeled as a face: after random zoom, shift and flip its box still frames it."""
    import tensorflow as tf

    tf.random.set_seed(0)
    n, size = 16, 64
    images = np.full((n, 96, 96, 3), 127.5, np.float32)  # mid-grey, like the border a zoom-out adds
    images[:, 30:60, 20:50] = 255.0
    gt = np.tile(np.array([[[20 / 96, 30 / 96, 50 / 96, 60 / 96]]], np.float32), (n, 1, 1))
    out, boxes, mask = (np.asarray(t) for t in BL.augment_batch(tf.constant(images), tf.constant(gt),
                                                                tf.ones((n, 1)), size))
    assert out.shape == (n, size, size, 3)
    checked = 0
    for img, b, m in zip(out, boxes[:, 0], mask[:, 0]):
        if not m:
            continue
        grey = img.mean(axis=2)
        bright = grey > np.median(grey) + 30  # the square, whatever the colour jitter did
        ys, xs = np.nonzero(bright)
        found = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32) / size
        assert np.abs(found - np.clip(b, 0, 1)).max() < 0.08
        checked += 1
    assert checked >= n // 2
