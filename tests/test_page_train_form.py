"""The Train page's form and result say what the chosen model does (issue 23): BlazeFace's Advanced shows
only its own settings, its defaults are the preset's and the README's, offline copies from the Augment
page are used by default and mosaics say what they cost, a finished run's table and caption fit the model."""

import importlib
import re
import shutil

import pytest

from conftest import ROOT, SAMPLE, run_page, texts
from facecore import Dataset
from facecore.augment import AugmentConfig, augment_dataset
from facecore.jobs import Job, JobSlot
from facecore.meta import ModelMeta
from facecore.augment.mosaic import make_mosaics
from dataclasses import fields

from facecore.train import TrainConfig
from facecore.train.job import TrainRun

FACETRACKER_ONLY = ("train_head_blazeface", "train_ft", "train_ft_layers")


@pytest.fixture(autouse=True)
def train_slot(monkeypatch):
    slot = JobSlot()
    monkeypatch.setattr(importlib.import_module("facecore.train"), "JOB", slot)
    monkeypatch.setattr(importlib.import_module("facecore.train.job"), "JOB", slot)
    return slot


def _keys(elements) -> set:
    return {e.key for e in elements}


def test_blazeface_advanced_shows_only_its_settings(workspace_env):
    at = run_page("pages/3_Train.py")
    shown = _keys(at.number_input) | _keys(at.radio) | _keys(at.select_slider)
    assert not shown & set(FACETRACKER_ONLY)
    assert {"train_layers", "train_input_shape", "train_locw", "train_patience", "train_seed"} <= shown
    at.selectbox(key="train_backbone").select("vgg16").run()
    shown = _keys(at.number_input) | _keys(at.radio)
    assert {"train_head_vgg16", "train_ft", "train_ft_layers"} <= shown and "train_layers" not in shown


def test_blazeface_defaults_are_the_presets_and_the_readmes(workspace_env):
    at = run_page("pages/3_Train.py")
    p = TrainConfig().to_dict()
    assert at.select_slider(key="train_lr_blaze").value == p["learning_rate"]
    assert at.radio(key="train_layers").value == p["train_layers"] == TrainConfig.train_layers
    assert at.number_input(key="train_epochs_blaze").value == p["epochs"]
    assert at.select_slider(key="train_batch_blaze").value == p["batch_size"]
    assert "trains the box heads" in texts(at.caption)
    assert at.radio(key="train_aug_sample_True").value == p["augmentation"]  # no augmented copies here
    readme = (ROOT / "README.md").read_text()
    defaults = re.search(r"\*\*Defaults\*\*(.+?)\n- \*\*", readme, re.S).group(1)
    lr = f"{p['learning_rate']:.0e}".replace("e-0", "e-")  # 1e-3, as the README writes it
    assert f"BlazeFace {p['epochs']} epochs, batch {p['batch_size']}, learning rate {lr}" in " ".join(defaults.split())
    assert "box heads" in defaults


# the Train page's widget (for the default model, BlazeFace) that sets each TrainConfig field
DEFAULT_WIDGETS = {"backbone": ("selectbox", "train_backbone"), "weights": ("radio", "train_weights_blazeface"),
                   "input_size": ("selectbox", "train_size_blazeface"), "epochs": ("number_input", "train_epochs_blaze"),
                   "batch_size": ("select_slider", "train_batch_blaze"),
                   "learning_rate": ("select_slider", "train_lr_blaze"),
                   "augmentation": ("radio", "train_aug_sample_True"),
                   "localization_weight": ("number_input", "train_locw"),
                   "patience": ("number_input", "train_patience"), "seed": ("number_input", "train_seed"),
                   "train_layers": ("radio", "train_layers"), "input_shape": ("radio", "train_input_shape"),
                   "personalize": ("radio", "train_personalize")}


