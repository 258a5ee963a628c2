"""What fine-tuning BlazeFace computes in the graph (TensorFlow ops; ``facecore.blazeface.finetune`` runs them):
anchor matching, the losses and the on-the-fly augmentation, as that module's docstring describes.

Boxes are normalized ``[x1, y1, x2, y2]``; ``gt`` (N, K, 4) holds up to K labeled faces per photo with
``mask`` (N, K) saying which are real.
"""

from __future__ import annotations

import numpy as np

MAX_FACES = 16  # labeled faces per photo used in training (more are rare; the largest are kept)
ZOOM = (0.6, 2.2)  # crop window side as a fraction of the photo: >1 zooms out (smaller faces, grey border)
POS_IOU, IGNORE_IOU = 0.4, 0.25


def pad_boxes(all_boxes: list[np.ndarray], k: int = MAX_FACES) -> tuple[np.ndarray, np.ndarray]:
    """Per-photo boxes (list of (n_i, 4) normalized) -> ``(boxes (N, k, 4), mask (N, k))`` (largest first)."""
    n = len(all_boxes)
    out, mask = np.zeros((n, k, 4), np.float32), np.zeros((n, k), np.float32)
    for i, b in enumerate(all_boxes):
        b = np.asarray(b, np.float32).reshape(-1, 4)
        if len(b) > k:
            area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
            b = b[np.argsort(-area)[:k]]
        out[i, :len(b)], mask[i, :len(b)] = b, 1.0
    return out, mask


def _tf():
    import tensorflow as tf

    return tf


def pairwise_iou(a, b):
    """IoU of boxes a (N, A, 4) with b (N, K, 4) -> (N, A, K)."""
    tf = _tf()
    a, b = a[:, :, None, :], b[:, None, :, :]
    iw = tf.nn.relu(tf.minimum(a[..., 2], b[..., 2]) - tf.maximum(a[..., 0], b[..., 0]))
    ih = tf.nn.relu(tf.minimum(a[..., 3], b[..., 3]) - tf.maximum(a[..., 1], b[..., 1]))
    inter = iw * ih
    area = lambda t: tf.nn.relu(t[..., 2] - t[..., 0]) * tf.nn.relu(t[..., 3] - t[..., 1])  # noqa: E731
    return tf.math.divide_no_nan(inter, area(a) + area(b) - inter)


def match_anchors(pred_boxes, centres, gt, mask):
    """Anchor targets. ``pred_boxes`` (N, A, 4) decoded predictions, ``centres`` (A, 2), ``gt`` (N, K, 4),
    ``mask`` (N, K). Returns ``(positive (N, A), ignore (N, A), target (N, A, 4))`` (float32)."""
    tf = _tf()
    iou = pairwise_iou(tf.stop_gradient(pred_boxes), gt) * mask[:, None, :]
    cx, cy = centres[None, :, None, 0], centres[None, :, None, 1]
    inside = tf.cast((cx >= gt[:, None, :, 0]) & (cx <= gt[:, None, :, 2]) &
                     (cy >= gt[:, None, :, 1]) & (cy <= gt[:, None, :, 3]), iou.dtype) * mask[:, None, :]
    score = iou * inside
    # the best anchor of every face is positive, however low its overlap
    best_of_face = tf.cast(tf.equal(score, tf.reduce_max(score, axis=1, keepdims=True)) & (score > 0), iou.dtype)
    pos_k = tf.maximum(tf.cast(score >= POS_IOU, iou.dtype), best_of_face)
    positive = tf.reduce_max(pos_k, axis=2)
    which = tf.argmax(score + pos_k, axis=2)  # a positive anchor's face: its best overlap among its matches
    target = tf.gather(gt, which, batch_dims=1)
    ignore = (1.0 - positive) * tf.cast(tf.reduce_max(iou, axis=2) >= IGNORE_IOU, iou.dtype)
    return positive, ignore, target


def focal_loss(logits, positive, ignore, alpha: float = 0.25, gamma: float = 2.0):
    """Sigmoid focal loss per photo, summed over anchors that are not ignored: logits (N, A) -> (N,)."""
    tf = _tf()
    p = tf.sigmoid(logits)
    ce = tf.nn.sigmoid_cross_entropy_with_logits(labels=positive, logits=logits)
    p_t = positive * p + (1 - positive) * (1 - p)
    a_t = positive * alpha + (1 - positive) * (1 - alpha)
    return tf.reduce_sum(a_t * tf.pow(1 - p_t, gamma) * ce * (1 - ignore), axis=1)


def corner_loss(pred, target, positive):
    """L1 of the four corners relative to the face's width/height, summed over positives: -> (N,)."""
    tf = _tf()
    w = tf.maximum(target[..., 2] - target[..., 0], 1e-3)
    h = tf.maximum(target[..., 3] - target[..., 1], 1e-3)
    scale = tf.stack([w, h, w, h], axis=-1)
    return tf.reduce_sum(tf.reduce_sum(tf.abs(pred - target) / scale, axis=-1) * positive, axis=1)


def augment_batch(images, gt, mask, size: int):
    """Random zoom/shift crop, flip and colour for a batch: images float32 (N, L, L, 3) 0..255 ->
    (N, size, size, 3); boxes follow; faces keeping under half their area are masked out."""
    tf = _tf()
    n = tf.shape(images)[0]
    u = lambda lo, hi, shape=None: tf.random.uniform(shape if shape is not None else [n], lo, hi)  # noqa: E731
    side = u(*ZOOM)
    aspect = u(0.87, 1.15)
    w, h = side * aspect, side / aspect
    x0 = u(0.0, 1.0) * (1.0 - w)  # w > 1: a negative start puts the photo anywhere in the window
    y0 = u(0.0, 1.0) * (1.0 - h)
    crop = tf.stack([y0, x0, y0 + h, x0 + w], axis=1)
    # outside the photo: mid-grey, the border letterboxing gives (MediaPipe pads with 0 in [-1, 1])
    out = tf.image.crop_and_resize(images, crop, tf.range(n), [size, size], extrapolation_value=127.5)
    b = (gt - tf.stack([x0, y0, x0, y0], axis=1)[:, None, :]) / tf.stack([w, h, w, h], axis=1)[:, None, :]
    clipped = tf.clip_by_value(b, 0.0, 1.0)
    area = lambda t: tf.nn.relu(t[..., 2] - t[..., 0]) * tf.nn.relu(t[..., 3] - t[..., 1])  # noqa: E731
    keep = tf.cast(area(clipped) >= 0.5 * tf.maximum(area(b), 1e-9), mask.dtype)
    mask = mask * keep
    flip = u(0.0, 1.0) < 0.5
    out = tf.where(flip[:, None, None, None], out[:, :, ::-1, :], out)
    fb = tf.stack([1.0 - clipped[..., 2], clipped[..., 1], 1.0 - clipped[..., 0], clipped[..., 3]], axis=-1)
    boxes = tf.where(flip[:, None, None], fb, clipped)
    mean = tf.reduce_mean(out, axis=[1, 2, 3], keepdims=True)
    out = (out - mean) * u(0.7, 1.3)[:, None, None, None] + mean + u(-30.0, 30.0)[:, None, None, None]
    grey = tf.reduce_mean(out, axis=3, keepdims=True)
    out = grey + (out - grey) * u(0.6, 1.4)[:, None, None, None]
    return tf.clip_by_value(out, 0.0, 255.0), boxes, mask
