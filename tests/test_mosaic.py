"""facecore.augment.mosaic: 2x2 mosaics (geometry, boxes moved and dropped), offline copies of the train split, job."""

import json
import os

import numpy as np
import pytest

from facecore import Dataset
from facecore.augment import AugmentConfig, augment_dataset
from facecore.datasets.dataset import source_of
from facecore.errors import DatasetError
from facecore.datasets.labels import read_label
from facecore.augment.mosaic import MOSAIC_BASE, augment_and_mosaic, make_mosaics, mosaic, mosaic_number, random_mosaic

COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)]


def solid(w, h, c):
    img = np.zeros((h, w, 3), np.uint8)
    img[:] = c
    return img


def test_cells_and_boxes_move_with_their_photo():
    images = [solid(200, 100, c) for c in COLOURS]
    boxes = [np.zeros((0, 4), np.float32), [[0.2, 0.2, 0.6, 0.8]], [[0.0, 0.0, 1.0, 1.0]],
             [[0.1, 0.1, 0.3, 0.3], [0.5, 0.5, 0.9, 0.9]]]
    img, out = mosaic(images, boxes)
    assert img.shape == (100, 200, 3)
    for (y, x), c in zip([(10, 10), (10, 190), (90, 10), (90, 190)], COLOURS):
        assert tuple(img[y, x]) == c  # top-left, top-right, bottom-left, bottom-right
    np.testing.assert_allclose(out, [[0.6, 0.1, 0.8, 0.4],  # photo 2 scaled by 1/2 into the top-right cell
                                     [0.0, 0.5, 0.5, 1.0],
                                     [0.55, 0.55, 0.65, 0.65], [0.75, 0.75, 0.95, 0.95]], atol=1e-6)
    assert out.dtype == np.float32


def test_cropped_photo_drops_boxes_mostly_outside_its_cell():
    # square photos into 100x50 cells: scaled to cover (x1) and the middle 50 rows shown
    images = [solid(100, 100, c) for c in COLOURS]
    boxes = [[[0.1, 0.0, 0.5, 0.2], [0.1, 0.2, 0.5, 0.4], [0.1, 0.2, 0.5, 0.3]], [], [], []]
    img, out = mosaic(images, boxes, size=(200, 100))
    # box 1 lies above the shown rows (dropped); box 2 keeps 15 of its 20 rows (kept, clipped);
    # box 3 keeps 5 of 10 rows: exactly the 0.5 minimum (kept); a 0.6 minimum drops it
    np.testing.assert_allclose(out, [[0.05, 0.0, 0.25, 0.15], [0.05, 0.0, 0.25, 0.05]], atol=1e-6)
    _, strict = mosaic(images, boxes, size=(200, 100), min_visibility=0.6)
    assert len(strict) == 1


def test_random_mosaic_is_reproducible_and_keeps_every_box_inside():
    rng_imgs = np.random.default_rng(0)
    images = [rng_imgs.integers(0, 255, (h, w, 3), dtype=np.uint8) for w, h in ((160, 120), (90, 160), (320, 240), (64, 64))]
    boxes = [[[0.3, 0.3, 0.6, 0.7]]] * 4
    a = random_mosaic(images, boxes, np.random.default_rng(5))
    b = random_mosaic(images, boxes, np.random.default_rng(5))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert a[0].shape == (120, 160, 3)
    assert ((a[1] >= 0) & (a[1] <= 1)).all() and (a[1][:, 2:] > a[1][:, :2]).all()
    with pytest.raises(ValueError):
        mosaic(images[:3], boxes[:3])


def test_mosaic_number():
    assert mosaic_number(f"abc__aug{MOSAIC_BASE + 7}") == 7
    assert mosaic_number("abc__aug007") is None and mosaic_number("abc") is None


def test_make_mosaics_writes_train_only_copies_and_resumes(tiny_dataset):
    ds = tiny_dataset
    split = ds.split()
    train = {it.stem for it in split.train}
    rep = make_mosaics(ds, 6, seed=1)
    assert (rep.written, rep.skipped, rep.total, rep.failed) == (6, 0, 6, [])
    copies = [it for it in ds.augmented.items() if mosaic_number(it.stem) is not None]
    assert len(copies) == 6
    manifest = json.loads((ds.augmented.root / "mosaic.json").read_text())
    faces = 0
    for it in copies:
        assert it.source in train  # named after its first photo, a train photo
        assert set(manifest[it.stem]["sources"]) <= train and len(manifest[it.stem]["sources"]) == 4
        lab = read_label(it.label)
        assert (lab.width, lab.height) == (160, 120)  # the size of a photo
        faces += len(lab.boxes)
    assert faces == rep.faces and faces > 6  # several faces per mosaic on average
    assert set(copies) <= set(ds.training_items(split))  # training picks them up as augmented copies

    again = make_mosaics(ds, 6, seed=1)
    assert (again.written, again.skipped, again.removed) == (0, 6, 0)
    fewer = make_mosaics(ds, 2, seed=1)
    assert fewer.removed == 4 and fewer.skipped == 2
    assert make_mosaics(ds, 0).removed == 2
    assert not [it for it in ds.augmented.items() if mosaic_number(it.stem) is not None]


