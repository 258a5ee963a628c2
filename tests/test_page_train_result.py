"""The Train page's result of a finished run says first, in full, when no epoch beat the starting point and
what the saved model then is (``facecore.evaluate.provenance.kept_start``)."""

import importlib
from pathlib import Path

import pytest

from conftest import run_page, texts
from facecore.jobs import Job, JobSlot
from facecore.meta import ModelMeta
from facecore.evaluate.provenance import kept_start
from facecore.train import TrainConfig
from facecore.train.job import TrainRun

STYLE = {"method": "keypoints, prior 30", "n_faces": 8}


def _meta(best_epoch, weights="blazeface", size=192, architecture="blazeface", epochs=3):
    return {"architecture": architecture, "config": {"backbone": "blazeface", "weights": weights, "input_size": size},
            "start_style": STYLE if architecture == "blazeface" else None,
            "training": {"best_epoch": best_epoch, "epochs_run": epochs, "stopped_early": False, "train_layers": "box"},
            "metrics": {"val": {"mean_iou": 0.8, "ap50": 0.97}}, "history": [], "files": {}}


@pytest.mark.parametrize("meta,says", [
    (_meta(0), ["No training epoch beat the starting point on the val split", "3 epoch(s) of training were dropped",
                "MediaPipe's network, unchanged (the built-in `blazeface`)", "keypoints, prior 30, from 8 faces"]),
    (_meta(0, size=128), ["the built-in `blazeface-short`"]),
    (_meta(0, weights=None), ["untrained (no pretrained weights)", "will not find faces"]),
    (_meta(0, architecture="facetracker"), ["the network as it was before training"]),
])
def test_kept_start_says_what_the_saved_model_is(meta, says):
    text = kept_start(meta)
    assert all(s in text for s in says), text


@pytest.mark.parametrize("meta", [_meta(2), _meta(None), {}, None, {"training": "broken"}])
def test_kept_start_is_silent_when_an_epoch_was_kept(meta):
    assert kept_start(meta) == ""


@pytest.fixture
def train_slot(monkeypatch):
    slot = JobSlot()
    monkeypatch.setattr(importlib.import_module("facecore.train"), "JOB", slot)
    monkeypatch.setattr(importlib.import_module("facecore.train.job"), "JOB", slot)
    return slot


def _finish(slot: JobSlot, tmp_path: Path, meta: dict) -> None:
    """A training that has finished with ``meta`` (the page shows the slot's last job)."""
    cfg = TrainConfig(name="mine", epochs=3)
    run = TrainRun(cfg, "sample", str(tmp_path / "data"), str(tmp_path / "models" / "mine"))
    result = (tmp_path / "models" / "mine", ModelMeta.from_dict(meta))  # what train.job returns
    job = slot.start(Job(lambda progress, cancel: result, "training", run))
    assert job.wait(300).status == "done"


@pytest.mark.parametrize("best_epoch", [0, 2])
def test_result_says_first_when_the_start_was_kept(workspace_env, train_slot, tmp_path, best_epoch):
    _finish(train_slot, tmp_path, _meta(best_epoch))
    at = run_page("pages/3_Train.py")
    kept = [w.value for w in at.warning if "No training epoch beat the starting point" in w.value]
    if best_epoch:
        assert not kept and "best epoch 2" in texts(at.caption)
        return
    assert len(kept) == 1 and "MediaPipe's network, unchanged" in kept[0]
    # at the top of the result: before the 'Done' line, the metrics table and the caption
    order = [(type(el).__name__, el.value if type(el).__name__ in ("Warning", "Success", "Caption") else "")
             for el in at.main]
    first = order.index(("Warning", kept[0]))
    done = next(i for i, (kind, text) in enumerate(order) if kind == "Success" and "Done in" in text)
    table = next(i for i, (kind, _) in enumerate(order) if kind == "Table")
    assert first < done < table
    assert "no epoch beat the start" not in texts(at.caption)  # not in small grey text any more
