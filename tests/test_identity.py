"""Identity data (crops with margin k) and the identity classifier (facecore.identity.data)."""

import json
import subprocess
import sys

import numpy as np
import pytest

from facecore import boxes as B
from facecore.errors import DatasetError, FaceCoreError
from facecore.identity.data import create_identity_set, crop_box, crop_face, list_identity_sets
from facecore.identity.compare import load_comparison
from facecore.identity.train import IdentityConfig, build_backbone, stratified_split, train_identity
from facecore.images import encode_jpeg, read_image
from facecore.identity.recognize import load_identity
from facecore.registry import list_models
from facecore.datasets.workspace import PROJECT_ROOT as ROOT
from identity_synth import PEOPLE, person_dataset, person_image


@pytest.mark.parametrize("box, k, expected", [
    # centre: a 0.2 x 0.2 box grows by 0.1 on every side (k = 0.5 doubles it)
    ([0.4, 0.4, 0.6, 0.6], 0.5, [0.3, 0.3, 0.7, 0.7]),
    ([0.4, 0.4, 0.6, 0.6], 0.0, [0.4, 0.4, 0.6, 0.6]),
    ([0.4, 0.4, 0.6, 0.6], 1.0, [0.2, 0.2, 0.8, 0.8]),
    # top-left corner: cut at 0, the far side still grows
    ([0.0, 0.05, 0.2, 0.25], 0.5, [0.0, 0.0, 0.3, 0.35]),
    # bottom-right corner: cut at 1
    ([0.9, 0.8, 1.0, 1.0], 0.5, [0.85, 0.7, 1.0, 1.0]),
    # a box larger than the image after growing: the whole image
    ([0.1, 0.1, 0.9, 0.9], 1.0, [0.0, 0.0, 1.0, 1.0]),
])
def test_crop_box_margin_and_borders(box, k, expected):
    np.testing.assert_allclose(crop_box(box, k), expected, atol=1e-6)


@pytest.mark.parametrize("box, k, shape", [
    ([0.4, 0.4, 0.6, 0.6], 0.5, (40, 80)),      # 200x100 image: 0.4 of 100 rows, 0.4 of 200 cols
    ([0.0, 0.0, 0.1, 0.2], 0.5, (30, 30)),      # top-left: rows 0..0.3, cols 0..0.15
    ([0.95, 0.9, 1.0, 1.0], 0.5, (15, 15)),     # bottom-right: rows 0.85..1, cols 0.925..1
    ([0.5, 0.5, 0.5, 0.5], 0.5, None),          # no pixels: refused
])
def test_crop_face_pixels_at_borders(box, k, shape):
    img = np.arange(100 * 200 * 3, dtype=np.uint32).reshape(100, 200, 3).astype(np.uint8)
    if shape is None:
        with pytest.raises(ValueError):
            crop_face(img, box, k)
        return
    crop = crop_face(img, box, k)
    assert crop.shape == (*shape, 3)
    x1, y1 = np.rint(B.to_pixels(crop_box(box, k), 200, 100)[0][:2]).astype(int)
    np.testing.assert_array_equal(crop[0, 0], img[y1, x1])


def test_build_from_dataset_counts_and_skips(tmp_path, tiny_dataset):
    ids = create_identity_set(tmp_path / "data", "me_not_me")
    rep = ids.build_from_dataset("me", tiny_dataset, k=0.5)
    assert rep.added == 12 and len(rep.skipped) == 4  # 12 face images, 4 without a face
    assert ids.counts() == {"me": 12}
    again = ids.build_from_dataset("me", tiny_dataset)  # idempotent: same crops are not added twice
    assert again.added == 0 and ids.counts() == {"me": 12}
    # the crop is the labeled box grown by k, so it is larger than the face and within the photo
    item = tiny_dataset.items()[0]
    label = tiny_dataset.read_label(item)
    crop = read_image(ids.images("me")[0])
    expect = crop_face(read_image(item.image), label.boxes[0], 0.5)
    assert crop.shape == expect.shape
    assert list(list_identity_sets(tmp_path / "data")) == ["me_not_me"]
    with pytest.raises(DatasetError, match="already exists"):
        create_identity_set(tmp_path / "data", "me_not_me")
    with pytest.raises(DatasetError, match="not allowed"):
        ids.add_identity("../evil")


