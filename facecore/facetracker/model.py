"""The FaceTracker network: a frozen ImageNet backbone with the tutorials' two heads.

Saved format (what ``facecore.facetracker.inference`` loads): ``model.keras`` holds the *inference network*, a
plain functional ``keras.Model`` built only from stock Keras layers, so
``keras.models.load_model(path, compile=False)`` (or ``facecore.facetracker.inference.load_keras_model``) needs no
custom objects.

- input: float32 ``(N, S, S, 3)``, RGB, values 0..255, made by ``facecore.preprocess.resize_for_model``;
  the backbone's own scaling (caffe BGR mean subtraction, or [-1, 1]) is a layer inside the model.
- outputs: a list ``[prob, box]``: ``prob`` (N, 1) sigmoid face probability; ``box`` (N, 4) sigmoid,
  normalized ``[x1, y1, x2, y2]`` (facecore's box convention).

The network is ``preprocess -> backbone -> GlobalMaxPooling2D ("pool") -> heads``, where ``heads`` is a
nested model taking the pooled features (N, C): that is what makes training on cached features
possible (``feature_model`` and ``heads_of``). ``facecore.facetracker.losses.FaceTracker`` wraps either the full
network or the heads for training. The backbones themselves are listed in ``facecore.facetracker.backbones``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from . import backbones as BB  # noqa: E402
from ..errors import FaceCoreError  # noqa: E402

# With weights=None the backbone trains from scratch; Keras' default BN momentum (0.99-0.999) leaves
# the moving statistics far from the batch statistics after a short run, so the model is good in
# training mode and poor in eval mode. 0.9 lets them follow the weights.
SCRATCH_BN_MOMENTUM = 0.9


class WeightsUnavailable(FaceCoreError):
    """Pretrained weights could not be loaded (offline, failed download, missing or corrupt file).

    ``filename`` and ``folder`` say where to put the file by hand; ``url`` where to get it.
    """

    def __init__(self, message: str, filename: str = "", folder: str = "", url: str = ""):
        super().__init__(message)
        self.filename, self.folder, self.url = filename, folder, url


@dataclass(frozen=True)
class WeightsFile:
    """Where Keras downloads a backbone's ImageNet weights and caches them."""

    filename: str
    url: str
    folder: Path

    @property
    def path(self) -> Path:
        return self.folder / self.filename


def keras_cache_dir() -> Path:
    """Keras' download cache for application weights (``$KERAS_HOME/models``, usually ``~/.keras/models``)."""
    from keras.src.backend import config as kconfig

    return Path(os.path.expanduser(kconfig.keras_home())) / "models"


def _check_backbone(backbone: str) -> str:
    return BB.get(backbone, BB.FACETRACKER_BACKBONES).name


def resolve_input_size(backbone: str, input_size: int | None) -> int:
    """``input_size`` or the backbone's default; checks the minimum."""
    b = _check_backbone(backbone)
    size = int(input_size or BB.DEFAULT_INPUT_SIZE[b])
    if size < BB.MIN_INPUT_SIZE:
        raise FaceCoreError(f"input size {size} is too small: the backbones need at least {BB.MIN_INPUT_SIZE} px")
    return size


def imagenet_weights_file(backbone: str, input_size: int, alpha: float = 1.0) -> WeightsFile:
    """The file name and URL Keras uses for ``backbone``'s ImageNet weights without the classifier top,
    and the Keras cache folder it goes into."""
    entry = BB.CATALOGUE[_check_backbone(backbone)]
    if not entry.imagenet:
        raise WeightsUnavailable(f"{entry.name} has no ImageNet weights")
    name, url = entry.imagenet_weights(input_size, alpha)
    return WeightsFile(name, url, keras_cache_dir())


def tiny_cnn(size: int, widths=(16, 32, 64, 128)) -> keras.Model:
    """A small CNN backbone (conv-BN-ReLU, stride-2 downsampling), input scaled to 0..1 by the caller."""
    x = inp = keras.Input((size, size, 3))
    for i, w in enumerate(widths):
        x = keras.layers.Conv2D(w, 3, strides=2, padding="same", use_bias=False, name=f"conv{i + 1}")(x)
        x = keras.layers.BatchNormalization(momentum=SCRATCH_BN_MOMENTUM, name=f"bn{i + 1}")(x)
        x = keras.layers.ReLU(name=f"relu{i + 1}")(x)
        x = keras.layers.Conv2D(w, 3, padding="same", use_bias=False, name=f"conv{i + 1}b")(x)
        x = keras.layers.BatchNormalization(momentum=SCRATCH_BN_MOMENTUM, name=f"bn{i + 1}b")(x)
        x = keras.layers.ReLU(name=f"relu{i + 1}b")(x)
    return keras.Model(inp, x, name="backbone")


