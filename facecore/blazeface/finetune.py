"""Fine-tuning BlazeFace on a user's photos: the Train page's default model.

The network starts from MediaPipe's face weights (``facecore.blazeface.network``), so it knows faces before
the first photo; fine-tuning teaches it the user's camera, people and way of drawing boxes.

Training follows the keras-io "custom train_step" guide, in the tutorials' spirit (a face-probability
loss plus a localization loss), over SSD anchors instead of one box:

- **Matching** (``match_anchors``): for each labeled face, the anchors whose centre lies inside the box
  and whose current prediction overlaps it (IoU >= 0.4), plus the best-overlapping one, are positives;
  anchors whose prediction overlaps a face by 0.25..0.4 are ignored; all others, and every anchor of a
  no-face photo, are negatives. Matching on the network's own predictions keeps the anchors the
  pretrained detector already uses for faces. Every labeled face counts, so photos with several faces train.
- **Losses**: ``focal_loss`` (sigmoid focal loss, RetinaNet's alpha 0.25 / gamma 2) over positives and
  negatives, normalized by the number of positives, plus the tutorials' binary cross-entropy of the
  photo's face probability (its best anchor's) against "has a face"; ``corner_loss`` (L1 of the four box corners,
  relative to the face's size) over positives. Total = classification + ``localization_weight`` x localization.
- **Augmentation** (on the fly, in the graph, training only, unless ``augmentation="off"``): random
  zoom in/out and shift (a crop window of 60..220 % of the photo: faces from close-ups to small faces
  across the room), horizontal flip, brightness,
  contrast and saturation; faces that keep under half their area leave the labels.

Inputs are whole photos resized to the model's square (``facecore.preprocess.resize_for_model``),
exactly as at inference; the graph then resizes them back to the photos' shape
(``facecore.blazeface.network.letterbox_model``) in a network input of that shape (``input_canvas``: the
shorter side 192, the longer one the photos'), so the network sees faces undistorted, as MediaPipe
trained it to, and no pixel is spent on padding.
"""

from __future__ import annotations

import numpy as np

from .losses import _tf, augment_batch, corner_loss, focal_loss, match_anchors, pad_boxes, pairwise_iou
from ..datasets.dataset import Dataset
from ..preprocess import resize_for_model

LOAD_SCALE = 1.5  # photos are kept at 1.5x the input so zoomed-in crops stay sharp
VARIANT_BY_SIZE = {128: "short", 192: "full"}
SOFTMAX_SHARPEN = 4.0  # as facecore.blazeface.network.detector_net's default temperature
PHOTO_WEIGHT = 3.0  # the photo-level face/no-face loss: keeps hands, dark frames and walls below 0.5