def test_add_upload_crops_or_keeps_and_rejects_bad_files(tmp_path):
    ids = create_identity_set(tmp_path, "set")
    rng = np.random.default_rng(0)
    img, box = person_image(rng, "ann", 120, 100)

    class OneFace:  # a real detector over a known box
        name = "known"

        def detect(self, frame):
            from facecore.detect import Detection
            return [Detection(0.9, box)]

    rep = ids.add_upload("ann", encode_jpeg(img), "photo.jpg", detector=OneFace(), k=0.5)
    assert rep.added == 1
    saved = read_image(ids.images("ann")[0])
    assert saved.shape == crop_face(img, box, 0.5).shape
    assert ids.add_upload("ann", encode_jpeg(img), "photo.jpg").added == 1  # as is; name made unique
    assert [p.name for p in ids.images("ann")] == ["photo-1.jpg", "photo.jpg"]
    assert read_image(ids.images("ann")[0]).shape == img.shape
    bad = ids.add_upload("ann", b"not an image", "x.jpg")
    assert bad.added == 0 and "not a readable image" in bad.skipped[0][1]
    assert ids.counts() == {"ann": 2}


def test_load_needs_two_identities_with_two_crops(tmp_path):
    ids = create_identity_set(tmp_path, "s")
    rng = np.random.default_rng(1)
    with pytest.raises(DatasetError, match="at least two identities"):
        ids.load(32)
    ids.add_crop("a", person_image(rng, "ann")[0], "a1")
    ids.add_crop("a", person_image(rng, "ann")[0], "a2")
    ids.add_crop("b", person_image(rng, "bob")[0], "b1")
    with pytest.raises(DatasetError, match="'b' has 1 readable"):
        ids.load(32)


def test_stratified_split_keeps_every_class_in_both():
    y = np.array([0] * 10 + [1] * 3)
    tr, va = stratified_split(y, 0.2, seed=0)
    assert sorted(np.concatenate([tr, va])) == list(range(13))
    assert set(y[va]) == {0, 1} and set(y[tr]) == {0, 1}
    assert (y[va] == 0).sum() == 2 and (y[va] == 1).sum() == 1


def test_config_rejects_bad_values():
    with pytest.raises(FaceCoreError, match="unknown backbone"):
        IdentityConfig(backbone="alexnet")
    with pytest.raises(FaceCoreError, match="input size"):
        IdentityConfig(input_size=8)


def test_imagenet_offline_gives_clear_message(monkeypatch, tmp_path):
    import keras

    def offline(*a, **k):
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: None -- [Errno -3] no network")

    monkeypatch.setattr(keras.applications, "MobileNetV2", offline)
    with pytest.raises(FaceCoreError, match=r"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_128_no_top.h5"):
        build_backbone("mobilenetv2", 128, "imagenet")
    with pytest.raises(FaceCoreError, match="not found"):
        build_backbone("mobilenetv2", 128, str(tmp_path / "missing.h5"))


def test_local_weights_file_is_loaded(tmp_path):
    """The ``weights=<file>`` path (the same Keras call as "imagenet" once the file is cached)."""
    import keras

    ref = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(64, 64, 3))
    path = tmp_path / "w.weights.h5"
    ref.save_weights(path)
    base = build_backbone("mobilenetv2", 64, str(path))
    inner = base.get_layer(ref.name)
    np.testing.assert_array_equal(inner.get_weights()[0], ref.get_weights()[0])
    assert not inner.trainable


def make_people(root, n=12):
    """An identity set with ``n`` crops of each synthetic person, built from labeled photos."""
    ids = create_identity_set(root / "data", "people")
    for i, who in enumerate(PEOPLE):
        ids.build_from_dataset(who, person_dataset(root / "photos" / who, who, n=n, seed=i))
    return ids


