"""Hostile model files and model folders: truncated/forged .tflite (must never reach the
interpreter), lying meta.json, model names that are paths, --out pointed at a dataset, a save
killed between its two renames."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from facecore.errors import FaceCoreError, ModelFileError
from facecore.io import recover_dir, replace_dir
from facecore.meta import check_model_dir
from facecore.registry import detector_names, list_models, load_detector, load_facetracker, model_folder

from test_inference import SIZE, save_model_dir


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    return save_model_dir(tmp_path_factory.mktemp("models") / "good")


def _copy(good, tmp_path, name="m"):
    d = tmp_path / name
    shutil.copytree(good, d)
    return d


# -- .tflite files -----------------------------------------------------------------------------
@pytest.mark.parametrize("cut", ["half", "tail", "head100", "zero", "forged", "random"])
def test_broken_tflite_never_reaches_the_interpreter(good, tmp_path, cut):
    from facecore.facetracker.inference import check_tflite_file

    d = _copy(good, tmp_path)
    f = d / "model.tflite"
    data = f.read_bytes()
    bad = {"half": data[: len(data) // 2], "tail": data[:-64], "head100": data[:100], "zero": b"",
           "forged": data[:8] + b"\x00" * 200, "random": np.random.default_rng(0).bytes(5000)}[cut]
    f.write_bytes(bad)
    with pytest.raises(ModelFileError):
        check_tflite_file(f)
    with pytest.raises(FaceCoreError, match="model.tflite"):
        load_facetracker(d, backend="tflite")
    det = load_facetracker(d)  # auto: falls back to model.keras and says why
    assert det.backend == "tf.function" and "model.tflite" in det.fallback_reason
    assert len(det.detect(np.zeros((40, 50, 3), np.uint8))) == 1


@pytest.mark.slow
def test_broken_tflite_in_a_fresh_process_exits_cleanly(good, tmp_path):
    """What the CLI and the server go through: a fresh process loading the model by name."""
    d = _copy(good, tmp_path)
    data = (d / "model.tflite").read_bytes()
    (d / "model.tflite").write_bytes(data[: len(data) * 2 // 3])
    (d / "model.keras").write_bytes(b"PK\x03\x04 truncated")
    code = textwrap.dedent(f"""
        from facecore.registry import load_detector
        from facecore.errors import FaceCoreError
        try:
            load_detector("m", {str(tmp_path)!r})
        except FaceCoreError as exc:
            print("CLEAR:", exc)
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                       cwd=os.path.dirname(os.path.dirname(__file__)))
    assert r.returncode == 0, r.stderr[-2000:]
    assert "CLEAR:" in r.stdout and "model.keras" in r.stdout and "Traceback" not in r.stderr


def test_corrupt_keras_file_is_not_reported_as_missing(good, tmp_path):
    from facecore.facetracker.inference import load_keras_model

    d = _copy(good, tmp_path)
    (d / "model.keras").write_bytes((d / "model.keras").read_bytes()[:500])
    with pytest.raises(ModelFileError, match="corrupt or truncated") as e:
        load_keras_model(d / "model.keras")
    assert "not found" not in str(e.value).lower()


# -- meta.json ---------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [128, 0, -5, 100_000, "96px", None, True, 2.5, [32]])
def test_lying_meta_input_size_uses_the_model_file(good, tmp_path, size):
    d = _copy(good, tmp_path)
    meta = json.loads((d / "meta.json").read_text())
    meta["config"]["input_size"] = size
    (d / "meta.json").write_text(json.dumps(meta))
    for backend in ("auto", "tf.function"):
        det = load_facetracker(d, backend=backend)
        assert det.input_size == SIZE
        assert len(det.detect(np.zeros((30, 30, 3), np.uint8))) == 1


@pytest.mark.parametrize("meta", ["[]", "{}", '{"config": 5}', "not json", "[" * 100_000])
def test_broken_meta_is_a_clear_error(good, tmp_path, meta):
    d = _copy(good, tmp_path)
    (d / "meta.json").write_text(meta)
    with pytest.raises(FaceCoreError, match="meta.json"):
        load_facetracker(d)