def build_trainer(net, anchors: np.ndarray, size: int, localization_weight: float, augment: bool, style=None,
                  aspect: float | None = None, hw: tuple[int, int] | None = None):
    """The Keras model that trains ``net`` (raw BlazeFace: ``[regressors, logits]``, input ``hw``), keras-io
    style; photos (stretched ``size`` squares) are letterboxed to ``aspect`` in the graph first, as the
    saved model does."""
    import keras

    from .network import frame_decoding, letterbox_model

    tf = _tf()
    matrix, box_offsets, anchor_centres = frame_decoding(hw or size, anchors, style, aspect)
    dec, offsets, centres = tf.constant(matrix), tf.constant(box_offsets), tf.constant(anchor_centres)
    unstretch = letterbox_model(size, aspect, hw)

    class BlazeTrainer(keras.Model):
        """Fine-tunes ``net`` on ``(images (N, L, L, 3) 0..255, (boxes (N, K, 4), mask (N, K)))``.

        Logs ``loss``, ``class_loss``, ``loc_loss``, ``mean_iou`` (best face vs. its label, face photos),
        ``box_error`` (1 - that IoU: what early stopping watches, since the loss per matched anchor rises
        as better predictions match more anchors)
        and ``face_accuracy`` (the best anchor's probability >= 0.5 agrees with "has a face").
        """

        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.net = net
            self.trackers = [keras.metrics.Mean(name=k) for k in
                             ("loss", "class_loss", "loc_loss", "mean_iou", "face_accuracy", "box_error")]

        @property
        def metrics(self):
            return self.trackers

        def call(self, x, training=False):
            return self.net(x, training=training)

        def _step(self, images, gt, mask, training: bool):
            if training and augment:
                x, gt, mask = augment_batch(images, gt, mask, size)
            else:
                x = tf.image.resize(images, [size, size], method="area") if images.shape[1] != size else images
            reg, logits = self.net(unstretch(x), training=training)
            logits = logits[..., 0]
            boxes = tf.einsum("nak,kc->nac", reg, dec) + offsets
            positive, ignore, target = match_anchors(boxes, centres, gt, mask)
            n_pos = tf.maximum(tf.reduce_sum(positive), 1.0)
            # anchors, and the photo as a whole: "is there a face" is the best anchor's probability
            # (the tutorials' classification loss), which teaches no-face photos to stay below 0.5
            has_face = tf.cast(tf.reduce_max(mask, axis=1) > 0, logits.dtype)
            photo = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=has_face,
                                                                           logits=tf.reduce_max(logits, axis=1)))
            cls = tf.reduce_sum(focal_loss(logits, positive, ignore)) / n_pos + PHOTO_WEIGHT * photo
            loc = tf.reduce_sum(corner_loss(boxes, target, positive)) / n_pos
            return boxes, logits, gt, mask, cls + localization_weight * loc, cls, loc

        def _update(self, boxes, logits, gt, mask, total, cls, loc):
            has_face = tf.cast(tf.reduce_max(mask, axis=1) > 0, total.dtype)
            w = tf.nn.softmax(SOFTMAX_SHARPEN * logits, axis=1)  # the saved model's best-face box
            best = tf.einsum("na,nac->nc", w, boxes)
            iou = tf.reduce_max(pairwise_iou(best[:, None, :], gt)[:, 0, :] * mask, axis=1)
            said_face = tf.cast(tf.reduce_max(logits, axis=1) >= 0.0, total.dtype)
            for t, v, sw in zip(self.trackers, (total, cls, loc, iou, tf.cast(tf.equal(said_face, has_face), total.dtype),
                                                1.0 - iou), (None, None, None, has_face, None, has_face)):
                t.update_state(v, sample_weight=sw)
            return {t.name: t.result() for t in self.trackers}

        def train_step(self, data):
            images, (gt, mask) = data
            with tf.GradientTape() as tape:
                boxes, logits, gt2, mask2, total, cls, loc = self._step(images, gt, mask, True)
            grads = tape.gradient(total, self.trainable_variables)
            self.optimizer.apply(grads, self.trainable_variables)
            return self._update(boxes, logits, gt2, mask2, total, cls, loc)

        def test_step(self, data):
            images, (gt, mask) = data
            return self._update(*self._step(images, gt, mask, False))

    return BlazeTrainer()


SMALL_FACE = 0.1  # a median labeled face narrower than this share of the photo (~19 px in the square) is small


def pick_input_shape(choice: str, boxes: list[np.ndarray]) -> str:
    """``"square"``, ``"frame"`` or ``"close"`` for the config's ``input_shape`` and the training labels (per
    photo, (n, 4) normalized). ``"auto"`` is ``"frame"`` when a photo holds several faces (group photos,
    mosaics) or the median face is under ``SMALL_FACE`` of the photo's width: small faces gain most from the
    frame-shaped input, while single faces were boxed best in MediaPipe's square (README: with a fifth as the
    limit, personalization lost up to 0.04 AP50). ``"close"`` (the square at 128 px, 2.5x less work per
    frame) is only ever chosen by the user: with ten photos it boxed some people's faces worse than the
    built-in detector (README, "A faster input for close faces")."""
    if choice != "auto":
        return choice
    boxes = [np.asarray(b, np.float32).reshape(-1, 4) for b in boxes]
    widths = [float(w) for b in boxes for w in b[:, 2] - b[:, 0]]
    if any(len(b) >= 2 for b in boxes) or (widths and float(np.median(widths)) < SMALL_FACE):
        return "frame"
    return "square"