@pytest.mark.slow
def test_training_separates_two_people_and_saves_model(tmp_path):
    ids = make_people(tmp_path)
    assert ids.counts() == {"ann": 12, "bob": 12}
    seen = []
    # vgg16: with random (weights=None) frozen weights its features still tell the two apart, while a
    # random MobileNetV2's barely do; ImageNet weights are not downloadable on CI.
    cfg = IdentityConfig(backbone="vgg16", input_size=64, weights=None, epochs=12, augment=1, patience=4)
    res = train_identity(ids, cfg, tmp_path / "models" / "who", progress=lambda p: seen.append((p.stage, p.done, p.total)))
    meta = json.loads((res.path / "meta.json").read_text())
    assert meta["kind"] == "identity" and meta["classes"] == ["ann", "bob"]
    assert meta["metrics"]["val"]["accuracy"] == 1.0
    assert meta["dataset"]["split"] == {"train": 20, "train_augmented": 40, "val": 4}
    assert "accuracy means nothing" in meta["warnings"][0]  # random features: said plainly
    assert meta["size_bytes"] > 1e6 and meta["params"] > meta["trainable_params"] > 0 and meta["latency_ms"] > 0
    assert ("epoch", 1, 12) in seen and any(s[0] == "features" for s in seen)
    assert [m.name for m in list_models(tmp_path / "models", kind="identity")] == ["who"]
    assert list_models(tmp_path / "models", kind="facetracker") == []
    assert not [p for p in (tmp_path / "models").iterdir() if p.name.startswith(".")]  # no temp folder left

    # the saved model, loaded afresh, names new photos of each person correctly
    clf = load_identity(res.path)
    rng = np.random.default_rng(99)
    for who in PEOPLE:
        crops = [crop_face(*person_image(rng, who), 0.5) for _ in range(20)]
        names = [clf.classes[i] for i in clf.predict(crops).argmax(axis=1)]
        assert names.count(who) >= 19, names

    # ... on LiteRT, from model.tflite: a process that recognizes faces never imports TensorFlow
    assert clf.backend == "tflite" and meta["tflite"]["file"] == "model.tflite" and meta["tflite"]["max_abs_diff"] <= 1e-3
    code = ("import sys, numpy as np\n"
            "from facecore.identity.recognize import load_identity\n"
            f"clf = load_identity({str(res.path)!r})\n"
            "p = clf.predict([np.full((80, 80, 3), 128, np.uint8)])\n"
            "assert p.shape == (1, 2) and clf.backend == 'tflite'\n"
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TensorFlow was imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=120)

    # retraining into the same folder replaces it atomically
    res2 = train_identity(ids, IdentityConfig(input_size=64, weights=None, epochs=1), tmp_path / "models" / "who")
    assert json.loads((res2.path / "meta.json").read_text())["config"]["epochs"] == 1
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["who"]


