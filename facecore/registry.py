"""The trained models in ``models/``: each is a folder with ``meta.json`` beside its weights.

``meta.json`` keys written by training: ``name``, ``kind`` (``"facetracker"`` or ``"identity"``),
``created`` (ISO time), ``config`` (the training config), ``dataset`` (name, fingerprint, split
sizes), ``history`` (per-epoch metrics) and ``metrics`` (``{"val": {...}, "test": {...}}``).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path

META_FILE = "meta.json"


@dataclass(frozen=True)
class ModelInfo:
    """A saved model: its folder and its metadata (``meta`` is the parsed ``meta.json``)."""

    name: str
    path: Path
    meta: dict = field(default_factory=dict, compare=False)

    @property
    def kind(self) -> str:
        return self.meta.get("kind", "facetracker")

    def headline(self) -> dict:
        """The test-split metrics (val when there is no test split), for tables."""
        metrics = self.meta.get("metrics", {})
        return dict(metrics.get("test") or metrics.get("val") or {})


def list_models(models_root: str | Path, kind: str | None = None) -> list[ModelInfo]:
    """Models under ``models_root`` that have a readable ``meta.json``, newest first.

    A folder whose ``meta.json`` is missing or broken (e.g. a training still running) is skipped.
    """
    from .io import recover_swaps

    root = Path(models_root)
    out = []
    if not root.is_dir():
        return out
    recover_swaps(root)  # finish or undo a save killed half way; drop stale temp folders
    for p in root.iterdir():
        if p.name.startswith("."):  # a save in progress (temp folders are dot-named)
            continue
        meta_path = p / META_FILE
        if not meta_path.is_file():
            continue
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError):  # one broken model must not hide the others
            continue
        if not isinstance(meta, dict):
            continue
        info = ModelInfo(p.name, p, meta)
        if kind is None or info.kind == kind:
            out.append(info)
    return sorted(out, key=lambda m: (m.meta.get("created", ""), m.name), reverse=True)


def model_info(name: str, models_root: str | Path) -> ModelInfo:
    """The model called ``name`` in ``models_root``; raises FaceCoreError naming the ones there."""
    from .errors import FaceCoreError

    for m in list_models(models_root):
        if m.name == name:
            return m
    names = ", ".join(m.name for m in list_models(models_root)) or "none yet"
    raise FaceCoreError(f"no model called {name!r} in {models_root} (available: {names})")


_CACHE: dict = {}
_CACHE_LOCK = threading.Lock()


def model_version(name: str, models_root: str | Path) -> tuple:
    """Changes when model ``name`` (``"haar"``, ``NAME`` or ``NAME@int8``) is retrained or re-quantized:
    the mtimes of its ``meta.json`` and ``model_int8.tflite``. Cache keys use it."""
    folder = Path(models_root) / name.split("@")[0]
    return tuple(p.stat().st_mtime_ns if p.is_file() else 0
                 for p in (folder / META_FILE, folder / "model_int8.tflite"))


def load(name: str, models_root: str | Path):
    """The detector ``name`` (``"haar"`` or a trained model), loaded once per process and reused
    until the model's ``meta.json`` changes (retrained). For scripts and the CLI; Streamlit pages
    use ``pages.common.detector``, which caches per server the same way. Raises FaceCoreError."""
    from .detect import load_detector

    version = model_version(name, models_root)
    key = (name, str(Path(models_root).resolve()))
    with _CACHE_LOCK:
        hit = _CACHE.get(key)
        if hit is not None and hit[0] == version:
            return hit[1]
        det = load_detector(name, models_root)
        _CACHE[key] = (version, det)
        return det


# -- managing saved models ------------------------------------------------------------------------
def delete_model(name: str, models_root: str | Path) -> None:
    """Delete model ``name`` (its whole folder, int8 copy included). Raises FaceCoreError for a name
    that is not a saved model here; the folder leaves the model list at once (renamed to a hidden name
    before its files are removed)."""
    import shutil
    import uuid

    from .io import model_path, storage_errors

    folder = model_path(models_root, name)
    info = model_info(folder.name, models_root)  # only a saved model, never an arbitrary folder
    trash = folder.parent / f".{info.name}.deleted-{uuid.uuid4().hex[:8]}"
    with storage_errors(f"delete model {name!r}"):
        folder.rename(trash)
    shutil.rmtree(trash, ignore_errors=True)


def model_zip(name: str, models_root: str | Path) -> bytes:
    """Model ``name`` as a zip for download: ``<name>/model.keras``, ``model.tflite``, ``meta.json`` (and
    ``model_int8.tflite`` when made), whichever exist. Raises FaceCoreError for an unknown model."""
    import io
    import zipfile

    from .io import model_path, storage_errors

    info = model_info(model_path(models_root, name).name, models_root)
    files = [p for p in sorted(info.path.iterdir()) if p.is_file() and not p.name.startswith(".")]
    buf = io.BytesIO()
    with storage_errors(f"read model {name!r}"), zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in files:
            # .keras and .tflite files barely compress: storing them saves time, not space
            kind = zipfile.ZIP_DEFLATED if p.suffix == ".json" else zipfile.ZIP_STORED
            zf.write(p, f"{info.name}/{p.name}", compress_type=kind)
    return buf.getvalue()
