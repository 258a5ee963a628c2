"""BlazeFace as a Keras network: MediaPipe's ``.tflite`` graph rebuilt from stock Keras layers, with its
own weights, so it can be fine-tuned on a user's photos and saved as an ordinary ``model.keras``.

``port_tflite(path)`` walks the TFLite flatbuffer (parsed with LiteRT's schema module) and maps each
operator to a Keras layer: CONV_2D -> Conv2D, DEPTHWISE_CONV_2D -> DepthwiseConv2D, ADD -> Add,
RELU -> ReLU, MAX_POOL_2D -> MaxPooling2D, RESIZE_BILINEAR -> UpSampling2D (bilinear, half-pixel), PAD -> ZeroPadding2D (spatial) or a concatenation with a frozen all-zero 1x1 convolution
(channel padding of the residual shortcuts), RESHAPE -> Reshape, CONCATENATION -> Concatenate;
float16 weights behind DEQUANTIZE become float32. ``tests/test_blaze_keras.py`` checks that the port
reproduces the TFLite model's raw outputs on real photos.

``raw_net`` (input RGB 0..255, outputs ``[regressors (N, A, 16), logits (N, A, 1)]``) is what trains;
``detector_net`` wraps it with the decoding, in the graph, that the saved model carries:
``[prob (N, 1), box (N, 4), anchor_probs (N, A, 1), anchor_boxes (N, A, 4)]`` — the best face
(probability = the highest anchor's; box = the anchors' boxes averaged with softmax weights of 4x
their logits, a smooth form of MediaPipe's weighted NMS around the best face: within 0.005 of it on
the sample's faces, where 1x mixed in other anchors by up to 0.17) and every anchor decoded, for
several faces per frame (weighted NMS in numpy: ``facecore.blazeface.weighted_nms``).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .errors import FaceCoreError

INPUT_LAYER = "image"
OUTPUTS = ("prob", "box", "anchor_probs", "anchor_boxes")


def _schema():
    try:
        from ai_edge_litert import schema_py_generated as S  # type: ignore
    except ImportError:  # TensorFlow ships the same generated module
        from tensorflow.lite.python import schema_py_generated as S  # type: ignore
    return S


class _Graph:
    """A parsed TFLite subgraph: operators with their names, options, and constant tensors as numpy."""

    def __init__(self, path: Path):
        S = _schema()
        try:
            self.model = S.ModelT.InitFromPackedBuf(Path(path).read_bytes(), 0)
        except Exception as exc:  # noqa: BLE001  a corrupt flatbuffer raises many types
            raise FaceCoreError(f"{Path(path).name}: not a readable TFLite model ({type(exc).__name__})") from exc
        self.S = S
        self.sg = self.model.subgraphs[0]
        self.opnames = {v: k for k, v in vars(S.BuiltinOperator).items() if not k.startswith("_")}
        self._dtypes = {S.TensorType.FLOAT16: np.float16, S.TensorType.FLOAT32: np.float32,
                        S.TensorType.INT32: np.int32, S.TensorType.INT64: np.int64}
        self.consts: dict[int, np.ndarray] = {}

    def opname(self, op) -> str:
        oc = self.model.operatorCodes[op.opcodeIndex]
        return self.opnames[max(oc.builtinCode, oc.deprecatedBuiltinCode)]

    def const(self, i: int) -> np.ndarray | None:
        if i in self.consts:
            return self.consts[i]
        t = self.sg.tensors[i]
        data = self.model.buffers[t.buffer].data
        if data is None or len(data) == 0:
            return None
        return np.frombuffer(bytes(data), self._dtypes[t.type]).reshape(t.shape)


def _activation(code: int):
    import keras

    return {0: None, 1: keras.layers.ReLU(), 3: keras.layers.ReLU(max_value=6.0)}.get(code, "unsupported")


class _Port:
    """One TFLite graph being rebuilt as Keras layers: ``tensors`` maps each graph tensor index to its
    Keras tensor; ``port(op)`` adds one operator's layers."""

    def __init__(self, g: _Graph, path: Path, inputs: dict):
        self.g, self.sg, self.file = g, g.sg, Path(path).name
        self.tensors = dict(inputs)
        self._counts: dict[str, int] = {}
        # convolutions feeding a RESHAPE are the detection heads
        self.head_outputs = {op.inputs[0] for op in g.sg.operators if g.opname(op) == "RESHAPE"}

    def lname(self, kind: str) -> str:
        self._counts[kind] = self._counts.get(kind, 0) + 1
        return f"{kind}_{self._counts[kind]}"

    def error(self, what: str) -> FaceCoreError:
        return FaceCoreError(f"{self.file}: {what}")

    def port(self, op) -> None:
        """Add ``op``'s layers (or, for DEQUANTIZE, its float32 constant)."""
        kind = self.g.opname(op)
        ins, out = list(op.inputs), op.outputs[0]
        if kind == "DEQUANTIZE":
            self.g.consts[out] = self.g.const(ins[0]).astype(np.float32)
            return
        handler = self._HANDLERS.get(kind)
        if handler is None:
            raise self.error(f"operator {kind} is not supported by the Keras port")
        y, act = handler(self, ins, out, op.builtinOptions)
        if act == "unsupported":
            raise self.error(f"{kind} has an unsupported fused activation")
        self.tensors[out] = act(y) if act is not None else y

    def _padding(self, o) -> str:
        return "same" if o.padding == self.g.S.Padding.SAME else "valid"

    def _conv(self, ins, out, o, depthwise: bool):
        import keras

        w, b = self.g.const(ins[1]), self.g.const(ins[2]) if len(ins) > 2 and ins[2] >= 0 else None
        if (o.dilationHFactor, o.dilationWFactor) != (1, 1):
            raise self.error("dilated convolutions are not supported")
        size, strides = tuple(int(v) for v in w.shape[1:3]), (o.strideH, o.strideW)
        if not depthwise:
            layer = keras.layers.Conv2D(int(w.shape[0]), size, strides, self._padding(o), use_bias=b is not None,
                                        name=self.lname("head" if out in self.head_outputs else "conv"))
            kernel = w.transpose(1, 2, 3, 0)
        else:
            cin = int(self.sg.tensors[ins[0]].shape[-1])
            mult = int(w.shape[-1]) // cin
            layer = keras.layers.DepthwiseConv2D(size, strides, self._padding(o), depth_multiplier=mult,
                                                 use_bias=b is not None, name=self.lname("depthwise"))
            kernel = w[0].reshape(w.shape[1], w.shape[2], cin, mult)
        y = layer(self.tensors[ins[0]])
        layer.set_weights([kernel] + ([b] if b is not None else []))
        return y, _activation(o.fusedActivationFunction)

    def _add(self, ins, out, o):
        import keras

        y = keras.layers.Add(name=self.lname("add"))([self.tensors[ins[0]], self.tensors[ins[1]]])
        return y, _activation(o.fusedActivationFunction)

    def _relu(self, ins, out, o):
        import keras

        return keras.layers.ReLU(name=self.lname("relu"))(self.tensors[ins[0]]), None

    def _max_pool(self, ins, out, o):
        import keras

        y = keras.layers.MaxPooling2D((o.filterHeight, o.filterWidth), (o.strideH, o.strideW), self._padding(o),
                                      name=self.lname("maxpool"))(self.tensors[ins[0]])
        return y, _activation(o.fusedActivationFunction)

    def _pad(self, ins, out, o):
        import keras

        p = self.g.const(ins[1]).astype(int)
        src = self.tensors[ins[0]]
        if p[0].any():
            raise self.error("padding of the batch axis is not supported")
        if p[3].any():
            # The residual shortcut's zero channels, appended by a frozen all-zero 1x1 convolution
            # (stock layers; a reshape/pad/reshape did the same but ran 3x slower in XNNPACK).
            if p[3, 0]:
                raise self.error("padding channels in front is not supported")
            zeros = keras.layers.Conv2D(int(p[3, 1]), 1, use_bias=False, kernel_initializer="zeros",
                                        trainable=False, name=self.lname("chanpad"))(src)
            src = keras.layers.Concatenate(axis=-1, name=self.lname("chanpad_concat"))([src, zeros])
        if p[1:3].any():
            src = keras.layers.ZeroPadding2D(((int(p[1, 0]), int(p[1, 1])), (int(p[2, 0]), int(p[2, 1]))),
                                             name=self.lname("pad"))(src)
        return src, None

    def _reshape(self, ins, out, o):
        import keras

        new = [int(s) for s in self.sg.tensors[out].shape[1:]]
        return keras.layers.Reshape([-1, *new[1:]], name=self.lname("reshape"))(self.tensors[ins[0]]), None

    def _resize_bilinear(self, ins, out, o):  # the full-range model's feature pyramid: 2x, half-pixel centres
        import keras

        new, was = self.g.const(ins[1]).astype(int), [int(v) for v in self.sg.tensors[ins[0]].shape[1:3]]
        factor = (int(new[0]) // was[0], int(new[1]) // was[1])
        if o.alignCorners or not o.halfPixelCenters or factor[0] * was[0] != int(new[0]):
            raise self.error("this RESIZE_BILINEAR is not supported by the Keras port")
        layer = keras.layers.UpSampling2D(factor, interpolation="bilinear", name=self.lname("upsample"))
        return layer(self.tensors[ins[0]]), None

    def _concatenation(self, ins, out, o):
        import keras

        y = keras.layers.Concatenate(axis=o.axis, name=self.lname("concat"))([self.tensors[i] for i in ins])
        return y, _activation(o.fusedActivationFunction)

    _HANDLERS = {"CONV_2D": lambda self, ins, out, o: self._conv(ins, out, o, depthwise=False),
                 "DEPTHWISE_CONV_2D": lambda self, ins, out, o: self._conv(ins, out, o, depthwise=True),
                 "ADD": _add, "RELU": _relu,
                 "MAX_POOL_2D": _max_pool, "PAD": _pad, "RESHAPE": _reshape, "RESIZE_BILINEAR": _resize_bilinear,
                 "CONCATENATION": _concatenation}


def port_tflite(path: str | Path, input_scale: bool = True, input_hw: tuple[int, int] | None = None):
    """Rebuild the TFLite model at ``path`` as a functional Keras model with its weights.

    ``input_scale``: the Keras input takes RGB 0..255 and scales to [-1, 1] itself (the facecore input
    contract); otherwise it takes the network's own [-1, 1] input. ``input_hw``: another input height and
    width than the file's (the network is fully convolutional; both multiples of 32), with one anchor
    grid cell per output position as before. Raises FaceCoreError for an operator this port does not know.
    """
    import keras

    g = _Graph(Path(path))
    sg = g.sg
    in_idx = sg.inputs[0]
    shape = [int(s) for s in sg.tensors[in_idx].shape[1:]]
    if input_hw is not None:
        if any(int(v) <= 0 or int(v) % 32 for v in input_hw):
            raise FaceCoreError(f"BlazeFace input {input_hw}: height and width must be positive multiples of 32")
        shape = [int(input_hw[0]), int(input_hw[1]), shape[2]]
    inp = keras.Input(shape, name=INPUT_LAYER)
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="to_unit_range")(inp) if input_scale else inp
    port = _Port(g, Path(path), {in_idx: x})
    for op in sg.operators:
        port.port(op)
    outs = [port.tensors[i] for i in sg.outputs]
    # regressors (N, A, 16) first, logits (N, A, 1) second, whatever the file's order
    outs.sort(key=lambda v: -int(v.shape[-1]))
    return keras.Model(inp, outs, name="blazeface")


