"""Hostile data: image bombs and lying headers, broken labels, odd zips, storage faults.
Every case must end in a clear FaceCoreError (or correct handling), never a traceback of another
type, a hang, a memory blow-up or lost data."""

from __future__ import annotations

import json
import os
import resource
import time

import numpy as np
import pytest

from facecore import boxes as B
from facecore.datasets.dataset import Dataset
from facecore.errors import DatasetError, FaceCoreError, ImageReadError, LabelFormatError, StorageError
from facecore.images import MAX_IMAGE_PIXELS, decode_image, image_header, read_image
from facecore.io import atomic_write_text
from facecore.datasets.labels import parse_label_bytes, read_label

from hostile import (deep_json, jpeg_bytes, jpeg_lying_size, labelme, png_bomb, png_bytes, rect, zip_bytes,
                     zip_with_flags)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- images ------------------------------------------------------------------------------------
@pytest.mark.parametrize("make", [lambda: png_bomb(50_000, 50_000), lambda: png_bomb(20_000, 20_000),
                                  lambda: jpeg_lying_size(20_000, 20_000), lambda: png_bomb(100_000, 10)])
def test_bombs_refused_from_the_header_without_decoding(make):
    data = make()
    assert len(data) < 400_000
    before = _rss_mb()
    t0 = time.perf_counter()
    with pytest.raises(ImageReadError, match="limit"):
        decode_image(data, "bomb.png")
    assert time.perf_counter() - t0 < 2
    assert _rss_mb() - before < 200  # a decode would have cost GBs


def test_image_within_limits_decodes_and_header_matches():
    data = png_bytes(300, 200)
    h = image_header(data)
    assert (h.width, h.height) == (300, 200)
    assert decode_image(data).shape == (200, 300, 3)
    assert MAX_IMAGE_PIXELS >= 48_000_000  # a 48 MP phone photo still fits


@pytest.mark.parametrize("data", [b"", b"\x00" * 10, b"\x89PNG\r\n\x1a\n", b"GIF89a" + b"\x00" * 20,
                                  jpeg_bytes()[:40], b"<svg xmlns='http://www.w3.org/2000/svg'/>"])
def test_garbage_is_an_image_read_error(data):
    with pytest.raises(ImageReadError):
        decode_image(data, "x.jpg")


def test_bomb_in_a_dataset_costs_only_that_file(tmp_path):
    ds = Dataset.create(tmp_path / "ds")
    ds.add_image(png_bytes(), "good.png")
    (ds.images_dir / "bomb.png").write_bytes(png_bomb(50_000, 50_000))
    (ds.images_dir / "liar.jpg").write_bytes(jpeg_lying_size(20_000, 20_000))
    problems = {os.path.basename(p.path): p.kind for p in ds.validate()}
    assert problems == {"bomb.png": "unreadable_image", "liar.jpg": "unreadable_image"}
    with pytest.raises(ImageReadError):
        read_image(ds.images_dir / "bomb.png")
    ds.counts()  # listing never decodes
    with pytest.raises(ImageReadError):
        ds.add_image(png_bomb(50_000, 50_000), "again.png")
    assert len(ds.items()) == 3


# -- labels ------------------------------------------------------------------------------------
def test_deeply_nested_label_costs_only_that_label(tmp_path):
    ds = Dataset.create(tmp_path / "ds")
    for i in range(3):
        ds.add_image(png_bytes(value=60 * (i + 1)), f"p{i}.png")
    ds.set_label("p0", ds.label_or_noface(ds.item("p0")))
    (ds.labels_dir / "p1.json").write_bytes(deep_json())
    (ds.labels_dir / "p2.xml").write_bytes(b"<annotation>" + b"<a>" * 50_000 + b"</a>" * 50_000 + b"</annotation>")
    with pytest.raises(LabelFormatError, match="nested"):
        read_label(ds.labels_dir / "p1.json")
    with pytest.raises(LabelFormatError):
        read_label(ds.labels_dir / "p2.xml")
    kinds = sorted(p.kind for p in ds.validate())
    assert kinds == ["malformed_label", "malformed_label"]
    split = ds.split()
    assert sum(split.sizes().values()) == 1
    assert sorted(n for n, _ in split.skipped) == ["p1.png", "p2.png"]  # said, not silently dropped
    assert ds.counts().images == 3
    assert ds.export_labelme_zip()  # export still works


