"""Issue #17's flow end to end: photos with two faces labeled, a BlazeFace trained on them (``auto``
picks the photo-shaped input for several faces), and both faces of people it never saw boxed on the
Video page and by the webcam's frame processor."""

import json

import av
import cv2
import numpy as np
import pytest

from conftest import SAMPLE, run_page
from facecore.images import encode_jpeg, read_image
from facecore.datasets.labels import ImageLabel, read_label

pytestmark = pytest.mark.slow


def two_faces(a, b) -> tuple[np.ndarray, np.ndarray]:
    """Two sample photos side by side at half size in a 640x480 frame (grey above and below): the frame
    and both faces' boxes, normalized."""
    frame = np.full((480, 640, 3), 127, np.uint8)
    boxes = []
    for i, path in enumerate((a, b)):
        frame[120:360, 320 * i:320 * (i + 1)] = cv2.resize(read_image(path), (320, 240), interpolation=cv2.INTER_AREA)
        x1, y1, x2, y2 = read_label(SAMPLE / "labels" / f"{path.stem}.json").boxes[0]
        boxes.append([(i + x1) / 2, 0.25 + y1 / 2, (i + x2) / 2, 0.25 + y2 / 2])
    return frame, np.asarray(boxes, np.float32)


@pytest.fixture(scope="module")
def flow(tmp_path_factory):
    """A workspace whose dataset holds two-face photos, a model trained on it, and a clip of two faces
    from photos the model never saw."""
    from facecore.train import TrainConfig, train
    from facecore.datasets.workspace import Workspace

    root = tmp_path_factory.mktemp("multiface")
    ws = Workspace(root / "data", root / "models")
    ds = ws.create_dataset("pairs")
    faces = [f for f in sorted((SAMPLE / "images").glob("*.jpg")) if not f.name.startswith("noface-")]
    train_faces, unseen = faces[:40], faces[-2:]
    for k in range(0, 40, 2):
        frame, boxes = two_faces(train_faces[k], train_faces[k + 1])
        ds.add_image(encode_jpeg(frame), f"pair{k}.jpg", ImageLabel(640, 480, boxes))
    out = train(ds, TrainConfig(name="pairs-blazeface", epochs=2, batch_size=8, learning_rate=1e-4,
                                augmentation="offline"), None, ws.model_dir("pairs-blazeface"))
    frame, truth = two_faces(*unseen)
    clip = root / "two.mp4"
    with av.open(str(clip), "w") as c:
        v = c.add_stream("libx264", rate=6)
        v.width, v.height, v.pix_fmt = 640, 480, "yuv420p"
        for _ in range(6):
            c.mux(v.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        c.mux(v.encode(None))
    return ws, out, frame, truth, clip


def test_training_on_two_face_photos_picks_the_photo_shaped_input(flow):
    _, out, _, _, _ = flow
    meta = json.loads((out / "meta.json").read_text())
    assert meta["config"]["input_shape"] == "auto"
    assert meta["input_shape"] == "frame" and meta["network_input_hw"] == [192, 256]


def test_both_faces_boxed_on_the_video_page(flow, monkeypatch):
    from facecore import boxes as B

    ws, out, _, truth, clip = flow
    monkeypatch.setenv("FACETRACK_DATA", str(ws.data_root))
    monkeypatch.setenv("FACETRACK_MODELS", str(ws.models_root))
    at = run_page("pages/5_Video.py")
    at.file_uploader[0].set_value(("two.mp4", clip.read_bytes(), "video/mp4"))
    at.run()
    assert at.selectbox(key="video_detector").value == out.name  # the newest trained model
    at.button(key="video_start").click().run()
    assert at.session_state["video_job"].wait(180).status == "done"
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Most faces in a frame"] == "2"
    result = at.session_state["video_result"]
    for record in result.records:
        shown = np.asarray([d.box for d in record.detections if d.score >= result.config.threshold])
        assert len(shown) == 2 and (B.iou_matrix(truth, shown).max(axis=1) >= 0.5).all(), record


def test_both_faces_boxed_by_the_webcam_processor(flow):
    from facecore.live.processor import LiveProcessor, LiveSettings
    from facecore.registry import load_detector

    ws, out, frame, _, _ = flow
    proc = LiveProcessor(load_detector(out.name, ws.models_root), LiveSettings(threshold=0.5, smoothing=0.0))
    for _ in range(3):
        annotated = proc.process(frame)
    assert annotated.shape == frame.shape and not np.array_equal(annotated, frame)
    stats = proc.drain_stats()
    assert stats and all(s.faces == 2 for s in stats), [s.faces for s in stats]
