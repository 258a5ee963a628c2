"""The Keras port of BlazeFace against the TFLite model, the saved-model contract, and a real fine-tuning run."""

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from facecore.blazeface import network as BK
from facecore import boxes as B
from facecore.blazeface import builtin as BF
from facecore.errors import FaceCoreError
from facecore.images import read_image

SAMPLE = Path("data/sample")


@pytest.fixture(scope="module")
def photos():
    files = sorted((SAMPLE / "images").glob("*.jpg"))[::9]
    return np.stack([cv2.resize(read_image(f), (128, 128), interpolation=cv2.INTER_AREA).astype(np.float32)
                     for f in files])


@pytest.fixture(scope="module")
def net():
    return BK.raw_net("short")


def test_port_reproduces_the_tflite_outputs(net, photos):
    lite = BF.BlazeFaceDetector("short", style=BF.BoxStyle())
    reg, logits = net.predict(photos, verbose=0)
    for i, x in enumerate(photos):
        r, lg = lite.raw(x / 127.5 - 1.0)
        # regressors are in input pixels (up to a few hundred): compare relative to their scale
        assert np.abs(r - reg[i]).max() <= 1e-4 * max(1.0, np.abs(r).max())
        assert np.abs(lg - logits[i, :, 0]).max() <= 1e-3
    assert [ly.name for ly in BK.head_layers(net)], "the port names the detection heads"


@pytest.mark.slow
def test_detector_net_decodes_like_numpy_and_saves_with_stock_layers(net, photos, tmp_path):
    import keras

    anchors = BF.ssd_anchors("short")
    model = BK.detector_net(net, anchors, 128)
    prob, box, aprobs, aboxes = model.predict(photos[:3], verbose=0)
    reg, logits = net.predict(photos[:3], verbose=0)
    for i in range(3):
        boxes, _, scores = BF.decode(reg[i], logits[i], anchors, 128)
        assert np.allclose(aboxes[i], boxes, atol=1e-5)
        assert np.allclose(aprobs[i, :, 0], scores, atol=1e-5)
        assert prob[i, 0] == pytest.approx(scores.max(), abs=1e-5)
        found = BF.weighted_nms(boxes, scores, 0.3)
        if found and found[0][0] >= 0.5:  # a real face: the in-graph softmax box is weighted NMS's
            assert np.abs(box[i] - found[0][1]).max() < 0.02
    path = tmp_path / "model.keras"
    model.save(path)
    again = keras.models.load_model(path, compile=False)  # safe mode: no Lambda, no custom layer
    assert np.allclose(again.predict(photos[:2], verbose=0)[1], box[:2], atol=1e-6)
    assert [t.shape[-1] for t in again.outputs] == [1, 4, 1, 4]


def _layer(model, name: str):
    """A layer by name, looking inside nested models too (the saved model calls the raw network as one)."""
    for ly in model.layers:
        if ly.name == name:
            return ly
        if hasattr(ly, "layers"):
            try:
                return _layer(ly, name)
            except KeyError:
                pass
    raise KeyError(name)


def _small_dataset(tmp_path: Path, n_faces: int = 24, n_walls: int = 8) -> Path:
    root = tmp_path / "ds"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for f in sorted((SAMPLE / "images").glob("*.jpg"))[:n_faces]:
        shutil.copy(f, root / "images" / f.name)
        shutil.copy(SAMPLE / "labels" / (f.stem + ".json"), root / "labels" / (f.stem + ".json"))
    rng = np.random.default_rng(0)
    for i in range(n_walls):  # no-face photos: plain walls and curtains
        wall = np.full((480, 640, 3), rng.integers(60, 220), np.uint8)
        wall[:, :: rng.integers(20, 80)] = rng.integers(0, 255)
        cv2.imwrite(str(root / "images" / f"wall{i}.jpg"), wall)
    return root


