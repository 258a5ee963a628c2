"""Training data: the dataset's splits read once and resized as inference resizes them (``Samples``),
and the tf.data pipelines that feed them to Keras."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .. import boxes as B
from ..datasets.dataset import Dataset, Item
from ..errors import Cancelled, DatasetError, ImageReadError, LabelFormatError
from ..images import read_image
from ..jobs import Cancel
from ..datasets.labels import read_label
from ..preprocess import resize_for_model
from .config import STOPPED, TrainConfig

# Threads that decode images for training (bounded: each holds a full-size photo while it works).
LOAD_THREADS = max(1, min(4, os.cpu_count() or 1))


@dataclass
class Samples:
    """Decoded, resized samples: ``images`` uint8 (N, S, S, 3); ``has_face`` float32 (N, 1);
    ``boxes`` float32 (N, 4) (the largest face; zeros for no face); ``all_boxes`` every face per
    sample (for on-the-fly augmentation, which reads ``paths`` again at full size)."""

    stems: list[str]
    paths: list[Path]
    images: np.ndarray
    has_face: np.ndarray
    boxes: np.ndarray
    all_boxes: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.stems)

    @property
    def n_face(self) -> int:
        return int(self.has_face.sum())


def primary_box(boxes: np.ndarray) -> np.ndarray:
    """The largest of ``boxes`` (N, 4) normalized, as (4,); the model predicts one face per image."""
    b = np.asarray(boxes, np.float32).reshape(-1, 4)
    areas = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    return b[int(np.argmax(areas))]


def label_boxes(item: Item) -> np.ndarray:
    """The valid face boxes of ``item``'s label, clipped to the image: float32 (N, 4) normalized."""
    if item.label is None:
        return np.zeros((0, 4), np.float32)
    # a box drawn past the edge is clipped: the sigmoid box head cannot reach targets outside 0..1
    boxes = B.clip(read_label(item.label).boxes)
    return boxes[B.is_valid(boxes)]


def load_samples(items, size: int, warnings: list[str] | None = None,
                 on_item: Callable[[int, int], None] | None = None,
                 cancel: Cancel | None = None) -> Samples:
    """Read and resize ``items``; unreadable images and malformed labels are skipped with a warning.

    Images are decoded on a few threads (OpenCV releases the GIL while decoding and resizing), in order.
    """
    from concurrent.futures import ThreadPoolExecutor

    stems, paths, imgs, cls, boxes, all_boxes = [], [], [], [], [], []
    items = list(items)

    def read(it: Item):
        if cancel is not None and cancel.cancelled:
            return None
        try:
            return label_boxes(it), resize_for_model(read_image(it.image), size).astype(np.uint8)
        except (ImageReadError, LabelFormatError) as exc:
            return exc

    with ThreadPoolExecutor(max_workers=LOAD_THREADS, thread_name_prefix="facecore-read") as pool:
        results = pool.map(read, items)
        for i, (it, got) in enumerate(zip(items, results)):
            if got is None or (cancel is not None and cancel.cancelled):
                raise Cancelled(STOPPED)
            if isinstance(got, Exception):
                if warnings is not None:
                    warnings.append(f"skipped {it.image.name}: {got}")
                continue
            b, img = got
            stems.append(it.stem)
            paths.append(it.image)
            imgs.append(img)
            face = len(b) > 0
            cls.append([1.0 if face else 0.0])
            boxes.append(primary_box(b) if face else np.zeros(4, np.float32))
            all_boxes.append(b)
            if on_item is not None:
                on_item(i + 1, len(items))
    n = len(stems)
    return Samples(stems, paths, np.stack(imgs) if n else np.zeros((0, size, size, 3), np.uint8),
                   np.asarray(cls, np.float32).reshape(n, 1), np.asarray(boxes, np.float32).reshape(n, 4),
                   all_boxes)


