import json
import shutil

import numpy as np
import pytest

from facecore import Dataset, ImageLabel
from facecore.augment import (AugmentConfig, augment_dataset, augment_sample, build_augmenter, delete_augmented,
                              preview_samples)
from facecore.detect import draw_boxes
from facecore.errors import Cancelled
from facecore.jobs import Cancel, Job
from facecore.augment.mosaic import augment_and_mosaic
from facecore.datasets.dataset import source_of
from facecore.datasets.labels import read_label, write_voc

OFF = dict(crop_p=0.0, hflip_p=0.0, vflip_p=0.0, brightness_contrast_p=0.0, gamma_p=0.0, rgb_shift_p=0.0)


def coord_image(w: int, h: int) -> np.ndarray:
    """R = x, G = y (mod 256), B = 0: the output's pixels say where they came from."""
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = (np.arange(w) % 256)[None, :]
    img[..., 1] = (np.arange(h) % 256)[:, None]
    return img


@pytest.mark.parametrize("flip, expected", [
    ("hflip_p", [0.7, 0.2, 0.9, 0.6]),   # x -> 1 - x, corners swap
    ("vflip_p", [0.1, 0.4, 0.3, 0.8]),   # y -> 1 - y
])
def test_flip_moves_box_where_hand_computed(flip, expected):
    aug = build_augmenter(AugmentConfig(**{**OFF, flip: 1.0}))
    img, boxes = augment_sample(aug, coord_image(200, 100), np.array([[0.1, 0.2, 0.3, 0.6]], np.float32), seed=1)
    assert img.shape == (100, 200, 3)
    np.testing.assert_allclose(boxes, [expected], atol=1e-6)
    if flip == "hflip_p":
        assert img[0, 0, 0] == 199  # the right edge is now on the left


def test_crop_moves_box_where_hand_computed():
    # 200x100 image, crop 0.5 of each side -> 100x50; face at pixels x 60..100, y 20..40 (area 800).
    aug = build_augmenter(AugmentConfig(**{**OFF, "crop_p": 1.0, "crop_fraction": 0.5}))
    box = np.array([[60 / 200, 20 / 100, 100 / 200, 40 / 100]], np.float32)
    kept = dropped = 0
    for seed in range(40):
        img, out = augment_sample(aug, coord_image(200, 100), box, seed=seed)
        assert img.shape == (50, 100, 3)
        x0, y0 = int(img[0, 0, 0]), int(img[0, 0, 1])  # the crop's top-left corner in the original
        px = np.clip([60 - x0, 20 - y0, 100 - x0, 40 - y0], 0, [100, 50, 100, 50]).astype(float)
        visible = max(px[2] - px[0], 0) * max(px[3] - px[1], 0) / 800
        if visible >= 0.5:
            np.testing.assert_allclose(out, [px / [100, 50, 100, 50]], atol=1e-5)
            kept += 1
        else:
            assert out.shape == (0, 4), (seed, x0, y0, visible, out)
            dropped += 1
    assert kept and dropped  # both branches were exercised


def test_crop_that_removes_the_face_gives_no_face():
    aug = build_augmenter(AugmentConfig(crop_fraction=0.5, crop_p=1.0))
    img0 = coord_image(200, 200)
    box = np.array([[0.0, 0.0, 0.05, 0.05]], np.float32)  # 10x10 px in the top-left corner
    lost = 0
    for seed in range(20):
        img, out = augment_sample(aug, img0, box, seed=seed)
        assert out.dtype == np.float32 and out.shape[1] == 4
        lost += len(out) == 0
    assert lost >= 15


def test_no_face_stays_no_face_with_every_transform():
    cfg = AugmentConfig(rotate_p=1.0, scale_p=1.0, blur_p=1.0, noise_p=1.0)
    aug = build_augmenter(cfg)
    for seed in range(5):
        img, out = augment_sample(aug, coord_image(160, 120), np.zeros((0, 4), np.float32), seed=seed)
        assert img.dtype == np.uint8 and img.ndim == 3 and out.shape == (0, 4)


