"""Evaluation metrics on hand-made cases, inputs (dataset splits, plain folders) and the CLI."""

import json
import math
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT
from facecore import boxes as B
from facecore.detect import Detection, Detector
from facecore.errors import Cancelled, DatasetError, FaceCoreError
from facecore.jobs import Cancel
from facecore.evaluate.metrics import (METRIC_KEYS, average_precision, collect_images, compute_metrics, evaluate,
                                       pr_curve)

FACE = np.array([[0.2, 0.2, 0.6, 0.7]], np.float32)
NOFACE = B.EMPTY


def shifted(box, dx):
    b = np.array(box, np.float32).reshape(-1).copy()
    b[[0, 2]] += dx
    return b


def test_perfect_predictions():
    m = compute_metrics([FACE, FACE, NOFACE], [0.9, 0.8, 0.1], [FACE[0], FACE[0], np.array([0, 0, .1, .1])],
                        latencies_ms=[1, 2, 30])
    assert m["mean_iou"] == pytest.approx(1) and m["recall50"] == 1 and m["ap50"] == pytest.approx(1)
    assert m["ap30"] == pytest.approx(1) and m["face_accuracy"] == 1 and m["fp_rate_noface"] == 0
    assert m["median_ms"] == 2 and (m["n_face"], m["n_noface"]) == (2, 1)


def test_shifted_box_counts_at_iou_03_but_not_05():
    # Shift by half the width: IoU = 0.2 / 0.6 = 1/3.
    pred = shifted(FACE, 0.2)
    iou = float(B.iou(pred, FACE)[0])
    assert iou == pytest.approx(1 / 3, abs=1e-5)
    m = compute_metrics([FACE], [0.9], [pred])
    assert m["mean_iou"] == pytest.approx(iou, abs=1e-5)
    assert m["recall50"] == 0 and m["ap50"] == 0 and m["ap30"] == pytest.approx(1)
    assert m["face_accuracy"] == 1  # the face is there and the model says so; only the box is off


def test_missed_face():
    m = compute_metrics([FACE, FACE], [0.9, 0.0], [FACE[0], None])
    assert m["mean_iou"] == pytest.approx(0.5) and m["recall50"] == 0.5
    assert m["ap50"] == pytest.approx(0.5) and m["face_accuracy"] == 0.5
    assert math.isnan(m["fp_rate_noface"]), "no no-face images: the rate is undefined, not 0"
    # A correct box below the threshold is a miss for recall but still a box for IoU.
    m = compute_metrics([FACE], [0.3], [FACE[0]], threshold=0.5)
    assert m["mean_iou"] == pytest.approx(1) and m["recall50"] == 0 and m["ap50"] == pytest.approx(1)


def test_false_positive_on_noface_image():
    # The no-face image's prediction outranks the true face: precision 1/2 at full recall.
    m = compute_metrics([NOFACE, FACE], [0.95, 0.9], [FACE[0], FACE[0]])
    assert m["fp_rate_noface"] == 1 and m["face_accuracy"] == 0.5
    assert m["ap50"] == pytest.approx(0.5) and m["recall50"] == 1
    # Ranked below the face it costs nothing in AP, but it still counts above the threshold.
    m = compute_metrics([NOFACE, FACE], [0.6, 0.9], [FACE[0], FACE[0]])
    assert m["ap50"] == pytest.approx(1) and m["fp_rate_noface"] == 1
    m = compute_metrics([NOFACE, FACE], [0.4, 0.9], [FACE[0], FACE[0]])
    assert m["fp_rate_noface"] == 0 and m["face_accuracy"] == 1
    # Haar-style "nothing found" on a no-face image: no prediction at all.
    m = compute_metrics([NOFACE], [0.0], [None])
    assert m["fp_rate_noface"] == 0 and math.isnan(m["ap50"]) and m["face_accuracy"] == 1


