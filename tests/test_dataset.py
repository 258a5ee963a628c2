import io
import json
import zipfile

import numpy as np
import pytest

from facecore import Dataset, DatasetError, ImageLabel, ImageReadError, ImportRejected, Workspace
from facecore.datasets.dataset import source_of
from facecore.datasets.splits import split_items
from facecore.images import encode_jpeg
from facecore.datasets.labels import read_labelme
from facecore.testing import face_image, make_dataset


def _jpeg(w=64, h=48, seed=0):
    img, _ = face_image(np.random.default_rng(seed), w, h)
    return encode_jpeg(img)


def test_counts_and_unlabeled_is_noface(tiny_dataset):
    c = tiny_dataset.counts()
    assert (c.images, c.faces, c.no_face, c.labeled, c.unlabeled) == (16, 12, 4, 12, 4)
    tiny_dataset.set_label(tiny_dataset.items()[-1].stem, ImageLabel(160, 120))  # mark no face
    c = tiny_dataset.counts()
    assert (c.faces, c.no_face, c.labeled, c.unlabeled) == (12, 4, 13, 3)


def test_empty_dataset(tmp_path):
    ds = Dataset.create(tmp_path / "empty")
    assert ds.items() == [] and ds.counts().images == 0
    assert ds.split().sizes() == {"train": 0, "val": 0, "test": 0}
    assert ds.validate() == []


def test_open_missing_dataset_is_clear(tmp_path):
    with pytest.raises(DatasetError, match="not a dataset"):
        Dataset.open(tmp_path / "nope")


def test_add_image_unique_names_and_rejects_non_images(tmp_path):
    ds = Dataset.create(tmp_path / "d")
    a = ds.add_image(_jpeg(), "photo.jpg")
    b = ds.add_image(_jpeg(seed=1), "photo.jpg")
    assert a.stem != b.stem and a.image.exists() and b.image.exists()
    with pytest.raises(ImageReadError, match="notes.txt"):
        ds.add_image(b"hello", "notes.txt")
    assert len(ds.items()) == 2
    assert not [p for p in ds.images_dir.iterdir() if p.name.startswith(".")], "temp file left behind"


def test_set_label_writes_pixel_box(tmp_path):
    ds = Dataset.create(tmp_path / "d")
    it = ds.add_image(_jpeg(200, 100), "x.jpg")
    ds.set_label(it.stem, ImageLabel(200, 100, [[0.1, 0.2, 0.5, 0.8]]))
    doc = json.loads((ds.labels_dir / f"{it.stem}.json").read_text())
    assert doc["shapes"][0]["points"] == [[20.0, 20.0], [100.0, 80.0]]


def test_validate_finds_problems(tiny_dataset):
    ds = tiny_dataset
    items = ds.items()
    (ds.labels_dir / "ghost.json").write_text(json.dumps({"shapes": [], "imageWidth": 5, "imageHeight": 5}))
    items[0].label.write_text("{broken")
    ds.set_label(items[1].stem, ImageLabel(160, 120, [[-0.2, 0.1, 0.5, 0.5]]))
    items[2].image.write_bytes(b"not an image")
    ds.set_label(items[3].stem, ImageLabel(320, 240, [[0.1, 0.1, 0.5, 0.5]]))
    kinds = sorted(p.kind for p in ds.validate())
    assert kinds == ["box_outside", "malformed_label", "orphan_label", "size_mismatch", "unreadable_image"]


def test_split_by_source_no_leak_and_deterministic(tiny_dataset):
    ds = tiny_dataset
    aug = Dataset.create(ds.augmented.root)
    for it in ds.items():
        for k in range(3):  # written directly, as facecore.augment does
            (aug.images_dir / f"{it.stem}__aug{k:03d}.jpg").write_bytes(it.image.read_bytes())
    s1, s2 = ds.split(seed=3), ds.split(seed=3)
    assert s1 == s2
    sources = {name: {it.source for it in s1[name]} for name in ("train", "val", "test")}
    assert not (sources["train"] & sources["val"]) and not (sources["train"] & sources["test"]) \
        and not (sources["val"] & sources["test"])
    train = ds.training_items(s1)
    assert {it.source for it in train} == sources["train"]
    assert len(train) == 4 * len(s1.train)
    assert s1 != ds.split(seed=4)


