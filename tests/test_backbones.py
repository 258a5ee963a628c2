"""The backbone catalogue (facecore.facetracker.backbones): consistent, true to what Keras fetches, and the one source
of the backbone choices of the builders, the Train and Recognize pages and the CLI."""

import subprocess
import sys
import warnings

import pytest

from facecore.facetracker import backbones as BB
from facecore.errors import FaceCoreError
from conftest import ROOT


@pytest.mark.parametrize("name", list(BB.CATALOGUE))
def test_every_entry_is_complete(name):
    b = BB.CATALOGUE[name]
    assert b.name == name and b.preprocessing in BB.PREPROCESSING
    assert b.default_size >= BB.MIN_INPUT_SIZE and (not b.sizes or b.sizes[0] == b.default_size)
    assert b.weights in ("imagenet", "faces", "")
    assert bool(b.keras_app) == b.imagenet  # every ImageNet backbone is a keras.applications class
    if b.imagenet:
        fname, url = b.imagenet_weights(b.default_size)
        assert fname.endswith(".h5") and url.startswith("https://") and url.endswith("/" + fname)
    else:
        with pytest.raises(FaceCoreError, match="no ImageNet weights"):
            b.imagenet_weights(b.default_size)


def test_the_lists_are_views_of_the_catalogue():
    assert BB.DETECTOR_BACKBONES[0] == BB.BLAZEFACE_BACKBONE  # the Train page's default
    assert BB.FACETRACKER_BACKBONES == tuple(n for n in BB.DETECTOR_BACKBONES if n != BB.BLAZEFACE_BACKBONE)
    assert set(BB.IDENTITY_BACKBONES) == set(BB.IMAGENET_BACKBONES) and BB.IDENTITY_BACKBONES[0] == "mobilenetv2"
    assert BB.DEFAULT_INPUT_SIZE == {n: b.default_size for n, b in BB.CATALOGUE.items()}
    assert BB.get("VGG16").name == "vgg16"
    with pytest.raises(FaceCoreError, match="unknown backbone 'tinycnn'; choose one of mobilenetv2"):
        BB.get("tinycnn", BB.IDENTITY_BACKBONES)


def test_importing_the_catalogue_does_not_import_tensorflow():
    code = "import sys, facecore.facetracker.backbones, facecore.train; print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


class _Fetched(Exception):
    pass


@pytest.mark.parametrize("name, size, alpha", [
    ("vgg16", 120, 1.0), ("resnet50", 128, 1.0), ("efficientnetb0", 128, 1.0),
    ("mobilenetv2", 128, 1.0), ("mobilenetv2", 96, 0.35),
    # sizes Keras has no MobileNetV2 weights for load the 224 px file (the identity classifier's 64 px
    # default once named a 96 px file here)
    ("mobilenetv2", 64, 1.0), ("mobilenetv2", 100, 1.0),
])
def test_weights_file_is_what_keras_fetches(name, size, alpha, monkeypatch):
    import keras
    from keras.src.utils import file_utils

    def fetch(fname, origin=None, *a, **k):
        raise _Fetched(fname, origin)

    monkeypatch.setattr(file_utils, "get_file", fetch)
    b = BB.CATALOGUE[name]
    extra = {"alpha": alpha} if name == "mobilenetv2" else {}
    with warnings.catch_warnings(), pytest.raises(_Fetched) as got:
        warnings.simplefilter("ignore")  # Keras warns when it falls back to the 224 px weights
        getattr(keras.applications, b.keras_app)(include_top=False, weights="imagenet", input_shape=(size, size, 3),
                                                 **extra)
    assert got.value.args == b.imagenet_weights(size, alpha)


def test_builders_name_the_catalogue_file(monkeypatch, tmp_path):
    """The FaceTracker builder and the identity builder name the same file for the same backbone and size."""
    import keras

    from facecore.facetracker import model as M
    from facecore.identity.train import build_backbone

    monkeypatch.setattr(M, "keras_cache_dir", lambda: tmp_path)
    assert M.imagenet_weights_file("mobilenetv2", 64).filename == BB.CATALOGUE["mobilenetv2"].imagenet_weights(64)[0]

    def offline(*a, **k):
        raise Exception("URL fetch failure: no network")

    monkeypatch.setattr(keras.applications, "MobileNetV2", offline)
    with pytest.raises(FaceCoreError) as e:
        build_backbone("mobilenetv2", 64, "imagenet")
    assert "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5" in str(e.value) and str(tmp_path) in str(e.value)


@pytest.mark.parametrize("argv, choices", [
    (["train", "--help"], BB.DETECTOR_BACKBONES),
    (["identity", "train", "--help"], BB.IDENTITY_BACKBONES),
])
def test_cli_choices_come_from_the_catalogue(argv, choices, capsys):
    from facecore.__main__ import main

    with pytest.raises(SystemExit):
        main(argv)
    assert "{" + ",".join(choices) + "}" in capsys.readouterr().out
