"""Training's order of work and its progress figures: pretrained weights are checked before any image
is read, images load in parallel but in order, and the ETA is one steady figure."""

import time

import numpy as np
import pytest

from facecore import Dataset
from facecore.jobs import Job, Progress
from facecore.train import TrainConfig, load_samples, train, training_eta
from facecore.testing import make_dataset


def test_missing_imagenet_weights_fail_before_reading_images(tmp_path, monkeypatch):
    from facecore.facetracker import model as M

    ds = make_dataset(tmp_path / "d", n_face=6, n_noface=2, size=(64, 48))
    monkeypatch.setattr(M, "keras_cache_dir", lambda: tmp_path / "empty-cache")

    def offline(backbone, size, weights, alpha):
        raise Exception("URL fetch failure: [Errno -2] Name or service not known")

    monkeypatch.setattr(M, "_application", offline)
    messages = []
    cfg = TrainConfig.for_backbone("mobilenetv2", name="m", input_size=48, weights="imagenet", epochs=1)
    with pytest.raises(M.WeightsUnavailable, match="could not download the ImageNet weights"):
        train(ds, cfg, lambda p: messages.append(p.message), tmp_path / "m")
    assert messages and not [m for m in messages if "reading images" in m], messages
    assert not (tmp_path / "m").exists()


def test_load_samples_keeps_order_and_skips_broken_images(tmp_path):
    ds = make_dataset(tmp_path / "d", n_face=9, n_noface=3, size=(64, 48))
    items = ds.items()
    (items[4].image).write_bytes(b"not an image")
    warnings, seen = [], []
    s = load_samples(items, 32, warnings, lambda i, n: seen.append((i, n)))
    assert s.stems == [it.stem for k, it in enumerate(items) if k != 4]
    assert s.images.shape == (11, 32, 32, 3) and s.images.dtype == np.uint8
    assert len(warnings) == 1 and items[4].image.name in warnings[0]
    assert [i for i, _ in seen] == sorted(i for i, _ in seen) and seen[-1] == (12, 12)
    faces = [it.label is not None and Dataset(ds.root).read_label(it).boxes.size > 0
             for k, it in enumerate(items) if k != 4]
    assert s.has_face[:, 0].astype(bool).tolist() == faces


def test_eta_leaves_out_the_first_batch_and_counts_the_rest(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    state = {"batches_done": 1, "batches_total": 101, "t_train": None}
    clock[0] += 60  # the first batch built the training graph: a minute
    assert training_eta(state) is None
    for done in range(2, 12):  # then one second a batch
        clock[0] += 1
        state["batches_done"] = done
        eta = training_eta(state)
    assert eta == pytest.approx(90.0)  # 90 batches left at 1 s each, not at (60 + 10) / 11 s


def test_job_eta_counts_down_between_reports(monkeypatch):
    import threading

    go, reported = threading.Event(), threading.Event()

    def work(progress, cancel):
        progress(Progress(0.5, 1.0, eta_s=120.0))
        reported.set()
        go.wait(10)

    monkeypatch.setattr(time, "time", lambda: 1000.0)
    job = Job(work).start()
    assert reported.wait(10)
    monkeypatch.setattr(time, "time", lambda: 1030.0)
    assert job.eta_now == pytest.approx(90.0)
    monkeypatch.setattr(time, "time", lambda: 2000.0)
    assert job.eta_now == 0.0
    go.set()
    assert job.wait(10).status == "done" and job.eta_now is None  # a finished job expects nothing
    assert Job(work).eta_now is None


def test_streamlit_runs_leave_keras_state_alone(monkeypatch):
    """Streamlit clears the Keras session after every script run; with a training in the background
    that cleared TensorFlow's kernel cache every second (a 2-epoch run: 320 s instead of 26 s)."""
    import keras
    from streamlit.runtime.scriptrunner import script_runner

    import pages.common  # noqa: F401 - installs the hook, as every page does

    calls = []
    monkeypatch.setattr(keras.backend, "clear_session", lambda *a, **k: calls.append(1))
    script_runner._clean_problem_modules()
    assert calls == []