def test_split_items_keeps_sources_together():
    from facecore.datasets.dataset import Item
    from pathlib import Path
    items = [Item(f"s{i}__aug{k:03d}", Path(f"s{i}__aug{k:03d}.jpg"), None) for i in range(20) for k in range(5)]
    parts = split_items(items, (0.7, 0.15, 0.15), seed=0)
    assert {k: len(v) for k, v in parts.items()} == {"train": 70, "val": 15, "test": 15}
    owner = {}
    for name, chosen in parts.items():
        for it in chosen:
            assert owner.setdefault(it.source, name) == name


@pytest.mark.parametrize("fractions", [(0.5, 0.5), (0.7, 0.2, 0.2), (1.2, -0.1, -0.1)])
def test_split_rejects_bad_fractions(fractions):
    with pytest.raises(ValueError):
        split_items([], fractions)


def test_split_stratifies_noface(tiny_dataset):
    s = tiny_dataset.split()
    nofaces = {it.stem for it in tiny_dataset.items() if not it.labeled}
    assert sum(1 for it in s.train if it.stem in nofaces) == 3  # round(4 * 0.7)


@pytest.mark.parametrize("stem,src", [("a", "a"), ("a__aug003", "a"), ("a__aug", "a__aug"), ("x_aug1", "x_aug1")])
def test_source_of(stem, src):
    assert source_of(stem) == src


def _zip(entries: dict) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_export_import_round_trip(tiny_dataset, tmp_path):
    data = tiny_dataset.export_labelme_zip()
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        names = zf.namelist()
    assert sum(n.endswith(".json") for n in names) == 12 and sum(n.endswith(".jpg") for n in names) == 16
    dest = Dataset.create(tmp_path / "copy")
    report = dest.import_zip(data)
    assert len(report.added) == 16 and report.labeled == 12 and not report.skipped
    for a, b in zip(tiny_dataset.items(), dest.items()):
        la, lb = tiny_dataset.read_label(a), dest.read_label(b)
        assert (la is None) == (lb is None)
        if la is not None:
            np.testing.assert_allclose(la.boxes, lb.boxes, atol=1e-5)


def test_import_voc_and_tutorial_layout(tmp_path):
    voc = ("<annotation><size><width>64</width><height>48</height></size><object><name>face</name>"
           "<bndbox><xmin>32</xmin><ymin>24</ymin><xmax>6.4</xmax><ymax>4.8</ymax></bndbox></object></annotation>")
    lm = json.dumps({"shapes": [{"label": "f", "points": [[0, 0], [32, 24]], "shape_type": "rectangle"}],
                     "imagePath": "..\\images\\a.jpg", "imageWidth": 64, "imageHeight": 48, "imageData": None})
    data = _zip({"data/train/images/a.jpg": _jpeg(), "data/train/labels/a.json": lm,
                 "data/test/images/a.jpg": _jpeg(seed=2), "data/test/labels/a.xml": voc,
                 "notes.txt": "hi", "broken.jpg": b"xx"})
    ds = Dataset.create(tmp_path / "d")
    report = ds.import_zip(data)
    assert len(report.added) == 2 and report.labeled == 2
    assert {n for n, _ in report.skipped} == {"notes.txt", "broken.jpg"}
    boxes = sorted(tuple(np.round(ds.read_label(it).boxes[0], 3)) for it in ds.items())
    assert boxes == [(0.0, 0.0, 0.5, 0.5), (0.1, 0.1, 0.5, 0.5)]  # VOC corners reversed, ordered


@pytest.mark.parametrize("bad", ["../evil.jpg", "/abs/evil.jpg", "a/../../evil.jpg", "C:\\evil.jpg", "a\\..\\..\\evil.jpg"])
def test_zip_traversal_refused_and_nothing_written(tmp_path, bad):
    ds = Dataset.create(tmp_path / "d")
    ds.add_image(_jpeg(), "keep.jpg")
    with pytest.raises(ImportRejected, match="unsafe path"):
        ds.import_zip(_zip({"ok.jpg": _jpeg(), bad: _jpeg()}))
    assert [it.stem for it in ds.items()] == ["keep"]
    assert not (tmp_path / "evil.jpg").exists()