def test_make_mosaics_redoes_one_whose_photo_changed(tiny_dataset):
    ds = tiny_dataset
    make_mosaics(ds, 4, seed=0)
    manifest = json.loads((ds.augmented.root / "mosaic.json").read_text())
    changed = manifest[next(iter(manifest))]["sources"][1]
    image = ds.item(changed).image
    st = image.stat()
    os.utime(image, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # the photo was replaced (same split)
    using = sum(changed in m["sources"] for m in manifest.values())
    rep = make_mosaics(ds, 4, seed=0)
    assert rep.written == rep.removed == using and rep.skipped == 4 - using


def test_augment_and_mosaics_live_side_by_side(tiny_dataset):
    ds = tiny_dataset
    cfg = AugmentConfig(crop_p=0.0)
    augment_dataset(ds, cfg, per_image=1, workers=1)
    n_aug = len(ds.augmented.items())
    stages = []
    run = augment_and_mosaic(ds, cfg, 1, workers=1, mosaics=3, progress=lambda p: stages.append(p.stage))
    assert stages[0] == "augment" and stages[-1] == "mosaic"
    assert run.copies.skipped == n_aug and run.mosaics.written == 3
    items = ds.augmented.items()
    assert len(items) == n_aug + 3 and {source_of(it.stem) for it in items} <= {it.stem for it in ds.split().train}
    # augmenting alone (mosaic box off) removes them: the folder matches the request
    augment_dataset(ds, cfg, per_image=1, workers=1)
    assert len(ds.augmented.items()) == n_aug


def test_too_few_train_photos(tmp_path):
    from facecore.testing import make_dataset
    ds = make_dataset(tmp_path / "small", n_face=3, n_noface=0)
    with pytest.raises(DatasetError, match="4 train-split photos"):
        make_mosaics(ds, 1)
    assert Dataset.open(ds.root).augmented.items() == []  # nothing was written


def test_augment_page_mosaic_checkbox(workspace_env):
    """Pages/2_Augment.py: the mosaic box adds mosaics after the copies, as training images."""
    import time

    from streamlit.testing.v1 import AppTest

    from conftest import ROOT
    from facecore.testing import make_dataset

    data, _ = workspace_env
    ds = make_dataset(data / "workspace" / "mine", n_face=6, n_noface=2, size=(96, 72))
    at = AppTest.from_file(str(ROOT / "pages" / "2_Augment.py"), default_timeout=120)
    at.run()
    at.sidebar.selectbox[0].select("mine")
    at.run()
    at.number_input(key="aug_per_image").set_value(1)
    at.checkbox(key="aug_mosaic").check()
    at.run()
    at.number_input(key="aug_mosaic_n").set_value(4)
    at.run()
    next(b for b in at.button if b.label == "Augment the train split").click()
    at.run()
    deadline = time.time() + 90
    while not any("Mosaics:" in s.value for s in at.success) and time.time() < deadline:
        time.sleep(0.5)
        at.run()
    assert not at.exception, at.exception
    assert any("Mosaics: 4 of 4 ready" in s.value for s in at.success), [s.value for s in at.success]
    n_train = len(ds.split().train)
    assert len(ds.augmented.items()) == n_train + 4
    assert {m.label: m.value for m in at.metric}["Training images"] == str(2 * n_train + 4)


def test_training_skips_mosaics_whose_photos_left_the_train_split(tmp_path):
    """A mosaic named after a train photo but holding a photo now in val/test is not trained on."""
    import json
    import shutil
    from pathlib import Path

    from facecore.datasets.dataset import Dataset
    from facecore.augment.mosaic import make_mosaics

    root = tmp_path / "ds"
    shutil.copytree(Path("data/sample"), root)
    ds = Dataset.open(root)
    make_mosaics(ds, 6, seed=0)
    split = ds.split()
    mosaics = [it for it in ds.training_items(split) if "__aug1000" in it.stem]
    assert len(mosaics) == 6
    manifest = root / "augmented" / "mosaic.json"
    entries = json.loads(manifest.read_text())
    victim = sorted(entries)[0]
    entries[victim]["sources"][3] = next(iter(split.test)).stem  # as if the split had changed
    manifest.write_text(json.dumps(entries))
    kept = [it.stem for it in ds.training_items(split) if "__aug1000" in it.stem]
    assert len(kept) == 5 and victim not in kept
