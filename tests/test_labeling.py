"""facecore.datasets.labeling and facecore.datasets.prelabel: statuses, navigation, boxes, uploads, snapshots, proposals, thumbnails."""

import io
import json
import threading
import zipfile

import numpy as np
import pytest

from conftest import SAMPLE
from facecore import ImageLabel
from facecore import boxes as B
from facecore.datasets import labeling as L
from facecore.datasets import prelabel as P
from facecore.detect import Detection, Detector, HaarDetector
from facecore.errors import Cancelled, FaceCoreError
from facecore.jobs import Cancel
from facecore.images import encode_jpeg, read_image
from facecore.datasets.labels import read_label
from facecore.testing import face_image


class FixedDetector(Detector):
    """Proposes the same box on every image (score 0.9), or nothing when ``box`` is None."""

    name = "fixed"

    def __init__(self, box=(0.25, 0.2, 0.75, 0.8), score=0.9):
        self.box, self.score, self.calls = box, score, 0

    def detect(self, rgb):
        self.calls += 1
        if self.box is None:
            return []
        return [Detection(0.3, np.array([0, 0, 0.1, 0.1], np.float32)),
                Detection(self.score, np.array(self.box, np.float32))]


def jpeg(seed=0, w=160, h=120):
    img, _ = face_image(np.random.default_rng(seed), w, h)
    return encode_jpeg(img)


def png(seed=0, w=90, h=70):
    import cv2
    img, _ = face_image(np.random.default_rng(seed), w, h)
    ok, buf = cv2.imencode(".png", img[:, :, ::-1])
    return buf.tobytes()


# -- statuses, filters, progress ---------------------------------------------------------------
def test_statuses_filters_and_progress(tiny_dataset):
    ds = tiny_dataset
    L.mark_no_face(ds, "img012")
    (ds.labels_dir / "img013.json").write_text("{not json")
    es = L.entries(ds)
    by = {e.stem: e.status for e in es}
    assert by["img000"] == L.FACE and by["img012"] == L.NO_FACE
    assert by["img013"] == L.BROKEN and by["img014"] == L.UNLABELED
    assert L.progress(es) == (13, 16)  # a broken label is not counted as labeled
    assert [e.stem for e in L.filter_entries(es, "unlabeled")] == ["img014", "img015"]
    assert [e.stem for e in L.filter_entries(es, "no face")] == ["img012"]
    assert len(L.filter_entries(es, "labeled")) == 13 and len(L.filter_entries(es, "face")) == 12
    assert len(L.filter_entries(es, "all")) == 16 and [e.stem for e in L.filter_entries(es, "broken")] == ["img013"]
    assert "img013.json" in next(e.error for e in es if e.status == L.BROKEN)
    with pytest.raises(ValueError):
        L.filter_entries(es, "nope")


# -- navigation --------------------------------------------------------------------------------
@pytest.mark.parametrize("current,delta,expected", [
    ("b", 1, "c"), ("c", 1, "a"), ("a", -1, "c"), ("b", -1, "a"), ("gone", 1, "b")])
def test_step_wraps(current, delta, expected):
    assert L.step(["a", "b", "c"], current, delta) == expected


@pytest.mark.parametrize("current,prev_index,expected", [
    ("b", 0, "b"), ("deleted", 1, "b"), ("deleted", 9, "c"), (None, 0, "a")])
def test_resolve_current_survives_deletion_in_another_tab(current, prev_index, expected):
    assert L.resolve_current(["a", "b", "c"], current, prev_index) == expected
    assert L.resolve_current([], current, prev_index) is None


def test_next_unlabeled_wraps_and_ends(tiny_dataset):
    es = L.entries(tiny_dataset)
    assert L.next_unlabeled(es, "img000") == "img012"
    assert L.next_unlabeled(es, "img012") == "img013"
    assert L.next_unlabeled(es, "img015") == "img012"  # wraps around
    for stem in ("img012", "img013", "img014", "img015"):
        L.mark_no_face(tiny_dataset, stem)
    assert L.next_unlabeled(L.entries(tiny_dataset), "img000") is None


# -- pixel boxes and the canvas ----------------------------------------------------------------
@pytest.mark.parametrize("corners,expected", [
    ((10, 20, 50, 80), (10, 20, 50, 80)),
    ((50, 80, 10, 20), (10, 20, 50, 80)),        # dragged from the bottom-right corner
    ((-5, -5, 40, 30), (0, 0, 40, 30)),          # past the edge: clipped
    ((100, 90, 200, 300), (100, 90, 160, 120)),
])
def test_label_from_pixels(corners, expected):
    lab = L.label_from_pixels(*corners, 160, 120)
    assert (lab.width, lab.height) == (160, 120)
    np.testing.assert_allclose(lab.pixel_boxes()[0], expected, atol=1e-3)