def test_page_defaults_are_trainconfigs(workspace_env, monkeypatch):
    """``TrainConfig()`` is what the Train page trains when nothing is touched: each widget's default is the
    field's, and the config the page starts equals ``TrainConfig()`` field by field (but the name)."""
    started = []
    monkeypatch.setattr(importlib.import_module("facecore.train"), "start_training",
                        lambda dataset, config, *a, **k: started.append(config))
    at = run_page("pages/3_Train.py")
    default = TrainConfig().to_dict()  # input_size: the size it resolves to
    for field, (kind, key) in DEFAULT_WIDGETS.items():
        assert getattr(at, kind)(key=key).value == default[field], field
    at.button(key="train_start").click().run()
    assert not at.exception, at.exception
    (cfg,) = started
    assert cfg.name == "sample-blazeface"
    started_dict = cfg.to_dict()  # input_size: the page names the size TrainConfig() resolves to
    for field in fields(TrainConfig):
        if field.name != "name":
            assert started_dict[field.name] == default[field.name], field.name


@pytest.fixture
def augmented(workspace_env):
    data, _ = workspace_env
    ds = Dataset(shutil.copytree(SAMPLE, data / "workspace" / "mine"))
    augment_dataset(ds, AugmentConfig(), per_image=1, workers=1)
    return ds


def _page_on(name: str):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "pages" / "3_Train.py"), default_timeout=120)
    at.query_params["dataset"] = name
    at.run()
    assert not at.exception, at.exception
    return at


@pytest.mark.slow  # augments the sample (about 5 s on 2 cores)
def test_offline_copies_are_used_by_default_and_mosaics_say_their_cost(augmented):
    at = _page_on("mine")
    n = augmented.counts().augmented
    assert at.radio(key="train_aug_mine_True").value == "offline"
    assert f"train split plus its {n} augmented copies" in texts(at.caption)
    assert "photo-shaped" not in texts(at.info)
    make_mosaics(augmented, 8)
    at = _page_on("mine")
    note = texts(at.info)
    assert "8 mosaics switch the network to the photo-shaped input" in note
    assert "3.5x" in note and "twice as long per frame" in note
    at.radio(key="train_input_shape").set_value("square").run()
    assert "photo-shaped input" not in texts(at.info)
    at.radio(key="train_aug_mine_True").set_value("on_the_fly").run()
    assert "inside training" in texts(at.caption) and "mosaics" not in texts(at.info)


@pytest.mark.slow  # about 3.5 s on the busy 2-core machine
def test_finished_blazeface_run_shows_no_blank_columns_and_its_layers(workspace_env, train_slot, tmp_path):
    data, _ = workspace_env
    cfg = TrainConfig(name="sample-blazeface", backbone="blazeface", train_layers="box")
    metrics = {s: {"loss": 0.5, "mean_iou": 0.8, "face_accuracy": 0.9, "n": 10, "n_face": 8, "class_loss": None}
               for s in ("train", "val", "test")}
    meta = ModelMeta.from_dict({"metrics": metrics, "history": [], "files": {"keras": "model.keras"},
                                "training": {"epochs_run": 2, "best_epoch": 2, "train_layers": "box"}})
    job = Job(lambda progress, cancel: (tmp_path / "sample-blazeface", meta), "train",
              TrainRun(cfg, "sample", str(data / "sample"), str(tmp_path / "sample-blazeface")))
    train_slot.start(job)
    assert train_slot.wait(300).status == "done"
    at = run_page("pages/3_Train.py")
    table = at.table[0].value
    assert "classification loss" not in table.columns and "localization loss" not in table.columns
    assert {"mean IoU", "face accuracy"} <= set(table.columns)
    caption = texts(at.caption)
    assert "trained: box heads" in caption and "full network" not in caption


def test_personalization_choice_is_in_advanced_and_reaches_the_config(workspace_env, train_slot, monkeypatch):
    """With few photos cross-validation chooses by default; 'always fine-tune' reaches TrainConfig.personalize."""
    started = []
    monkeypatch.setattr(importlib.import_module("facecore.train"), "start_training",
                        lambda dataset, config, *a, **k: started.append(config))
    at = run_page("pages/3_Train.py")
    assert at.radio(key="train_personalize").value == TrainConfig.personalize == "auto"
    at.radio(key="train_personalize").set_value("fine-tune").run()
    assert not at.exception, at.exception
    at.button(key="train_start").click().run()
    assert not at.exception, at.exception
    assert started and started[-1].personalize == "fine-tune"