@pytest.mark.parametrize("doc, match", [
    (labelme([rect(1, 2, 10, 20, kind="point")]), "cannot mark a face"),
    (labelme([{"label": "f", "points": [[5, 5]], "shape_type": "point"}]), "cannot mark a face"),
    (labelme([rect(1, 2, 10, 20, kind="line")]), "cannot mark a face"),
    (json.dumps({"imageWidth": 64, "imageHeight": 48}).encode(), "shapes"),
    (labelme([{"label": "f", "points": [[True, 2], [10, 20]], "shape_type": "rectangle"}]), "not a number"),
    (labelme([{"label": "f", "points": [[False, 2], [10, 20]], "shape_type": "rectangle"}]), "not a number"),
    (labelme([{"label": "f", "points": [["3", 2], [10, 20]], "shape_type": "rectangle"}]), "not a number"),
    (labelme([rect(1e39, 2, 10, 20)]), "far outside"),
    (labelme([rect(1, 2, 10, 20)]).replace(b"10,", b"1e999,", 1), "not finite|far outside"),
    (labelme([rect(1, 2, 10, 20)]).replace(b"10,", b"NaN,", 1), "not finite"),
    (labelme([rect(1, 2, 10, 20)], w=True, h=48), "not a number"),
    (labelme([rect(1, 2, 10, 20)], w="96px", h=48), "not a number"),
    (labelme([rect(1, 2, 10, 20)], w=10**9, h=48), "limit"),
    (labelme([rect(1, 2, 10, 20)], w=0, h=48), "positive"),
    (b"\xff\xfe{\x00}\x00", "UTF-8"),
    (b"[1, 2]", "JSON object"),
    (labelme([rect(1, 1, 5, 5)] * 20_000), "limit"),
    (labelme([{"label": "f", "points": [[1, 1]] * 20_000, "shape_type": "polygon"}]), "limit"),
    (b'{"imageWidth": ' + b"1" * 5000 + b', "imageHeight": 4, "shapes": []}', "invalid JSON"),
    (labelme([rect(1, 2, 10, 20)]).replace(b"10,", b"1" * 400 + b".5,", 1), "not finite|far outside"),
])
def test_bad_labelme_is_a_label_error(doc, match):
    with pytest.raises(LabelFormatError, match=match):
        parse_label_bytes(doc, "x.json", (64, 48))


@pytest.mark.parametrize("xml, match", [
    (b"<annotation><size><width>64</width><height>48</height></size><object><bndbox><xmin>nan</xmin>"
     b"<ymin>1</ymin><xmax>3</xmax><ymax>4</ymax></bndbox></object></annotation>", "not finite"),
    (b"<annotation><size><width>1e39</width><height>48</height></size></annotation>", "far outside"),
    (b"<annotation><size><width>64</width></size></annotation>", "size"),
    (b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY e "x">]><annotation>&e;&e;</annotation>', "size"),
])
def test_bad_voc_is_a_label_error(xml, match):
    with pytest.raises(LabelFormatError, match=match):
        parse_label_bytes(xml, "x.xml")


def test_label_with_bom_circle_and_landmarks_is_read():
    doc = b"\xef\xbb\xbf" + labelme([rect(10, 10, 30, 30),
                                     {"label": "f", "points": [[40, 20], [40, 30]], "shape_type": "circle"},
                                     {"label": "eye", "points": [[15, 15]], "shape_type": "point"}])
    notes = []
    lab = parse_label_bytes(doc, "x.json", None, notes)
    assert len(lab.boxes) == 2
    np.testing.assert_allclose(lab.pixel_boxes()[1], [30, 10, 50, 30], atol=1e-4)
    assert notes and "point" in notes[0]