def read_splits(dataset: Dataset, config: TrainConfig, size: int, emit: Callable, warnings: list[str],
                cancel: Cancel | None = None) -> tuple:
    """Split ``dataset`` by source photo and read every photo at ``size`` (the train split with its
    offline copies when ``config.augmentation == "offline"``); returns ``(split, train, val, test)``
    ``Samples``. Reports "loading" progress through ``emit``; raises DatasetError when the train split
    cannot train a model (fewer than 2 photos, or no labeled face)."""
    emit("loading", 0.0, "splitting the dataset")
    split = dataset.split(config.split, config.seed)
    warnings.extend(f"left out {name}: {why}" for name, why in split.skipped)
    warnings.extend(split.conflicts)  # copies of one photo whose labels disagree
    train_items = dataset.training_items(split) if config.augmentation == "offline" else list(split.train)
    if config.augmentation == "offline" and len(train_items) == len(split.train):
        warnings.append("augmentation 'offline' but the dataset has no augmented copies of its train split "
                        "(make them on the Augment page); trained on the original photos only")
    n_all = len(train_items) + len(split.val) + len(split.test)
    done = [0]

    def on_item(i, n):
        done[0] += 1
        if done[0] % 8 == 0 or done[0] == n_all:
            emit("loading", done[0] / max(n_all, 1), f"reading images {done[0]}/{n_all}")

    train_s = load_samples(train_items, size, warnings, on_item, cancel)
    val_s = load_samples(split.val, size, warnings, on_item, cancel)
    test_s = load_samples(split.test, size, warnings, on_item, cancel)
    if len(train_s) < 2:
        raise DatasetError(f"{dataset.name}: the train split has {len(train_s)} usable image(s); training needs "
                           f"at least 2 (better: dozens of labeled faces). Add and label photos first.")
    if train_s.n_face == 0:
        raise DatasetError(f"{dataset.name}: no image in the train split has a labeled face; label some faces "
                           f"on the Collect & Label page first")
    return split, train_s, val_s, test_s


# -- tf.data pipelines -----------------------------------------------------------------------------
def _labels(s: Samples):
    return s.has_face, s.boxes


def array_dataset(x, s: Samples, batch: int, shuffle: bool, seed: int):
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((x, _labels(s)))
    if shuffle:
        ds = ds.shuffle(len(s), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch)
    if x.dtype == np.uint8:
        ds = ds.map(lambda a, y: (tf.cast(a, tf.float32), y))
    return ds.prefetch(2)


def on_the_fly_dataset(s: Samples, size: int, batch: int, seed: int, aug_config):
    """A fresh augmentation of every training image in every epoch (albumentations in tf.numpy_function).

    Augmentation works on the full-size photo (crops are fractions of it), then resizes; a crop that
    loses the face turns the sample into a no-face sample, as in the tutorials.
    """
    import tensorflow as tf

    from ..augment import augment_sample, build_augmenter

    augmenter = build_augmenter(aug_config)
    rng = np.random.default_rng(seed)
    seed_lock = threading.Lock()

    def load(i):
        i = int(i)
        with seed_lock:
            sample_seed = int(rng.integers(0, 2**31 - 1))
        try:
            rgb = read_image(s.paths[i])
        except ImageReadError:  # deleted since loading: fall back to the resized copy, unaugmented
            return s.images[i].astype(np.float32), s.has_face[i], s.boxes[i]
        img, b = augment_sample(augmenter, rgb, s.all_boxes[i], seed=sample_seed)
        x = resize_for_model(img, size)
        if len(b):
            return x, np.ones(1, np.float32), primary_box(b)
        return x, np.zeros(1, np.float32), np.zeros(4, np.float32)

    def tf_load(i):
        x, c, b = tf.numpy_function(load, [i], [tf.float32, tf.float32, tf.float32])
        x.set_shape((size, size, 3))
        c.set_shape((1,))
        b.set_shape((4,))
        return x, (c, b)

    ds = tf.data.Dataset.range(len(s)).shuffle(len(s), seed=seed, reshuffle_each_iteration=True)
    return ds.map(tf_load, num_parallel_calls=2).batch(batch).prefetch(2)
