"""facecore.train: small real training runs on generated data, saving, the job, the CLI."""

import json
import os
import shutil
import subprocess
import sys
from dataclasses import fields

import numpy as np
import pytest

from conftest import ROOT
from facecore import Dataset, list_models
from facecore.errors import BusyError, Cancelled
from facecore.facetracker.inference import load_keras_model
from facecore.jobs import Cancel, JobSlot
from facecore.train import (TrainConfig, TrainingError, failure_kind, load_samples, primary_box, start_training,
                            train)
from facecore.testing import make_dataset

# Small and quick: a 48 px tiny CNN; the pretrained backbones are built in test_model.py.
QUICK = dict(backbone="tinycnn", input_size=48, head_units=16, batch_size=8, learning_rate=3e-3,
             augmentation="off", export_tflite=False, patience=0)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("train") / "tiny", n_face=18, n_noface=6, size=(96, 72), seed=3)


@pytest.fixture(scope="module")
def scratch_run(data, tmp_path_factory):
    """One from-scratch run shared by several tests: (model folder, progress reports)."""
    reports = []
    out = tmp_path_factory.mktemp("models") / "scratch"
    path = train(data, TrainConfig(name="scratch", weights=None, epochs=6, export_tflite=True, **{
        k: v for k, v in QUICK.items() if k != "export_tflite"}), reports.append, out)
    return path, reports


def _meta(path):
    return json.loads((path / "meta.json").read_text())


@pytest.mark.parametrize("bad", [
    {"input_shape": "round"},
    dict(backbone="alexnet"), dict(augmentation="sometimes"), dict(epochs=0), dict(batch_size=0),
    dict(learning_rate=0.0), dict(learning_rate=float("nan")), dict(name="../evil"), dict(input_size=16),
    dict(split=(0.0, 0.5, 0.5)), dict(lr_factor=1.5),
    dict(input_shape="close", input_size=128),  # the close-up input is the full-range model's
])
def test_config_rejects_bad_values(bad):
    with pytest.raises(TrainingError if "name" not in bad else Exception):
        TrainConfig(**bad)


def test_config_defaults_and_weights_spelling():
    c = TrainConfig()
    assert (c.backbone, c.size, c.weights) == ("blazeface", 192, "blazeface")  # face-pretrained, full range
    assert not c.uses_feature_cache and c.fine_tune_epochs == 0
    with pytest.raises(TrainingError, match="128 px"):
        TrainConfig(input_size=96)
    assert TrainConfig(input_size=128).size == 128  # the short-range model
    with pytest.raises(TrainingError, match="train_layers"):
        TrainConfig(train_layers="some")
    c = TrainConfig.for_backbone("vgg16")
    assert (c.backbone, c.size, c.weights, c.batch_size) == ("vgg16", 120, "imagenet", 8)
    assert c.frozen and c.uses_feature_cache
    assert TrainConfig(backbone="vgg16", weights="none").weights is None
    assert not TrainConfig(backbone="vgg16", weights=None).frozen
    assert not TrainConfig(backbone="vgg16", augmentation="on_the_fly").uses_feature_cache
    assert TrainConfig(backbone="mobilenetv2").to_dict()["input_size"] == 128


@pytest.mark.parametrize("backbone,scratch,expected", [
    ("blazeface", False, (20, 16, 1e-3, "on_the_fly")), ("vgg16", False, (40, 8, 1e-4, "offline")),
    ("vgg16", True, (60, 16, 1e-3, "on_the_fly")), ("tinycnn", False, (60, 16, 1e-3, "on_the_fly"))])
def test_cli_and_page_share_one_preset(backbone, scratch, expected):
    import argparse

    from facecore.cli.train import add_parser, config_from_args

    p = TrainConfig.for_backbone(backbone, scratch).to_dict()
    assert (p["epochs"], p["batch_size"], p["learning_rate"], p["augmentation"]) == expected
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    args = parser.parse_args(["train", "--data", "x", "--backbone", backbone] + (["--weights", "none"] if scratch else []))
    assert args.epochs is None and args.lr is None  # filled from for_backbone, as the Train page does
    cfg = config_from_args(args, "m")
    assert (cfg.epochs, cfg.batch_size, cfg.learning_rate, cfg.augmentation, cfg.head_units) == \
        (*expected, p["head_units"])
    # every other setting is TrainConfig's own default, as on the page
    assert (cfg.patience, cfg.alpha, cfg.seed, cfg.fine_tune_epochs, cfg.localization_weight, cfg.split) == \
        (TrainConfig.patience, TrainConfig.alpha, TrainConfig.seed, TrainConfig.fine_tune_epochs,
         TrainConfig.localization_weight, TrainConfig.split)