def test_same_seed_same_sample_and_flips_are_independent():
    img0 = coord_image(160, 120)
    box = np.array([[0.3, 0.3, 0.6, 0.7]], np.float32)
    a, b = build_augmenter(AugmentConfig()), build_augmenter(AugmentConfig())
    for seed in (0, 7, 123456789):
        i1, b1 = augment_sample(a, img0, box, seed=seed)
        augment_sample(a, img0, box, seed=seed + 1)  # state left behind must not matter
        i2, b2 = augment_sample(b, img0, box, seed=seed)
        i3, b3 = augment_sample(a, img0, box, seed=seed)
        assert np.array_equal(i1, i2) and np.array_equal(i1, i3)
        np.testing.assert_array_equal(b1, b2)
        np.testing.assert_array_equal(b1, b3)
    outs = {augment_sample(a, img0, box, seed=s)[0].tobytes() for s in range(6)}
    assert len(outs) > 1
    # One random stream for the whole pipeline: the two flips must not always fire together.
    flips = build_augmenter(AugmentConfig(**{**OFF, "hflip_p": 0.5, "vflip_p": 0.5}))
    both = h = 0
    for s in range(200):
        img, _ = augment_sample(flips, img0, np.zeros((0, 4), np.float32), seed=s)
        hf, vf = img[0, 0, 0] == 159, img[0, 0, 1] == 119
        h += hf
        both += hf and vf
    assert 70 < h < 130 and 25 < both < 80


def test_boxes_in_any_corner_order_and_outside_are_clipped():
    aug = build_augmenter(AugmentConfig(**OFF))
    img, out = augment_sample(aug, coord_image(100, 100), np.array([[0.5, 0.6, -0.1, 0.2]], np.float32), seed=0)
    np.testing.assert_allclose(out, [[0.0, 0.2, 0.5, 0.6]], atol=1e-6)
    with pytest.raises(ValueError):
        augment_sample(aug, np.zeros((10, 10), np.uint8), out)


@pytest.mark.parametrize("bad", [dict(hflip_p=1.5), dict(crop_fraction=0.0), dict(min_visibility=-0.1),
                                 dict(blur_limit=1), dict(gamma_p=float("nan"))])
def test_config_rejects_bad_values(bad):
    with pytest.raises(ValueError):
        AugmentConfig(**bad)


def test_config_round_trip_and_preview_helpers():
    cfg = AugmentConfig(rotate_p=0.3, crop_fraction=0.6)
    assert AugmentConfig.from_dict({**cfg.to_dict(), "unknown": 1}) == cfg
    aug = build_augmenter(cfg)
    samples = preview_samples(aug, coord_image(80, 60), np.array([[0.2, 0.2, 0.8, 0.8]], np.float32), 3, seed=2)
    assert len(samples) == 3
    drawn = draw_boxes(coord_image(80, 60), np.array([[0.0, 0.0, 0.5, 0.5]], np.float32))
    assert tuple(drawn[0, 0]) == (0, 255, 0) and tuple(drawn[59, 79]) == (79, 59, 0)


# -- offline mode ------------------------------------------------------------------------------

def _copies(ds: Dataset) -> dict[str, bytes]:
    out = {}
    for it in ds.augmented.items():
        out[it.image.name] = it.image.read_bytes()
        out[it.label.name] = it.label.read_bytes()
    return out


def test_writes_n_copies_of_train_photos_with_valid_labels(tiny_dataset):
    ds = tiny_dataset
    split = ds.split()
    calls = []
    rep = augment_dataset(ds, AugmentConfig(), per_image=3, seed=5, workers=1,
                          progress=lambda p: calls.append((p.done, p.total, p.stage)))
    assert rep.total == 3 * len(split.train) and rep.written == rep.total and not rep.failed and not rep.cancelled
    assert calls[-1] == (rep.total, rep.total, "augment")
    items = ds.augmented.items()
    assert len(items) == rep.total and ds.counts().augmented == rep.total
    assert {it.source for it in items} == {it.stem for it in split.train}
    held_out = {it.stem for it in split.val + split.test}
    assert not any(it.source in held_out for it in items)
    by_stem = {it.stem: it for it in ds.items()}
    no_face = 0
    for it in items:
        assert it.label is not None and it.label.suffix == ".json"
        lab = read_label(it.label)
        from facecore.images import read_image
        img = read_image(it.image)
        assert (lab.width, lab.height) == (img.shape[1], img.shape[0]) == (120, 90)  # 0.75 crop of 160x120
        assert ((lab.boxes >= 0) & (lab.boxes <= 1)).all()
        src = by_stem[it.source]
        if src.label is None:
            assert not lab.has_face  # no-face photos stay no-face
        no_face += not lab.has_face
    assert no_face == rep.no_face >= 3 * sum(it.label is None for it in split.train)
    assert len(ds.training_items(split)) == len(split.train) + rep.total
    assert json.loads((ds.augmented.root / "augment.json").read_text())["seed"] == 5