def _application(backbone: str, size: int, weights, alpha: float) -> keras.Model:
    if backbone == "tinycnn":
        net = tiny_cnn(size)
        if weights is not None:
            net.load_weights(weights)
        return net
    kw = dict(include_top=False, weights=weights, input_shape=(size, size, 3), name="backbone")
    if backbone == "mobilenetv2":
        kw["alpha"] = alpha
    return getattr(keras.applications, BB.CATALOGUE[backbone].keras_app)(**kw)


def build_backbone(backbone: str, input_size: int, weights="imagenet", alpha: float = 1.0) -> keras.Model:
    """A ``keras.applications`` backbone without its top, loaded with ``weights``.

    ``weights``: ``"imagenet"`` (a file already in the Keras cache is used as is, otherwise Keras
    downloads it), ``None`` (random), or a path to a weights file (``.h5`` / ``.weights.h5``).
    Raises WeightsUnavailable with the file to put into the Keras cache when loading fails.
    """
    b = _check_backbone(backbone)
    size = resolve_input_size(b, input_size)
    if weights is None:
        return _application(b, size, None, alpha)
    if isinstance(weights, str) and weights.lower() == "imagenet":
        if b not in BB.IMAGENET_BACKBONES:
            raise WeightsUnavailable(f"{b} has no ImageNet weights: train it from scratch (weights: none) "
                                     f"or choose one of {', '.join(BB.IMAGENET_BACKBONES)}")
        wf = imagenet_weights_file(b, size, alpha)
        if wf.path.is_file():
            # A file someone put there by hand (or an earlier download): load it directly.
            try:
                return _application(b, size, str(wf.path), alpha)
            except Exception as exc:  # noqa: BLE001 - any loader failure means a bad file
                raise WeightsUnavailable(
                    f"the ImageNet weights file {wf.path} could not be loaded ({type(exc).__name__}: {exc}). "
                    f"Delete it and download {wf.url} again into {wf.folder}, or train from scratch "
                    f"(weights: none).", wf.filename, str(wf.folder), wf.url) from exc
        try:
            return _application(b, size, "imagenet", alpha)
        except Exception as exc:  # noqa: BLE001 - offline, DNS, HTTP and hash errors all land here
            raise WeightsUnavailable(
                f"could not download the ImageNet weights for {b} ({type(exc).__name__}: {exc}). "
                f"Download {wf.url} and put the file {wf.filename} into {wf.folder}/, "
                f"or train from scratch (weights: none), which needs more data and epochs.",
                wf.filename, str(wf.folder), wf.url) from exc
    path = Path(str(weights)).expanduser()
    if not path.is_file():
        raise WeightsUnavailable(f"weights file {path} does not exist; choose 'imagenet', none, or an existing "
                                 f".h5 file", path.name, str(path.parent))
    try:
        return _application(b, size, str(path), alpha)
    except Exception as exc:  # noqa: BLE001
        raise WeightsUnavailable(
            f"could not load weights file {path} into a {b} backbone at {size} px "
            f"({type(exc).__name__}: {exc}). It must hold {b} weights without the classifier top.",
            path.name, str(path.parent)) from exc


def preprocess_layer(backbone: str, size: int):
    """The catalogue's scaling of 0..255 RGB for ``backbone`` (``facecore.facetracker.backbones.PREPROCESSING``), as
    a stock layer (no Lambda: the saved model must load safely), or None when the network scales itself."""
    how = BB.CATALOGUE[backbone].preprocessing
    if how == "caffe":
        # RGB -> BGR and subtract the ImageNet mean, as a fixed 3x3 permutation + bias.
        layer = keras.layers.Dense(3, name="caffe_preprocess", trainable=False)
        layer.build((None, size, size, 3))
        perm = np.zeros((3, 3), np.float32)
        perm[0, 2] = perm[1, 1] = perm[2, 0] = 1.0  # out[c] = in[2 - c]
        layer.set_weights([perm, -np.array(BB.CAFFE_MEAN_BGR, np.float32)])
        return layer
    if how == "pm1":
        return keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="scale_to_pm1")
    if how == "unit":
        return keras.layers.Rescaling(1.0 / 255.0, name="scale_to_01")
    return None