def test_cli_defaults_are_trainconfigs():
    """Every option left unset trains what ``TrainConfig()`` trains (the Train page's default model)."""
    import argparse

    from facecore.cli.train import add_parser, config_from_args

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    cfg = config_from_args(parser.parse_args(["train", "--data", "x"]), TrainConfig.name)
    default = TrainConfig()
    for field in fields(TrainConfig):
        assert getattr(cfg, field.name) == getattr(default, field.name), field.name
    assert TrainConfig.for_backbone() == default


def test_primary_box_is_the_largest():
    boxes = np.array([[0, 0, 0.1, 0.1], [0.2, 0.2, 0.8, 0.9], [0.5, 0.5, 0.6, 0.6]], np.float32)
    np.testing.assert_array_equal(primary_box(boxes), boxes[1])


def test_load_samples_skips_unreadable_images(data, tmp_path):
    ds = Dataset.create(tmp_path / "d")
    shutil.copytree(data.root, ds.root, dirs_exist_ok=True)
    (ds.images_dir / "broken.jpg").write_bytes(b"not a jpeg")
    warnings = []
    s = load_samples(ds.items(), 32, warnings)
    assert len(s) == len(data.items()) and s.images.shape[1:] == (32, 32, 3) and s.images.dtype == np.uint8
    assert len(warnings) == 1 and "broken.jpg" in warnings[0]
    assert s.n_face == 18 and np.all(s.boxes[s.has_face[:, 0] == 0] == 0)


@pytest.mark.slow
def test_training_from_scratch_lowers_loss_and_saves_a_working_model(scratch_run, data):
    path, reports = scratch_run
    meta = _meta(path)
    hist = meta["history"]
    assert len(hist) == 6 and hist[-1]["loss"] < hist[0]["loss"]
    assert {"loss", "class_loss", "loc_loss", "mean_iou", "val_loss", "val_loc_loss", "lr"} <= set(hist[0])
    assert meta["kind"] == "facetracker" and meta["config"]["backbone"] == "tinycnn"
    assert meta["config"]["input_size"] == 48 and meta["config"]["weights"] is None
    assert meta["dataset"]["fingerprint"] == data.fingerprint() and meta["dataset"]["split"]["train"] > 0
    assert not meta["training"]["feature_cache"]
    for split in ("train", "val", "test"):
        m = meta["metrics"][split]
        assert {"loss", "mean_iou", "face_accuracy"} <= set(m) and np.isfinite(m["loss"])
    # checked in eval mode on its own training images: better than where it started
    assert meta["metrics"]["train"]["loss"] < hist[0]["loss"]
    assert sorted(p.name for p in path.iterdir()) == ["meta.json", "model.keras", "model.tflite"]
    assert meta["tflite"]["max_abs_diff"] <= 1e-3
    # progress: stages in order, fraction never goes back, ends at 1
    fr = [r.fraction for r in reports]
    assert fr == sorted(fr) and fr[-1] == 1.0
    assert [r.stage for r in reports][0] == "loading" and any(r.eta_s is not None for r in reports)

    from facecore.facetracker import model as M
    from facecore.preprocess import resize_for_model
    from facecore.images import read_image

    net = load_keras_model(path / "model.keras")
    x = np.stack([resize_for_model(read_image(it.image), 48) for it in data.items()[:3]])
    prob, box = net.predict(x, verbose=0)
    assert prob.shape == (3, 1) and box.shape == (3, 4)
    assert list_models(path.parent)[0].name == "scratch"


@pytest.mark.slow
def test_fast_path_with_offline_copies_and_fine_tuning(data, tmp_path):
    import keras

    from facecore.facetracker import model as M

    # a "pretrained" backbone: weights saved from a random one, loaded from a file like ImageNet's
    keras.utils.set_random_seed(0)  # a fixed backbone, so the run is the same every time
    wfile = tmp_path / "tiny_notop.weights.h5"
    M.backbone_of(M.build_model("tinycnn", 48, None, 8)).save_weights(wfile)
    # two offline copies of every train photo, as the Augment page writes them
    ds = Dataset.create(tmp_path / "d")
    shutil.copytree(data.root, ds.root, dirs_exist_ok=True)
    aug = Dataset.create(ds.augmented.root)
    for it in ds.split().train:
        for k in range(2):
            shutil.copy(it.image, aug.images_dir / f"{it.stem}__aug{k:03d}{it.image.suffix}")
            if it.label is not None:
                shutil.copy(it.label, aug.labels_dir / f"{it.stem}__aug{k:03d}{it.label.suffix}")
    cfg = TrainConfig(name="fast", weights=str(wfile), epochs=8, fine_tune_epochs=1, fine_tune_layers=3,
                      **{**QUICK, "augmentation": "offline"})
    path = train(ds, cfg, None, tmp_path / "models" / "fast")
    meta = _meta(path)
    tr = meta["training"]
    assert tr["feature_cache"] and tr["fine_tuned"]
    n_train = meta["dataset"]["split"]["train"]
    assert meta["dataset"]["train_samples"] == 3 * n_train
    phases = [h["phase"] for h in meta["history"]]
    assert phases.count("fine-tuning") == 1 and phases[0] == "training"
    heads = [h["loss"] for h in meta["history"] if h["phase"] == "training"]
    assert min(heads[1:]) < heads[0], heads
    assert meta["metrics"]["train"]["n"] == n_train  # judged on the originals, not the copies
    assert keras.models.load_model(path / "model.keras", compile=False) is not None