SHORT_RANGE_FACE = 0.18  # the short-range network's cliff: on the sample it found 80-88 % of faces wider, 16-19 % narrower


def short_range_warning(variant: str, boxes: list[np.ndarray]) -> str | None:
    """A warning when the short-range network is trained on labels (per photo, (n, 4) normalized) whose
    median face is narrower than ``SHORT_RANGE_FACE`` of the photo: it scores such faces too low to report,
    and fine-tuning the box heads cannot change that; cross-validation on the larger of them overrates it."""
    arrays = [np.asarray(b, np.float32).reshape(-1, 4) for b in boxes]
    widths = np.concatenate([a[:, 2] - a[:, 0] for a in arrays]) if arrays else np.zeros(0)
    median = float(np.median(widths)) if len(widths) else None
    if variant != "short" or median is None or median >= SHORT_RANGE_FACE:
        return None
    return (f"the 128 px short-range network rarely reports faces narrower than {SHORT_RANGE_FACE:.0%} of the photo, "
            f"and your median labeled face is {median:.0%} wide: expect missed faces (on the shipped "
            "sample it found 16-19 % of such faces). Train at 192 px (with the close-up input under Advanced for "
            "speed)")


def label_boxes(dataset: Dataset, items) -> list[np.ndarray]:
    """The labeled boxes of ``items`` (``facecore.datasets.dataset.Item``), normalized; a broken or missing label
    counts as no face (training reports those itself)."""
    from ..errors import FaceCoreError

    out = []
    for it in items:
        try:
            label = dataset.read_label(it)
        except FaceCoreError:
            label = None
        out.append(np.zeros((0, 4), np.float32) if label is None else np.asarray(label.boxes, np.float32).reshape(-1, 4))
    return out


def dominant_aspect(paths) -> float:
    """Width / height shared by most of the photos at ``paths`` (read from their headers; 4:3 if none)."""
    from ..errors import ImageReadError
    from ..images import image_size

    seen = []
    for p in paths:
        try:
            w, h = image_size(p)
        except ImageReadError:
            continue
        seen.append(round(w / h, 3))
    if not seen:
        return 4 / 3
    values, counts = np.unique(seen, return_counts=True)
    return float(values[int(np.argmax(counts))])