def raw_net(variant: str = "short", weights: str | None = "blazeface", input_hw: tuple[int, int] | None = None):
    """The BlazeFace network as Keras: input RGB 0..255 (N, H, W, 3) -> ``[regressors, logits]``.
    ``weights`` ``"blazeface"``: MediaPipe's face weights; ``None``: the same layers, freshly initialized.
    ``input_hw``: ``(H, W)`` (multiples of 32), the file's square by default."""
    from .blazeface import model_path

    net = port_tflite(model_path(variant), input_hw=input_hw)
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
    ``style`` (a ``facecore.boxstyle.BoxStyle``) in the same
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


def network_hw(size: int, aspect: float | None, input_shape: str) -> tuple[int, int]:
    """The network's input ``(height, width)`` for ``input_shape`` ``"frame"`` (``input_canvas``) or
    ``"square"`` (MediaPipe's ``size`` square, the frame letterboxed in it)."""
    return input_canvas(size, aspect) if input_shape == "frame" else (size, size)


def letterbox_geometry(hw, aspect: float | None) -> tuple[float, float, float, float]:
    """Where a frame of ``aspect`` (width / height) sits, letterboxed, in the network's input ``hw``
    (``(height, width)``, or one side of a square) as ``facecore.blazeface.letterbox`` puts it:
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
    ``input_shape``: ``"frame"`` (``input_canvas``) or ``"square"`` (MediaPipe's letterboxed square)."""
    from .blazeface import VARIANTS, ssd_anchors

    hw = network_hw(VARIANTS[variant].size, aspect, input_shape)
    return detector_net(raw_net(variant, input_hw=hw), ssd_anchors(variant, hw), max(hw), style=style,
                        aspect=aspect, hw=hw)