def test_zip_too_large_and_not_a_zip(tmp_path):
    ds = Dataset.create(tmp_path / "d")
    with pytest.raises(ImportRejected, match="limit"):
        ds.import_zip(_zip({"a.jpg": _jpeg(), "b.jpg": _jpeg(seed=1)}), max_total_bytes=100)
    with pytest.raises(ImportRejected, match="zip bomb"):
        ds.import_zip(_zip({"a.jpg": b"\0" * (8 * 1024**2)}))
    with pytest.raises(ImportRejected, match="not a readable .zip"):
        ds.import_zip(b"plain text")
    assert ds.items() == []


def test_import_folder(tiny_dataset, tmp_path):
    ds = Dataset.create(tmp_path / "f")
    report = ds.import_folder(tiny_dataset.root)
    assert len(report.added) == 16 and report.labeled == 12


def test_import_rescales_label_made_at_other_size(tmp_path):
    lm = json.dumps({"shapes": [{"label": "f", "points": [[10, 10], [50, 50]]}], "imageWidth": 100, "imageHeight": 100})
    ds = Dataset.create(tmp_path / "d")
    ds.import_zip(_zip({"a.jpg": _jpeg(200, 200), "a.json": lm}))
    lab = read_labelme(ds.items()[0].label)
    assert (lab.width, lab.height) == (200, 200)
    np.testing.assert_allclose(lab.boxes, [[0.1, 0.1, 0.5, 0.5]], atol=1e-6)


def test_workspace_create_and_list(tmp_path):
    ws = Workspace(tmp_path / "data", tmp_path / "models")
    make_dataset(ws.sample_root, 2, 0)
    ws.create_dataset("mine")
    assert list(ws.datasets()) == ["sample", "mine"]
    for bad in ["../x", "", "a/b", "sample", "mine"]:
        with pytest.raises(DatasetError):
            ws.create_dataset(bad)
    copy = ws.create_dataset("copy", copy_from=ws.dataset("sample"))
    assert len(copy.items()) == 2


def test_fingerprint_changes_with_labels(tiny_dataset):
    f1 = tiny_dataset.fingerprint()
    it = tiny_dataset.items()[0]
    tiny_dataset.set_label(it.stem, ImageLabel(160, 120, [[0.1, 0.1, 0.2, 0.2]]))
    assert tiny_dataset.fingerprint() != f1


@pytest.mark.skipif(not (__import__("conftest").SHARED / "steve389").is_dir(), reason="../shared datasets not present")
def test_shared_datasets_reversed_corners_are_ordered():
    from conftest import SHARED
    reversed_count = 0
    for d in sorted(SHARED.iterdir()):
        for p in (d / "labels").glob("*.json"):
            pts = json.loads(p.read_text())["shapes"][0]["points"]
            reversed_count += pts[0][0] > pts[1][0] or pts[0][1] > pts[1][1]
            lab = read_labelme(p)
            assert (lab.boxes[:, :2] <= lab.boxes[:, 2:]).all()
    assert reversed_count == 16


def test_export_ships_a_broken_label_as_is_and_the_rest(tiny_dataset):
    items = tiny_dataset.items()
    items[0].label.write_text("{broken")
    data = tiny_dataset.export_labelme_zip()
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        names = zf.namelist()
        assert zf.read(f"tiny/labels/{items[0].label.name}") == b"{broken"
    assert sum(n.endswith(".json") for n in names) == 12


def test_an_upload_named_like_an_augmented_copy_stays_an_original(tmp_path):
    ds = Dataset.create(tmp_path / "d")
    it = ds.add_image(_jpeg(), "x__aug001.jpg")
    assert it.stem == "x_aug001" and it.source == it.stem


# -- content-addressed adds, splits by content (issue 21) ---------------------------------------
def _png_of(rgb) -> bytes:
    buf = io.BytesIO()
    from PIL import Image

    Image.fromarray(rgb).save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.parametrize("how, make", [
    ("same bytes", lambda rgb, jpg: jpg),
    ("same pixels", lambda rgb, jpg: _png_of(rgb)),  # the same decoded pixels in another file format
])
def test_the_same_photo_is_never_added_twice(tmp_path, how, make):
    from facecore.datasets.contents import DuplicateImageError
    from facecore.images import decode_image

    ds = Dataset.create(tmp_path / "d")
    jpg = _jpeg(seed=3)
    first = ds.add_image(jpg, "photo.jpg")
    with pytest.raises(DuplicateImageError) as err:
        ds.add_image(make(decode_image(jpg), jpg), "other_name.png")
    assert err.value.existing == f"images/{first.image.name}" and err.value.how == how
    assert "other_name.png" in str(err.value) and first.image.name in str(err.value)
    assert len(ds.items()) == 1
    assert len(Dataset.open(ds.root).items()) == 1  # a fresh Dataset object finds it as well