@pytest.mark.parametrize("corners", [(10, 10, 11, 50), (10, 10, 50, 10), (200, 10, 300, 50), (0, 0, float("nan"), 5)])
def test_label_from_pixels_rejects_degenerate(corners):
    with pytest.raises(FaceCoreError):
        L.label_from_pixels(*corners, 160, 120)


@pytest.mark.parametrize("w,h", [(640, 480), (160, 120), (1920, 1080), (480, 640)])
def test_canvas_scale_fits_and_rects_round_trip(w, h):
    s = L.canvas_scale(w, h, 700, 520)
    assert w * s <= 700 + 1e-6 and h * s <= 520 + 1e-6
    box = np.array([0.2, 0.3, 0.6, 0.9], np.float32)
    rect = L.box_to_canvas_rect(box, w, h, s)
    px = L.canvas_rect_to_pixels(rect, s, w, h)
    np.testing.assert_allclose(px, B.to_pixels(box, w, h)[0], atol=0.06)


def test_display_jpeg_is_canvas_sized():
    from facecore.images import decode_image
    rgb = np.zeros((480, 640, 3), np.uint8)
    rgb[:, 320:] = (255, 0, 0)
    out = decode_image(L.display_jpeg(rgb, 320, 240))
    assert out.shape == (240, 320, 3) and out[120, 300, 0] > 200 and out[120, 10, 0] < 40


def test_canvas_rect_negative_size_and_clipping():
    # fabric reports a box dragged up-left with negative width/height; one past the edge is clipped
    assert L.canvas_rect_to_pixels({"left": 100, "top": 80, "width": -50, "height": -40}, 2.0, 640, 480) == [25, 20, 50, 40]
    assert L.canvas_rect_to_pixels({"left": -10, "top": 900, "width": 50, "height": 100}, 1.0, 640, 480) == [0, 480, 40, 480]


def test_save_pixel_box_and_no_face_write_labelme(tiny_dataset):
    ds = tiny_dataset
    item = L.save_pixel_box(ds, "img014", [12, 15, 70.5, 99])
    doc = json.loads(item.label.read_text())
    assert doc["shapes"][0]["points"] == [[12.0, 15.0], [70.5, 99.0]]
    assert (doc["imageWidth"], doc["imageHeight"]) == (160, 120) and doc["imagePath"] == "../images/img014.jpg"
    item = L.mark_no_face(ds, "img000")  # replaces a face label
    assert json.loads(item.label.read_text())["shapes"] == []
    assert L.entry(ds.item("img000")).status == L.NO_FACE


def test_save_several_boxes_and_refuse_a_bad_one(tiny_dataset):
    ds = tiny_dataset
    L.save_pixel_boxes(ds, "img012", [[10, 10, 50, 60], [150, 110, 90, 40]], (160, 120))  # any corner order
    doc = json.loads((ds.labels_dir / "img012.json").read_text())
    assert [s["points"] for s in doc["shapes"]] == [[[10, 10], [50, 60]], [[90, 40], [150, 110]]]
    with pytest.raises(FaceCoreError, match="box 2"):
        L.save_pixel_boxes(ds, "img013", [[10, 10, 50, 60], [10, 10, 11, 50]], (160, 120))
    with pytest.raises(FaceCoreError, match="No face"):
        L.save_pixel_boxes(ds, "img013", [], (160, 120))
    assert not (ds.labels_dir / "img013.json").exists()  # nothing written when a box is refused


def test_match_boxes_tells_touched_boxes_apart():
    old = [[10, 10, 50, 50], [60, 60, 100, 100], [0, 0, 5, 5]]
    # canvas order changed, box 0 moved, box 2 deleted, one new box
    new = [[60.4, 59.8, 100, 100.3], [20, 10, 60, 50], [1, 2, 30, 40]]
    assert L.match_boxes(old, new) == [1, None, None]
    assert L.match_boxes(old, old) == [0, 1, 2]
    assert L.match_boxes([[1, 1, 9, 9]], [[1, 1, 9, 9], [1, 1, 9, 9]]) == [0, None]  # each old box once
    assert L.match_boxes([], []) == []