@pytest.mark.slow
def test_fine_tuning_runs_saves_and_detects(tmp_path):
    from facecore.datasets.dataset import Dataset
    from facecore.registry import load_detector
    from facecore.train import TrainConfig, train

    ds = Dataset.open(_small_dataset(tmp_path))
    seen = []
    # every layer, so that the loss has something to lower in 4 epochs (the default trains the box heads
    # only; tests/test_page_train.py runs that one)
    # (1e-3 on every layer of a 24-photo model wrecks the boxes of small faces after one epoch)
    out = train(ds, TrainConfig(name="bf", epochs=4, batch_size=8, learning_rate=3e-4, augmentation="on_the_fly",
                                patience=0, train_layers="all", input_shape="frame",
                                personalize="fine-tune"), seen.append, tmp_path / "models" / "bf")
    meta = json.loads((out / "meta.json").read_text())
    assert meta["architecture"] == "blazeface" and meta["config"]["backbone"] == "blazeface"
    assert (out / "model.keras").is_file() and (out / "model.tflite").is_file()
    assert meta["tflite"]["max_abs_diff"] <= 1e-3
    assert len(meta["history"]) == 4 and all(np.isfinite(h["loss"]) for h in meta["history"])
    assert meta["history"][-1]["loss"] < meta["history"][0]["loss"]
    assert seen and seen[-1].fraction == pytest.approx(1.0)
    det = load_detector("bf", tmp_path / "models")
    assert det.backend == "tflite"
    path = sorted((SAMPLE / "images").glob("*.jpg"))[40]
    face = read_image(path)
    dets = det.detect(face)
    assert dets and dets[0].score >= 0.5
    wall = np.full((480, 640, 3), 150, np.uint8)
    assert [d for d in det.detect(wall) if d.score >= 0.5] == []
    # two people side by side (a 1280x480 frame, padded to the training photos' 4:3): both are reported
    from facecore.datasets.labels import read_label

    x1, y1, x2, y2 = read_label(SAMPLE / "labels" / f"{path.stem}.json").boxes[0]
    truth = np.array([[x1 / 2, y1, x2 / 2, y2], [1 - x2 / 2, y1, 1 - x1 / 2, y2]], np.float32)
    two = np.concatenate([face, face[:, ::-1]], axis=1)
    shown = [d.box for d in det.detect(two) if d.score >= 0.5]
    assert len(shown) >= 2
    from facecore import boxes as B

    assert (B.iou_matrix(truth, np.asarray(shown)).max(axis=1) >= 0.5).all(), shown
    assert meta["metrics"]["train"]["mean_iou"] > 0.5
    assert meta["input_shape"] == "frame" and meta["network_input_hw"] == [192, 256]  # a 4:3 input


@pytest.mark.slow
def test_close_input_trains_a_128_px_model_that_finds_the_sample_faces(tmp_path):
    """``input_shape="close"``: the full-range network in a 128 px square (96 x 128 for 4:3 photos), saved,
    loaded through the registry, and boxing held-out sample faces where their labels are."""
    from facecore import boxes as B
    from facecore.datasets.dataset import Dataset
    from facecore.datasets.labels import read_label
    from facecore.registry import load_detector
    from facecore.train import TrainConfig, train

    ds = Dataset.open(_small_dataset(tmp_path, n_faces=12, n_walls=2))
    out = train(ds, TrainConfig(name="close", epochs=2, batch_size=8, patience=0, input_shape="close",
                                personalize="fine-tune"), None, tmp_path / "models" / "close")
    meta = json.loads((out / "meta.json").read_text())
    assert meta["input_shape"] == "close" and meta["network_input_hw"] == [96, 128]
    assert meta["input"]["shape"][1:] == [128, 128, 3] and meta["config"]["input_size"] == 192  # full range
    det = load_detector("close", tmp_path / "models")
    assert det.backend == "tflite" and det.input_size == 128
    hits = []
    for path in sorted((SAMPLE / "images").glob("*.jpg"))[30:90:10]:  # photos _small_dataset did not take
        if not (SAMPLE / "labels" / f"{path.stem}.json").is_file():
            continue
        label = read_label(SAMPLE / "labels" / f"{path.stem}.json")
        dets = det.detect(read_image(path))
        hits.append(bool(dets) and float(B.iou(np.asarray(label.boxes[:1], np.float32),
                                              dets[0].box[None])[0]) >= 0.5)
    assert len(hits) >= 4 and all(hits), hits