def test_ap_uses_precision_envelope():
    # Ranked: TP, FP, TP, of 3 positives: precision 1, 1/2, 2/3; recall 1/3, 1/3, 2/3.
    p, r, s = pr_curve([0.9, 0.8, 0.7], [True, False, True], 3)
    np.testing.assert_allclose(p, [1, 0.5, 2 / 3], atol=1e-6)
    np.testing.assert_allclose(r, [1 / 3, 1 / 3, 2 / 3], atol=1e-6)
    np.testing.assert_allclose(s, [0.9, 0.8, 0.7])
    assert average_precision([0.9, 0.8, 0.7], [True, False, True], 3) == pytest.approx(1 / 3 + 1 / 3 * 2 / 3)
    assert average_precision([], [], 2) == 0 and math.isnan(average_precision([0.5], [False], 0))


def test_multi_face_image_matches_best_box():
    two = np.array([[0.0, 0.0, 0.3, 0.3], [0.5, 0.5, 0.9, 0.9]], np.float32)
    m = compute_metrics([two], [0.8], [two[1]])
    assert m["mean_iou"] == pytest.approx(1) and m["recall50"] == 1


class Oracle(Detector):
    """Predicts the true box with a score from a table: lets tests choose every outcome."""

    name = "oracle"

    def __init__(self, images, plan):
        from facecore.images import read_image

        self.truth = {read_image(im.path).tobytes(): im for im in images}  # recognise images by pixels
        self.plan = plan  # stem -> (score, dx) or None

    def detect(self, frame):
        im = self.truth[frame.tobytes()]
        how = self.plan.get(im.stem, (0.9, 0.0))
        if how is None:
            return []
        score, dx = how
        box = im.boxes[0] if im.has_face else np.array([0.1, 0.1, 0.4, 0.4], np.float32)
        return [Detection(score, shifted(box, dx))]


def test_evaluate_on_dataset_split_ranks_worst_first(tiny_dataset):
    images, skipped = collect_images(tiny_dataset, "all")
    assert len(images) == 16 and skipped == [] and sum(im.has_face for im in images) == 12
    faces = [im for im in images if im.has_face]
    nofaces = [im for im in images if not im.has_face]
    plan = {faces[0].stem: None, faces[1].stem: (0.9, 0.5), nofaces[0].stem: (0.8, 0.0)}
    for im in nofaces[1:]:
        plan[im.stem] = (0.1, 0.0)
    seen = []
    res = evaluate(Oracle(images, plan), images, progress=lambda p: seen.append((p.done, p.total)))
    m = res.metrics
    assert seen[-1] == (16, 16)
    assert m["recall50"] == pytest.approx(10 / 12) and m["fp_rate_noface"] == pytest.approx(1 / 4)
    assert m["mean_iou"] == pytest.approx(10 / 12, abs=0.05)
    worst = res.worst()
    assert worst[0].stem == faces[0].stem and worst[0].outcome == "missed"
    assert {worst[1].outcome, worst[2].outcome} == {"misplaced", "false positive"}
    assert worst[-1].outcome in ("found", "correct no-face")
    assert len(res.ious()) == 12 and len(res.pr_precision) == len(res.pr_recall) == 15
    out = res.to_json()
    json.dumps(out)  # NaN-free and serializable
    assert set(METRIC_KEYS) <= set(out) and len(out["pr_curve"]["recall"]) == 15


def test_evaluate_can_stop_early(tiny_dataset):
    from facecore.detect import HaarDetector

    images, _ = collect_images(tiny_dataset, "all")
    calls = []
    cancel = Cancel()

    def progress(p):
        calls.append(p.done)
        if len(calls) >= 3:
            cancel.cancel()

    with pytest.raises(Cancelled) as stopped:
        evaluate(HaarDetector(), images, progress=progress, cancel=cancel)
    assert stopped.value.partial.metrics["n_images"] == 3


def test_unreadable_image_is_skipped_not_fatal(tiny_dataset):
    from facecore.detect import HaarDetector

    bad = tiny_dataset.images_dir / "zzz_broken.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    images, _ = collect_images(tiny_dataset, "all")
    seen = []
    res = evaluate(HaarDetector(), images, progress=lambda p: seen.append(p.done))
    assert res.metrics["skipped"] == 1 and res.metrics["n_images"] == 16 and seen[-1] == 17


