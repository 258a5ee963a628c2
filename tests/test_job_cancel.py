"""The page jobs that used to run inline (evaluation, the box-style fit, identity cropping) report Progress
and stop on Cancel: run as a facecore.jobs.Job, a Cancel pressed after the first photo ends the job
"cancelled", with what each keeps (the photos evaluated, nothing saved, the crops written)."""

import shutil

import pytest

from facecore import Dataset
from facecore.blazeface.builtin import fit_dataset_style
from facecore.evaluate.metrics import collect_images, evaluate
from facecore.identity.data import create_identity_set
from facecore.jobs import Job
from facecore.testing import SAMPLE


class NoFace:
    name = "none"

    def detect(self, rgb):
        return []


def run_and_cancel_after_first(work):
    """Run ``work(progress, cancel)`` as a Job whose Cancel is pressed at its first Progress."""
    reports = []
    job = None

    def run(progress, cancel):
        def report(p):
            reports.append(p)
            progress(p)
            job.cancel()
        return work(report, cancel)

    job = Job(run, "test").start()
    assert job.wait(120).status == "cancelled", (job.status, job.error_message)
    assert len(reports) == 1 and reports[0].total > 1
    return job, reports[0].total


@pytest.fixture
def sample(tmp_path):
    return Dataset(shutil.copytree(SAMPLE, tmp_path / "sample"))


def test_cancel_stops_evaluation(sample):
    images, _ = collect_images(sample, "all")
    job, total = run_and_cancel_after_first(lambda p, c: evaluate(NoFace(), images, progress=p, cancel=c))
    assert total == len(images) and len(job.partial.images) == 1  # the photo evaluated is kept


def test_cancel_stops_the_box_style_fit(sample, tmp_path):
    out = tmp_path / "models" / "style"
    job, _ = run_and_cancel_after_first(lambda p, c: fit_dataset_style(sample, out, progress=p, cancel=c))
    assert "nothing was saved" in str(job.error) and not out.exists()


def test_cancel_stops_identity_cropping(sample, tmp_path):
    ids = create_identity_set(tmp_path / "data", "me_not_me")
    job, total = run_and_cancel_after_first(lambda p, c: ids.build_from_dataset("me", sample, progress=p, cancel=c))
    items = sample.items()
    assert total == len(items)
    first = sample.read_label(items[0])
    faces_in_first = len(first.boxes) if first is not None and first.has_face else 0
    assert job.partial.added == len(ids.images("me")) == faces_in_first  # the first photo's crops stay


class Broken:
    name = "broken"

    def detect(self, rgb):
        from facecore.errors import ModelFileError

        raise ModelFileError("broken: the model file is damaged")


def test_evaluate_each_goes_on_past_a_failing_detector_and_keeps_the_finished_on_cancel(sample):
    from facecore.evaluate.each import evaluate_each
    from facecore.jobs import Cancel

    images, _ = collect_images(sample, "all")
    images = images[:3]
    results, errors = evaluate_each({("broken",): Broken(), ("none",): NoFace()}, images, 0.5, lambda p: None, Cancel())
    assert list(results) == [("none",)] and len(errors) == 1 and "damaged" in str(errors[0])
    seen = []

    def cancel_in_second(p):
        seen.append(p.message)
        if p.message.startswith("second"):
            job.cancel()

    job = Job(lambda progress, cancel: evaluate_each({("first",): NoFace(), ("second",): NoFace()}, images, 0.5,
                                                     lambda p: (progress(p), cancel_in_second(p)), cancel), "t").start()
    assert job.wait(120).status == "cancelled"
    done, errs = job.partial
    assert list(done) == [("first",)] and not errs  # the detector finished before Cancel is kept
