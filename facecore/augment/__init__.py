"""Data augmentation with albumentations, boxes included: on the fly (training) and offline copies on disk.

Boxes are facecore's: float32 normalized ``[x1, y1, x2, y2]`` (N, 4), albumentations' own
``"albumentations"`` format. Modules: ``pipeline`` (``AugmentConfig``, the albumentations pipeline,
``augment_sample``, the seed of each copy), ``offline`` (``augment_dataset``: copies of the train split
written by worker processes, resumable; ``delete_augmented``), ``copies`` (what augmentation and
``facecore.augment.mosaic`` share about copies in ``augmented/``: the report, the lock, stale-copy signatures).
The names below are the public interface.
"""

from .copies import LOCK_FILE, CopyReport, DatasetLock
from .offline import MANIFEST, AugmentReport, augment_dataset, delete_augmented
from .pipeline import LABEL_FIELD, AugmentConfig, RandomFractionCrop, augment_sample, build_augmenter, copy_seed, copy_stem, preview_samples

__all__ = ["LABEL_FIELD", "LOCK_FILE", "MANIFEST", "AugmentConfig", "AugmentReport", "CopyReport", "DatasetLock",
           "RandomFractionCrop", "augment_dataset", "augment_sample", "build_augmenter", "copy_seed", "copy_stem",
           "delete_augmented", "preview_samples"]
