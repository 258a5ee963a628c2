"""MediaPipe's BlazeFace ``.tflite`` graph rebuilt as a Keras network from stock layers, with its own weights
(``facecore.blazeface.network`` builds the trainable and saved networks on it).

``port_tflite(path)`` walks the TFLite flatbuffer (parsed with LiteRT's schema module) and maps each
operator to a Keras layer: CONV_2D -> Conv2D, DEPTHWISE_CONV_2D -> DepthwiseConv2D, ADD -> Add,
RELU -> ReLU, MAX_POOL_2D -> MaxPooling2D, RESIZE_BILINEAR -> UpSampling2D (bilinear, half-pixel),
PAD -> ZeroPadding2D (spatial) or a concatenation with a frozen all-zero 1x1 convolution
(channel padding of the residual shortcuts), RESHAPE -> Reshape, CONCATENATION -> Concatenate;
float16 weights behind DEQUANTIZE become float32. ``tests/test_blaze_keras.py`` checks that the port
reproduces the TFLite model's raw outputs on real photos.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import FaceCoreError

INPUT_LAYER = "image"


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