def set_bn_momentum(model: keras.Model, momentum: float) -> int:
    """Set the momentum of every BatchNormalization layer (nested models included); returns how many."""
    n = 0
    for layer in _all_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = float(momentum)
            n += 1
    return n


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


def build_model(backbone: str = "vgg16", input_size: int | None = None, weights="imagenet",
                head_units: int = 2048, alpha: float = 1.0) -> keras.Model:
    """The inference network: ``(N, S, S, 3)`` RGB 0..255 -> ``[prob (N, 1), box (N, 4)]``.

    With pretrained weights (``"imagenet"`` or a file) the backbone is frozen and only the heads train.
    With ``weights=None`` the backbone is random, so it is left trainable (the whole network trains
    from scratch) and its BatchNormalization momentum is lowered to ``SCRATCH_BN_MOMENTUM``.
    ``alpha`` is MobileNetV2's width multiplier (ignored by the other backbones).
    """
    b = _check_backbone(backbone)
    size = resolve_input_size(b, input_size)
    if int(head_units) < 1:
        raise FaceCoreError(f"head units must be at least 1, got {head_units}")
    base = build_backbone(b, size, weights, alpha)
    if weights is None:
        base.trainable = True
        set_bn_momentum(base, SCRATCH_BN_MOMENTUM)
    else:
        base.trainable = False

    image = keras.Input((size, size, 3), name="image", dtype="float32")
    pre = preprocess_layer(b, size)
    x = pre(image) if pre is not None else image
    pooled = keras.layers.GlobalMaxPooling2D(name="pool")(base(x))
    heads = build_heads(int(pooled.shape[-1]), head_units)
    prob, box = heads(pooled)
    return keras.Model(image, [prob, box], name=f"facetracker_{b}")


def build_heads(features: int, head_units: int = 2048) -> keras.Model:
    """The tutorials' heads on pooled features (N, C): Dense(relu) -> Dense(1, sigmoid) for the face
    probability and Dense(relu) -> Dense(4, sigmoid) for the box."""
    f = keras.Input((features,), name="features")
    c = keras.layers.Dense(head_units, activation="relu", name="class_hidden")(f)
    prob = keras.layers.Dense(1, activation="sigmoid", name="prob")(c)
    r = keras.layers.Dense(head_units, activation="relu", name="box_hidden")(f)
    box = keras.layers.Dense(4, activation="sigmoid", name="box")(r)
    return keras.Model(f, [prob, box], name="heads")


def backbone_of(net: keras.Model) -> keras.Model:
    return net.get_layer("backbone")


def heads_of(net: keras.Model) -> keras.Model:
    return net.get_layer("heads")


def feature_model(net: keras.Model) -> keras.Model:
    """Image (N, S, S, 3) 0..255 -> pooled backbone features (N, C), sharing ``net``'s layers."""
    return keras.Model(net.inputs, net.get_layer("pool").output, name="features")


def input_size_of(net: keras.Model) -> int:
    return int(net.inputs[0].shape[1])


def unfreeze_top(net: keras.Model, n_layers: int) -> int:
    """Make the top ``n_layers`` layers of the backbone trainable (BatchNorm stays frozen); returns
    the number of layers with weights that became trainable. Used for the optional fine-tuning phase."""
    base = backbone_of(net)
    base.trainable = True
    layers = base.layers
    cut = max(0, len(layers) - int(n_layers))
    n = 0
    for i, layer in enumerate(layers):
        on = i >= cut and not isinstance(layer, keras.layers.BatchNormalization)
        layer.trainable = on
        n += bool(on and layer.weights)
    return n


# -- TFLite --------------------------------------------------------------------------------------
def export_tflite(net: keras.Model, path: str | Path, fixed_batch: bool = False) -> Path:
    """Convert the inference network to a float32 TFLite file at ``path`` (written atomically).

    Keras 3 + TF 2.21: the network is exported as a SavedModel first, then converted; the file has
    the same input (1, S, S, 3) 0..255 RGB (batch resizable) and the outputs ``prob`` (N, 1) and
    ``box`` (N, 4). Output *order* in the interpreter is not guaranteed: tell them apart by their last
    dimension (1 vs 4), as ``TFLiteNet`` does.
    """
    import tempfile

    from ..io import atomic_write_bytes

    with tempfile.TemporaryDirectory(prefix="facecore-tflite-") as tmp:
        saved = Path(tmp) / "saved_model"
        # fixed_batch: a batch of exactly 1 lets the converter fold every reshape's shape arithmetic
        # (with a free batch, a BlazeFace graph split into 26 XNNPACK partitions and ran 3x slower)
        sig = [tf.TensorSpec([1, *net.inputs[0].shape[1:]], tf.float32)] if fixed_batch else None
        net.export(str(saved), format="tf_saved_model", verbose=False, input_signature=sig)
        converter = tf.lite.TFLiteConverter.from_saved_model(str(saved))
        data = converter.convert()
    return atomic_write_bytes(path, data)