@pytest.mark.slow
def test_default_training_moves_boxes_and_keeps_mediapipes_face_judgement(tmp_path):
    """The default ('box' layers): the box-regression heads train, the face/no-face heads stay MediaPipe's."""
    import keras

    from facecore.datasets.dataset import Dataset
    from facecore.train import TrainConfig, train

    ds = Dataset.open(_small_dataset(tmp_path, n_faces=12, n_walls=4))
    cfg = TrainConfig(name="bfbox", epochs=2, batch_size=8, patience=0, personalize="fine-tune", learning_rate=1e-4,
                      augmentation="offline")
    assert cfg.train_layers == "box"
    out = train(ds, cfg, None, tmp_path / "models" / "bfbox")
    saved = keras.models.load_model(out / "model.keras", compile=False)
    pretrained = BK.raw_net("full")
    heads = BK.head_layers(pretrained)
    assert heads
    meta = json.loads((out / "meta.json").read_text())
    assert meta["start_style"]["method"] in ("offsets", "keypoints", "keypoints, prior 3", "keypoints, prior 30")
    kept_start = meta["training"]["best_epoch"] == 0  # no epoch beat the pretrained net with the fitted style
    for ly in heads:
        before, after = ly.get_weights(), _layer(saved, ly.name).get_weights()
        same = all(np.array_equal(a, b) for a, b in zip(before, after))
        assert same == (ly.filters % 16 != 0 or kept_start), ly.name  # classifiers unchanged, box regressors trained


@pytest.mark.slow
def test_fine_tuning_that_only_hurts_keeps_the_start(tmp_path):
    """A learning rate far too high wrecks every epoch: the pretrained weights and the fitted style are kept,
    and the saved model boxes faces as well as the style alone does."""
    import keras

    from facecore.datasets.dataset import Dataset
    from facecore.train import TrainConfig, train

    ds = Dataset.open(_small_dataset(tmp_path, n_faces=12, n_walls=4))
    out = train(ds, TrainConfig(name="wreck", epochs=2, batch_size=8, patience=0, learning_rate=50.0,
                                personalize="fine-tune", augmentation="offline"),
                None, tmp_path / "models" / "wreck")
    meta = json.loads((out / "meta.json").read_text())
    assert meta["training"]["best_epoch"] == 0
    saved = keras.models.load_model(out / "model.keras", compile=False)
    for ly in BK.head_layers(BK.raw_net("full")):
        assert all(np.array_equal(a, b) for a, b in zip(ly.get_weights(), _layer(saved, ly.name).get_weights()))
    assert meta["metrics"]["train"]["mean_iou"] > 0.6


def test_letterboxing_graph_boxes_faces_like_the_built_in_detector():
    """The saved graph letterboxes its stretched input to the training shape: on a 4:3 photo it finds the
    face where the built-in detector (letterboxing in numpy) does, in the same style."""
    from facecore.preprocess import resize_for_model

    net = BK.raw_net("full")
    model = BK.detector_net(net, BF.ssd_anchors("full"), 192, style=BF.DEFAULT_STYLE, aspect=4 / 3)
    built_in = BF.BlazeFaceDetector("full")
    faces = [f for f in sorted((SAMPLE / "images").glob("*.jpg")) if not f.name.startswith("noface-")]
    for f in faces[::15]:
        rgb = read_image(f)
        _, _, aprobs, aboxes = model.predict(resize_for_model(rgb, 192)[None], verbose=0)
        found = BF.weighted_nms(aboxes[0], aprobs[0, :, 0], 0.3)  # the built-in's minimum score
        ref = built_in.detect(rgb)
        assert found and ref, (f.name, found[:1], ref)
        assert float(B.iou(found[0][1][None], ref[0].box[None])[0]) > 0.9, f.name
    geom = BK.letterbox_geometry(192, 4 / 3)
    assert geom == (1.0, 0.75, 0.0, 0.125)  # a 4:3 frame fills 192 x 144 of the square, centred
    assert BK.letterbox_geometry(192, None) == (1.0, 1.0, 0.0, 0.0)


