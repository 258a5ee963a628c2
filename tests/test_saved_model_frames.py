"""The exported BlazeFace model used as the README shows (``facecore.blazeface.saved.model_input`` + ``model.keras``
or ``model.tflite``) gives the app's boxes on frames of any shape: 4:3, 16:9, portrait and square."""

import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from facecore import boxes as B
from facecore.images import read_image
from facecore.datasets.labels import read_label

SAMPLE = Path("data/sample")
README = Path("README.md")
# width / height of the frames cut from the sample's 640 x 480 (4:3) photos; the model trains on 4:3
SHAPES = {"4:3": (640, 480), "16:9": (640, 360), "3:4": (360, 480), "9:16": (270, 480), "square": (480, 480)}


def _crop(rgb: np.ndarray, box: np.ndarray, wh: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """A ``wh`` window of ``rgb`` centred on the face (kept inside the photo), and the face's box in it."""
    h, w = rgb.shape[:2]
    cx, cy = (box[0] + box[2]) / 2 * w, (box[1] + box[3]) / 2 * h
    x0 = int(np.clip(round(cx - wh[0] / 2), 0, w - wh[0]))
    y0 = int(np.clip(round(cy - wh[1] / 2), 0, h - wh[1]))
    truth = (box * [w, h, w, h] - [x0, y0, x0, y0]) / [wh[0], wh[1], wh[0], wh[1]]
    return np.ascontiguousarray(rgb[y0:y0 + wh[1], x0:x0 + wh[0]]), truth.astype(np.float32)


def _readme_blocks() -> tuple[str, str]:
    """The README's two saved-model examples: ``model.keras``, then ``model.tflite`` (which reuses its names)."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    keras_block = [b for b in blocks if "model_input(" in b and "model.keras" in b]
    tflite_block = [b for b in blocks if "model.tflite" in b and "get_signature_runner" in b]
    assert len(keras_block) == 1 and len(tflite_block) == 1, "README: the saved-model examples are missing"
    return keras_block[0], tflite_block[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A BlazeFace fine-tuned for one epoch on 12 of the sample's 4:3 photos (every default)."""
    from facecore.datasets.dataset import Dataset
    from facecore.train import TrainConfig, train

    root = tmp_path_factory.mktemp("saved")
    ds = root / "ds"
    (ds / "images").mkdir(parents=True)
    (ds / "labels").mkdir()
    for f in sorted((SAMPLE / "images").glob("*.jpg"))[:12]:
        shutil.copy(f, ds / "images" / f.name)
        shutil.copy(SAMPLE / "labels" / f"{f.stem}.json", ds / "labels" / f"{f.stem}.json")
    out = train(Dataset.open(ds), TrainConfig(name="my-face", epochs=1, batch_size=8, patience=0,
                                              learning_rate=1e-4, augmentation="offline"), None,
                root / "models" / "my-face")
    return out


@pytest.fixture(scope="module")
def frames():
    """Frames of every shape in ``SHAPES`` cut from unseen sample photos, each with its one face's box."""
    out, used = {}, 0
    for path in sorted((SAMPLE / "images").glob("*.jpg"))[40::20]:  # the model trained on the first 12
        boxes = read_label(SAMPLE / "labels" / f"{path.stem}.json").boxes
        if len(boxes) != 1 or used == 3:
            continue
        used += 1
        rgb, box = read_image(path), np.asarray(boxes[0], np.float32)
        for shape, wh in SHAPES.items():
            out[(path.stem, shape)] = _crop(rgb, box, wh)
    return out


def _match(ours: list, app: list, min_score: float = 0.5) -> int:
    """Every face the app shows (score >= ``min_score``) is in ``ours`` (``[(score, box)]``) with IoU >= 0.95
    and about its score, and no more. Returns how many faces matched."""
    app = [d for d in app if d.score >= min_score]
    assert len(ours) == len(app), (ours, app)
    if not app:
        return 0
    iou = B.iou_matrix(np.asarray([b for _, b in ours], np.float32), np.asarray([d.box for d in app], np.float32))
    assert (iou.max(axis=0) >= 0.95).all(), iou
    assert np.allclose([float(sc) for sc, _ in ours], [d.score for d in app], atol=0.01)
    return len(app)


@pytest.mark.slow
def test_readme_example_gives_the_apps_boxes_on_every_frame_shape(trained, frames, tmp_path, monkeypatch):
    """The README's code, run literally (keras, then LiteRT) in a folder holding ``models/my-face`` and
    ``photo.jpg``, finds the faces the app's detector finds in that photo, whatever its shape."""
    from facecore.registry import load_detector

    keras_code, tflite_code = _readme_blocks()
    shutil.copytree(trained, tmp_path / "models" / "my-face")
    monkeypatch.chdir(tmp_path)
    app = load_detector("my-face", tmp_path / "models")
    assert app.backend == "tflite"
    shapes_seen, matched = set(), 0
    for (stem, shape), (frame, _) in frames.items():
        cv2.imwrite("photo.jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        photo = read_image(Path("photo.jpg"))  # the JPEG's pixels, as the README's code reads them
        expected = app.detect(photo)
        ns: dict = {}
        exec(compile(keras_code, "README.md (model.keras)", "exec"), ns)  # noqa: S102  the README's own code
        matched += _match(ns["faces"], expected)
        exec(compile(tflite_code, "README.md (model.tflite)", "exec"), ns)  # noqa: S102
        _match(ns["faces"], expected)
        shapes_seen.add(shape)
    assert shapes_seen == set(SHAPES)
    assert matched >= len(frames) - 3  # a one-epoch model: a frame or two may hold only a doubtful face


@pytest.mark.slow
@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_model_input_maps_boxes_back_like_the_detector(trained, frames, shape):
    """``model_input`` + ``model.keras`` (TensorFlow) and the app's LiteRT detector agree on the face's box;
    a face's label box lies where the model puts it (the mapping back is right, not just consistent)."""
    import json

    import keras

    from facecore.blazeface.saved import AVERAGE_FLOOR, MIN_SCORE, model_input
    from facecore.blazeface.builtin import weighted_nms
    from facecore.registry import load_detector

    from facecore.preprocess import resize_for_model

    meta = json.loads((trained / "meta.json").read_text())
    model = keras.models.load_model(trained / "model.keras", compile=False)
    app = load_detector(trained.name, trained.parent)
    ious, naive_ious = [], []
    for (stem, s), (frame, truth) in frames.items():
        if s != shape:
            continue
        x, to_frame = model_input(frame, meta)
        assert x.shape == (192, 192, 3) and x.dtype == np.float32
        _, _, ap, ab = model.predict(x[None], verbose=0)
        found = weighted_nms(ab[0], ap[0, :, 0], MIN_SCORE, average_floor=AVERAGE_FLOOR)
        _match([(sc, to_frame(b).clip(0, 1)) for sc, b in found if sc >= 0.5], app.detect(frame))
        # the face's label box, moved into the frame's terms, is where the model puts its best face
        ious.append(B.iou_matrix(to_frame(found[0][1]).clip(0, 1)[None], truth[None])[0, 0])
        # the frame resized straight to the input (no padding to the training shape), for comparison
        _, _, ap, ab = model.predict(resize_for_model(frame, 192)[None], verbose=0)
        naive = weighted_nms(ab[0], ap[0, :, 0], MIN_SCORE, average_floor=AVERAGE_FLOOR)[0][1]
        naive_ious.append(B.iou_matrix(naive.clip(0, 1)[None], truth[None])[0, 0])
    assert len(ious) == 3 and min(ious) >= 0.6, ious
    if shape in ("3:4", "9:16"):  # portrait frames stretched to the square: the fitted box style misses
        assert np.mean(ious) > np.mean(naive_ious) + 0.1, (ious, naive_ious)


@pytest.mark.parametrize("wh,aspect", [((640, 480), 4 / 3), ((360, 480), 4 / 3), ((480, 480), 16 / 9),
                                       ((640, 360), 0.75), ((640, 480), None)])
def test_model_input_maps_a_box_to_the_frame(wh, aspect):
    """A white square drawn in the frame comes back at the same place through ``to_frame``."""
    from facecore.blazeface.saved import model_input

    w, h = wh
    frame = np.zeros((h, w, 3), np.uint8)
    frame[h // 4:h // 2, w // 4:w // 2] = 255  # [.25, .25, .5, .5]
    meta = {"frame_aspect": aspect, "input": {"shape": [None, 128, 128, 3]}}
    x, to_frame = model_input(frame, meta)
    assert x.shape == (128, 128, 3) and x.dtype == np.float32
    ys, xs = np.nonzero(x[..., 0] > 191)
    box = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32) / 128
    assert np.allclose(to_frame(box), [0.25, 0.25, 0.5, 0.5], atol=0.02)
    assert to_frame(np.zeros((2, 3, 4))).shape == (2, 3, 4)
    if aspect is not None and abs(w / h / aspect - 1) > 0.02:  # padded: the border is mid-grey
        assert 120 <= x[0, 0, 0] <= 134 or 120 <= x[-1, -1, 0] <= 134


def test_model_input_needs_the_input_size():
    from facecore.blazeface.saved import model_input
    from facecore.errors import FaceCoreError

    with pytest.raises(FaceCoreError, match="input size"):
        model_input(np.zeros((48, 64, 3), np.uint8), {"frame_aspect": 4 / 3})
    x, _ = model_input(np.zeros((48, 64, 3), np.uint8), {"frame_aspect": 4 / 3}, size=64)
    assert x.shape == (64, 64, 3)