class TFLiteNet:
    """Runs a ``model.tflite`` written by ``export_tflite``: ``net(batch) -> [prob (N, 1), box (N, 4)]``.

    ``batch``: float32 (N, S, S, 3) RGB 0..255. Not thread-safe: use one per thread (or a lock).
    """

    def __init__(self, path: str | Path, num_threads: int | None = None):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice
            self._interp = tf.lite.Interpreter(model_path=str(path), num_threads=num_threads)
        self._input = self._interp.get_input_details()[0]
        self.input_size = int(self._input["shape"][1])
        self._batch = None

    def _prepare(self, n: int) -> None:
        if self._batch != n:
            self._interp.resize_tensor_input(self._input["index"], [n, self.input_size, self.input_size, 3])
            self._interp.allocate_tensors()
            outs = self._interp.get_output_details()
            # (N, 1) and (N, 4); a BlazeFace model also has per-anchor (N, A, 1) and (N, A, 4) outputs
            self._prob = next(o["index"] for o in outs if len(o["shape"]) == 2 and o["shape"][-1] == 1)
            self._box = next(o["index"] for o in outs if len(o["shape"]) == 2 and o["shape"][-1] == 4)
            self._batch = n

    def __call__(self, batch: np.ndarray) -> list[np.ndarray]:
        x = np.ascontiguousarray(batch, np.float32)
        if x.ndim == 3:
            x = x[None]
        self._prepare(len(x))
        self._interp.set_tensor(self._input["index"], x)
        self._interp.invoke()
        return [self._interp.get_tensor(self._prob).copy(), self._interp.get_tensor(self._box).copy()]


def recalibrate_batchnorm(net: keras.Model, images: np.ndarray, batch_size: int = 32) -> int:
    """Set every trainable BatchNormalization layer's moving statistics to the average batch statistics
    of ``images`` (N, S, S, 3) 0..255 under the current weights; returns the number of layers.

    A network trained from scratch on a few hundred photos ends training with moving statistics that
    trail its weights (an average over past, different weights), so it does worse in eval mode than in
    training mode. One forward pass in training mode, with each layer's momentum set so that the moving
    value becomes the running mean over the batches, fixes that. No weights other than the statistics change.
    """
    bns = [layer for layer in _all_layers(net)
           if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable]
    if not bns or len(images) == 0:
        return 0
    saved = [layer.momentum for layer in bns]
    try:
        for k, start in enumerate(range(0, len(images), batch_size)):
            for layer in bns:
                # moving = moving * m + batch * (1 - m) with m = k / (k + 1) is the mean of the k + 1 batches
                layer.momentum = k / (k + 1)
            net(np.asarray(images[start:start + batch_size], np.float32), training=True)
    finally:
        for layer, m in zip(bns, saved):
            layer.momentum = m
    return len(bns)


def init_heads_to_prior(net: keras.Model, mean_box: np.ndarray, face_fraction: float, scale: float = 0.01) -> None:
    """Start the heads at the training data's prior: the box output at ``mean_box`` (4,) normalized and
    the face probability at ``face_fraction``, with the output layers' kernels scaled by ``scale``.

    The sigmoid outputs otherwise start far from the targets on large backbone features, and the
    localization loss can drive a coordinate into saturation in the first steps, where its gradient
    vanishes for good (seen as a y1 stuck at 0 on a from-scratch run).
    """
    heads = heads_of(net) if any(layer.name == "heads" for layer in net.layers) else net
    eps = 1e-3

    def logit(p):
        p = np.clip(np.asarray(p, np.float64), eps, 1 - eps)
        return np.log(p / (1 - p)).astype(np.float32)

    for name, target in (("box", np.asarray(mean_box, np.float32).reshape(4)),
                         ("prob", np.array([face_fraction], np.float32))):
        layer = heads.get_layer(name)
        kernel, _ = layer.get_weights()
        layer.set_weights([kernel * np.float32(scale), logit(target)])
