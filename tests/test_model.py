"""facecore.facetracker.model and facecore.facetracker.losses: losses on hand-computed cases, the network's shape and saved format,
weights loading."""

import math
import subprocess
import sys

import numpy as np
import pytest

keras = pytest.importorskip("keras")
import tensorflow as tf  # noqa: E402

from facecore.facetracker import backbones as BB  # noqa: E402
from facecore.facetracker import losses as L  # noqa: E402
from facecore.facetracker import model as M  # noqa: E402
from facecore.facetracker.inference import load_keras_model  # noqa: E402


def _t(x):
    return tf.constant(np.asarray(x, np.float32))


def test_model_builds_the_catalogue_facetracker_backbones():
    # BlazeFace is built by facecore.blazeface.network, not here
    assert {b: M.resolve_input_size(b, None) for b in BB.FACETRACKER_BACKBONES} == {
        b: BB.DEFAULT_INPUT_SIZE[b] for b in BB.FACETRACKER_BACKBONES}
    with pytest.raises(M.FaceCoreError, match="unknown backbone 'blazeface'"):
        M.resolve_input_size("blazeface", None)


@pytest.mark.parametrize("true, pred, expected", [
    # corner (0.1, 0.1) off -> 0.01 + 0.01; width 0.4 vs 0.2, height 0.4 vs 0.6 -> 0.04 + 0.04
    ([0.1, 0.2, 0.5, 0.6], [0.2, 0.1, 0.4, 0.7], 0.10),
    ([0.1, 0.2, 0.5, 0.6], [0.1, 0.2, 0.5, 0.6], 0.0),
    # same size, shifted by (0.3, 0.4): only the corner term
    ([0.0, 0.0, 0.2, 0.2], [0.3, 0.4, 0.5, 0.6], 0.09 + 0.16),
    # right corner place, zero size: (0.5^2 + 0.25^2)
    ([0.2, 0.2, 0.7, 0.45], [0.2, 0.2, 0.2, 0.2], 0.25 + 0.0625),
])
def test_localization_loss_hand_computed(true, pred, expected):
    got = L.localization_loss(_t([true]), _t([pred])).numpy()
    assert got.shape == (1,)
    assert got[0] == pytest.approx(expected, abs=1e-6)


def test_classification_loss_is_bce_per_sample():
    got = L.classification_loss(_t([[1.0], [0.0]]), _t([[0.8], [0.3]])).numpy()
    assert got == pytest.approx([-math.log(0.8), -math.log(0.7)], abs=1e-5)


def _tracker(weight=2.0):
    ft = L.FaceTracker(M.build_heads(4, 2))
    ft.compile(keras.optimizers.Adam(1e-3), localization_weight=weight)
    return ft


def test_no_face_sample_contributes_no_localization_loss():
    ft = _tracker(weight=2.0)
    y_cls = _t([[1.0], [0.0]])
    y_box = _t([[0.1, 0.2, 0.5, 0.6], [0.0, 0.0, 0.0, 0.0]])
    prob = _t([[0.8], [0.3]])
    # the no-face sample's predicted box is far from its (zero) target: it must not count
    box = _t([[0.2, 0.1, 0.4, 0.7], [0.9, 0.9, 1.0, 1.0]])
    total, cls, loc = (v.numpy() for v in ft.compute_losses(y_cls, y_box, prob, box))
    expected_cls = (-math.log(0.8) - math.log(0.7)) / 2
    assert loc == pytest.approx(0.10, abs=1e-6)  # the face sample's loss alone, not averaged with the other
    assert cls == pytest.approx(expected_cls, abs=1e-5)
    assert total == pytest.approx(expected_cls + 2.0 * 0.10, abs=1e-5)


def test_batch_without_faces_has_zero_localization_loss():
    ft = _tracker()
    total, cls, loc = ft.compute_losses(_t([[0.0], [0.0]]), _t(np.zeros((2, 4))), _t([[0.1], [0.2]]),
                                        _t([[0.3, 0.3, 0.9, 0.9], [0.5, 0.5, 0.6, 0.6]]))
    assert loc.numpy() == 0.0 and np.isfinite(total.numpy())
    assert total.numpy() == pytest.approx(cls.numpy())