def test_apply_canvas_keeps_untouched_boxes_and_selects_the_last_touched():
    boxes, srcs = [[10, 10, 50, 50], [60, 60, 100, 100]], ["saved", "proposal"]
    assert L.apply_canvas(boxes, srcs, 1, [[10, 10, 50, 50], [60.5, 60, 100, 100]]) is None  # the same, echoed
    drawn = L.apply_canvas(boxes, srcs, 0, [[10, 10, 50, 50], [60, 60, 100, 100], [5, 5, 9, 9]])
    assert drawn == L.CanvasEdit([[10, 10, 50, 50], [60, 60, 100, 100], [5, 5, 9, 9]],
                                 ["saved", "proposal", "drawn"], 2, False)
    moved = L.apply_canvas(boxes, srcs, 0, [[10, 10, 50, 50], [70, 60, 110, 100]])
    assert moved.srcs == ["saved", "drawn"] and moved.sel == 1 and not moved.renumber
    deleted = L.apply_canvas(boxes, srcs, 1, [[60, 60, 100, 100]])
    assert deleted == L.CanvasEdit([[60, 60, 100, 100]], ["proposal"], 0, True)
    reordered = L.apply_canvas(boxes, srcs, 1, [[60, 60, 100, 100], [10, 10, 50, 50]])
    assert reordered.srcs == ["proposal", "saved"] and reordered.renumber and reordered.sel == 1
    assert L.apply_canvas(boxes, srcs, 0, []) == L.CanvasEdit([], [], None, True)


def test_new_boxes_skips_faces_already_boxed():
    saved = [[0.1, 0.1, 0.4, 0.5]]
    proposed = [[0.12, 0.1, 0.41, 0.52], [0.6, 0.5, 0.9, 0.9]]
    assert L.new_boxes(saved, proposed) == [1]
    assert L.new_boxes([], proposed) == [0, 1]


def test_reason_names_the_file_once():
    from facecore.errors import ImageReadError
    assert L.reason(ImageReadError("broken.jpg: not a readable image"), "broken.jpg") == "not a readable image"
    assert L.reason("x/broken.jpg: bad", "broken.jpg") == "x/broken.jpg: bad"
    assert L.reason("a/b.jpg: bad", "a/b.jpg") == "bad"


