"""Hostile command lines: every bad argument, file or path ends in a one-line message and exit
status 2, never a Python traceback; augmentation is locked per dataset and its workers die with it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from facecore.__main__ import main
from facecore.errors import BusyError

from hostile import deep_json, jpeg_bytes, png_bomb
from facecore.testing import make_dataset

ROOT = Path(__file__).resolve().parents[1]


def run(args, capsys) -> tuple[int, str]:
    try:
        rc = main([str(a) for a in args])
    except SystemExit as exc:  # argparse: usage line + message
        rc = exc.code
    out = capsys.readouterr()
    text = out.out + out.err
    assert "Traceback" not in text
    return rc, text


def test_dataset_commands_on_bad_paths(tmp_path, tiny_dataset, capsys):
    f = tmp_path / "file.txt"
    f.write_text("x")
    z = tmp_path / "a.zip"
    z.write_bytes(b"not a zip")
    cases = [
        (["import", z, "--data", f], "not a folder"),
        (["import", tmp_path / "missing.zip", "--data", tmp_path / "d"], "no such file"),
        (["import", z, "--data", tmp_path / "d"], "not a readable .zip"),
        (["export", "--data", tiny_dataset.root, "--out", tmp_path], "is a folder"),
        (["export", "--data", tiny_dataset.root, "--out", tiny_dataset.images_dir / "x.zip"], "images"),
        (["export", "--data", tiny_dataset.root, "--out", f / "x.zip"], "is a file"),
        (["info", "--data", f], "not a dataset"),
    ]
    for args, msg in cases:
        rc, text = run(args, capsys)
        assert rc == 2 and msg in text, (args, text)


def test_commands_survive_a_hostile_dataset(tmp_path, capsys):
    ds = make_dataset(tmp_path / "ds", n_face=6, n_noface=2)
    stem = ds.items()[0].stem
    ds.items()[0].label.write_bytes(deep_json())
    (ds.images_dir / "bomb.png").write_bytes(png_bomb(50_000, 50_000))
    (ds.labels_dir / f"{ds.items()[1].stem}.json").write_bytes(b"\xef\xbb\xbf" + ds.items()[1].label.read_bytes())
    rc, text = run(["info", "--data", ds.root], capsys)
    assert rc == 0
    rc, text = run(["validate", "--data", ds.root], capsys)
    assert rc == 1 and "nested" in text and "bomb.png" in text and "megapixel" in text
    assert text.count("malformed_label") == 1  # the BOM label reads fine
    rc, text = run(["export", "--data", ds.root, "--out", tmp_path / "out.zip"], capsys)
    assert rc == 0
    rc, text = run(["evaluate", "--model", "haar", "--data", ds.root, "--split", "all"], capsys)
    assert rc == 0 and stem not in text.split("skipped")[0]


@pytest.mark.parametrize("args, msg", [
    (["--threshold", "nan"], "finite"), (["--threshold", "-5"], "between 0 and 1"),
    (["--threshold", "inf"], "finite"), (["--threshold", "abc"], "not a number"),
])
def test_evaluate_threshold_is_checked(tiny_dataset, capsys, args, msg):
    rc, text = run(["evaluate", "--model", "haar", "--data", tiny_dataset.root, *args], capsys)
    assert rc == 2 and msg in text


@pytest.mark.parametrize("name", ["../elsewhere/m", "/etc", "a/../../b"])
def test_evaluate_model_name_that_is_a_path(tiny_dataset, tmp_path, capsys, name):
    rc, text = run(["evaluate", "--model", name, "--data", tiny_dataset.root, "--models", tmp_path], capsys)
    assert rc == 2 and ("not allowed" in text or "outside" in text)


# -- video -------------------------------------------------------------------------------------
def _video(path: Path, w: int, h: int, n: int = 3) -> Path:
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream("png", rate=10)
        s.width, s.height, s.pix_fmt = w, h, "rgb24"
        for _ in range(n):
            for pk in s.encode(av.VideoFrame.from_ndarray(np.full((h, w, 3), 90, np.uint8), format="rgb24")):
                c.mux(pk)
        for pk in s.encode():
            c.mux(pk)
    return path


def test_video_cli_hostile_inputs(tmp_path, capsys):
    from PIL import Image

    ok = _video(tmp_path / "ok.mov", 64, 48)
    tiny = _video(tmp_path / "tiny.mov", 1, 1)
    (tmp_path / "photo.mp4").write_bytes(jpeg_bytes())
    Image.new("RGB", (32, 32)).save(tmp_path / "anim.mp4", "GIF")
    (tmp_path / "afile").write_text("x")
    cases = [
        ([tiny, tmp_path / "o.mp4"], "too small"),
        ([tmp_path / "photo.mp4", tmp_path / "o.mp4"], "still image"),
        ([tmp_path / "anim.mp4", tmp_path / "o.mp4"], "still image"),
        ([ok, tmp_path], "is a folder"),
        ([ok, tmp_path / "afile" / "o.mp4"], "is a file"),
        ([ok, ok], "is the input"),
        ([ok, tmp_path / "o.mp4", "--every", "nan"], "finite"),
        ([ok, tmp_path / "o.mp4", "--every", "-1"], "above 0"),
        ([ok, tmp_path / "o.mp4", "--threshold", "nan"], "finite"),
        ([ok, tmp_path / "o.mp4", "--json", tmp_path], "is a folder"),
        ([ok, tmp_path / "o.mp4", "--batch", "0"], "outside"),
    ]
    for args, msg in cases:
        rc, text = run(["video", *args, "--model", "haar"], capsys)
        assert rc == 2 and msg in text, (args, text)
    assert ok.stat().st_size > 0 and not (tmp_path / "o.mp4").exists()
    rc, text = run(["video", ok, tmp_path / "o.mp4", "--model", "haar", "--every", "0"], capsys)
    assert rc == 0 and (tmp_path / "o.mp4").stat().st_size > 0


# -- augmentation ------------------------------------------------------------------------------
def test_augment_is_locked_per_dataset(tmp_path, capsys):
    from facecore.augment import LOCK_FILE, AugmentConfig, DatasetLock, augment_dataset, delete_augmented

    ds = make_dataset(tmp_path / "ds", n_face=4, n_noface=1)
    (ds.augmented.root).mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, sys, time; fh = open(sys.argv[1], 'a+b'); fcntl.flock(fh, fcntl.LOCK_EX); "
        "print('held', flush=True); time.sleep(60)"), str(ds.augmented.root / LOCK_FILE)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(BusyError, match="another augmentation"):
            augment_dataset(ds, AugmentConfig(), per_image=2, workers=1)
        with pytest.raises(BusyError):
            delete_augmented(ds)
        rc, text = run(["augment", "--data", ds.root, "--per-image", "2", "--workers", "1"], capsys)
        assert rc == 2 and "another augmentation" in text
    finally:
        holder.kill()
        holder.wait()
    rep = augment_dataset(ds, AugmentConfig(), per_image=2, workers=1)  # the lock died with its holder
    assert rep.written == rep.total > 0
    with DatasetLock(ds.augmented.root):  # and two holders in one process exclude each other too
        with pytest.raises(BusyError):
            augment_dataset(ds, AugmentConfig(), per_image=2, workers=1)


@pytest.mark.slow
def test_augment_workers_die_with_their_parent(tmp_path):
    ds = make_dataset(tmp_path / "ds", n_face=24, n_noface=4, size=(320, 240))
    script = ("import sys; from facecore.datasets.dataset import Dataset; from facecore.augment import augment_dataset;"
              "augment_dataset(Dataset.open(sys.argv[1]), per_image=200, workers=2)")
    p = subprocess.Popen([sys.executable, "-c", script, str(ds.root)], cwd=ROOT, start_new_session=True)
    imgs = ds.augmented.root / "images"
    deadline = time.time() + 120
    while time.time() < deadline and not (imgs.is_dir() and len(list(imgs.iterdir())) > 20):
        time.sleep(0.2)
    assert imgs.is_dir(), "augmentation never started"
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    time.sleep(2.5)  # the watcher polls twice a second; the kernel signal is immediate
    n1 = len(list(imgs.iterdir()))
    time.sleep(2.5)
    n2 = len(list(imgs.iterdir()))
    try:
        assert n1 == n2, f"workers kept writing after their parent died ({n1} -> {n2} files)"
    finally:
        try:
            os.killpg(p.pid, signal.SIGKILL)  # whatever is left of that session, ours alone
        except ProcessLookupError:
            pass


def test_broken_augment_manifest_means_copies_are_made_again(tmp_path):
    from facecore.augment import MANIFEST, AugmentConfig, augment_dataset

    ds = make_dataset(tmp_path / "ds", n_face=3, n_noface=1)
    first = augment_dataset(ds, AugmentConfig(), per_image=2, workers=1)
    for text in ("[" * 100_000, "[]", "not json"):
        (ds.augmented.root / MANIFEST).write_text(text)
        rep = augment_dataset(ds, AugmentConfig(), per_image=2, workers=1)
        assert rep.written == first.written and rep.removed == first.written


def test_identity_and_video_side_outputs(tmp_path, capsys):
    ok = _video(tmp_path / "ok.mov", 64, 48)
    for extra in (["--json", ok], ["--csv", tmp_path / "o.mp4"]):
        rc, text = run(["video", ok, tmp_path / "o.mp4", "--model", "haar", *extra], capsys)
        assert rc == 2 and ("input" in text or "video output" in text), text
    for args in (["--k", "nan"], ["--k", "-1"], ["--lr", "0"], ["--lr", "inf"]):
        rc, text = run(["identity", "train", "--data", tmp_path, "--out", tmp_path / "m", *args], capsys)
        assert rc == 2, text
    from facecore.identity.train import IdentityConfig

    for bad in ({"k": float("nan")}, {"learning_rate": float("nan")}, {"augment": 10**6}):
        with pytest.raises(Exception) as e:
            IdentityConfig(**bad)
        assert "out of range" in str(e.value)


def test_dataset_folder_under_a_file(tmp_path, monkeypatch, capsys):
    from facecore.datasets.workspace import Workspace

    (tmp_path / "data").write_text("a file where the data folder should be")
    ws = Workspace(tmp_path / "data", tmp_path / "models")
    with pytest.raises(Exception) as e:
        ws.create_dataset("new")
    assert "is a file" in str(e.value) or "not a folder" in str(e.value)
    assert ws.datasets() == {}


def test_stale_video_part_files_are_cleaned(tmp_path):
    from facecore.detect import HaarDetector
    from facecore.video import process_video

    ok = _video(tmp_path / "ok.mov", 64, 48)
    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    (out / f".o.{dead}-abcd1234.part.mp4").write_bytes(b"half a video")
    process_video(ok, out / "o.mp4", HaarDetector())
    assert sorted(p.name for p in out.iterdir()) == ["o.mp4"]


def test_video_output_storage_errors_blame_the_output(tmp_path, monkeypatch):
    import errno
    import tempfile

    from facecore.detect import HaarDetector
    from facecore.errors import StorageError
    from facecore.video import process_video

    ok = _video(tmp_path / "ok.mov", 64, 48)

    def erofs(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system", str(tmp_path / "ro"))

    monkeypatch.setattr(tempfile, "mkstemp", erofs)
    with pytest.raises(StorageError) as e:
        process_video(ok, tmp_path / "ro" / "o.mp4", HaarDetector())
    assert "read-only" in str(e.value) and "o.mp4" in str(e.value) and "ok.mov" not in str(e.value)


def test_augment_copy_name_too_long_is_reported_per_photo(tmp_path):
    from facecore.augment import AugmentConfig, augment_dataset

    from hostile import labelme, rect

    ds = make_dataset(tmp_path / "ds", n_face=4, n_noface=1)
    long = "L" * 240  # the photo fits in 255 bytes, "<stem>__aug000.jpg" does not
    for it in ds.items()[1:]:  # the first photo keeps its short name and is augmented
        it.image.rename(it.image.with_name(f"{long}{it.stem}{it.image.suffix}"[-250:]))
        if it.label is not None:
            it.label.rename(it.label.with_name(f"{long}{it.stem}.json"[-251:]))
    rep = augment_dataset(ds, AugmentConfig(), per_image=1, workers=1)
    assert rep.failed and all("too long" in why for _, why in rep.failed)
    assert rep.written >= 1 and all(stem.startswith("L") for stem, _ in rep.failed)  # short names went through