def test_cli_build_and_counts(tmp_path, tiny_dataset, capsys):
    from facecore.__main__ import main

    out = tmp_path / "ids"
    assert main(["identity", "build", "--data", str(out), "--identity", "me", "--from-dataset", str(tiny_dataset.root)]) == 0
    assert main(["identity", "counts", "--data", str(out)]) == 0
    assert '"me": 12' in capsys.readouterr().out
    assert main(["identity", "train", "--data", str(out), "--out", str(tmp_path / "m"), "--weights", "none"]) == 2
    assert "at least two identities" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_train_and_compare(tmp_path, capsys):
    from facecore.__main__ import main

    ids = make_people(tmp_path, n=5)
    common = ["--data", str(ids.root), "--weights", "none", "--input-size", "64", "--epochs", "2"]
    assert main(["identity", "train", *common, "--backbone", "mobilenetv2", "--out", str(tmp_path / "models" / "cli")]) == 0
    out = capsys.readouterr().out
    assert "epoch 2/2" in out and '"val_accuracy"' in out
    assert (tmp_path / "models" / "cli" / "model.keras").is_file()

    rc = main(["identity", "compare", *common, "--backbones", "mobilenetv2", "--augment", "1",
               "--out-root", str(tmp_path / "models"), "--prefix", "cmp"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "[1/2] cmp-mobilenetv2-aug0" in out and "[2/2] cmp-mobilenetv2-aug1" in out
    assert "val_accuracy" in out and "latency_ms" in out  # the printed table
    rows = load_comparison(ids)["rows"]
    assert [(r["model"], r["augment"]) for r in rows] == [("cmp-mobilenetv2-aug0", 0), ("cmp-mobilenetv2-aug1", 1)]
    for r in rows:
        assert 0 <= r["val_accuracy"] <= 1 and r["params"] > 0 and r["size_mb"] > 0 and r["latency_ms"] > 0
    assert sorted(m.name for m in list_models(tmp_path / "models", kind="identity")) == \
        ["cli", "cmp-mobilenetv2-aug0", "cmp-mobilenetv2-aug1"]


@pytest.mark.parametrize("scores,expected", [([0.9, 0.3], 0), ([0.2, 0.4], None), ([0.6, 0.7], 1), ([], None)])
def test_largest_box_ignores_weak_candidates(scores, expected):
    """Detectors report weak candidates (a trained BlazeFace from 0.02): the largest *face* is chosen."""
    from facecore.detect import Detection
    from facecore.identity.data import largest_box

    small = np.array([0.4, 0.4, 0.5, 0.5], np.float32)
    big = np.array([0.1, 0.1, 0.9, 0.9], np.float32)
    dets = [Detection(s, b) for s, b in zip(scores, (small, big))]
    got = largest_box(dets)
    assert (got is None) if expected is None else np.array_equal(got, (small, big)[expected])


# -- content-addressed crops and splits by source photo (issue 21) ------------------------------
def test_add_photos_twice_adds_the_crops_once(tmp_path):
    from facecore.identity.data import IdentitySet

    ids = IdentitySet(tmp_path / "set")
    rng = np.random.default_rng(0)
    photos = [(f"p{i}.jpg", encode_jpeg(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8))) for i in range(3)]
    assert sum(ids.add_upload("me", d, n).added for n, d in photos) == 3
    again = [ids.add_upload("me", d, n) for n, d in photos]
    assert sum(r.added for r in again) == 0 and ids.counts() == {"me": 3}
    name, why = again[0].skipped[0]
    assert name == "p0.jpg" and "already there as me/p0.jpg" in why
    other = ids.add_upload("not_me", photos[1][1], "x.jpg")  # the same photo under another identity
    assert other.added == 0 and "me/p1.jpg" in other.skipped[0][1]


def test_crops_of_one_photo_never_sit_in_train_and_val(tmp_path):
    from facecore.identity.data import IdentitySet, crop_groups
    from facecore.identity.train import stratified_split

    ids = IdentitySet(tmp_path / "set")
    rng = np.random.default_rng(1)
    for ident in ("me", "not_me"):
        for photo in range(5):
            for face in range(2):  # two faces of one dataset photo: <dataset>_<stem>_<i>
                ids.add_crop(ident, rng.integers(0, 255, (24, 24, 3), dtype=np.uint8), f"ds_{ident}{photo}_{face}")
    x, y, classes, groups = ids.load(16, with_groups=True)
    assert len(set(groups)) == 10 and groups[0] == groups[1] != groups[2]
    for seed in range(5):
        tr, va = stratified_split(y, 0.4, seed, groups)
        assert not {groups[i] for i in tr} & {groups[i] for i in va}
        assert set(y[va]) == {0, 1}
    # a re-encoded copy of a crop (a near duplicate, not refused) joins its photo's group
    from facecore.testing import face_image

    face, _ = face_image(np.random.default_rng(3), 64, 64)
    ids.add_crop("me", face, "ds_me9_0")
    (ids.root / "me" / "copy.jpg").write_bytes(encode_jpeg(read_image(ids.root / "me" / "ds_me9_0.jpg"), 60))
    names = [f"me/{p.name}" for p in ids.images("me")]
    g = dict(zip(names, crop_groups(names, ids.contents())))
    assert g["me/copy.jpg"] == g["me/ds_me9_0.jpg"] != g["me/ds_me1_0.jpg"]
