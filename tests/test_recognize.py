"""The recognition pipeline: detector -> crop grown by k -> identity classifier -> name per face."""

import threading

import numpy as np
import pytest

from conftest import SAMPLE
from facecore.detect import Detection, Detector, HaarDetector
from facecore.errors import FaceCoreError
from facecore.identity.data import create_identity_set
from facecore.identity.train import IdentityConfig, train_identity
from facecore.images import read_image
from facecore.identity.recognize import Recognizer, draw_recognitions
from facecore.identity.recognize import load_identity, load_recognizer
from facecore.registry import detector_names, identity_model_names
from identity_synth import PEOPLE, background, draw_person, person_dataset

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A real identity model (vgg16, random frozen weights, 64 px) trained on two synthetic people."""
    root = tmp_path_factory.mktemp("recognize")
    ids = create_identity_set(root / "data", "people")
    for i, who in enumerate(PEOPLE):
        ids.build_from_dataset(who, person_dataset(root / "photos" / who, who, n=12, seed=i))
    cfg = IdentityConfig(backbone="vgg16", input_size=64, weights=None, epochs=10, patience=4)
    res = train_identity(ids, cfg, root / "models" / "people")
    return root / "models", res


class KnownBoxes(Detector):
    """A real Detector over boxes known in advance (Haar does not see cartoon faces)."""

    name = "known"

    def __init__(self, detections):
        self.detections = detections

    def detect(self, frame):
        return list(self.detections)


def two_people_frame():
    rng = np.random.default_rng(5)
    frame = background(rng, 240, 120)
    ann = draw_person(frame, "ann", 20, 25, 60, 70)
    bob = draw_person(frame, "bob", 150, 20, 55, 66)
    return frame, ann, bob


def test_two_faces_get_two_names(trained):
    models, res = trained
    frame, ann, bob = two_people_frame()
    weak = np.array([0.45, 0.0, 0.55, 0.1], np.float32)
    det = KnownBoxes([Detection(0.9, bob), Detection(0.8, ann), Detection(0.2, weak)])
    rec = Recognizer(det, load_identity(res.path), face_threshold=0.5)
    results = rec.recognize(frame)
    assert len(results) == 2  # the 0.2 "face" is below the face threshold
    by_name = {r.name: r for r in results}
    assert set(by_name) == {"ann", "bob"}
    np.testing.assert_allclose(by_name["ann"].box, ann)
    np.testing.assert_allclose(by_name["bob"].box, bob)
    assert all(r.score > 0.5 and abs(r.probs.sum() - 1) < 1e-4 for r in results)
    assert [r.score for r in results] == sorted((r.score for r in results), reverse=True)
    # as a Detector: name in label, identity probability as score
    dets = rec.detect(frame)
    assert {d.label for d in dets} == {"ann", "bob"} and rec.name == "known+people"
    assert [[d.label for d in ds] for ds in rec.detect_batch([frame, frame[:, :120].copy()])] == \
        [[d.label for d in dets], [r.name for r in rec.recognize(frame[:, :120].copy())]]
    assert len(rec.recognize(frame, face_threshold=0.95)) == 0
    drawn = draw_recognitions(frame, results, rec.classes)
    assert drawn.shape == frame.shape and (drawn != frame).any() and (frame == two_people_frame()[0]).all()


def test_recognizer_is_thread_safe(trained):
    models, res = trained
    frame, ann, bob = two_people_frame()
    rec = Recognizer(KnownBoxes([Detection(0.9, ann), Detection(0.9, bob)]), load_identity(res.path))
    expected = [(d.label, round(d.score, 4)) for d in rec.detect(frame)]
    got, errors = [], []

    def work():
        try:
            for _ in range(5):
                got.append([(d.label, round(d.score, 4)) for d in rec.detect(frame)])
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(got) == 20 and all(g == expected for g in got)


def test_haar_on_two_real_faces(trained):
    models, res = trained
    photos = sorted((SAMPLE / "images").iterdir())[:2]
    frame = np.concatenate([read_image(p) for p in photos], axis=1)  # two people side by side
    rec = load_recognizer("haar", "people", models)
    assert isinstance(rec.detector, HaarDetector)
    results = rec.recognize(frame)
    assert len(results) == 2
    assert all(r.name in ("ann", "bob") for r in results)
    centres = sorted(float(r.box[0] + r.box[2]) / 2 for r in results)
    assert centres[0] < 0.5 < centres[1]  # one face in each photo


def test_identity_models_are_listed_apart_from_detectors(trained):
    models, res = trained
    assert identity_model_names(models) == ["people"]
    assert "people" not in detector_names(models)


def test_load_errors_are_clear(trained, tmp_path):
    models, res = trained
    with pytest.raises(FaceCoreError, match="no readable meta.json"):
        load_identity(tmp_path / "nothing")
    (tmp_path / "det").mkdir()
    (tmp_path / "det" / "meta.json").write_text('{"kind": "facetracker"}')
    with pytest.raises(FaceCoreError, match="not an identity classifier"):
        load_identity(tmp_path / "det")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "meta.json").write_text((res.path / "meta.json").read_text())
    (tmp_path / "broken" / "model.keras").write_bytes(b"truncated")
    with pytest.raises(FaceCoreError, match="cannot load the model"):
        load_identity(tmp_path / "broken")


def test_video_pipeline_names_faces(trained, tmp_path):
    """The Video page's pipeline runs the recognizer unchanged: every frame's faces carry names."""
    import av

    from facecore.video import VideoConfig, process_video

    models, res = trained
    frame, ann, bob = two_people_frame()
    src = tmp_path / "two.mp4"
    with av.open(str(src), "w") as out:
        v = out.add_stream("libx264", rate=6)
        v.width, v.height, v.pix_fmt = frame.shape[1], frame.shape[0], "yuv420p"
        for _ in range(6):
            out.mux(v.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(v.encode(None))
    rec = Recognizer(KnownBoxes([Detection(0.9, ann), Detection(0.9, bob)]), load_identity(res.path))
    result = process_video(src, tmp_path / "out.mp4", rec, VideoConfig(batch_size=4))
    assert len(result.records) == 6
    assert all(sorted(d.label for d in r.detections) == ["ann", "bob"] for r in result.records)