def fit_start_style(net, anchors: np.ndarray, size: int, samples, warnings: list, aspect: float,
                    hw: tuple[int, int] | None = None):
    """The box style of the training labels around the pretrained network's best box and keypoints
    (``BoxStyle.fit``, pulled toward the built-in ``DEFAULT_STYLE`` when few faces are labeled), built into
    the decoding before fine-tuning starts; None (with a warning) when too few faces match.

    Fitted where the network looks, in its input ``hw`` (the ``size`` square by default) letterboxed to
    ``aspect`` (undistorted, like the built-in style), on the photos of that shape (others are distorted
    there) unless too few faces are."""
    from .. import boxes as B
    from .network import decode_matrix, letterbox_geometry, letterbox_model
    from .builtin import DEFAULT_STYLE, NUM_KEYPOINTS, weighted_nms
    from .boxstyle import MIN_KEYPOINT_FACES, BoxStyle
    from ..errors import FaceCoreError, ImageReadError
    from ..images import image_size

    hw = hw or (size, size)
    dec = decode_matrix(hw)
    centres = np.concatenate([anchors[:, :2], anchors[:, :2]], axis=1)
    kp_centres = np.tile(anchors[:, :2], NUM_KEYPOINTS)
    px = np.tile(np.array([hw[1], hw[0]], np.float32), NUM_KEYPOINTS)
    sx, sy, ox, oy = letterbox_geometry(hw, aspect)
    unstretch = letterbox_model(size, aspect, hw)
    d, g, k, same = [], [], [], []
    for i in range(0, len(samples), 64):
        x = unstretch.predict(resize_all(samples.images[i:i + 64], size), verbose=0)
        reg, logits = (np.asarray(o) for o in net.predict(x, verbose=0))
        for r, lg, truth, path in zip(reg, logits[..., 0], samples.all_boxes[i:i + 64], samples.paths[i:i + 64]):
            if not len(truth):
                continue
            rows = np.concatenate([r @ dec + centres, r[:, 4:] / px + kp_centres], axis=1)
            found = weighted_nms(rows, 0.5 * (1 + np.tanh(lg / 2)), 0.3)
            if not found:
                continue
            best = found[0][1]
            t = np.asarray(truth, np.float32) * [sx, sy, sx, sy] + [ox, oy, ox, oy]
            d.append(best[:4])
            k.append(best[4:].reshape(NUM_KEYPOINTS, 2))
            g.append(t[int(np.argmax(B.iou_matrix(best[None, :4], t)[0]))])
            try:
                w, h = image_size(path)
                same.append(abs(w / h / aspect - 1.0) <= 0.02)
            except ImageReadError:
                same.append(False)
    d, g, k, same = np.asarray(d).reshape(-1, 4), np.asarray(g).reshape(-1, 4), np.asarray(k), np.asarray(same, bool)
    if same.sum() >= MIN_KEYPOINT_FACES:
        d, g, k = d[same], g[same], k[same]
    try:
        return BoxStyle.fit(d, g, keypoints=k if len(k) else None, prior=DEFAULT_STYLE, source="train split")
    except FaceCoreError as exc:
        warnings.append(f"box style not fitted before training ({exc}); training starts from BlazeFace's own boxes")
        return None


def dataset_of(images: np.ndarray, all_boxes: list[np.ndarray], batch: int, shuffle: bool, seed: int):
    """tf.data of ``(images uint8 -> float32, (boxes (K, 4), mask (K,)))``."""
    tf = _tf()
    boxes, mask = pad_boxes(all_boxes)
    ds = tf.data.Dataset.from_tensor_slices((images, (boxes, mask)))
    if shuffle:
        ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch).map(lambda x, y: (tf.cast(x, tf.float32), y)).prefetch(2)


def resize_all(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 (N, L, L, 3) -> float32 (N, size, size, 3), as inference resizes (``resize_for_model``)."""
    return np.stack([resize_for_model(im, size) for im in images]) if len(images) else np.zeros((0, size, size, 3), np.float32)


def predict_best(model, images: np.ndarray, batch: int = 64, max_faces: int = 5) -> tuple[np.ndarray, np.ndarray, list]:
    """Run the saved-model graph on uint8 (N, L, L, 3) photos: ``(prob (N, 1), box (N, 4), faces per photo)``;
    the box is the best face after weighted NMS (as ``facecore.blazeface.saved`` does at inference)."""
    from .saved import AVERAGE_FLOOR
    from .builtin import NMS_IOU, weighted_nms

    size = int(model.inputs[0].shape[1])
    probs, boxes, faces = [], [], []
    for i in range(0, len(images), batch):
        x = resize_all(images[i:i + batch], size)
        _, _, ap, ab = (np.asarray(o) for o in model.predict(x, verbose=0))
        for p, b in zip(ap[..., 0], ab):
            found = weighted_nms(b, p, 0.0, NMS_IOU, max_faces=max_faces, average_floor=AVERAGE_FLOOR)
            faces.append(found)
            probs.append([found[0][0]])
            boxes.append(found[0][1])
    return (np.asarray(probs, np.float32).reshape(-1, 1), np.asarray(boxes, np.float32).reshape(-1, 4), faces)


def saved_outputs_doc() -> list[str]:
    return ["prob (N, 1) the best face's probability",
            "box (N, 4) the best face, normalized [x1, y1, x2, y2] (softmax-weighted anchors)",
            "anchor_probs (N, A, 1) every anchor's face probability",
            "anchor_boxes (N, A, 4) every anchor's decoded box (weighted NMS gives every face)"]
