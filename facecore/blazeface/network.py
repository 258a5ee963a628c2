"""BlazeFace as a Keras network: MediaPipe's ``.tflite`` graph rebuilt from stock Keras layers, with its
own weights, so it can be fine-tuned on a user's photos and saved as an ordinary ``model.keras``.

``facecore.blazeface.port.port_tflite`` rebuilds the graph (``tests/test_blaze_keras.py`` checks that the
port reproduces the TFLite model's raw outputs on real photos); this module builds the networks on it.

``raw_net`` (input RGB 0..255, outputs ``[regressors (N, A, 16), logits (N, A, 1)]``) is what trains;
``detector_net`` wraps it with the decoding, in the graph, that the saved model carries:
``[prob (N, 1), box (N, 4), anchor_probs (N, A, 1), anchor_boxes (N, A, 4)]`` — the best face
(probability = the highest anchor's; box = the anchors' boxes averaged with softmax weights of 4x
their logits, a smooth form of MediaPipe's weighted NMS around the best face: within 0.005 of it on
the sample's faces, where 1x mixed in other anchors by up to 0.17) and every anchor decoded, for
several faces per frame (weighted NMS in numpy: ``facecore.blazeface.builtin.weighted_nms``).
"""

from __future__ import annotations

import math

import numpy as np

from .port import port_tflite

OUTPUTS = ("prob", "box", "anchor_probs", "anchor_boxes")
# The "close" input: the full-range network's convolutions run at any size, and a face a sixth of a 4:3
# frame wide still spans about 20 px in a 128 px square, as a tenth does at 192 (finetune.SMALL_FACE).
CLOSE_SIZE = 128


def raw_net(variant: str = "short", weights: str | None = "blazeface", input_hw: tuple[int, int] | None = None):
    """The BlazeFace network as Keras: input RGB 0..255 (N, H, W, 3) -> ``[regressors, logits]``.
    ``weights`` ``"blazeface"``: MediaPipe's face weights; ``None``: the same layers, freshly initialized.
    ``input_hw``: ``(H, W)`` (multiples of 32), the file's square by default."""
    from .builtin import network_file

    net = port_tflite(network_file(variant), input_hw=input_hw)
    if weights is None:
        import keras

        fresh = keras.models.clone_model(net)  # clone_model re-initializes every layer
        return fresh
    return net


def head_layers(net) -> list:
    """The detection heads (the convolutions whose outputs become anchors), named ``head_*`` by the port."""
    return [ly for ly in net.layers if ly.name.startswith("head_")]


def set_trainable(net, layers: str = "all") -> None:
    """``"all"``: every layer trains; ``"heads"``: only the detection heads (the backbone is frozen);
    ``"box"``: only the box-regression heads (the face/no-face heads keep MediaPipe's judgement)."""
    for ly in net.layers:
        if ly.name.startswith("chanpad"):
            ly.trainable = False
        elif layers == "all":
            ly.trainable = True
        elif layers == "heads":
            ly.trainable = ly.name.startswith("head_")
        else:  # a regression head has 16 outputs per anchor, a classifier 1
            ly.trainable = ly.name.startswith("head_") and int(ly.filters) % 16 == 0


def decode_matrix(size, style=None) -> np.ndarray:
    """(16, 4): regressors -> box corners relative to the anchor centre, normalized:
    ``x1 = (dx - w / 2) / width`` and so on (``size``: the input side, or its ``(height, width)``), with
    ``style`` (a ``facecore.blazeface.boxstyle.BoxStyle``) in the same
    matrix: both its forms are linear in the regressors (offsets move each side by a fraction of ``w`` or
    ``h``; the keypoint map adds multiples of each keypoint's offset from the box centre, ``kx - dx``). The
    network then starts out drawing boxes the way the training labels are drawn, and fine-tuning only has
    to refine them. Without a style: MediaPipe's own box."""
    from .boxstyle import N_FEATURES, NUM_KEYPOINTS, offsets_matrix

    h, w = (size, size) if np.isscalar(size) else size
    weights = style.weights() if style is not None else offsets_matrix(0, 0, 0, 0)
    jac = np.zeros((N_FEATURES, 16))  # regressors -> boxstyle.features: [w, h, k0x - cx, k0y - cy, ...]
    jac[0, 2] = jac[1, 3] = 1.0
    for j in range(NUM_KEYPOINTS):
        jac[2 + 2 * j, 4 + 2 * j], jac[2 + 2 * j, 0] = 1.0, -1.0
        jac[3 + 2 * j, 5 + 2 * j], jac[3 + 2 * j, 1] = 1.0, -1.0
    m = jac.T @ weights
    m[0, [0, 2]] += 1.0
    m[1, [1, 3]] += 1.0
    return (m / np.array([w, h, w, h], np.float64)).astype(np.float32)