def test_importing_a_zip_or_folder_twice_leaves_the_dataset_as_it_was(tmp_path, capsys):
    from facecore.__main__ import main

    src = make_dataset(tmp_path / "src", n_face=4, n_noface=2)
    ds = Dataset.create(tmp_path / "d")
    first = ds.import_folder(src.root)
    assert len(first.added) == 6 and first.duplicates == []
    again = ds.import_folder(src.root)
    assert again.added == [] and len(again.duplicates) == 6
    name, what = again.duplicates[0]
    assert name.endswith(".jpg") and "already there as images/" in what
    assert ds.import_zip(src.export_labelme_zip()).added == []
    assert len(ds.items()) == 6
    assert main(["import", str(src.root), "--data", str(ds.root)]) == 0
    out = capsys.readouterr().out
    assert "imported 0 image(s)" in out and "6 already there" in out
    assert len(ds.items()) == 6


def test_upload_and_webcam_say_the_photo_is_there(tmp_path):
    from facecore.datasets import labeling as L
    from facecore.datasets.contents import DuplicateImageError

    ds = Dataset.create(tmp_path / "d")
    jpg = _jpeg(seed=5)
    rep = L.add_files(ds, [("a.jpg", jpg), ("b.jpg", jpg)])
    assert rep.added == ["a"] and rep.duplicates == [("b.jpg", "already there as images/a.jpg (same bytes)")]
    seen: set = set()
    with pytest.raises(DuplicateImageError, match="a.jpg"):
        L.add_snapshot(ds, jpg, seen)
    assert L.add_snapshot(ds, jpg, seen) is None  # said once, not on every rerun
    assert len(ds.items()) == 1


def test_copies_share_a_split_and_conflicting_labels_are_named(tmp_path):
    ds = make_dataset(tmp_path / "d", n_face=10, n_noface=4)
    items = ds.items()
    faces = [it for it in items if it.label is not None]
    for i, it in enumerate(faces[:6]):  # copies written by hand (adds refuse them): unlabeled, i.e. no face
        (ds.images_dir / f"copy{i}.jpg").write_bytes(it.image.read_bytes())
    for seed in (0, 1, 2):
        split = ds.split(seed=seed)
        where = {it.stem: s for s in ("train", "val", "test") for it in split[s]}
        assert all(where[f"copy{i}"] == where[it.stem] for i, it in enumerate(faces[:6]))
    assert len(split.conflicts) == 6 and "copy0.jpg" in split.conflicts[0] and "no face" in split.conflicts[0]
    kinds = [p.kind for p in ds.validate()]
    assert kinds.count("duplicate_image") == 6 and kinds.count("conflicting_labels") == 6


def test_split_without_copies_is_unchanged_by_content_grouping(tiny_dataset):
    split = tiny_dataset.split(seed=4)
    by_source = split_items([it for it in tiny_dataset.items() if it.label is not None], seed=4)
    for name in ("train", "val", "test"):  # the same split as by source photo alone
        assert set(by_source[name]) == {it for it in split[name] if it.label is not None}
    assert split.conflicts == ()


def test_near_duplicates_are_flagged_not_refused(tmp_path):
    import cv2

    from facecore.images import decode_image

    ds = Dataset.create(tmp_path / "d")
    img, _ = face_image(np.random.default_rng(9), 320, 240)
    ds.add_image(encode_jpeg(img, 95), "orig.jpg")
    ds.add_image(encode_jpeg(cv2.resize(img, (160, 120), interpolation=cv2.INTER_AREA), 60), "small.jpg")
    ds.add_image(_jpeg(seed=11), "other.jpg")
    near = [p for p in ds.validate() if p.kind == "near_duplicate"]
    assert len(near) == 1 and "small.jpg" in near[0].message and "orig.jpg" in near[0].message
    assert ds.contents().near_pairs() == [("orig.jpg", "small.jpg")]
    assert decode_image(ds.item("small").image.read_bytes()).shape == (120, 160, 3)