@pytest.mark.parametrize("a, b, expected", [
    ([0, 0, 0.5, 0.5], [0, 0, 0.5, 0.5], 1.0),
    ([0, 0, 0.5, 0.5], [0.25, 0, 0.75, 0.5], 1 / 3),
    ([0, 0, 0.2, 0.2], [0.5, 0.5, 0.7, 0.7], 0.0),
    ([0, 0, 0.5, 0.5], [0.4, 0.4, 0.1, 0.1], 0.0),  # inverted prediction has no area
])
def test_box_iou(a, b, expected):
    assert L.box_iou(_t([a]), _t([b])).numpy()[0] == pytest.approx(expected, abs=1e-6)


def test_evaluate_predictions_counts_faces_only_for_iou():
    m = L.evaluate_predictions([[1], [0], [1]], [[0, 0, 0.5, 0.5], [0, 0, 0, 0], [0, 0, 0.5, 0.5]],
                               [[0.9], [0.6], [0.2]], [[0, 0, 0.5, 0.5], [0.5, 0.5, 1, 1], [0.25, 0, 0.75, 0.5]])
    assert m["mean_iou"] == pytest.approx((1 + 1 / 3) / 2, abs=1e-6)
    assert m["face_accuracy"] == pytest.approx(1 / 3)
    assert m["n"] == 3 and m["n_face"] == 2
    assert L.evaluate_predictions(np.zeros((0, 1)), np.zeros((0, 4)), np.zeros((0, 1)), np.zeros((0, 4))) == {
        "n": 0, "n_face": 0}


@pytest.mark.parametrize("backbone", BB.FACETRACKER_BACKBONES)
def test_build_model_shapes_and_trainability(backbone):
    net = M.build_model(backbone, 64, None, head_units=16, alpha=0.35)
    prob, box = net(np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype(np.float32))
    assert prob.shape == (2, 1) and box.shape == (2, 4)
    assert np.all((prob.numpy() >= 0) & (prob.numpy() <= 1)) and np.all((box.numpy() >= 0) & (box.numpy() <= 1))
    # weights=None: the backbone trains from scratch, with a BatchNorm momentum that can follow it
    assert M.backbone_of(net).trainable
    bns = [l for l in M._all_layers(net) if isinstance(l, keras.layers.BatchNormalization)]
    assert all(l.momentum == M.SCRATCH_BN_MOMENTUM for l in bns)
    assert M.feature_model(net).outputs[0].shape[-1] == M.heads_of(net).inputs[0].shape[-1]


def test_caffe_preprocessing_matches_keras():
    from keras.applications.vgg16 import preprocess_input

    layer = M.preprocess_layer("vgg16", 8)
    x = np.random.default_rng(1).uniform(0, 255, (2, 8, 8, 3)).astype(np.float32)
    np.testing.assert_allclose(layer(x).numpy(), preprocess_input(x.copy()), atol=1e-4)


def _legacy_h5(model, path):
    """Write weights the way Keras' downloadable ImageNet files are stored (legacy HDF5)."""
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)


def test_imagenet_path_uses_file_in_keras_cache_and_freezes(tmp_path, monkeypatch):
    monkeypatch.setattr(M, "keras_cache_dir", lambda: tmp_path)
    ref = M.build_model("mobilenetv2", 96, None, 8, alpha=0.35)
    wf = M.imagenet_weights_file("mobilenetv2", 96, 0.35)
    assert wf.filename == "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_96_no_top.h5"
    _legacy_h5(M.backbone_of(ref), tmp_path / wf.filename)

    net = M.build_model("mobilenetv2", 96, "imagenet", 8, alpha=0.35)
    for a, b in zip(M.backbone_of(net).get_weights(), M.backbone_of(ref).get_weights()):
        np.testing.assert_array_equal(a, b)
    assert not M.backbone_of(net).trainable
    assert {w.name for w in net.trainable_weights} == {w.name for w in M.heads_of(net).trainable_weights}


def test_local_weights_file(tmp_path):
    ref = M.build_model("tinycnn", 64, None, 8)
    path = tmp_path / "tiny.weights.h5"
    M.backbone_of(ref).save_weights(path)
    net = M.build_model("tinycnn", 64, str(path), 8)
    np.testing.assert_array_equal(M.backbone_of(net).get_weights()[0], M.backbone_of(ref).get_weights()[0])
    assert not M.backbone_of(net).trainable