MAX_STRETCH = 2.0  # the longer side of the network's input is at most this many times the shorter one


def input_canvas(size: int, aspect: float | None) -> tuple[int, int]:
    """The network's input ``(height, width)`` for frames of ``aspect`` (width / height): the shorter side
    ``size``, the longer one the frame's (up to ``MAX_STRETCH`` times), rounded up to a multiple of 32.
    A 4:3 frame at 192 gets 192 x 256: every pixel shows the frame, none the padding of a square, so
    small faces keep a third more pixels than in a 192 px square (at a third more compute).
    ``(size, size)`` for None or a square frame."""
    if aspect is None or abs(float(aspect) - 1.0) <= 0.02:
        return size, size
    long = min(float(aspect) if aspect > 1 else 1.0 / float(aspect), MAX_STRETCH) * size
    long = int(math.ceil(long / 32 - 1e-6) * 32)
    return (size, long) if aspect > 1 else (long, size)


def square_canvas(size: int, aspect: float | None) -> tuple[int, int]:
    """MediaPipe's letterboxed ``size`` square with most of its border cut off: the longer side ``size``,
    the shorter one the frame's, rounded up to a multiple of 32 (the network halves its input five times).
    The frame gets the very pixels it gets in the square, at a fraction of the work: a 4:3 frame at 192 is
    computed at 160 x 192 (17 % fewer pixels and anchors), 16:9 at 128 x 192 (33 %). ``(size, size)`` for
    None or a square frame."""
    if aspect is None or abs(float(aspect) - 1.0) <= 0.02:
        return size, size
    short = size / max(float(aspect), 1.0 / float(aspect))
    # a tolerance of 0.5 px: photos' aspects are rounded (4:3 read as 1.333 puts 96.02 px at 128)
    short = min(size, max(32, int(math.ceil((short - 0.5) / 32) * 32)))
    return (short, size) if aspect > 1 else (size, short)


def network_hw(size: int, aspect: float | None, input_shape: str) -> tuple[int, int]:
    """The network's input ``(height, width)`` for ``input_shape`` ``"frame"`` (``input_canvas``),
    ``"square"`` (MediaPipe's ``size`` square, the frame letterboxed in it: ``square_canvas``) or ``"close"``
    (the same at ``CLOSE_SIZE``: a 4:3 frame at 96 x 128, 2.5x fewer pixels than at 192)."""
    if input_shape == "frame":
        return input_canvas(size, aspect)
    return square_canvas(min(size, CLOSE_SIZE) if input_shape == "close" else size, aspect)