@pytest.mark.slow
def test_fast_path_saved_network_matches_cached_heads(data, tmp_path):
    from facecore.facetracker import model as M

    wfile = tmp_path / "tiny_notop.weights.h5"
    M.backbone_of(M.build_model("tinycnn", 48, None, 8)).save_weights(wfile)
    path = train(data, TrainConfig(name="fast2", weights=str(wfile), epochs=2, **QUICK), None, tmp_path / "fast2")
    tr = _meta(path)["training"]
    assert tr["feature_cache"] and tr["checks"]["full_vs_cached_max_abs_diff"] < 1e-4


@pytest.mark.slow
def test_on_the_fly_augmentation_runs(data, tmp_path):
    path = train(data, TrainConfig(name="otf", weights=None, epochs=1, **{**QUICK, "augmentation": "on_the_fly"}),
                 None, tmp_path / "otf")
    meta = _meta(path)
    assert meta["config"]["augmentation"] == "on_the_fly" and len(meta["history"]) == 1
    assert np.isfinite(meta["history"][0]["loss"])


@pytest.mark.slow
def test_cancel_saves_nothing(data, tmp_path):
    cancel = Cancel()

    def progress(p):
        if p.stage == "training":
            cancel.cancel()

    with pytest.raises(Cancelled):
        train(data, TrainConfig(name="c", weights=None, epochs=3, **QUICK), progress, tmp_path / "c", cancel)
    assert not (tmp_path / "c").exists() and not list(tmp_path.glob(".c.tmp-*"))


@pytest.mark.slow
def test_non_finite_loss_stops_training(data, tmp_path, monkeypatch):
    import tensorflow as tf

    from facecore.facetracker import losses as L

    monkeypatch.setattr(L, "localization_loss", lambda t, p: tf.reduce_sum(p, axis=-1) * np.float32("nan"))
    with pytest.raises(TrainingError, match="non-finite"):
        train(data, TrainConfig(name="nan", weights=None, epochs=2, **QUICK), None, tmp_path / "nan")
    assert not (tmp_path / "nan").exists()


def test_dataset_without_faces_is_refused(tmp_path):
    ds = make_dataset(tmp_path / "nofaces", n_face=0, n_noface=6)
    with pytest.raises(Exception, match="no image in the train split has a labeled face"):
        train(ds, TrainConfig(name="x", weights=None, **QUICK), None, tmp_path / "x")


@pytest.mark.slow
def test_save_replaces_old_model_and_failed_save_keeps_it(scratch_run, tmp_path):
    from facecore.facetracker import model as M
    from facecore.train import save_model

    net = load_keras_model(scratch_run[0] / "model.keras")
    out = tmp_path / "m"
    save_model(net, out, {"name": "m", "kind": "facetracker", "v": 1}, export_tflite=False)
    save_model(net, out, {"name": "m", "kind": "facetracker", "v": 2}, export_tflite=False)
    assert _meta(out)["v"] == 2 and sorted(p.name for p in tmp_path.iterdir()) == ["m"]

    class Broken:
        def save(self, path):
            raise OSError("disk full")

    with pytest.raises(OSError):
        save_model(Broken(), out, {"v": 3}, export_tflite=False)
    assert _meta(out)["v"] == 2 and sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_job_runs_one_training_at_a_time(data, tmp_path):
    cfg = TrainConfig(name="job", weights=None, epochs=50, **QUICK)
    slot = JobSlot()
    job = start_training(data, cfg, tmp_path / "job", slot)
    try:
        assert job.running and slot.running
        with pytest.raises(BusyError, match="already running"):
            start_training(data, cfg, tmp_path / "job2", slot)
    finally:
        assert slot.cancel()
    assert slot.wait(120) is job
    assert job.status == "cancelled" and not (tmp_path / "job").exists()
    assert not slot.cancel()