# -- model names -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["../elsewhere/m", "/abs/m", "a/b", "..", ".hidden", "", "m\\..\\x",
                                  "../elsewhere/m@int8"])
def test_model_names_that_are_paths_are_refused(tmp_path, name):
    (tmp_path / "models").mkdir()
    with pytest.raises(ModelFileError, match="not allowed|outside"):
        model_folder(tmp_path / "models", name)
    with pytest.raises(FaceCoreError):
        load_detector(name, tmp_path / "models")


def test_symlinked_model_outside_the_folder_is_refused(good, tmp_path):
    (tmp_path / "models").mkdir()
    os.symlink(good, tmp_path / "models" / "link")
    with pytest.raises(ModelFileError, match="outside"):
        model_folder(tmp_path / "models", "link")
    assert model_folder(tmp_path / "models", "ok@int8").name == "ok@int8"


def test_quantize_cli_never_writes_outside_the_models_folder(good, tmp_path, capsys):
    from facecore.__main__ import main

    elsewhere = _copy(good, tmp_path, "elsewhere")
    (tmp_path / "models").mkdir()
    for name in ("../elsewhere", str(elsewhere)):
        assert main(["quantize", "--model", name, "--models", str(tmp_path / "models")]) == 2
    assert not (elsewhere / "model_int8.tflite").exists()
    assert "not allowed" in capsys.readouterr().err


