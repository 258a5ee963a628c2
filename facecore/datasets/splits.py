"""Train/val/test splits by source photo: every photo and all its augmented copies sit in one split, and
identical photos (the same bytes or pixels under two names) sit in one split too.

``split_dataset`` splits a dataset's original photos deterministically (face and no-face photos each get
their share); ``training_items`` adds the augmented copies of train-split photos only. ``Dataset.split``
and ``Dataset.training_items`` call these. Items are ``facecore.datasets.dataset.Item``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .checks import label_summary, labels_agree
from ..errors import LabelFormatError

SPLITS = ("train", "val", "test")
# The share of source photos in each split, in SPLITS order: the one default of training, evaluation,
# augmentation (only the train split is augmented) and the CLI.
DEFAULT_SPLIT = (0.7, 0.15, 0.15)
MOSAIC_MANIFEST = "mosaic.json"  # written by facecore.augment.mosaic beside the augmented copies


@dataclass(frozen=True)
class Split:
    """Items per split; every source photo (and all its augmented copies) sits in exactly one."""

    train: tuple["Item", ...]
    val: tuple["Item", ...]
    test: tuple["Item", ...]
    # (image file name, why) of images left out of every split: their label is broken or refused
    skipped: tuple[tuple[str, str], ...] = ()
    # copies of one photo (same bytes or pixels) whose labels disagree, one line each for people
    conflicts: tuple[str, ...] = ()

    def __getitem__(self, name: str) -> tuple["Item", ...]:
        if name not in SPLITS:
            raise KeyError(f"unknown split {name!r}; use one of {', '.join(SPLITS)}")
        return getattr(self, name)

    def sizes(self) -> dict[str, int]:
        return {s: len(self[s]) for s in SPLITS}


def split_items(items: list["Item"], fractions=DEFAULT_SPLIT, seed: int = 0, key=None) -> dict[str, list["Item"]]:
    """Split items by source photo into train/val/test with the given fractions.

    Sources are ordered by a seeded hash (so the same seed always gives the same split, on any
    machine) and cut at the rounded fractions; all items of one source go to the same split.
    ``key(item)``: the unit kept together, when it is not the source photo (e.g. a group of identical photos).
    """
    if len(fractions) != 3 or any(f < 0 for f in fractions) or not np.isclose(sum(fractions), 1.0):
        raise ValueError(f"split fractions must be three non-negative numbers adding up to 1, got {fractions}")
    by_source: dict[str, list["Item"]] = {}
    for it in items:
        by_source.setdefault(key(it) if key else it.source, []).append(it)
    order = sorted(by_source, key=lambda s: hashlib.sha256(f"{seed}:{s}".encode()).hexdigest())
    n = len(order)
    n_train = int(round(n * fractions[0]))
    n_val = int(round(n * fractions[1]))
    if n_train + n_val > n:
        n_val = n - n_train
    cuts = {"train": order[:n_train], "val": order[n_train:n_train + n_val], "test": order[n_train + n_val:]}
    return {k: [it for s in v for it in by_source[s]] for k, v in cuts.items()}


def split_dataset(ds: "Dataset", fractions: tuple[float, float, float] = DEFAULT_SPLIT, seed: int = 0) -> Split:
    """Deterministic train/val/test split of the original images, by content: identical photos (same bytes
    or pixels, ``facecore.datasets.contents``) always share a split, whatever their names.

    Face and no-face images are split separately so each split gets its share of both (a group of copies
    goes with the faces when any copy has one). Labels are read with the label rule (``Dataset.read_label``);
    the ones it refuses are left out (``skipped``), and copies whose labels disagree are named in ``conflicts``.
    Offline-augmented copies are not in it: see ``training_items``.
    """
    items = ds.items()
    groups = ds.contents().groups()
    unit = {it.stem: Path(groups.get(it.image.name, it.image.name)).stem for it in items}
    labels, skipped = {}, []
    for it in items:
        try:
            labels[it.stem] = ds.read_label(it)
        except LabelFormatError as exc:
            # a broken label must not reach training; the caller says so (training warnings)
            skipped.append((it.image.name, str(exc)))
    kept = [it for it in items if it.stem in labels]
    face_units = {unit[it.stem] for it in kept if labels[it.stem] is not None and labels[it.stem].has_face}
    strata: dict[bool, list["Item"]] = {True: [], False: []}
    for it in kept:
        strata[unit[it.stem] in face_units].append(it)
    parts = {s: [] for s in SPLITS}
    for group in strata.values():
        for name, chosen in split_items(group, fractions, seed, key=lambda it: unit[it.stem]).items():
            parts[name].extend(chosen)
    return Split(*(tuple(sorted(parts[s], key=lambda i: i.stem)) for s in SPLITS), skipped=tuple(skipped),
                 conflicts=_conflicts(kept, unit, labels))


def _conflicts(items, unit: dict, labels: dict) -> tuple[str, ...]:
    """One line per copy of a photo whose label means something else to training than its first copy's."""
    first: dict[str, "Item"] = {}
    out = []
    for it in items:
        head = first.setdefault(unit[it.stem], it)
        if head is not it and not labels_agree(labels[head.stem], labels[it.stem]):
            out.append(f"{it.image.name} and {head.image.name} are the same photo with different labels "
                       f"({label_summary(labels[it.stem])} vs {label_summary(labels[head.stem])}; unlabeled counts "
                       "as no face): both sit in one split; fix one label or delete the copy")
    return tuple(out)


def training_items(ds: "Dataset", split: Split) -> list["Item"]:
    """Training items: the train split plus augmented copies of train-split sources only; a 2x2
    mosaic (``facecore.augment.mosaic``) only when all four of its photos are in the train split, so a
    split that changed since the mosaics were made cannot leak val or test photos into training."""
    sources = {it.source for it in split.train}
    mosaics = mosaic_sources(ds)
    aug = [it for it in ds.augmented.items()
           if it.source in sources and all(s in sources for s in mosaics.get(it.stem, ()))]
    return list(split.train) + aug


def mosaic_sources(ds: "Dataset") -> dict[str, list[str]]:
    """``{mosaic stem: its four source stems}`` from ``augmented/mosaic.json`` ({} if none or unreadable)."""
    try:
        entries = json.loads((ds.augmented.root / MOSAIC_MANIFEST).read_text("utf-8"))
        return {str(k): [str(x) for x in v["sources"]] for k, v in entries.items()}
    except (OSError, ValueError, TypeError, KeyError, AttributeError, RecursionError):
        return {}