def test_two_writers_never_leave_a_half_written_label(tiny_dataset):
    """Two tabs saving the same image: every read sees one whole label or the other."""
    ds = tiny_dataset
    L.save_pixel_box(ds, "img003", [10, 10, 60, 70], (160, 120))
    errors = []

    def writer(box):
        for _ in range(40):
            L.save_pixel_box(ds, "img003", box, (160, 120))

    def reader():
        for _ in range(200):
            try:
                lab = read_label(ds.labels_dir / "img003.json")
                assert tuple(np.rint(lab.pixel_boxes()[0])) in {(10, 10, 60, 70), (80, 20, 150, 110)}
            except Exception as exc:  # noqa: BLE001 - any failure is the finding
                errors.append(exc)

    threads = [threading.Thread(target=writer, args=([10, 10, 60, 70],)),
               threading.Thread(target=writer, args=([80, 20, 150, 110],)), threading.Thread(target=reader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    assert sorted(p.name for p in ds.labels_dir.iterdir() if p.name.startswith(".")) == []


# -- adding files ------------------------------------------------------------------------------
def test_add_files_images_zip_and_bad_files(tmp_path, tiny_dataset):
    ds = L.Dataset.create(tmp_path / "new")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("set/images/z1.jpg", jpeg(3))
        zf.writestr("set/labels/z1.json", json.dumps({"imageWidth": 160, "imageHeight": 120, "shapes": [
            {"label": "face", "shape_type": "rectangle", "points": [[10, 10], [60, 70]]}]}))
        zf.writestr("set/images/z2.jpg", b"garbage")
    files = [("a.jpg", jpeg(1)), ("b.png", png(2)), ("broken.jpg", b"\xff\xd8 not really"),
             ("notes.txt", b"hello"), ("a.jpg", jpeg(4)), ("set.zip", buf.getvalue()), ("bad.zip", b"PK nope")]
    report = L.add_files(ds, files)
    assert sorted(report.added) == ["a", "a_1", "b", "z1"]
    assert report.labeled == 1
    skipped = dict(report.skipped)
    assert "broken.jpg" in skipped and "not a readable image" in skipped["broken.jpg"]
    assert all(not why.startswith(name.split(": ")[-1]) for name, why in report.skipped), report.skipped  # named once
    assert skipped["set.zip: set/images/z2.jpg"].startswith("not a readable image")
    assert "notes.txt" in skipped and "unsupported" in skipped["notes.txt"]
    assert "bad.zip" in skipped and "set.zip: set/images/z2.jpg" in skipped
    assert sorted(p.name for p in ds.images_dir.iterdir()) == ["a.jpg", "a_1.jpg", "b.png", "z1.jpg"]
    np.testing.assert_allclose(read_label(ds.labels_dir / "z1.json").pixel_boxes()[0], [10, 10, 60, 70])
    assert read_image(ds.images_dir / "b.png").shape == (70, 90, 3)


def test_add_snapshot_saves_each_photo_once(tiny_dataset):
    seen = set()
    shot = jpeg(7)
    first = L.add_snapshot(tiny_dataset, shot, seen, now=0)
    assert first is not None and first.image.name.startswith("webcam_") and first.image.suffix == ".jpg"
    assert L.add_snapshot(tiny_dataset, shot, seen, now=1) is None  # a rerun with the same snapshot
    second = L.add_snapshot(tiny_dataset, jpeg(8), seen, now=0)  # same second, new photo: unique name
    assert second is not None and second.stem != first.stem
    assert len(tiny_dataset.items()) == 18
    with pytest.raises(FaceCoreError):
        L.add_snapshot(tiny_dataset, b"not a jpeg", seen)
    assert len(seen) == 2


# -- proposals ---------------------------------------------------------------------------------
def test_propose_keeps_every_face_best_first_and_handles_none():
    rgb = np.zeros((120, 160, 3), np.uint8)
    p = P.propose(FixedDetector(), rgb)
    assert p.detector == "fixed" and p.score == pytest.approx(0.9) and p.scores == pytest.approx((0.9, 0.3))
    np.testing.assert_allclose(p.boxes, [[0.25, 0.2, 0.75, 0.8], [0, 0, 0.1, 0.1]])  # both faces, best first
    np.testing.assert_allclose(p.box, [0.25, 0.2, 0.75, 0.8])
    only = P.propose(FixedDetector(), rgb, min_score=0.5)
    assert only.boxes.shape == (1, 4) and only.scores == pytest.approx((0.9,))
    assert P.propose(FixedDetector(box=None), rgb) is None
    degenerate = P.propose(FixedDetector(box=(0.5, 0.5, 0.5, 0.9)), rgb)
    assert degenerate.boxes.shape == (1, 4) and degenerate.score == pytest.approx(0.3)  # the flat box is dropped
    assert P.propose(FixedDetector(box=(0.5, 0.5, 0.5, 0.9)), rgb, min_score=0.5) is None


def test_proposal_shapes():
    one = P.Proposal(np.array([0.1, 0.1, 0.5, 0.5], np.float32), 0.8, "x")
    assert one.boxes.shape == (1, 4) and one.scores == (0.8,)
    two = P.Proposal([[0.1, 0.1, 0.5, 0.5], [0.5, 0.5, 0.9, 0.9]], [0.4, 0.7], "x")
    assert two.score == pytest.approx(0.7)
    np.testing.assert_allclose(two.box, [0.5, 0.5, 0.9, 0.9])
    with pytest.raises(ValueError):
        P.Proposal([[0.1, 0.1, 0.5, 0.5]], [0.4, 0.7], "x")


def test_haar_proposes_the_face_of_a_real_photo():
    item = sorted((SAMPLE / "images").iterdir())[0]
    lab = read_label(SAMPLE / "labels" / f"{item.stem}.json")
    p = P.propose(HaarDetector(), read_image(item))
    assert p is not None and p.detector == "haar"
    assert B.iou(p.box, lab.boxes[0])[0] > 0.4


def _cancelled_after(n: int, work):
    """Run ``work(progress, cancel)``, cancelling it once ``n`` units are done; its partial result."""
    cancel = Cancel()

    def progress(p):
        if p.done >= n:
            cancel.cancel()

    with pytest.raises(Cancelled) as stopped:
        work(progress, cancel)
    return stopped.value.partial


def test_prelabel_progress_cancel_and_never_saves(tiny_dataset):
    ds = tiny_dataset
    before = {p.name: p.read_bytes() for p in ds.labels_dir.iterdir()}
    calls = []
    res = P.prelabel(ds, FixedDetector(), progress=lambda p: calls.append((p.done, p.total, p.extra["stem"],
                                                                           p.extra["proposal"] is not None)))
    assert calls == [(1, 4, "img012", True), (2, 4, "img013", True), (3, 4, "img014", True), (4, 4, "img015", True)]
    assert sorted(res.proposals) == ["img012", "img013", "img014", "img015"] and not res.cancelled and res.done == 4
    assert {p.name: p.read_bytes() for p in ds.labels_dir.iterdir()} == before  # nothing saved

    res = _cancelled_after(2, lambda progress, cancel: P.prelabel(ds, FixedDetector(), progress=progress, cancel=cancel))
    assert res.cancelled and sorted(res.proposals) == ["img012", "img013"]

    res = P.prelabel(ds, FixedDetector(score=0.3), min_score=0.5)
    assert not res.proposals and res.no_face == ["img012", "img013", "img014", "img015"]

    res = P.prelabel(ds, FixedDetector(), stems=["img000", "missing"])
    assert list(res.proposals) == ["img000"] and res.failed[0][0] == "missing"

    L.mark_no_face(ds, "img013")  # labeled in another tab after the list was made
    res = P.prelabel(ds, FixedDetector(), stems=["img012", "img013", "img014"], skip_labeled=True)
    assert sorted(res.proposals) == ["img012", "img014"] and res.skipped == ["img013"] and res.done == 3


class BatchDetector(FixedDetector):
    def __init__(self):
        super().__init__()
        self.batches = []

    def detect_batch(self, frames):
        self.batches.append(len(frames))
        return [self.detect(f) for f in frames]


def test_prelabel_uses_detect_batch_and_still_reports_each_image(tmp_path):
    from facecore.testing import make_dataset
    ds = make_dataset(tmp_path / "many", n_face=0, n_noface=11)
    (ds.images_dir / "img005.jpg").write_bytes(b"corrupt")
    det, seen = BatchDetector(), []
    res = P.prelabel(ds, det, progress=lambda p: seen.append(p.done), batch_size=4)
    assert det.batches == [4, 3, 3]  # the corrupt img005 is reported, not sent to the model
    assert seen == list(range(1, 12)) and len(res.proposals) == 10 and res.failed[0][0] == "img005"
    det = BatchDetector()
    res = _cancelled_after(5, lambda progress, cancel: P.prelabel(ds, det, progress=progress, cancel=cancel,
                                                                  batch_size=4))
    assert res.cancelled and det.batches == [4, 3] and len(res.proposals) == 5


def test_accept_proposals_keeps_labels_saved_meanwhile(tiny_dataset):
    ds = tiny_dataset
    props = P.prelabel(ds, FixedDetector()).proposals
    L.save_pixel_box(ds, "img013", [1, 2, 30, 40])  # the other tab labeled it
    ds.delete("img015")  # ... and deleted this one
    saved, skipped = P.accept_proposals(ds, props)
    assert saved == ["img012", "img014"]
    assert [s for s, _ in skipped] == ["img013", "img015"]
    np.testing.assert_allclose(read_label(ds.labels_dir / "img013.json").pixel_boxes()[0], [1, 2, 30, 40])
    both = read_label(ds.labels_dir / "img012.json").pixel_boxes()  # every proposed face is saved
    np.testing.assert_allclose(both, [[40, 24, 120, 96], [0, 0, 16, 12]], atol=1e-3)
    item = P.accept_proposal(ds, "img013", props["img013"])  # one explicit accept overwrites
    np.testing.assert_allclose(read_label(item.label).boxes[0], [0.25, 0.2, 0.75, 0.8], atol=1e-6)


# -- drawing -----------------------------------------------------------------------------------
def test_thumbnail_draws_saved_boxes_and_proposals(tiny_dataset):
    ds = tiny_dataset
    L.save_pixel_box(ds, "img000", [20, 20, 140, 100])
    e = L.entry(ds.item("img000"))
    th = L.thumbnail(e, size=80)
    assert th.shape == (60, 80, 3)
    green = (th[:, :, 1] > 180) & (th[:, :, 0] < 60) & (th[:, :, 2] < 60)
    assert green[10, 10:70].sum() > 40  # the top edge of the box, scaled by 1/2
    prop = P.Proposal([[0.1, 0.1, 0.4, 0.45], [0.6, 0.5, 0.9, 0.95]], [0.8, 0.6], "fixed")
    th = L.thumbnail(L.entry(ds.item("img014")), size=160, proposal=prop)
    orange = (th[:, :, 0] > 230) & (np.abs(th[:, :, 1].astype(int) - 140) < 30) & (th[:, :, 2] < 40)
    assert orange[:, :80].sum() > 60 and orange[:, 80:].sum() > 60  # both proposed faces are drawn
    raw = read_image(ds.item("img014").image)
    assert not np.array_equal(L.draw_label(raw, None, None, L.UNLABELED), raw)  # "unlabeled" is written on it
    lab = ImageLabel(160, 120)
    assert L.draw_label(raw, lab, None, L.FACE) is not raw