# -- saving over folders -----------------------------------------------------------------------
def test_model_save_refuses_a_dataset_folder(tmp_path):
    from facecore.datasets.dataset import Dataset

    from hostile import png_bytes

    ds = Dataset.create(tmp_path / "photos")
    ds.add_image(png_bytes(), "me.png")
    for kind in ("facetracker", "identity"):
        with pytest.raises(ModelFileError, match="not a saved model"):
            check_model_dir(ds.root, kind)
    with pytest.raises(ModelFileError):
        replace_dir(ds.root, lambda tmp: (tmp / "meta.json").write_text("{}"),
                    check=lambda d: check_model_dir(d, "facetracker"))
    assert [it.stem for it in ds.items()] == ["me"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # the temp folder went too
    (tmp_path / "file").write_text("x")
    with pytest.raises(ModelFileError, match="file"):
        check_model_dir(tmp_path / "file")


def test_model_save_replaces_only_a_model_of_its_kind(good, tmp_path):
    d = _copy(good, tmp_path)
    assert check_model_dir(d, "facetracker") == d
    with pytest.raises(ModelFileError, match="facetracker model"):
        check_model_dir(d, "identity")
    (d / "images").mkdir()
    with pytest.raises(ModelFileError, match="images"):
        check_model_dir(d, "facetracker")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert check_model_dir(empty) == empty and check_model_dir(tmp_path / "new") == tmp_path / "new"


def test_train_cli_out_pointed_at_a_dataset_loses_nothing(tmp_path, tiny_dataset, capsys):
    from facecore.__main__ import main

    before = sorted(p.name for p in tiny_dataset.images_dir.iterdir())
    rc = main(["train", "--data", str(tiny_dataset.root), "--out", str(tiny_dataset.root),
               "--backbone", "tinycnn", "--weights", "none", "--epochs", "1"])
    assert rc == 2 and "not a saved model" in capsys.readouterr().err
    assert sorted(p.name for p in tiny_dataset.images_dir.iterdir()) == before


@pytest.mark.parametrize("args", [["--input-size", "20000"], ["--head-units", "2e9"], ["--head-units", "2000000000"],
                                  ["--lr", "nan"], ["--epochs", "-1"]])
def test_train_cli_bounds(tmp_path, tiny_dataset, capsys, args):
    from facecore.__main__ import main

    try:
        rc = main(["train", "--data", str(tiny_dataset.root), "--out", str(tmp_path / "m"), "--backbone", "tinycnn",
                   "--weights", "none", *args])
    except SystemExit as exc:  # argparse usage error
        rc = exc.code
    assert rc == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip()
    assert not (tmp_path / "m").exists()


# -- a save killed between its two renames -----------------------------------------------------
KILL_AFTER = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    import facecore.io as fio
    calls = [0]
    real = os.replace
    def replace(a, b):
        real(a, b)
        calls[0] += 1
        if calls[0] == int(sys.argv[2]):
            os._exit(9)  # SIGKILL-like: no cleanup, no finally
    fio.os.replace = replace
    def write(tmp):
        (tmp / "meta.json").write_text('{"kind": "facetracker", "v": "new"}')
    fio.replace_dir(Path(sys.argv[1]), write)
""")


@pytest.mark.parametrize("kill_after, expect", [(1, "old"), (2, "new")])
def test_save_killed_between_renames_is_recovered(tmp_path, kill_after, expect):
    root = tmp_path / "models"
    m = root / "m"
    m.mkdir(parents=True)
    (m / "meta.json").write_text('{"kind": "facetracker", "v": "old"}')
    r = subprocess.run([sys.executable, "-c", KILL_AFTER, str(m), str(kill_after)],
                       cwd=os.path.dirname(os.path.dirname(__file__)), timeout=120)
    assert r.returncode == 9
    if kill_after == 2:
        assert not m.exists()  # the state the issue describes: old and new both hidden
    models = list_models(root)
    assert [x.name for x in models] == ["m"] and models[0].meta.extra["v"] == expect
    assert sorted(p.name for p in root.iterdir()) == ["m"]  # no hidden leftovers


def test_legacy_leftovers_without_pid_are_recovered(tmp_path):
    root = tmp_path / "models"
    old, tmp = root / ".m.old-1a2b3c4d", root / ".m.tmp-k3j_x9q0"
    for d, v in ((old, "old"), (tmp, "new")):
        d.mkdir(parents=True)
        (d / "meta.json").write_text(json.dumps({"kind": "facetracker", "v": v}))
    assert recover_dir(root / "m")
    assert json.loads((root / "m" / "meta.json").read_text())["v"] == "new"
    assert sorted(p.name for p in root.iterdir()) == ["m"]


def test_loading_a_model_recovers_it(good, tmp_path):
    root = tmp_path / "models"
    root.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    shutil.copytree(good, root / f".m.old-{dead}-0badc0de")
    det = load_facetracker(root / "m")
    assert det.input_size == SIZE and (root / "m").is_dir()


def test_one_broken_meta_does_not_hide_the_other_models(good, tmp_path):
    root = tmp_path / "models"
    _copy(good, root, "ok")
    for name, text in (("deep", "[" * 100_000), ("list", "[1, 2]"), ("bom", "\ufeff{}")):
        (root / name).mkdir()
        (root / name / "meta.json").write_text(text)
    assert [m.name for m in list_models(root)] == ["ok"]
    assert "ok" in detector_names(root)


def test_dataset_copy_killed_before_its_rename_is_finished_on_listing(tmp_path):
    from facecore.datasets.dataset import Dataset
    from facecore.datasets.workspace import Workspace

    from hostile import png_bytes

    ws = Workspace(tmp_path / "data", tmp_path / "models")
    src = Dataset.create(tmp_path / "src")
    src.add_image(png_bytes(), "a.png")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    done = ws.user_root / f".copy.new-{dead}-0123abcd"  # complete, killed before the final rename
    half = ws.user_root / f".half.tmp-{dead}-0123abcd"  # killed while copying
    shutil.copytree(src.root, done)
    (half / "images").mkdir(parents=True)
    assert list(ws.datasets()) == ["copy"]
    assert [it.stem for it in ws.dataset("copy").items()] == ["a"]
    assert sorted(p.name for p in ws.user_root.iterdir()) == ["copy"]


def test_names_that_look_like_swap_stages_are_not_confused(tmp_path):
    root = tmp_path / "models"
    for name in ("a.new-1", "b.old-2"):
        replace_dir(root / name, lambda t: (t / "meta.json").write_text('{"kind": "facetracker"}'))
        replace_dir(root / name, lambda t: (t / "meta.json").write_text('{"kind": "facetracker", "v": 2}'))
    assert sorted(m.name for m in list_models(root)) == ["a.new-1", "b.old-2"]
    assert sorted(p.name for p in root.iterdir()) == ["a.new-1", "b.old-2"]


@pytest.mark.parametrize("error, words", [("EROFS", "read-only"), ("ENOSPC", "disk is full")])
def test_model_save_on_a_read_only_or_full_disk_keeps_the_old_model(good, tmp_path, monkeypatch, error, words):
    """Saving a model where nothing can be written (read-only folder, full disk) raises a StorageError
    that says so, and the model already there is untouched and still loads."""
    import errno
    import pathlib

    from facecore.errors import StorageError

    d = _copy(good, tmp_path)
    before = {p.name: p.read_bytes() for p in d.iterdir()}
    real_mkdir = pathlib.Path.mkdir

    def failing_mkdir(self, *a, **k):
        if ".tmp-" in self.name:  # the save's temporary folder: where the new model would be written
            raise OSError(getattr(errno, error), os.strerror(getattr(errno, error)), str(self))
        return real_mkdir(self, *a, **k)

    monkeypatch.setattr(pathlib.Path, "mkdir", failing_mkdir)
    with pytest.raises(StorageError, match=words):
        save_model_dir(d)
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in d.iterdir()} == before
    assert load_facetracker(d).detect(np.zeros((48, 64, 3), np.uint8)) is not None


# -- meta.json that lies about the input: Evaluate's int8 copy (issue 21) ------------------------
@pytest.mark.parametrize("meta_patch, match", [
    ({"config": {"input_size": "96px"}}, "config.input_size '96px', which is not an input size"),
    ({"config": "x"}, "field 'config' is 'x', not an object"),
    ({"input": {"shape": [None, 352, "a", 3]}}, "input.shape"),
])
def test_broken_meta_input_is_one_clear_message(meta_patch, match):
    from facecore.evaluate.metrics import calibration_sample
    from facecore.meta import meta_input_hw
    from facecore.registry import ModelInfo

    with pytest.raises(ModelFileError, match=match):
        meta_input_hw(meta_patch, "m")
    with pytest.raises(ModelFileError, match=match):
        calibration_sample(meta_patch, [object()], name="m")  # refused before any image is read
    assert match.split("'")[0] in ModelInfo("m", "m", meta_patch).problem


def test_meta_input_hw_reads_the_network_input():
    from facecore.meta import meta_input_hw
    from facecore.registry import ModelInfo

    assert meta_input_hw({"config": {"input_size": 96}}) == (96, 96)
    # a photo-shaped BlazeFace: its graph takes a square canvas (input.shape), not config.input_size
    meta = {"config": {"input_size": 192}, "input": {"shape": [None, 352, 352, 3]}}
    assert meta_input_hw(meta) == (352, 352) and meta_input_hw({}) is None
    assert ModelInfo("m", "m", meta).problem is None
    assert ModelInfo("m", "m", {"metrics": [1]}).headline() == {}  # never an AttributeError


@pytest.mark.slow
@pytest.mark.parametrize("sample_hw", [(SIZE + 16, SIZE + 16), (SIZE, SIZE + 24)])
def test_quantize_uses_the_networks_own_input(good, tmp_path, sample_hw):
    """A calibration sample made at a size meta.json states wrongly (or photo-shaped) is fitted to the
    network, never handed to tf.function at the wrong shape."""
    from facecore.registry import quantize

    d = _copy(good, tmp_path)
    sample = np.random.default_rng(0).uniform(0, 255, (3, *sample_hw, 3)).astype(np.float32)
    info = quantize(d, sample)
    assert (d / "model_int8.tflite").is_file() and np.isfinite(info["max_abs_diff"])