def test_same_seed_same_files_and_workers_do_not_matter(tiny_dataset, tmp_path):
    other = Dataset(shutil.copytree(tiny_dataset.root, tmp_path / "other"))
    augment_dataset(tiny_dataset, AugmentConfig(), per_image=2, seed=3, workers=1)
    rep = augment_dataset(other, AugmentConfig(), per_image=2, seed=3, workers=2)
    assert rep.written == rep.total and not rep.failed
    assert _copies(tiny_dataset) == _copies(other)


def test_resumes_after_interruption_and_keeps_finished_copies(tiny_dataset):
    ds = tiny_dataset
    cancel = Cancel()

    def progress(p):
        if p.done >= 6:
            cancel.cancel()

    with pytest.raises(Cancelled) as stopped:
        augment_dataset(ds, AugmentConfig(), per_image=4, seed=1, workers=1, progress=progress, cancel=cancel)
    rep = stopped.value.partial
    assert rep.cancelled and 6 <= rep.written < rep.total
    first = _copies(ds)
    mtimes = {it.image.name: it.image.stat().st_mtime_ns for it in ds.augmented.items()}
    # A copy whose image never got written (killed between label and image) is redone.
    victim = ds.augmented.items()[0]
    victim.image.unlink()
    rep2 = augment_dataset(ds, AugmentConfig(), per_image=4, seed=1, workers=1)
    assert rep2.skipped == rep.written - 1 and rep2.written == rep2.total - rep2.skipped and not rep2.cancelled
    after = _copies(ds)
    assert all(after[name] == data for name, data in first.items())  # same bytes, victim included
    assert all(p.image.stat().st_mtime_ns == mtimes[p.image.name] for p in ds.augmented.items()
               if p.image.name in mtimes and p.stem != victim.stem)
    rep3 = augment_dataset(ds, AugmentConfig(), per_image=4, seed=1, workers=1)
    assert rep3.written == 0 and rep3.skipped == rep3.total


def test_stale_copies_are_removed(tiny_dataset):
    ds = tiny_dataset
    augment_dataset(ds, AugmentConfig(), per_image=3, seed=0, workers=1)
    # fewer copies per image: k >= 2 go
    rep = augment_dataset(ds, AugmentConfig(), per_image=2, seed=0, workers=1)
    assert rep.removed == len(ds.split().train) and rep.written == 0
    assert not any(it.stem.endswith("__aug002") for it in ds.augmented.items())
    # a source leaves the dataset: its copies go
    gone = ds.split().train[0].stem
    ds.delete(gone)
    rep = augment_dataset(ds, AugmentConfig(), per_image=2, seed=0, workers=1)
    assert not any(source_of(it.stem) == gone for it in ds.augmented.items())
    assert len(ds.augmented.items()) == 2 * len(ds.split().train)
    # a relabeled source: its copies are made again
    src = ds.split().train[0]
    ds.set_label(src.stem, ImageLabel(160, 120, np.array([[0.1, 0.1, 0.4, 0.5]], np.float32)))
    rep = augment_dataset(ds, AugmentConfig(), per_image=2, seed=0, workers=1)
    assert rep.written == 2 and rep.removed == 2
    # another config or seed: everything is replaced
    rep = augment_dataset(ds, AugmentConfig(hflip_p=1.0), per_image=2, seed=0, workers=1)
    assert rep.written == rep.total and rep.removed == rep.total
    assert delete_augmented(ds) == rep.total and ds.counts().augmented == 0


