"""The trained-model detector: TFLite fast path vs tf.function, box mapping, loading, threads."""

import json
import threading

import numpy as np
import pytest

from facecore import boxes as B
from facecore.errors import FaceCoreError

SIZE = 32


def tiny_model(size: int = SIZE, seed: int = 0):
    """The project's network (tinycnn backbone, random weights, small heads): float32 (N, S, S, 3)
    RGB 0..255 in, ``[prob (N, 1), box (N, 4)]`` out."""
    import keras

    from facecore.facetracker.model import build_model

    keras.utils.set_random_seed(seed)
    return build_model("tinycnn", size, weights=None, head_units=16)


def save_model_dir(folder, model=None, size: int = SIZE, tflite: bool = True, name: str | None = None):
    """Write ``folder`` the way training does (``facecore.train.save_model``): model.keras,
    model.tflite, meta.json. Returns the folder."""
    from facecore.train import save_model

    model = model or tiny_model(size)
    meta = {"name": name or folder.name, "kind": "facetracker", "created": "2026-11-24T12:00:00",
            "config": {"input_size": size, "backbone": "tinycnn", "split": [0.7, 0.15, 0.15], "seed": 0},
            "dataset": {"name": "tiny"}, "metrics": {}}
    return save_model(model, folder, meta, export_tflite=tflite)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_model_dir(tmp_path_factory.mktemp("models") / "tiny")


def bright_box_model(size: int):
    """A 'model' whose box is the bounding box of the bright pixels (prob 1): exact ground truth."""
    import keras
    from keras import ops

    def locate(x):
        mask = ops.cast(ops.mean(x, axis=-1) > 127.0, "float32")  # (N, S, S)
        cols, rows = ops.max(mask, axis=1), ops.max(mask, axis=2)  # (N, S) each
        idx = ops.arange(size, dtype="float32")[None, :]

        def span(v):
            lo = ops.min(ops.where(v > 0, idx, float(size)), axis=1)
            hi = ops.max(ops.where(v > 0, idx + 1.0, 0.0), axis=1)
            return lo / size, hi / size

        x1, x2 = span(cols)
        y1, y2 = span(rows)
        return ops.stack([x1, y1, x2, y2], axis=1)

    inp = keras.Input((size, size, 3), dtype="float32")
    box = keras.layers.Lambda(locate, output_shape=(4,))(inp)
    prob = keras.layers.Lambda(lambda b: ops.ones_like(b[:, :1]), output_shape=(1,))(box)
    return keras.Model(inp, [prob, box])


