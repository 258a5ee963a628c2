"""facecore.jobs: the one progress record, cancel token and background job, and every kind of long work
cancelled mid-way through it (it stops, raises ``Cancelled``, and loses nothing that was saved)."""

import json
import threading

import pytest

from facecore.errors import BusyError, Cancelled, FaceCoreError
from facecore.jobs import Cancel, Job, JobSlot, Progress


def test_progress_fraction():
    assert Progress(3, 4).fraction == 0.75
    assert Progress(5, 4).fraction == 1.0 and Progress(-1, 4).fraction == 0.0
    assert Progress().fraction == 0.0  # total unknown


def test_job_runs_reports_and_returns():
    go = threading.Event()

    def work(progress, cancel):
        progress(Progress(1, 2, "half way", "one"))
        go.wait(10)
        return "result"

    job = Job(work, "demo", subject={"what": "a test"})
    assert job.status == "idle" and not job.running and job.wait(0) is job
    job.start()
    assert job.running and not job.finished
    with pytest.raises(RuntimeError, match="already started"):
        job.start()
    go.set()
    assert job.wait(10).status == "done" and job.finished and job.result == "result"
    assert job.progress == Progress(1, 2, "half way", "one") and job.error is None and job.error_message == ""
    assert job.subject == {"what": "a test"} and job.elapsed_s >= 0 and not job.cancel()


def test_job_cancel_and_failures():
    def until_cancelled(progress, cancel):
        while True:
            cancel.check("stopped here", partial=[1, 2])
            threading.Event().wait(0.01)

    job = Job(until_cancelled).start()
    assert job.cancel()
    job.wait(10)
    assert job.status == "cancelled" and job.partial == [1, 2] and job.result is None and not job.cancelling
    assert job.error_message == "stopped here"

    def broken(progress, cancel):
        raise ValueError("a bug")

    job = Job(broken).start().wait(10)
    assert job.status == "failed" and job.error_message == "ValueError: a bug" and job.partial is None

    def refused(progress, cancel):
        raise FaceCoreError("a message for the user")

    assert Job(refused).start().wait(10).error_message == "a message for the user"

    def exits(progress, cancel):
        raise SystemExit(3)

    job = Job(exits).start().wait(10)  # not an Exception: the thread ends, the job still says why
    assert job.status == "failed" and isinstance(job.error, SystemExit) and not job.running


def test_slot_runs_one_job_at_a_time():
    go = threading.Event()
    slot = JobSlot()
    first = slot.start(Job(lambda p, c: go.wait(10), "first"))
    with pytest.raises(BusyError, match="first is still running"):
        slot.start(Job(lambda p, c: None))
    with pytest.raises(BusyError, match="busy: first"):
        slot.start(Job(lambda p, c: None), busy=lambda job: f"busy: {job.name}")
    assert slot.running and slot.job is first
    slot.forget()  # a running job is kept
    assert slot.job is first
    go.set()
    assert slot.wait(10) is first and not slot.running and not slot.cancel()
    second = slot.start(Job(lambda p, c: 2)).wait(10)
    assert slot.job is second and second.result == 2
    slot.forget()
    assert slot.job is None and slot.wait() is None


def test_cancel_token():
    c = Cancel()
    c.check()  # not cancelled: nothing happens
    c.cancel()
    assert c.cancelled
    with pytest.raises(Cancelled) as e:
        c.check("why", partial="kept")
    assert str(e.value) == "why" and e.value.partial == "kept"


# -- every kind of long work, cancelled mid-way ---------------------------------------------------

def _train(tmp_path):
    from facecore.testing import make_dataset

    from facecore.train import TrainConfig, train

    ds = make_dataset(tmp_path / "ds", n_face=12, n_noface=4, size=(96, 72))
    out = tmp_path / "models" / "m"
    out.mkdir(parents=True)
    (out / "meta.json").write_text(json.dumps({"name": "m", "kind": "facetracker", "old": True}))
    cfg = TrainConfig(name="m", backbone="tinycnn", input_size=48, head_units=16, weights=None, epochs=30,
                      augmentation="off", export_tflite=False, patience=0)

    def check(job):  # all or nothing: the previous model is untouched, no temporary folder is left
        assert job.partial is None
        assert [p.name for p in out.parent.iterdir()] == ["m"] and json.loads((out / "meta.json").read_text())["old"]

    return (lambda progress, cancel: train(ds, cfg, progress, out, cancel)), 0.3, check


def _augment(tmp_path):
    from facecore.testing import make_dataset

    from facecore.augment import AugmentConfig, augment_dataset

    ds = make_dataset(tmp_path / "ds")

    def check(job):  # the copies made so far stay, each whole (image and label)
        rep = job.partial
        assert rep.cancelled and 0 < rep.written < rep.total
        items = ds.augmented.items()
        assert len(items) == rep.written and all(it.label is not None for it in items)

    return (lambda progress, cancel: augment_dataset(ds, AugmentConfig(), 10, workers=1, progress=progress,
                                                     cancel=cancel)), 0.2, check