def letterbox_geometry(hw, aspect: float | None) -> tuple[float, float, float, float]:
    """Where a frame of ``aspect`` (width / height) sits, letterboxed, in the network's input ``hw``
    (``(height, width)``, or one side of a square) as ``facecore.blazeface.builtin.letterbox`` puts it:
    ``(sx, sy, ox, oy)``, a normalized x of the frame is ``ox + sx * x`` in the input.
    ``(1, 1, 0, 0)`` (all of it) for None or a frame of the input's own shape."""
    h, w = (hw, hw) if np.isscalar(hw) else hw
    if aspect is None or abs(float(aspect) / (w / h) - 1.0) <= 0.02:
        return 1.0, 1.0, 0.0, 0.0
    aspect = float(aspect)
    cw, ch = (w, max(1, round(w / aspect))) if aspect > w / h else (max(1, round(h * aspect)), h)
    return cw / w, ch / h, ((w - cw) // 2) / w, ((h - ch) // 2) / h


def letterbox_model(size: int, aspect: float | None, hw: tuple[int, int] | None = None):
    """A Keras model (stock layers) that turns a frame stretched to ``size`` x ``size`` (RGB 0..255) back
    into an undistorted frame, as MediaPipe's network was trained on: resized to the frame's own shape
    (``aspect``) within the network's input ``hw`` (``(height, width)``; the square by default), centred
    on a mid-grey border. The identity when the frame fills the input."""
    import keras

    h, w = hw or (size, size)
    x = inp = keras.Input((size, size, 3), name="frame")
    sx, sy, ox, oy = letterbox_geometry((h, w), aspect)
    cw, ch = round(sx * w), round(sy * h)
    if (ch, cw) != (size, size):
        x = keras.layers.Resizing(ch, cw, interpolation="bilinear", name="unstretch")(x)
    if (ch, cw) != (h, w):
        top, left = round(oy * h), round(ox * w)
        x = keras.layers.Rescaling(1.0, offset=-127.5, name="centre_grey")(x)  # the border: mid-grey
        x = keras.layers.ZeroPadding2D(((top, h - ch - top), (left, w - cw - left)), name="letterbox")(x)
        x = keras.layers.Rescaling(1.0, offset=127.5, name="uncentre_grey")(x)
    return keras.Model(inp, x, name="letterbox")


def frame_decoding(hw, anchors: np.ndarray, style=None, aspect: float | None = None):
    """``(matrix (16, 4), offsets (A, 4), centres (A, 2))``: ``regressors @ matrix + offsets`` are every
    anchor's box in ``style``, normalized to the frame, when the network ran on its input ``hw``
    (``(height, width)`` or a square's side) letterboxed by ``letterbox_model``; ``centres``, the anchors'
    centres in the frame's terms. ``anchors``: normalized to the input (``ssd_anchors(variant, hw)``)."""
    sx, sy, ox, oy = letterbox_geometry(hw, aspect)
    scale = np.array([sx, sy, sx, sy], np.float32)
    origin = np.array([ox, oy, ox, oy], np.float32)
    matrix = decode_matrix(hw, style) / scale
    offsets = (np.concatenate([anchors[:, :2], anchors[:, :2]], axis=1) - origin) / scale
    return matrix.astype(np.float32), offsets.astype(np.float32), offsets[:, :2].copy()


def detector_net(net, anchors: np.ndarray, size: int, temperature: float = 4.0, style=None,
                 aspect: float | None = None, hw: tuple[int, int] | None = None):
    """Wrap a raw BlazeFace net with the decoding in the graph; stock layers only, so
    ``keras.models.load_model(path, compile=False)`` loads the saved file.

    Outputs ``[prob (N, 1), box (N, 4), anchor_probs (N, A, 1), anchor_boxes (N, A, 4)]``, boxes
    normalized ``[x1, y1, x2, y2]`` in the input frame (whole frame resized), in ``style`` (see
    ``decode_matrix``). With ``aspect`` (the training photos' width / height) the stretched input is
    letterboxed in the graph first (``letterbox_model``), so the network sees faces undistorted; ``hw``:
    the network's input ``(height, width)`` (``input_canvas``; ``anchors`` made for it), the square by default.
    """
    import keras

    inp = keras.Input((size, size, 3), name="image")
    reg, logits = net(letterbox_model(size, aspect, hw)(inp))
    a = len(anchors)
    matrix, offsets, _ = frame_decoding(hw or size, anchors, style, aspect)
    dense = keras.layers.Dense(4, use_bias=False, trainable=False, name="decode_box")
    rel = dense(reg)
    dense.set_weights([matrix])
    boxes = keras.layers.Rescaling(1.0, offset=offsets, name="anchor_boxes")(rel)
    probs = keras.layers.Activation("sigmoid", name="anchor_probs")(logits)
    prob = keras.layers.GlobalMaxPooling1D(name="prob")(probs)
    flat = keras.layers.Reshape((a,), name="logits_flat")(logits)
    weights = keras.layers.Softmax(name="anchor_weights")(keras.layers.Rescaling(temperature, name="sharpen")(flat))
    weights = keras.layers.Reshape((a, 1), name="anchor_weights_col")(weights)
    best = keras.layers.Dot(axes=1, name="weighted_box")([weights, boxes])
    box = keras.layers.Reshape((4,), name="box")(best)
    return keras.Model(inp, [prob, box, probs, boxes], name="blazeface_detector")


def pretrained_detector(variant: str = "full", aspect: float | None = 4 / 3, style=None, input_shape: str = "frame"):
    """MediaPipe's network in the saved-model form fine-tuning gives it for frames of ``aspect``, before any
    fine-tuning (for timing, and as a baseline): input the frame stretched to a square, see ``detector_net``.
    ``input_shape``: ``"frame"`` (``input_canvas``), ``"square"`` (MediaPipe's letterboxed square) or ``"close"``
    (that square at ``CLOSE_SIZE``): ``network_hw``."""
    from .builtin import VARIANTS, ssd_anchors

    hw = network_hw(VARIANTS[variant].size, aspect, input_shape)
    return detector_net(raw_net(variant, input_hw=hw), ssd_anchors(variant, hw), max(hw), style=style,
                        aspect=aspect, hw=hw)
