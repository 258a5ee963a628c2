"""``facecore.meta.ModelMeta``: a saved model's ``meta.json`` as one typed value, tolerant of older files."""

import json

import numpy as np
import pytest

from facecore.errors import ModelFileError
from facecore.meta import BLAZEFACE_ARCH, IDENTITY, META_FILE, ModelMeta, check_model_dir


def test_an_older_meta_json_loads_with_defaults_and_keeps_what_it_does_not_know(tmp_path):
    old = {"name": "old", "config": {"backbone": "vgg16", "input_size": 120}, "v": 1, "notes": {"a": [1, 2]}}
    (tmp_path / META_FILE).write_text(json.dumps(old))
    meta = ModelMeta.load(tmp_path)
    assert meta.kind == "facetracker" and meta.architecture == "" and meta.metrics == {} and meta.history == []
    assert meta.backbone == "vgg16" and meta.input_hw == (120, 120) and meta.problem is None
    assert meta.extra == {"v": 1, "notes": {"a": [1, 2]}}
    assert meta.to_dict() == {"name": "old", "kind": "facetracker", "created": "", **old}  # nothing lost


def test_save_and_load_round_trip_every_field(tmp_path):
    meta = ModelMeta(name="m", architecture=BLAZEFACE_ARCH, created="2026-12-07T10:00:00+00:00",
                     config={"input_size": 192, "weights": "blazeface"}, metrics={"val": {"mean_iou": 0.8}},
                     history=[{"loss": 1.0}], training={"best_epoch": 0, "epochs_run": 3, "warnings": ["w"]},
                     input={"shape": [None, 256, 256, 3]}, frame_aspect=4 / 3, input_shape="frame",
                     network_input_hw=[192, 256], box_style={"left": 0.1}, attribution="MediaPipe",
                     extra={"outputs": ["prob"]})
    meta.save(tmp_path)
    back = ModelMeta.load(tmp_path)
    assert back == meta and back.extra == {"outputs": ["prob"]}
    assert not [p for p in tmp_path.iterdir() if p.name != META_FILE]  # atomic: no temp file left
    # a photo-shaped model states two sizes: the one to feed is the graph's (input.shape), never config's
    assert back.input_hw == (256, 256) and back.config_size == 192
    assert back.best == 0 and back.epochs_run == 3 and back.training_warnings == ["w"] and back.pretrained
    assert back.headline() == {"mean_iou": 0.8}  # no test split: val


def test_numpy_values_and_non_finite_numbers_are_saved_as_json(tmp_path):
    ModelMeta(name="n", metrics={"val": {"ap50": np.float32(0.5), "n": np.int64(3), "x": float("nan")}},
              network_input_hw=list(np.array([128, 128]))).save(tmp_path)
    d = json.loads((tmp_path / META_FILE).read_text())
    assert d["metrics"]["val"] == {"ap50": 0.5, "n": 3, "x": None} and d["network_input_hw"] == [128, 128]


@pytest.mark.parametrize("key, value", [("config", "x"), ("metrics", [1]), ("classes", "ann"),
                                        ("frame_aspect", "wide"), ("best_epoch", True)])
def test_a_field_of_the_wrong_type_is_a_problem_not_a_crash(key, value):
    meta = ModelMeta.from_dict({"name": "m", key: value})
    assert f"field {key!r}" in meta.problem and "retrain the model" in meta.problem
    assert meta.extra[key] == value and meta.to_dict()[key] == value  # kept as it was
    with pytest.raises(ModelFileError, match=f"field {key!r}"):
        ModelMeta.from_dict({"name": "m", key: value}, strict=True)


@pytest.mark.parametrize("text", ["[]", "not json", "", '"x"'])
def test_a_meta_json_that_is_not_an_object_is_a_clear_error(tmp_path, text):
    (tmp_path / META_FILE).write_text(text)
    with pytest.raises(ModelFileError, match="meta.json"):
        ModelMeta.load(tmp_path)
    assert ModelMeta.of([1, 2], "m").problem.startswith("model 'm'")  # lenient: an empty one that says why


def test_an_identity_models_facts_are_typed():
    meta = ModelMeta.from_dict({"name": "who", "kind": IDENTITY, "classes": ["ann", "bob"], "crop_margin": 0.5,
                                "best_epoch": 4, "history": [{}] * 6, "warnings": ["random"], "size_bytes": 10})
    assert meta.classes == ["ann", "bob"] and meta.crop_margin == 0.5 and meta.best == 4
    assert meta.epochs_run == 6 and meta.training_warnings == ["random"] and meta.size_bytes == 10


def test_check_model_dir_reads_the_kind_through_model_meta(tmp_path):
    ModelMeta(name="m", kind=IDENTITY).save(tmp_path / "m")
    assert check_model_dir(tmp_path / "m", IDENTITY) == tmp_path / "m"
    with pytest.raises(ModelFileError, match="holds a identity model"):
        check_model_dir(tmp_path / "m")
