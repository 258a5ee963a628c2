"""The tutorials' FaceTracker training: its losses and metrics, and the ``keras.Model`` that trains a
network built by ``facecore.facetracker.model`` with them (the keras-io guide's custom ``train_step``).

Boxes are normalized ``[x1, y1, x2, y2]`` (facecore's convention); ``has_face`` is (N, 1) in {0, 1}.
"""

from __future__ import annotations

import os
from typing import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402


def classification_loss(y_true, y_pred):
    """Binary cross-entropy per sample: y_true, y_pred (N, 1) -> (N,)."""
    return keras.losses.binary_crossentropy(tf.cast(y_true, y_pred.dtype), y_pred)


def localization_loss(y_true, y_pred):
    """The tutorials' box loss per sample: boxes (N, 4) normalized [x1, y1, x2, y2] -> (N,).

    Squared error of the top-left corner plus squared error of width and height. Only samples that
    hold a face may count: ``FaceTracker`` averages it over those (``masked_mean``).
    """
    y_true = tf.cast(y_true, y_pred.dtype)
    d_coord = tf.reduce_sum(tf.square(y_true[:, :2] - y_pred[:, :2]), axis=-1)
    w_t, h_t = y_true[:, 2] - y_true[:, 0], y_true[:, 3] - y_true[:, 1]
    w_p, h_p = y_pred[:, 2] - y_pred[:, 0], y_pred[:, 3] - y_pred[:, 1]
    d_size = tf.square(w_t - w_p) + tf.square(h_t - h_p)
    return d_coord + d_size


def masked_mean(values, mask):
    """Mean of ``values`` (N,) over samples where ``mask`` (N,) is 1; 0 when there are none."""
    mask = tf.cast(mask, values.dtype)
    return tf.math.divide_no_nan(tf.reduce_sum(values * mask), tf.reduce_sum(mask))


def box_iou(a, b):
    """Element-wise IoU of boxes (N, 4) [x1, y1, x2, y2] -> (N,); inverted boxes have no area."""
    ix = tf.nn.relu(tf.minimum(a[:, 2], b[:, 2]) - tf.maximum(a[:, 0], b[:, 0]))
    iy = tf.nn.relu(tf.minimum(a[:, 3], b[:, 3]) - tf.maximum(a[:, 1], b[:, 1]))
    inter = ix * iy
    area_a = tf.nn.relu(a[:, 2] - a[:, 0]) * tf.nn.relu(a[:, 3] - a[:, 1])
    area_b = tf.nn.relu(b[:, 2] - b[:, 0]) * tf.nn.relu(b[:, 3] - b[:, 1])
    return tf.math.divide_no_nan(inter, area_a + area_b - inter)


class FaceTracker(keras.Model):
    """Trains ``net`` (the full network, or just its heads on cached features) on
    ``(x, (has_face (N, 1), box (N, 4)))``; a no-face sample's box is ignored (zeros by convention).

    Total loss = classification + ``localization_weight`` * localization, where the localization
    loss is averaged over the samples that hold a face only. Logs: ``loss``, ``class_loss``,
    ``loc_loss``, ``mean_iou`` (over face samples) and ``face_accuracy`` (threshold 0.5).
    """

    def __init__(self, net: keras.Model, **kwargs):
        super().__init__(**kwargs)
        self.net = net
        self.total_tracker = keras.metrics.Mean(name="loss")
        self.class_tracker = keras.metrics.Mean(name="class_loss")
        self.loc_tracker = keras.metrics.Mean(name="loc_loss")
        self.iou_tracker = keras.metrics.Mean(name="mean_iou")
        self.acc_tracker = keras.metrics.Mean(name="face_accuracy")

    def call(self, x, training=False):
        return self.net(x, training=training)

    def compile(self, optimizer, classloss: Callable = classification_loss,
                localizationloss: Callable = localization_loss, localization_weight: float = 1.0, **kwargs):
        """``classloss`` and ``localizationloss`` take ``(y_true, y_pred)`` and return per-sample values (N,)."""
        super().compile(optimizer=optimizer, **kwargs)
        self.classloss = classloss
        self.localizationloss = localizationloss
        self.localization_weight = float(localization_weight)

    @property
    def metrics(self):
        return [self.total_tracker, self.class_tracker, self.loc_tracker, self.iou_tracker, self.acc_tracker]

    def compute_losses(self, y_cls, y_box, prob, box):
        """(total, classification, localization) scalars for one batch."""
        has_face = tf.cast(tf.reshape(y_cls, [-1]) > 0.5, prob.dtype)
        cls = tf.reduce_mean(self.classloss(y_cls, prob))
        loc = masked_mean(self.localizationloss(y_box, box), has_face)
        return cls + self.localization_weight * loc, cls, loc

    def _update(self, y_cls, y_box, prob, box, total, cls, loc):
        y = tf.reshape(tf.cast(y_cls, prob.dtype), [-1])
        has_face = tf.cast(y > 0.5, prob.dtype)
        self.total_tracker.update_state(total)
        self.class_tracker.update_state(cls)
        self.loc_tracker.update_state(loc)
        self.iou_tracker.update_state(box_iou(tf.cast(y_box, box.dtype), box), sample_weight=has_face)
        correct = tf.cast(tf.equal(tf.reshape(prob, [-1]) > 0.5, y > 0.5), prob.dtype)
        self.acc_tracker.update_state(correct)
        return {m.name: m.result() for m in self.metrics}

    def train_step(self, data):
        x, (y_cls, y_box) = data
        with tf.GradientTape() as tape:
            prob, box = self(x, training=True)
            total, cls, loc = self.compute_losses(y_cls, y_box, prob, box)
        grads = tape.gradient(total, self.trainable_variables)
        self.optimizer.apply(grads, self.trainable_variables)
        return self._update(y_cls, y_box, prob, box, total, cls, loc)

    def test_step(self, data):
        x, (y_cls, y_box) = data
        prob, box = self(x, training=False)
        total, cls, loc = self.compute_losses(y_cls, y_box, prob, box)
        return self._update(y_cls, y_box, prob, box, total, cls, loc)


def evaluate_predictions(y_cls, y_box, prob, box, localization_weight: float = 1.0) -> dict:
    """Metrics of predictions against labels, all numpy: ``y_cls``/``prob`` (N, 1), boxes (N, 4).

    Returns ``loss``, ``class_loss``, ``loc_loss``, ``mean_iou`` (face samples), ``face_accuracy``
    and ``n`` / ``n_face``, as plain floats (``mean_iou`` is None without face samples).
    """
    y_cls = np.asarray(y_cls, np.float32).reshape(-1, 1)
    if len(y_cls) == 0:
        return {"n": 0, "n_face": 0}
    prob = np.asarray(prob, np.float32).reshape(-1, 1)
    y_box, box = np.asarray(y_box, np.float32).reshape(-1, 4), np.asarray(box, np.float32).reshape(-1, 4)
    face = y_cls[:, 0] > 0.5
    cls = float(np.mean(classification_loss(tf.constant(y_cls), tf.constant(prob)).numpy()))
    loc = float(masked_mean(localization_loss(tf.constant(y_box), tf.constant(box)), tf.constant(face)).numpy())
    ious = box_iou(tf.constant(y_box), tf.constant(box)).numpy()
    return {
        "loss": cls + localization_weight * loc, "class_loss": cls, "loc_loss": loc,
        "mean_iou": float(ious[face].mean()) if face.any() else None,
        "face_accuracy": float(np.mean((prob[:, 0] > 0.5) == face)),
        "n": int(len(y_cls)), "n_face": int(face.sum()),
    }

