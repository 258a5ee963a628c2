"""Where datasets and models live: ``data/sample`` (shipped demo), ``data/workspace/<name>`` (the
user's datasets) and ``models/<name>``. Set ``FACETRACK_DATA`` / ``FACETRACK_MODELS`` to move them
(tests point them at temporary folders)."""

from __future__ import annotations

import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from .dataset import Dataset
from ..errors import DatasetError
from ..io import replace_dir, storage_errors

PROJECT_ROOT = Path(__file__).resolve().parents[2]  # facecore/datasets/workspace.py -> the project
SAMPLE_NAME = "sample"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def check_name(name: str, what: str = "dataset", example: str = "") -> str:
    """Validate a dataset, model, identity or set name (letters, digits, ``_ . -``; up to 64) and return it
    stripped; ``example`` (e.g. "'me', 'not_me'") is shown in the error. Raises DatasetError."""
    name = (name or "").strip()
    if not _NAME_RE.match(name) or name in (".", ".."):
        raise DatasetError(f"{what} name {name!r} is not allowed: use 1-64 letters, digits, '_', '.' or '-', "
                           "starting with a letter or digit" + (f" (e.g. {example})" if example else ""))
    return name


@dataclass(frozen=True)
class Workspace:
    """The data and models folders the app works in."""

    data_root: Path
    models_root: Path

    @classmethod
    def from_env(cls) -> "Workspace":
        """``$FACETRACK_DATA`` / ``$FACETRACK_MODELS``, defaulting to the project's ``data/`` and ``models/``."""
        return cls(Path(os.environ.get("FACETRACK_DATA", PROJECT_ROOT / "data")),
                   Path(os.environ.get("FACETRACK_MODELS", PROJECT_ROOT / "models")))

    @property
    def sample_root(self) -> Path:
        return self.data_root / SAMPLE_NAME

    @property
    def user_root(self) -> Path:
        return self.data_root / "workspace"

    def datasets(self) -> dict[str, Dataset]:
        """Datasets by name: ``sample`` first (if present), then the user's, sorted."""
        out: dict[str, Dataset] = {}
        if (self.sample_root / "images").is_dir():
            out[SAMPLE_NAME] = Dataset(self.sample_root)
        if self.user_root.is_dir():
            from ..io import recover_swaps

            recover_swaps(self.user_root)  # a copy killed half way: finish it, or drop its stale temp folder
            for p in sorted(self.user_root.iterdir()):
                if (p / "images").is_dir() and not p.name.startswith("."):
                    out[p.name] = Dataset(p)
        return out

    def recent_dataset(self) -> str | None:
        """The dataset a new session opens on: the user's dataset changed last (photos or labels added,
        edited or removed: its folders' times), else ``sample``; None when there is no dataset."""
        datasets = self.datasets()

        def changed(ds: Dataset) -> float:
            times = []
            for p in (ds.root, ds.root / "images", ds.root / "labels"):
                try:
                    times.append(p.stat().st_mtime)
                except OSError:
                    pass
            return max(times, default=0.0)

        own = [ds for name, ds in datasets.items() if name != SAMPLE_NAME or ds.root != self.sample_root]
        if own:
            return max(own, key=changed).name
        return next(iter(datasets), None)

    def dataset(self, name: str) -> Dataset:
        """The dataset called ``name``; raises DatasetError naming the ones that exist."""
        all_ = self.datasets()
        if name not in all_:
            raise DatasetError(f"no dataset called {name!r}; available: {', '.join(all_) or 'none'}")
        return all_[name]

    def create_dataset(self, name: str, copy_from: Dataset | None = None) -> Dataset:
        """Create an empty user dataset (or a copy of ``copy_from``); refuses existing names."""
        name = check_name(name)
        if name == SAMPLE_NAME or (self.user_root / name).exists():
            raise DatasetError(f"a dataset called {name!r} already exists; choose another name")
        from ..io import storage_errors

        with storage_errors(f"create {self.user_root}"):
            self.user_root.mkdir(parents=True, exist_ok=True)
        if copy_from is not None:
            return copy_dataset(copy_from, self.user_root / name)
        return Dataset.create(self.user_root / name)

    def _user_dataset(self, name: str) -> Path:
        """The folder of the user's dataset ``name``; refuses the shipped sample and unknown names."""
        if name == SAMPLE_NAME:
            raise DatasetError(f"{SAMPLE_NAME!r} is the shipped example and cannot be renamed or deleted; "
                               f"copy it to your workspace and change the copy")
        folder = self.user_root / check_name(name)
        if not (folder / "images").is_dir():
            raise DatasetError(f"no dataset called {name!r} in your workspace ({self.user_root})")
        return folder

    def rename_dataset(self, name: str, new_name: str) -> Dataset:
        """Rename the user's dataset ``name`` (its labels and augmented copies go along); returns it.

        Refuses the sample and a ``new_name`` already in use. Models trained on it keep the old name in
        their ``meta.json`` (it records what they were trained on).
        """
        folder = self._user_dataset(name)
        new_name = check_name(new_name)
        if new_name == name:
            return Dataset(folder)
        target = self.user_root / new_name
        if new_name == SAMPLE_NAME or target.exists():
            raise DatasetError(f"a dataset called {new_name!r} already exists; choose another name")
        with storage_errors(f"rename dataset {name!r}"):
            folder.rename(target)
        return Dataset(target)

    def delete_dataset(self, name: str) -> None:
        """Delete the user's dataset ``name`` with its photos, labels and augmented copies (never the sample).

        The folder is first renamed to a hidden name, so it leaves the dataset list at once even if
        removing its files takes a while or fails half-way.
        """
        folder = self._user_dataset(name)
        trash = self.user_root / f".{folder.name}.deleted-{uuid.uuid4().hex[:8]}"
        with storage_errors(f"delete dataset {name!r}"):
            folder.rename(trash)
        shutil.rmtree(trash, ignore_errors=True)

    def model_dir(self, name: str) -> Path:
        return self.models_root / check_name(name, "model")


def copy_dataset(src: Dataset, dest_root: str | os.PathLike) -> Dataset:
    """Copy a dataset (images and labels, not augmented copies) to a new folder, e.g. to edit the sample."""
    dest_root = Path(dest_root)
    if dest_root.exists():
        raise DatasetError(f"{dest_root}: already exists; choose another name")

    def write(tmp: Path) -> None:
        shutil.copytree(src.images_dir, tmp / "images")
        if src.labels_dir.is_dir():
            shutil.copytree(src.labels_dir, tmp / "labels")
        else:
            (tmp / "labels").mkdir()

    replace_dir(dest_root, write)
    return Dataset(dest_root)