# -- zip import --------------------------------------------------------------------------------
def test_encrypted_and_deflate64_entries_are_skipped_with_a_reason(tmp_path):
    ds = Dataset.create(tmp_path / "ds")
    z = zip_with_flags({"good.jpg": jpeg_bytes(), "secret.jpg": jpeg_bytes(), "d64.jpg": jpeg_bytes()},
                       encrypt={"secret.jpg"}, method={"d64.jpg": 9})
    rep = ds.import_zip(z)
    assert rep.added == ["good"]
    why = dict(rep.skipped)
    assert "encrypted" in why["secret.jpg"] and "Deflate" in why["d64.jpg"]
    again = ds.import_zip(z)  # a rerun finds the good photo there already (content-addressed) ...
    assert again.added == [] and len(again.skipped) == 2  # ... and never raises
    assert again.duplicates == [("good.jpg", "already there as images/good.jpg (same bytes)")]


def test_zip_of_thousands_of_same_named_entries_is_linear(tmp_path):
    ds = Dataset.create(tmp_path / "ds")
    n = 1500
    # distinct photos (the same one would be added once: content-addressed adds)
    buf = zip_bytes({f"d{i}/x.png": png_bytes(8, 8 + i // 250, value=i % 250) for i in range(n)}, compression=0)
    t0 = time.perf_counter()
    rep = ds.import_zip(buf)
    dt = time.perf_counter() - t0
    assert len(rep.added) == n and len(set(rep.added)) == n
    assert dt < 30, f"{n} same-named entries took {dt:.1f} s"


def test_zip_label_for_other_size_and_exif_turn_are_reported(tmp_path):
    ds = Dataset.create(tmp_path / "ds")
    # stored 64x48, EXIF 6 (turn 90 clockwise): shown 48x64. Label drawn on the stored pixels,
    # around the bright right half (x 32..64, y 0..48).
    z = zip_bytes({"rot.jpg": jpeg_bytes(64, 48, orientation=6), "rot.json": labelme([rect(32, 0, 64, 48)], 64, 48),
                   "small.jpg": jpeg_bytes(64, 48), "small.json": labelme([rect(16, 12, 32, 24)], 32, 24)})
    rep = ds.import_zip(z)
    notes = dict(rep.notes)
    assert "turned" in notes["rot.json"] and "rescaled" in notes["small.json"]
    lab = ds.read_label(ds.item("rot"))
    assert (lab.width, lab.height) == (48, 64)
    img = read_image(ds.item("rot").image)
    x1, y1, x2, y2 = np.rint(lab.pixel_boxes()[0]).astype(int)
    assert img[y1:y2, x1:x2].mean() > 200  # the box still holds the bright half
    np.testing.assert_allclose(ds.read_label(ds.item("small")).pixel_boxes()[0], [32, 24, 64, 48], atol=1e-3)


def test_import_with_point_only_label_keeps_image_unlabeled(tmp_path):
    ds = Dataset.create(tmp_path / "ds")
    rep = ds.import_zip(zip_bytes({"a.jpg": jpeg_bytes(), "a.json": labelme([rect(1, 1, 5, 5, kind="point")])}))
    assert rep.added == ["a"] and rep.labeled == 0
    assert "cannot mark a face" in dict(rep.skipped)["a.json"]
    assert ds.item("a").label is None  # not a reviewed no-face photo


def test_import_into_a_file_and_export_into_a_folder_are_refused(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(DatasetError, match="not a folder"):
        Dataset.create(f)
    ds = Dataset.create(tmp_path / "ds")
    ds.add_image(png_bytes(), "a.png")
    with pytest.raises(DatasetError, match="folder"):
        ds.export_labelme_zip(tmp_path)
    with pytest.raises(DatasetError, match="images"):
        ds.export_labelme_zip(ds.images_dir / "out.zip")
    assert [it.stem for it in ds.items()] == ["a"]


# -- storage faults ----------------------------------------------------------------------------
@pytest.fixture
def read_only(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root ignores file permissions")
    made = []

    def lock(p):
        os.chmod(p, 0o555)
        made.append(p)

    yield lock
    for p in made:
        os.chmod(p, 0o755)


def test_read_only_dataset_gives_clear_messages(tmp_path, read_only):
    ds = Dataset.create(tmp_path / "ds")
    ds.add_image(png_bytes(), "a.png")
    read_only(ds.images_dir)
    read_only(ds.labels_dir)
    with pytest.raises(StorageError, match="read-only|permission"):
        ds.add_image(png_bytes(), "b.png")
    with pytest.raises(StorageError, match="label"):
        ds.set_label("a", ds.label_or_noface(ds.item("a")))
    with pytest.raises(FaceCoreError):
        ds.import_zip(zip_bytes({"c.png": png_bytes(value=8)}))
    assert [it.stem for it in ds.items()] == ["a"]


def test_read_only_simulated_as_root(tmp_path, monkeypatch):
    """The same as above where permissions cannot be taken away: the kernel's EROFS, simulated."""
    import errno
    import tempfile

    ds = Dataset.create(tmp_path / "ds")
    ds.add_image(png_bytes(), "a.png")

    def erofs(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system", str(tmp_path))

    monkeypatch.setattr(tempfile, "mkstemp", erofs)
    for call in (lambda: ds.add_image(png_bytes(value=7), "b.png"),
                 lambda: ds.set_label("a", ds.label_or_noface(ds.item("a"))),
                 lambda: ds.export_labelme_zip(tmp_path / "out.zip")):
        with pytest.raises(StorageError, match="read-only"):
            call()
    with pytest.raises(StorageError, match="read-only"):
        ds.import_zip(zip_bytes({"c.png": png_bytes(value=8)}))
    assert [it.stem for it in ds.items()] == ["a"]


def test_full_disk_and_long_names_are_storage_errors(tmp_path, monkeypatch):
    ds = Dataset.create(tmp_path / "ds")
    long_stem = "n" * 244
    (ds.images_dir / f"{long_stem}.png").write_bytes(png_bytes())
    ds.set_label(long_stem, ds.label_or_noface(ds.item(long_stem)))  # the temp name stays short
    assert ds.item(long_stem).label is not None
    too_long = "m" * 251  # the image name fits in 255 bytes, its label's does not
    (ds.images_dir / f"{too_long}.png").write_bytes(png_bytes())
    with pytest.raises(StorageError, match="too long"):
        ds.set_label(too_long, ds.label_or_noface(ds.item(too_long)))

    import errno

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(StorageError, match="disk is full"):
        atomic_write_text(tmp_path / "x.json", "{}")
    with pytest.raises(StorageError, match="disk is full"):
        ds.add_image(png_bytes(value=9), "z.png")
    assert not [p for p in ds.images_dir.iterdir() if p.name.startswith(".")]  # no temp file left


def test_stale_upload_leftovers_are_cleaned(tmp_path):
    ds = Dataset.create(tmp_path / "ds")
    ds.add_image(png_bytes(), "a.png")
    dead = _dead_pid()
    (ds.images_dir / f".upload.{dead}-abcd").write_bytes(b"x")
    (ds.labels_dir / f".a.json.{dead}-abcd.tmp").write_bytes(b"x")
    live = ds.images_dir / f".upload.{os.getpid()}-abcd"
    live.write_bytes(b"x")
    assert [it.stem for it in ds.items()] == ["a"]
    left = sorted(p.name for d in (ds.images_dir, ds.labels_dir) for p in d.iterdir() if p.name.startswith("."))
    assert left == [live.name]  # a write of a live process is not touched


def _dead_pid() -> int:
    import subprocess
    import sys

    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_boxes_stay_finite(tmp_path):
    notes = []
    lab = parse_label_bytes(labelme([rect(-1e5, 2, 1e5, 20)]), "x.json", notes=notes)
    assert np.isfinite(lab.boxes).all() and not B.outside_image(lab.boxes).any()  # clipped to the edge ...
    assert "clipped" in notes[0]  # ... and said


def test_file_names_that_are_not_utf8(tmp_path):
    ds = Dataset.create(tmp_path / "ds")
    ds.add_image(png_bytes(), "a.png")
    with open(os.path.join(os.fsencode(ds.images_dir), b"bad\xff.png"), "wb") as f:
        f.write(png_bytes())
    assert [it.stem for it in ds.items()] == ["a"]
    assert [p.kind for p in ds.validate()] == ["bad_file_name"]
    ds.fingerprint()
    ds.export_labelme_zip()
    src = tmp_path / "src"
    src.mkdir()
    with open(os.path.join(os.fsencode(src), b"x\xfe.png"), "wb") as f:
        f.write(png_bytes())
    rep = Dataset.create(tmp_path / "other").import_folder(src)
    assert len(rep.added) == 1 and rep.added[0].encode("utf-8")
    json.dumps(rep.skipped + rep.notes)


def test_import_of_the_dataset_into_itself_is_refused(tmp_path):
    ds = Dataset.create(tmp_path / "ds")
    ds.add_image(png_bytes(), "a.png")
    from facecore.errors import ImportRejected

    for src in (ds.root, ds.images_dir, tmp_path):
        with pytest.raises(ImportRejected, match="itself"):
            ds.import_folder(src)
    assert [it.stem for it in ds.items()] == ["a"]


def test_exif_turned_photo_with_raw_label_in_a_dataset_is_named(tmp_path):
    ds = Dataset.create(tmp_path / "ds")
    (ds.images_dir / "rot.jpg").write_bytes(jpeg_bytes(64, 48, orientation=6))
    (ds.labels_dir / "rot.json").write_bytes(labelme([rect(32, 0, 64, 48)], 64, 48))
    (msg,) = [p.message for p in ds.validate() if p.kind == "size_mismatch"]
    assert "EXIF" in msg and "import" in msg


@pytest.mark.parametrize("shapes, match", [
    ([rect(500, 500, 600, 600), rect(1, 1, 10, 10)], "box 1 lies wholly outside the 64x48 image"),
    ([rect(1, 1, 10, 10), rect(5, 5, 5, 20)], "box 2 has no area"),
    ([rect(-30, -30, 0, 10)], "wholly outside"),  # touching the edge from outside: no pixel of the photo
])
def test_boxes_that_cannot_be_faces_are_refused_everywhere(tmp_path, shapes, match, capsys):
    """The one label rule (facecore.datasets.labels): parsing, import, the dataset's reader, splits and the CLI agree."""
    with pytest.raises(LabelFormatError, match=match):
        parse_label_bytes(labelme(shapes), "x.json")
    ds = Dataset.create(tmp_path / "ds")
    rep = ds.import_zip(zip_bytes({"a.jpg": jpeg_bytes(), "a.json": labelme(shapes)}))
    assert rep.added == ["a"] and rep.labeled == 0 and "image imported without its label" in dict(rep.skipped)["a.json"]
    (ds.labels_dir / "a.json").write_bytes(labelme(shapes))  # written by hand: training leaves it out, and says so
    with pytest.raises(LabelFormatError, match=match):
        ds.read_label(ds.item("a"))
    split = ds.split()
    assert sum(split.sizes().values()) == 0 and match in dict(split.skipped)["a.jpg"]
    from facecore.__main__ import main

    assert main(["info", "--data", str(ds.root)]) == 0
    assert match in json.loads(capsys.readouterr().out)["left_out"]["a.jpg"]
    assert [p.kind for p in ds.validate()] == ["malformed_label"]


def test_boxes_past_the_edge_are_clipped_with_a_note(tmp_path):
    notes = []
    lab = parse_label_bytes(labelme([rect(10, 10, 500, 40)]), "x.json", notes=notes)
    np.testing.assert_allclose(lab.pixel_boxes()[0], [10, 10, 64, 40], atol=1e-4)
    assert notes == ["x.json: box 1 reached past the edge of the 64x48 image and was clipped to it"]
    ds = Dataset.create(tmp_path / "ds")
    rep = ds.import_zip(zip_bytes({"a.jpg": jpeg_bytes(), "a.json": labelme([rect(10, 10, 500, 40)])}))
    assert rep.labeled == 1 and "clipped" in dict(rep.notes)["a.json"]


@pytest.mark.parametrize("size, kept", [((128, 96), True), ((32, 24), True), ((64, 64), False), ((48, 64), False)])
def test_label_of_another_size_is_rescaled_or_refused(tmp_path, size, kept):
    """Same shape (a scaled copy): rescaled, with a note; another shape: refused, on import and on reading."""
    ds = Dataset.create(tmp_path / "ds")
    w, h = size
    doc = labelme([rect(w / 4, h / 4, w / 2, h / 2)], w, h)
    rep = ds.import_zip(zip_bytes({"a.jpg": jpeg_bytes(64, 48), "a.json": doc}))
    assert rep.labeled == int(kept)
    (ds.labels_dir / "a.json").write_bytes(doc)
    if kept:
        assert "rescaled" in dict(rep.notes)["a.json"]
        np.testing.assert_allclose(ds.read_label(ds.item("a")).pixel_boxes()[0], [16, 12, 32, 24], atol=1e-3)
        assert ds.split().skipped == ()
    else:
        assert "another shape" in dict(rep.skipped)["a.json"]
        with pytest.raises(LabelFormatError, match="another shape"):
            ds.read_label(ds.item("a"))
        assert "another shape" in dict(ds.split().skipped)["a.jpg"]


def test_duplicate_label_files_are_named(tmp_path):
    ds = Dataset.create(tmp_path / "ds")
    ds.import_zip(zip_bytes({"a.jpg": jpeg_bytes(), "a.json": labelme([rect(1, 1, 20, 20)])}))
    (ds.labels_dir / "a.xml").write_text("<annotation/>")
    assert "duplicate_label" in [p.kind for p in ds.validate()]


def test_links_to_devices_and_folders_never_read_forever(tmp_path):
    ds = Dataset.create(tmp_path / "ds")
    ds.add_image(png_bytes(), "a.png")
    os.symlink("/dev/zero", ds.labels_dir / "a.json")
    (ds.images_dir / "dir.jpg").mkdir()
    os.symlink("/dev/zero", ds.images_dir / "zero.png")
    with pytest.raises(LabelFormatError, match="regular file"):
        read_label(ds.labels_dir / "a.json")
    with pytest.raises(ImageReadError, match="regular file"):
        read_image(ds.images_dir / "zero.png")
    assert [it.stem for it in ds.items()] == ["a"]
    assert [p.kind for p in ds.validate()] == ["malformed_label"]


def test_augment_and_training_say_which_labels_they_left_out(tmp_path, capsys):
    from facecore.__main__ import main
    from facecore.testing import make_dataset

    ds = make_dataset(tmp_path / "ds", n_face=6, n_noface=2)
    bad = ds.items()[0]
    bad.label.write_bytes(labelme([rect(500, 500, 600, 600)], 160, 120))
    assert main(["augment", "--data", str(ds.root), "--per-image", "1", "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert f"left out {bad.image.name}: " in out and "wholly outside" in out
    from facecore.train.config import TrainConfig
    from facecore.train.data import read_splits

    warnings: list[str] = []
    read_splits(ds, TrainConfig(), 64, lambda *a, **k: None, warnings)
    assert any(w.startswith(f"left out {bad.image.name}: ") and "wholly outside" in w for w in warnings)