def test_collect_images_splits_flat_folders_and_errors(tiny_dataset, tmp_path):
    sizes = {s: len(collect_images(tiny_dataset, s)[0]) for s in ("train", "val", "test", "all")}
    assert sizes["train"] + sizes["val"] + sizes["test"] == sizes["all"] == 16 and sizes["test"] > 0
    # A labelme-style flat folder: JSON beside the images; an image without one is no-face.
    flat = tmp_path / "flat"
    flat.mkdir()
    for it in tiny_dataset.items()[:5] + tiny_dataset.items()[-2:]:
        shutil.copy(it.image, flat)
        if it.label:
            shutil.copy(it.label, flat)
    (flat / "img000.json").write_text("{broken")
    images, skipped = collect_images(flat, "all")
    assert len(images) == 6 and len(skipped) == 1 and "img000.json" in skipped[0]
    assert sum(im.has_face for im in images) == 4
    with pytest.raises(DatasetError, match="use --split all"):
        collect_images(flat, "test")
    with pytest.raises(DatasetError, match="no such folder"):
        collect_images(tmp_path / "missing", "all")
    with pytest.raises(FaceCoreError, match="unknown split"):
        collect_images(flat, "holdout")


def _cli(*args, env=None):
    import os
    e = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **(env or {}))
    return subprocess.run([sys.executable, "-m", "facecore", "evaluate", *args], capture_output=True, text=True,
                          cwd=ROOT, env=e, timeout=300)


@pytest.mark.slow
def test_cli_json_keys_for_haar_and_a_model(tiny_dataset, tmp_path):
    from test_inference import save_model_dir

    save_model_dir(tmp_path / "models" / "tiny")
    for model in ("haar", "tiny"):
        r = _cli("--model", model, "--data", str(tiny_dataset.root), "--split", "all", "--json",
                 "--models", str(tmp_path / "models"))
        assert r.returncode == 0, r.stderr
        out = json.loads(r.stdout.strip().splitlines()[-1])
        assert {"ap50", "ap30", "mean_iou", "recall50", "fp_rate_noface", "median_ms"} <= set(out)
        assert out["n_images"] == 16 and out["n_face"] == 12 and out["detector"] == model
        assert 0 <= out["fp_rate_noface"] <= 1 and out["median_ms"] > 0
    r = _cli("--model", "nope", "--data", str(tiny_dataset.root), "--json", "--models", str(tmp_path / "models"))
    assert r.returncode == 2 and "no model called 'nope'" in r.stderr


def test_choose_split_takes_the_first_trained_models_split_and_warns_about_the_others():
    from facecore.evaluate.metrics import choose_split

    def meta(seed, split=(0.7, 0.15, 0.15), dataset="mine"):
        return {"config": {"seed": seed, "split": list(split)}, "dataset": {"name": dataset}}

    metas = {"a": meta(3), "b": meta(3), "c": meta(5), "d": meta(3, dataset="other")}
    choice = choose_split(["haar", "a@int8", "a", "b", "c", "d"], metas, "mine", "test")
    assert (choice.seed, choice.fractions, choice.trained) == (3, (0.7, 0.15, 0.15), ("a", "b", "c", "d"))
    assert len(choice.warnings) == 2
    assert choice.warnings[0].startswith("`c` was trained with another split than `a`")
    assert "trained on the dataset `other`, not `mine`" in choice.warnings[1]
    builtins = choose_split(["haar", "blazeface"], metas, "mine", "val")
    assert (builtins.seed, builtins.fractions, builtins.trained, builtins.warnings) == (0, (0.7, 0.15, 0.15), (), ())


def test_calibration_sample_is_the_models_input(tiny_dataset):
    from facecore.evaluate.metrics import calibration_sample

    images, _ = collect_images(tiny_dataset, "all", 0, (0.7, 0.15, 0.15))
    sample = calibration_sample({"config": {"input_size": 48}}, images, n=3)
    assert sample.shape == (3, 48, 48, 3) and sample.dtype == np.float32 and sample.max() > 1
    assert calibration_sample({"config": {}}, images) is None and calibration_sample({}, []) is None