def test_weights_problems_are_clear_errors(tmp_path, monkeypatch):
    monkeypatch.setattr(M, "keras_cache_dir", lambda: tmp_path)
    real = M._application

    def offline(backbone, size, weights, alpha):
        if weights == "imagenet":  # what Keras raises when it cannot download
            raise Exception("URL fetch failure on https://storage.googleapis.com/...: [Errno -2] Name or service not known")
        return real(backbone, size, weights, alpha)

    monkeypatch.setattr(M, "_application", offline)
    with pytest.raises(M.WeightsUnavailable) as e:
        M.build_model("vgg16", 64, "imagenet", 8)
    msg = str(e.value)
    assert "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5" in msg and str(tmp_path) in msg
    assert "from scratch" in msg and e.value.url.startswith("https://")

    # a corrupt file in the cache names the file
    (tmp_path / e.value.filename).write_bytes(b"not hdf5")
    with pytest.raises(M.WeightsUnavailable, match="could not be loaded"):
        M.build_model("vgg16", 64, "imagenet", 8)
    with pytest.raises(M.WeightsUnavailable, match="does not exist"):
        M.build_model("vgg16", 64, str(tmp_path / "missing.h5"), 8)
    with pytest.raises(M.WeightsUnavailable, match="no ImageNet weights"):
        M.build_model("tinycnn", 64, "imagenet", 8)
    with pytest.raises(M.FaceCoreError, match="unknown backbone"):
        M.build_model("alexnet", 64, None, 8)


def test_unfreeze_top_keeps_batchnorm_frozen(tmp_path):
    ref = M.build_model("tinycnn", 64, None, 8)
    path = tmp_path / "tiny.weights.h5"
    M.backbone_of(ref).save_weights(path)
    net = M.build_model("tinycnn", 64, str(path), 8)
    n = M.unfreeze_top(net, 3)  # conv4b, bn4b, relu4b
    assert n == 1
    trainable = [l.name for l in M.backbone_of(net).layers if l.trainable and l.weights]
    assert trainable == ["conv4b"]


@pytest.mark.slow
def test_saved_model_loads_without_facecore_and_tflite_matches(tmp_path):
    net = M.build_model("tinycnn", 48, None, 8)
    net.save(tmp_path / "model.keras")
    M.export_tflite(net, tmp_path / "model.tflite")
    x = np.random.default_rng(2).uniform(0, 255, (3, 48, 48, 3)).astype(np.float32)
    ref = net.predict(x, verbose=0)
    np.save(tmp_path / "x.npy", x)
    # A fresh interpreter that never imports facecore: no custom objects are needed.
    code = ("import sys, numpy as np, keras\n"
            "m = keras.models.load_model(sys.argv[1] + '/model.keras', compile=False)\n"
            "p, b = m.predict(np.load(sys.argv[1] + '/x.npy'), verbose=0)\n"
            "np.save(sys.argv[1] + '/p.npy', p); np.save(sys.argv[1] + '/b.npy', b)\n"
            "assert 'facecore' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, cwd=tmp_path,
                   env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"})
    np.testing.assert_allclose(np.load(tmp_path / "p.npy"), ref[0], atol=1e-5)
    np.testing.assert_allclose(np.load(tmp_path / "b.npy"), ref[1], atol=1e-5)

    lite = M.TFLiteNet(tmp_path / "model.tflite")
    assert lite.input_size == 48
    p, b = lite(x)
    assert p.shape == (3, 1) and b.shape == (3, 4)
    np.testing.assert_allclose(p, ref[0], atol=1e-3)
    np.testing.assert_allclose(b, ref[1], atol=1e-3)
    p1, b1 = lite(x[0])  # a single image, batch resized back to 1
    np.testing.assert_allclose(b1, ref[1][:1], atol=1e-3)
    assert M.input_size_of(load_keras_model(tmp_path / "model.keras")) == 48


def test_recalibrate_batchnorm_sets_average_batch_statistics():
    inp = keras.Input((2, 2, 3))
    bn = keras.layers.BatchNormalization(momentum=0.99)
    net = keras.Model(inp, bn(inp))
    net(np.zeros((1, 2, 2, 3), np.float32))
    x = np.concatenate([np.full((4, 2, 2, 3), 10.0), np.full((4, 2, 2, 3), 30.0),
                        np.full((2, 2, 2, 3), 50.0)]).astype(np.float32)
    assert M.recalibrate_batchnorm(net, x, batch_size=4) == 1
    # three batches with means 10, 30 and 50 (variance 0 each): the moving mean is their mean
    np.testing.assert_allclose(bn.moving_mean.numpy(), [30.0] * 3, rtol=1e-5)
    np.testing.assert_allclose(bn.moving_variance.numpy(), [0.0] * 3, atol=1e-4)
    assert bn.momentum == 0.99
    bn.trainable = False  # frozen (pretrained) layers keep their statistics
    assert M.recalibrate_batchnorm(net, x) == 0
