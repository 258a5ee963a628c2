import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from synth import make_dataset  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "sample"
SHARED = ROOT.parent / "shared" / "datasets"


@pytest.fixture
def tiny_dataset(tmp_path):
    """12 synthetic face images + 4 no-face images, 160x120, labelme labels."""
    return make_dataset(tmp_path / "tiny")


@pytest.fixture
def workspace_env(tmp_path, monkeypatch):
    """Point the app at a temporary data/ (with a copy of the sample set) and models/ folder."""
    data = tmp_path / "data"
    (data / "workspace").mkdir(parents=True)
    shutil.copytree(SAMPLE, data / "sample")
    models = tmp_path / "models"
    models.mkdir()
    monkeypatch.setenv("FACETRACK_DATA", str(data))
    monkeypatch.setenv("FACETRACK_MODELS", str(models))
    return data, models