@pytest.mark.parametrize("shape", [(480, 640), (720, 1280), (120, 160), (300, 200), (97, 333)])
def test_box_maps_back_to_original_pixels(shape):
    """The whole frame is resized, so the predicted normalized box is the box in the original
    frame: a crop/fixed-region scheme (the tutorials' frame[50:500, 50:500]) fails this."""
    from facecore.facetracker.inference import FaceTrackerDetector

    h, w = shape
    S = 64
    det = FaceTrackerDetector.from_keras(bright_box_model(S))
    rng = np.random.default_rng(h * w)
    for _ in range(3):
        bw, bh = int(rng.integers(w // 4, w // 2)), int(rng.integers(h // 4, h // 2))
        x1, y1 = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
        frame = np.zeros((h, w, 3), np.uint8)
        frame[y1:y1 + bh, x1:x1 + bw] = 255
        [d] = det.detect(frame)
        got = B.to_pixels(d.box, w, h)[0]
        # One model pixel is w/S by h/S original pixels: the box can only be that exact.
        tol = np.array([w, h, w, h]) / S + 1
        np.testing.assert_array_less(np.abs(got - [x1, y1, x1 + bw, y1 + bh]), tol)


def test_fast_path_and_keras_path_agree(model_dir):
    from facecore.registry import load_facetracker

    fast = load_facetracker(model_dir)
    slow = load_facetracker(model_dir, backend="tf.function")
    assert fast.backend == "tflite" and slow.backend == "tf.function"
    batch = np.random.default_rng(1).uniform(0, 255, (5, SIZE, SIZE, 3)).astype(np.float32)
    pf, bf = fast.predict(batch)
    ps, bs = slow.predict(batch)
    assert pf.shape == (5,) and bf.shape == (5, 4)
    np.testing.assert_allclose(pf, ps, atol=1e-3)
    np.testing.assert_allclose(bf, bs, atol=1e-3)
    assert np.ptp(pf) > 1e-4, "random inputs should give different scores (the test model is not constant)"
    frame = np.random.default_rng(2).integers(0, 255, (120, 160, 3), np.uint8)
    [a], [b] = fast.detect(frame), slow.detect(frame)
    assert abs(a.score - b.score) < 1e-3 and np.allclose(a.box, b.box, atol=1e-3)


def test_detect_batch_matches_detect_and_threshold(model_dir):
    from facecore.registry import load_facetracker

    det = load_facetracker(model_dir)
    rng = np.random.default_rng(3)
    frames = [rng.integers(0, 255, s + (3,), np.uint8) for s in [(120, 160), (64, 64), (300, 200)]]
    batch = det.detect_batch(frames)
    assert det.detect_batch([]) == []
    for f, dets in zip(frames, batch):
        [one] = det.detect(f)
        assert len(dets) == 1 and abs(dets[0].score - one.score) < 1e-5
        b = dets[0].box
        assert b.dtype == np.float32 and b[0] <= b[2] and b[1] <= b[3] and (0 <= b).all() and (b <= 1).all()
    det.threshold = 1.01
    assert det.detect(frames[0]) == [] and det.detect_batch(frames) == [[], [], []]


def test_shared_detector_is_thread_safe(model_dir):
    from facecore.registry import load_facetracker

    det = load_facetracker(model_dir)
    rng = np.random.default_rng(4)
    frames = [rng.integers(0, 255, (90, 120, 3), np.uint8) for _ in range(6)]
    expected = [det.detect(f)[0].score for f in frames]
    errors = []

    def work():
        for _ in range(10):
            for f, e in zip(frames, expected):
                got = det.detect(f)[0].score
                if abs(got - e) > 1e-6:
                    errors.append((got, e))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_falls_back_to_tf_function(tmp_path, model_dir):
    import shutil

    from facecore.registry import load_facetracker

    d = tmp_path / "broken"
    shutil.copytree(model_dir, d)
    (d / "model.tflite").write_bytes(b"not a flatbuffer")
    det = load_facetracker(d)
    assert det.backend == "tf.function" and "model.tflite could not be loaded" in det.fallback_reason
    with pytest.raises(FaceCoreError, match="could not be loaded"):
        load_facetracker(d, backend="tflite")
    (d / "model.tflite").unlink()
    det = load_facetracker(d)
    assert det.backend == "tf.function" and det.fallback_reason == "no model.tflite"
    assert len(det.detect(np.zeros((50, 50, 3), np.uint8))) == 1


def test_load_errors_are_clear(tmp_path):
    from facecore.registry import load_facetracker

    with pytest.raises(FaceCoreError, match="no model called 'nope'"):
        load_facetracker(tmp_path / "nope")
    (tmp_path / "half").mkdir()
    with pytest.raises(FaceCoreError, match="meta.json is missing"):
        load_facetracker(tmp_path / "half")
    (tmp_path / "half" / "meta.json").write_text(json.dumps({"config": {"input_size": 32}}))
    with pytest.raises(FaceCoreError, match="neither a usable model.tflite nor model.keras"):
        load_facetracker(tmp_path / "half")
    (tmp_path / "half" / "model.keras").write_bytes(b"garbage")
    with pytest.raises(FaceCoreError, match="could not load"):
        load_facetracker(tmp_path / "half")


def test_registry_loads_by_name_and_caches(tmp_path, model_dir):
    import os
    import shutil

    from facecore import registry
    from facecore.detect import HaarDetector
    from facecore.registry import detector_names, load_detector

    shutil.copytree(model_dir, tmp_path / "tiny")
    assert detector_names(tmp_path) == ["blazeface", "blazeface-short", "haar", "tiny"]
    assert isinstance(load_detector("haar", tmp_path), HaarDetector)
    a = load_detector("tiny", tmp_path)
    assert a.name == "tiny" and a.backend == "tflite"
    version = registry.model_version("tiny", tmp_path)
    meta = tmp_path / "tiny" / "meta.json"
    st = meta.stat()
    os.utime(meta, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # "retrained"
    assert registry.model_version("tiny", tmp_path) != version  # the pages' model cache is keyed by it
    assert registry.model_info("tiny", tmp_path).meta.input_hw == (SIZE, SIZE)
    with pytest.raises(FaceCoreError, match="available: tiny"):
        registry.model_info("other", tmp_path)


def test_int8_copy_is_close_and_listed(tmp_path, model_dir):
    import shutil

    from facecore.registry import detector_names, load_detector, load_facetracker, model_version, quantize

    shutil.copytree(model_dir, tmp_path / "tiny")
    with pytest.raises(FaceCoreError, match="no int8 copy yet"):
        load_detector("tiny@int8", tmp_path)
    float_version, int8_version = model_version("tiny", tmp_path), model_version("tiny@int8", tmp_path)
    info = quantize(tmp_path / "tiny")
    # the float model's cached results stay valid; the copy's version changes
    assert model_version("tiny", tmp_path) == float_version and model_version("tiny@int8", tmp_path) != int8_version
    assert info["max_abs_diff"] < 0.05 and (tmp_path / "tiny" / "model_int8.tflite").is_file()
    assert detector_names(tmp_path) == ["blazeface", "blazeface-short", "haar", "tiny", "tiny@int8"]
    q = load_detector("tiny@int8", tmp_path)
    f = load_facetracker(tmp_path / "tiny")
    assert q.name == "tiny@int8" and q.backend == "tflite-int8" and f.backend == "tflite"
    frame = np.random.default_rng(5).integers(0, 255, (120, 160, 3), np.uint8)
    [a], [b] = q.detect(frame), f.detect(frame)
    assert abs(a.score - b.score) < 0.05 and np.abs(a.box - b.box).max() < 0.05
    with pytest.raises(FaceCoreError, match="no model.keras"):
        quantize(tmp_path)


def test_haar_finds_real_faces_and_maps_boxes():
    """The shipped sample photos are real webcam faces: the cascade finds most of them, and its
    boxes overlap the labels (whatever the frame is resized to internally)."""
    from conftest import SAMPLE

    from facecore import Dataset
    from facecore.detect import HaarDetector
    from facecore.images import read_image

    ds = Dataset.open(SAMPLE)
    items = ds.items()[:12]
    det = HaarDetector()
    raw = HaarDetector(max_width=10_000, stretch=1.0, shift=0.0)
    hits = 0
    for it in items:
        img = read_image(it.image)
        dets = det.detect(img)
        assert all(a.score >= b.score for a, b in zip(dets, dets[1:]))
        if dets and B.iou_matrix(dets[0].box, ds.read_label(it).boxes).max() >= 0.3:
            hits += 1
        # Shrinking for speed must not move boxes: compare with the cascade run at full size.
        full = raw.detect(img)
        if dets and full:
            b = dets[0].box.copy()
            h = (b[3] - b[1]) / 1.3
            cy = (b[1] + b[3]) / 2 - 0.05 * h
            assert B.iou_matrix([b[0], cy - h / 2, b[2], cy + h / 2], [d.box for d in full]).max() > 0.6
    assert hits >= len(items) // 2
    assert det.detect(np.zeros((10, 10, 3), np.uint8)) == []


def test_draw_detections_overlay_and_threshold():
    from facecore.detect import Detection, Timer, draw_detections

    frame = np.full((120, 160, 3), 128, np.uint8)
    dets = [Detection(0.9, np.array([0.25, 0.25, 0.75, 0.75], np.float32)),
            Detection(0.2, np.array([0.0, 0.0, 0.1, 0.1], np.float32))]
    out = draw_detections(frame, dets, threshold=0.5)
    assert (frame == 128).all(), "drawing must not change the input frame"
    assert tuple(out[60, 40]) == (255, 0, 0)  # left edge of the 0.9 box
    assert (out[112:, :10] == 128).all() and (out[5:10, 5:10] == 128).all()  # 0.2 box not drawn
    t = Timer()
    t.update(0.004)
    t.update(0.004)
    with_overlay = draw_detections(frame, dets, threshold=0.95, overlay=t.text())
    assert (with_overlay[2, 2] == 0).all() and (with_overlay[60, 40] == 128).all()
    blurred = draw_detections(np.random.default_rng(0).integers(0, 255, (120, 160, 3), np.uint8), dets, blur=True)
    assert blurred.shape == (120, 160, 3)


def test_draw_boxes_thickness_and_no_boxes():
    from facecore.detect import draw_boxes

    frame = np.zeros((60, 80, 3), np.uint8)
    box = np.array([[0.25, 0.25, 0.75, 0.75]], np.float32)
    assert (draw_boxes(frame, np.zeros((0, 4), np.float32)) == 0).all()
    thin, thick = draw_boxes(frame, box, (9, 9, 9)), draw_boxes(frame, box, (9, 9, 9), thickness=5)
    assert (frame == 0).all() and tuple(thin[30, 20]) == (9, 9, 9)
    assert tuple(thin[30, 22]) == (0, 0, 0) and tuple(thick[30, 22]) == (9, 9, 9)


def test_shrink_fits_width_or_both_sides_and_never_enlarges():
    from facecore.preprocess import shrink

    rgb = np.zeros((300, 600, 3), np.uint8)
    assert shrink(rgb, 480).shape == (240, 480, 3)  # width only: the video gallery, live detection
    assert shrink(rgb, 192, 192).shape == (96, 192, 3)  # longest side: thumbnails, evaluation figures
    assert shrink(rgb.transpose(1, 0, 2), 192, 192).shape == (192, 96, 3)
    assert shrink(rgb, None) is rgb and shrink(rgb, 600, 300) is rgb and shrink(rgb, 1000) is rgb
