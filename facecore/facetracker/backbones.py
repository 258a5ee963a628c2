"""The backbone catalogue: every network a model can be built on, in one place, without TensorFlow.

A ``Backbone`` says what the pages and the CLI offer and what the builders need: its default input
size (and the only sizes it takes, for BlazeFace), the ``keras.applications`` class behind it, how
0..255 RGB is scaled before it (``preprocessing``), and where its pretrained weights come from. The
builders (``facecore.facetracker.model`` for face detectors, ``facecore.identity.train`` for identity classifiers)
turn an entry into layers; ``facecore.train`` and the pages take their lists from here.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import FaceCoreError

BLAZEFACE_BACKBONE = "blazeface"
MIN_INPUT_SIZE = 32
_KERAS_APPLICATIONS = "https://storage.googleapis.com/tensorflow/keras-applications/"
_KERAS_APPLICATIONS_NEW = "https://storage.googleapis.com/keras-applications/"
# How a backbone wants its 0..255 RGB input (a layer inside the saved model does it):
PREPROCESSING = {
    "caffe": "RGB -> BGR minus the ImageNet mean (Keras' 'caffe' mode)",
    "pm1": "scaled to [-1, 1]",
    "unit": "scaled to [0, 1]",
    "inside": "none: the network scales its input itself",
}
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


@dataclass(frozen=True)
class Backbone:
    """One backbone. ``weights``: ``"imagenet"`` (Keras downloads them), ``"faces"`` (MediaPipe's face
    weights, built in) or ``""`` (none: trained from scratch). ``sizes``: the only input sizes it takes
    (empty: any from ``MIN_INPUT_SIZE``). ``imagenet_sizes``: the sizes Keras has ImageNet weights for
    (empty: one file for any size; otherwise other sizes load the largest's, as Keras does)."""

    name: str
    default_size: int
    keras_app: str = ""
    preprocessing: str = "inside"
    weights: str = ""
    sizes: tuple[int, ...] = ()  # the default first
    weights_file: str = ""
    weights_url: str = ""
    imagenet_sizes: tuple[int, ...] = ()

    @property
    def imagenet(self) -> bool:
        return self.weights == "imagenet"

    def imagenet_weights(self, input_size: int, alpha: float = 1.0) -> tuple[str, str]:
        """``(file name, URL)`` of the ImageNet weights without the classifier top that Keras fetches
        for this backbone at ``input_size`` (and MobileNetV2 width ``alpha``) into ``~/.keras/models/``."""
        if not self.imagenet:
            raise FaceCoreError(f"{self.name} has no ImageNet weights")
        rows = int(input_size)
        if self.imagenet_sizes and rows not in self.imagenet_sizes:
            rows = max(self.imagenet_sizes)  # Keras' fallback (with a warning)
        name = self.weights_file.format(alpha=float(alpha), rows=rows)
        return name, self.weights_url + name


CATALOGUE: dict[str, Backbone] = {b.name: b for b in (
    # MediaPipe's face detector, fine-tuned (facecore.blazeface.finetune): 192 px is the full-range model, 128 the short-range
    Backbone(BLAZEFACE_BACKBONE, 192, preprocessing="pm1", weights="faces", sizes=(192, 128)),
    # The tutorials train VGG16 at 120 px; 128 is the nearest size MobileNetV2 has ImageNet weights for.
    Backbone("vgg16", 120, "VGG16", "caffe", "imagenet", weights_file="vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
             weights_url=_KERAS_APPLICATIONS + "vgg16/"),
    Backbone("mobilenetv2", 128, "MobileNetV2", "pm1", "imagenet",
             weights_file="mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{alpha}_{rows}_no_top.h5",
             weights_url=_KERAS_APPLICATIONS + "mobilenet_v2/", imagenet_sizes=(96, 128, 160, 192, 224)),
    Backbone("resnet50", 128, "ResNet50", "caffe", "imagenet",
             weights_file="resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5", weights_url=_KERAS_APPLICATIONS + "resnet/"),
    Backbone("efficientnetb0", 128, "EfficientNetB0", "inside", "imagenet", weights_file="efficientnetb0_notop.h5",
             weights_url=_KERAS_APPLICATIONS_NEW),
    # a small CNN with no pretrained weights: from-scratch training that is quick on a CPU (and in tests)
    Backbone("tinycnn", 96, preprocessing="unit"),
)}

# What the Train page and ``python -m facecore train`` offer, the default first.
DETECTOR_BACKBONES = tuple(CATALOGUE)
# What facecore.facetracker.model builds into the tutorials' FaceTracker (one box per image).
FACETRACKER_BACKBONES = tuple(n for n in DETECTOR_BACKBONES if n != BLAZEFACE_BACKBONE)
IMAGENET_BACKBONES = tuple(n for n, b in CATALOGUE.items() if b.imagenet)
# What the Recognize page and ``python -m facecore identity`` offer (frozen ImageNet features), the default first.
IDENTITY_BACKBONES = ("mobilenetv2", "resnet50", "vgg16", "efficientnetb0")
DEFAULT_INPUT_SIZE = {n: b.default_size for n, b in CATALOGUE.items()}


def get(name: str, among: tuple[str, ...] = DETECTOR_BACKBONES) -> Backbone:
    """The catalogue entry ``name`` (case-insensitive), which must be one of ``among``; raises FaceCoreError."""
    b = (name or "").lower()
    if b not in among:
        raise FaceCoreError(f"unknown backbone {name!r}; choose one of {', '.join(among)}")
    return CATALOGUE[b]


REACH_TIMEOUT_S = 3.0  # an answering server replies in well under a second; offline, fail this fast


def reachable(url: str, timeout: float = REACH_TIMEOUT_S) -> bool:
    """Whether ``url``'s server answers an HTTP HEAD request within ``timeout`` seconds in all (name lookup
    included, which sockets do not time out by themselves), so a download can fail fast without a network
    instead of after Keras' retries (12.5 s measured offline). Any HTTP answer counts: the server is there."""
    import threading
    import urllib.error
    import urllib.request

    result: list[bool] = []

    def ask():
        try:
            with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout):
                result.append(True)
        except urllib.error.HTTPError:
            result.append(True)  # it answered (e.g. 403 to HEAD): the download itself will say more
        except (OSError, ValueError):
            result.append(False)

    t = threading.Thread(target=ask, name="reachable", daemon=True)
    t.start()
    t.join(timeout)
    return bool(result and result[0])