@pytest.mark.parametrize("aspect, hw, geometry", [
    (4 / 3, (192, 256), (1.0, 1.0, 0.0, 0.0)),              # 4:3 fills 192 x 256 exactly
    (16 / 9, (192, 352), (341 / 352, 1.0, 5 / 352, 0.0)),     # 341 px wide, padded to a multiple of 32
    (3 / 4, (256, 192), (1.0, 1.0, 0.0, 0.0)),              # portrait: the shorter side is the width
    (1.0, (192, 192), (1.0, 1.0, 0.0, 0.0)),
    (None, (192, 192), (1.0, 1.0, 0.0, 0.0)),
    (5.0, (192, 384), (1.0, 77 / 192, 0.0, 57 / 192)),      # capped at twice the shorter side
])
def test_input_canvas_follows_the_frames_shape(aspect, hw, geometry):
    assert BK.input_canvas(192, aspect) == hw
    assert BK.letterbox_geometry(hw, aspect) == pytest.approx(geometry, abs=1e-3)
    assert len(BF.ssd_anchors("full", hw)) == (hw[0] // 4) * (hw[1] // 4)


@pytest.mark.parametrize("shape, floor, min_iou", [
    ("frame", 0.3, 0.85),  # 192 x 256: a 4:3 frame undistorted, no padding; the built-in's minimum score
    ("close", 0.1, 0.7),   # 96 x 128: untrained at this size, lower scores
])
def test_input_graph_boxes_faces_like_the_built_in_detector(shape, floor, min_iou):
    """The network run on a photo-shaped or close-up input: the same faces (the sample's, a sixth of the
    frame wide) in the same places as the built-in detector on its 192 px square, with the box style in the graph."""
    from facecore.preprocess import resize_for_model

    hw = BK.network_hw(192, 4 / 3, shape)
    style = BF.DEFAULT_STYLE if shape == "frame" else BF.DEFAULT_STYLE.scaled(hw[0] / hw[1], 1.0)
    model = BK.detector_net(BK.raw_net("full", input_hw=hw), BF.ssd_anchors("full", hw), max(hw),
                            style=style, aspect=4 / 3, hw=hw)
    assert model.inputs[0].shape[1:] == (max(hw), max(hw), 3)
    assert model.outputs[2].shape[1] == (hw[0] // 4) * (hw[1] // 4) == {"frame": 48 * 64, "close": 24 * 32}[shape]
    built_in = BF.BlazeFaceDetector("full")
    faces = [f for f in sorted((SAMPLE / "images").glob("*.jpg")) if not f.name.startswith("noface-")]
    for f in faces[::15]:
        rgb = read_image(f)
        _, _, aprobs, aboxes = model.predict(resize_for_model(rgb, max(hw))[None], verbose=0)
        found = BF.weighted_nms(aboxes[0], aprobs[0, :, 0], floor)
        ref = built_in.detect(rgb)
        assert found and ref, (f.name, found[:1], ref)
        assert float(B.iou(found[0][1][None], ref[0].box[None])[0]) > min_iou, f.name


@pytest.mark.parametrize("size, aspect, shape, hw", [
    (192, 4 / 3, "square", (160, 192)),   # MediaPipe's square, its border cut off
    (192, 4 / 3, "frame", (192, 256)),
    (192, 4 / 3, "close", (96, 128)),     # the same square at 128 px: 2.5x fewer pixels than 160 x 192
    (192, 1.333, "close", (96, 128)),     # 4:3 as training reads it from the photos (rounded)
    (192, 1.25, "close", (128, 128)),     # 5:4 needs 102.4 px: rounded up to a multiple of 32
    (192, 3 / 4, "close", (128, 96)),
    (192, None, "close", (128, 128)),
    (192, 300.0, "close", (32, 128)),     # a sliver of a frame still gets one row of the network's blocks
    (128, 4 / 3, "close", (96, 128)),     # the short-range network's own square already is 128
    (128, 4 / 3, "square", (96, 128)),
])
def test_network_input_per_shape(size, aspect, shape, hw):
    assert BK.network_hw(size, aspect, shape) == hw


def test_port_refuses_an_input_the_network_cannot_take():
    with pytest.raises(FaceCoreError, match="multiples of 32"):
        BK.raw_net("full", input_hw=(200, 256))