def test_job_reports_unavailable_weights(data, tmp_path, monkeypatch):
    from facecore.facetracker import model as M

    monkeypatch.setattr(M, "keras_cache_dir", lambda: tmp_path)

    def offline(backbone, size, weights, alpha):
        raise Exception("URL fetch failure: [Errno -2] Name or service not known")

    monkeypatch.setattr(M, "_application", offline)
    job = start_training(data, TrainConfig(name="w", weights="imagenet", **{**QUICK, "backbone": "mobilenetv2"}),
                         tmp_path / "w", JobSlot()).wait(120)
    assert job.status == "failed" and failure_kind(job.error) == "weights"
    # 48 px: the 224 file
    assert "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5" in job.error_message


@pytest.mark.slow
def test_cli_trains_end_to_end(data, tmp_path):
    out = tmp_path / "models" / "cli"
    r = subprocess.run([sys.executable, "-m", "facecore", "train", "--data", str(data.root), "--backbone", "tinycnn",
                        "--weights", "none", "--epochs", "2", "--input-size", "48", "--head-units", "16",
                        "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600,
                       env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert r.returncode == 0, r.stderr[-2000:]
    printed = json.loads(r.stdout)
    assert printed["model"] == str(out) and set(printed["metrics"]) == {"train", "val", "test"}
    assert "from scratch" in r.stderr and "100%" in r.stderr
    assert {p.name for p in out.iterdir()} == {"meta.json", "model.keras", "model.tflite"}


def test_cli_reports_bad_dataset(tmp_path):
    r = subprocess.run([sys.executable, "-m", "facecore", "train", "--data", str(tmp_path / "nope"),
                        "--weights", "none"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "not a dataset" in r.stderr


def test_training_targets_are_clipped_to_the_image(tmp_path):
    from facecore import ImageLabel
    from facecore.train.data import label_boxes

    ds = make_dataset(tmp_path / "d", 1, 0)
    it = ds.items()[0]
    # a box past the edge is clipped (one of no area refuses the whole label: tests/test_hostile_data.py)
    ds.set_label(it.stem, ImageLabel(160, 120, [[-0.2, 0.1, 0.5, 1.3], [0.6, 0.5, 0.9, 0.9]]))
    np.testing.assert_allclose(label_boxes(ds.items()[0]), [[0.0, 0.1, 0.5, 1.0], [0.6, 0.5, 0.9, 0.9]], atol=1e-6)


@pytest.mark.parametrize("choice, boxes, expected", [
    ("auto", [[[0.3, 0.2, 0.6, 0.7]], [[0.2, 0.1, 0.5, 0.6]], []], "square"),         # close single faces
    ("auto", [[[0.1, 0.1, 0.3, 0.4], [0.6, 0.1, 0.8, 0.4]], [[0.3, 0.2, 0.6, 0.7]]], "frame"),  # two in a photo
    ("auto", [[[0.40, 0.3, 0.48, 0.4]], [[0.1, 0.1, 0.16, 0.2]], [[0.3, 0.2, 0.6, 0.7]]], "frame"),  # tiny faces
    ("auto", [[[0.40, 0.3, 0.55, 0.5]], [[0.1, 0.1, 0.25, 0.3]], [[0.3, 0.2, 0.6, 0.7]]], "square"),  # small: still square
    ("auto", [[], []], "square"),                                                   # nothing labeled
    ("close", [[[0.4, 0.4, 0.45, 0.45]]], "close"),
    ("square", [[[0.1, 0.1, 0.2, 0.2], [0.5, 0.5, 0.6, 0.6]]], "square"),            # an explicit choice stands
    ("frame", [[[0.3, 0.2, 0.6, 0.7]]], "frame"),
])
def test_input_shape_follows_the_labels(choice, boxes, expected):
    from facecore.blazeface.finetune import pick_input_shape

    assert pick_input_shape(choice, [np.asarray(b, np.float32).reshape(-1, 4) for b in boxes]) == expected


@pytest.mark.parametrize("variant, widths, warned", [
    ("short", [0.16, 0.17, 0.15], True),          # the shipped sample's faces: the short-range network misses most
    ("short", [0.25, 0.3, 0.16], False),          # close faces: its own range
    ("short", [], False),                         # nothing labeled: nothing to judge
    ("full", [0.05, 0.1], False),                 # the full-range network has no such cliff
    ("short", [[0.1, 0.1], 0.4], True),           # two small faces in one photo count as two
])
def test_short_range_network_warns_about_small_faces(variant, widths, warned):
    from facecore.blazeface.finetune import short_range_warning

    def photo(w):
        ws = w if isinstance(w, list) else [w]
        return np.asarray([[0.1, 0.2, 0.1 + x, 0.6] for x in ws], np.float32)

    note = short_range_warning(variant, [photo(w) for w in widths] + [np.zeros((0, 4), np.float32)])
    assert (note is not None) == warned
    if warned:
        assert "192 px" in note and "close-up" in note