def _mosaics(tmp_path):
    from facecore.testing import make_dataset

    from facecore.augment import AugmentConfig
    from facecore.augment.mosaic import augment_and_mosaic

    ds = make_dataset(tmp_path / "ds")

    def check(job):  # the copies are complete; the mosaics made so far stay
        run = job.partial
        assert run.copies.written == run.copies.total and not run.copies.cancelled
        assert run.mosaics.cancelled and 0 < run.mosaics.written < run.mosaics.total
        assert len(ds.augmented.items()) == run.copies.written + run.mosaics.written

    def work(progress, cancel):
        def in_mosaics(p):  # cancel in the second phase only
            progress(Progress(p.done, p.total if p.stage == "mosaic" else 10 ** 9, p.message, p.stage))

        return augment_and_mosaic(ds, AugmentConfig(), 1, workers=1, mosaics=12, progress=in_mosaics,
                                  cancel=cancel)

    return work, 0.3, check


def _people(tmp_path, n=4):
    from test_identity import make_people

    return make_people(tmp_path, n=n)


def _identity(tmp_path):
    from facecore.identity.train import IdentityConfig, train_identity

    ids = _people(tmp_path)
    out = tmp_path / "models" / "who"
    out.mkdir(parents=True)
    (out / "meta.json").write_text(json.dumps({"name": "who", "kind": "identity", "old": True}))
    cfg = IdentityConfig(backbone="mobilenetv2", input_size=32, weights=None, epochs=50, patience=50)

    def check(job):
        assert job.partial is None and json.loads((out / "meta.json").read_text())["old"]
        assert [p.name for p in out.parent.iterdir()] == ["who"]

    return (lambda progress, cancel: train_identity(ids, cfg, out, progress, cancel)), 0.3, check


def _compare(tmp_path):
    from facecore.identity.compare import compare, load_comparison
    from facecore.identity.train import IdentityConfig

    ids = _people(tmp_path)
    models = tmp_path / "models"
    base = IdentityConfig(input_size=32, weights=None, epochs=20, patience=20)

    def check(job):  # the first run finished and stays saved, in comparison.json too
        rows = job.partial
        assert [r["model"] for r in rows] == ["c-mobilenetv2-aug0"]
        assert load_comparison(ids)["rows"] == rows
        assert sorted(p.name for p in models.iterdir()) == ["c-mobilenetv2-aug0"]

    # 0.75: the second of the two runs, once its backbone features are computed
    return (lambda progress, cancel: compare(ids, ["mobilenetv2"], [0, 1], base, models, "c", progress, cancel)), \
        0.75, check


def _video(tmp_path):
    from test_video import FixedDetector, make_video

    from facecore.video import VideoConfig, process_video

    src = make_video(tmp_path / "in.mp4", n=40, size=(160, 120), fps=10)
    out = tmp_path / "out.mp4"
    out.write_bytes(b"previous result")

    def check(job):
        assert job.partial is None and out.read_bytes() == b"previous result"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4", "out.mp4"]

    return (lambda progress, cancel: process_video(src, out, FixedDetector(), VideoConfig(batch_size=4), progress,
                                                   cancel)), 0.2, check


def _prelabel(tmp_path):
    from facecore.testing import make_dataset

    from facecore.datasets import prelabel as P
    from facecore.detect import HaarDetector

    ds = make_dataset(tmp_path / "ds", n_face=0, n_noface=12)
    for p in ds.labels_dir.iterdir():
        p.unlink()

    def check(job):  # proposals are never saved; those made so far come back
        res = job.partial
        assert res.cancelled and 0 < res.done < 12 and not list(ds.labels_dir.iterdir())

    return (lambda progress, cancel: P.prelabel(ds, HaarDetector(), None, progress, cancel)), 0.25, check


def _evaluate(tmp_path):
    from facecore.testing import make_dataset

    from facecore.detect import HaarDetector
    from facecore.evaluate.metrics import collect_images, evaluate

    ds = make_dataset(tmp_path / "ds")
    images, _ = collect_images(ds, "all")

    def check(job):  # the metrics of the photos done so far
        assert 0 < job.partial.metrics["n_images"] < len(images)

    return (lambda progress, cancel: evaluate(HaarDetector(), images, 0.5, progress, cancel)), 0.25, check


WORK = {"train": _train, "augment": _augment, "mosaics": _mosaics, "identity": _identity, "compare": _compare,
        "video": _video, "prelabel": _prelabel, "evaluate": _evaluate}


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(WORK))
def test_cancel_mid_way_stops_the_work_and_loses_nothing_saved(kind, tmp_path):
    work, at, check = WORK[kind](tmp_path)
    seen = []

    def cancelling(progress, cancel):
        def report(p):
            seen.append(p)
            progress(p)
            if p.fraction >= at:
                cancel.cancel()  # as the page's Cancel button does, from the working thread here
        return work(report, cancel)

    job = Job(cancelling, kind).start().wait(600)
    assert job.status == "cancelled", (job.status, job.error_message)
    assert isinstance(job.error, Cancelled) and job.error_message
    assert seen and all(isinstance(p, Progress) for p in seen) and job.progress == seen[-1]
    check(job)