def test_voc_dataset_gets_voc_labels_and_bad_image_is_reported(tiny_dataset):
    ds = tiny_dataset
    for it in ds.items():
        if it.label is not None:
            lab = read_label(it.label)
            write_voc(it.label.with_suffix(".xml"), lab, it.image.name)
            it.label.unlink()
    assert ds.label_format() == "xml"
    broken = ds.split().train[0]
    broken.image.write_bytes(b"not a jpeg")
    rep = augment_dataset(ds, AugmentConfig(), per_image=2, workers=1)
    assert [s for s, _ in rep.failed] == [broken.stem] and "not a readable image" in rep.failed[0][1]
    assert rep.written == rep.total - 2
    assert all(it.label.suffix == ".xml" for it in ds.augmented.items())


def test_empty_train_split_and_bad_count_are_clear_errors(tmp_path, tiny_dataset):
    from facecore import DatasetError
    with pytest.raises(DatasetError, match="train split is empty"):
        augment_dataset(Dataset.create(tmp_path / "empty"), per_image=2, workers=1)
    with pytest.raises(DatasetError, match="between 1 and 1000"):
        augment_dataset(tiny_dataset, per_image=0, workers=1)


def test_job_runs_in_background_and_cancels(tiny_dataset):
    def job(per_image, seed=0):
        return Job(lambda progress, cancel: augment_and_mosaic(tiny_dataset, AugmentConfig(), per_image, seed=seed,
                                                               workers=1, progress=progress, cancel=cancel))

    done = job(2).start().wait(300)
    assert done.status == "done" and done.error is None and done.result.copies.written == done.result.copies.total
    assert (done.progress.done, done.progress.total) == (done.result.copies.total,) * 2
    assert done.result.mosaics is None
    stopped = job(50, seed=9).start()
    stopped.cancel()
    stopped.wait(300)
    assert stopped.status == "cancelled" and stopped.result is None
    rep = stopped.partial.copies
    assert rep.cancelled and rep.written < rep.total and len(tiny_dataset.augmented.items()) == rep.written


def test_cli_writes_copies(tiny_dataset, capsys):
    from facecore.__main__ import main
    assert main(["augment", "--data", str(tiny_dataset.root), "--per-image", "2", "--workers", "1"]) == 0
    out = capsys.readouterr().out
    n = 2 * len(tiny_dataset.split().train)
    assert f"{n}/{n} copies" in out and f"{n} written" in out
    assert len(tiny_dataset.augmented.items()) == n
    assert main(["augment", "--data", str(tiny_dataset.root / "nope"), "--per-image", "2"]) == 2


def test_pool_cancel_stops_workers_and_leaves_only_whole_copies(tiny_dataset):
    cancel = Cancel()

    def progress(p):
        if p.done > 0:
            cancel.cancel()

    with pytest.raises(Cancelled) as stopped:
        augment_dataset(tiny_dataset, AugmentConfig(), per_image=40, workers=2, progress=progress, cancel=cancel)
    rep = stopped.value.partial
    assert rep.cancelled and 0 < rep.written < rep.total and not rep.failed
    items = tiny_dataset.augmented.items()
    assert len(items) == rep.written and all(it.label is not None for it in items)
    leftovers = [p for p in tiny_dataset.augmented.images_dir.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


@pytest.mark.parametrize("cfg", [AugmentConfig(), AugmentConfig(crop_fraction=0.4, min_visibility=0.8)])
def test_checking_boxes_once_gives_the_same_result_as_after_every_step(cfg):
    import albumentations as A
    fast = build_augmenter(cfg)
    assert not fast.processors["bboxes"].params.check_each_transform
    careful = A.Compose(fast.transforms, bbox_params=A.BboxParams(
        format="albumentations", label_fields=["class_labels"], min_visibility=cfg.min_visibility, clip=True,
        check_each_transform=True))
    img = coord_image(160, 120)
    for seed in range(150):
        for box in ([[0.3, 0.3, 0.6, 0.7]], [[0.0, 0.0, 0.2, 0.25]], [[0.7, 0.6, 1.0, 1.0]]):
            box = np.array(box, np.float32)
            i1, b1 = augment_sample(fast, img, box, seed)
            i2, b2 = augment_sample(careful, img, box, seed)
            assert np.array_equal(i1, i2) and b1.shape == b2.shape
            np.testing.assert_allclose(b1, b2, atol=1e-6)
    assert build_augmenter(AugmentConfig(rotate_p=0.5)).processors["bboxes"].params.check_each_transform
