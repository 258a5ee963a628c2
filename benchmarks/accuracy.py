"""Accuracy on people the model never saw: leave-one-person-out over ../shared/datasets.

For each of the six people: train on the other five (their photos pooled, split 70/15/15 by photo for
early stopping), test on every photo of the sixth. Rows: Haar; built-in BlazeFace raw, with its built-in box
style (fitted on data/sample) and with a style fitted on the five training people; YuNet (OpenCV model zoo, ../shared/models/yunet: a peer
only, never shipped) raw and box-corrected the same way; the tutorials' FaceTracker from scratch
(tinycnn); BlazeFace fine-tuned (box heads only: the default, and with the photo-shaped input; detection
heads; every layer).
Second table (``--personal``): train on 10 labeled photos of one person, test on the rest of theirs.
``--mosaic`` adds, per row, AP50 over every face of 2x2 mosaics of the held-out person's photos
(``facecore.augment.mosaic.mosaic``, 640x480: four faces at half size), scored by ``facecore.evaluate.every_face``.

    python -m benchmarks.accuracy                       # LOPO table (about 15-25 min on 2 cores)
    python -m benchmarks.accuracy --rows blazeface-ft --people usupal,mkhoa
    python -m benchmarks.accuracy --personal            # personalization table

Prints markdown tables: AP50, AP30, mean IoU, false-positive rate on no-face photos, ms per 640x480
frame, training seconds; the mean over people and the worst person.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from facecore import boxes as B
from facecore.blazeface.builtin import DEFAULT_STYLE, BlazeFaceDetector, BoxStyle, style_pairs
from facecore.datasets.dataset import Dataset
from facecore.detect import Detection, HaarDetector
from facecore.evaluate.metrics import EvalImage, collect_images, compute_metrics
from facecore.evaluate.every_face import all_faces_metrics
from facecore.images import read_image
from facecore.train import model_defaults

ROOT = Path(__file__).resolve().parents[1]

SHARED = ROOT.parent / "shared"
PEOPLE = ("usupal", "mkhoa", "soncio", "sabhishek", "steve389", "amirtav")
ALL_ROWS = ("haar", "blazeface-raw", "blazeface", "blazeface-style", "yunet-raw", "yunet-style", "tinycnn",
            "blazeface-ft-box", "blazeface-ft-frame", "blazeface-ft-close", "blazeface-ft-heads", "blazeface-ft")


class YuNet:
    """OpenCV's YuNet as a benchmark peer (Detector interface)."""

    name = "yunet"

    def __init__(self, style: BoxStyle | None = None):
        import cv2

        path = SHARED / "models/yunet/face_detection_yunet_2023mar.onnx"
        # score threshold 0.05, not its default 0.9: low-scoring faces still count toward AP and IoU (its best setting)
        self.det = cv2.FaceDetectorYN.create(str(path), "", (320, 320), 0.05, 0.3, 50)
        self.style = style or BoxStyle()

    def detect(self, rgb):
        import cv2

        h, w = rgb.shape[:2]
        self.det.setInputSize((w, h))
        _, faces = self.det.detect(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        if faces is None:
            return []
        px = np.asarray([[f[0], f[1], f[0] + f[2], f[1] + f[3]] for f in faces], np.float32)
        boxes = self.style.apply(B.clip(B.from_pixels(px, w, h)))
        return sorted((Detection(float(f[14]), b) for f, b in zip(faces, boxes)), key=lambda d: -d.score)


def load_person(name: str) -> list[tuple[EvalImage, np.ndarray]]:
    images, _ = collect_images(SHARED / "datasets" / name, split="all")
    return [(im, read_image(im.path)) for im in images]


def run_detector(det, data) -> dict:
    scores, preds, truth, ms = [], [], [], []
    for im, rgb in data:
        t = time.perf_counter()
        dets = det.detect(rgb)
        ms.append((time.perf_counter() - t) * 1000)
        best = max(dets, key=lambda d: d.score) if dets else None
        scores.append(best.score if best else 0.0)
        preds.append(None if best is None else np.asarray(best.box, np.float32))
        truth.append(im.boxes)
    m = compute_metrics(truth, scores, preds)
    m["ms"] = float(np.median(ms))
    m["raw"] = (truth, scores, preds)  # for the pooled figure over every person's photos
    return m


def make_mosaics(data) -> list[tuple[np.ndarray, np.ndarray]]:
    """2x2 mosaics (640x480) of consecutive groups of four photos, with every face's box."""
    from facecore.augment.mosaic import mosaic

    out = []
    for i in range(0, len(data) - 3, 4):
        group = data[i:i + 4]
        out.append(mosaic([rgb for _, rgb in group], [im.boxes for im, _ in group], size=(640, 480)))
    return out


def run_all_faces(det, mosaics) -> dict:
    t = time.perf_counter()
    dets = [det.detect(img) for img, _ in mosaics]
    m = all_faces_metrics([b for _, b in mosaics], dets)
    m["ms"] = (time.perf_counter() - t) / max(len(mosaics), 1) * 1000
    return m


def fit_style(det, data) -> BoxStyle:
    """Box style of ``det`` (returning raw boxes) fitted on labeled faces of ``data``."""
    d, g = [], []
    for im, rgb in data:
        if not len(im.boxes):
            continue
        dets = det.detect(rgb)
        if dets:
            best = dets[0].box
            d.append(best)
            g.append(im.boxes[int(np.argmax(B.iou_matrix(best[None], im.boxes)[0]))])
    return BoxStyle.fit(np.asarray(d), np.asarray(g))


def fit_blaze_style(data) -> BoxStyle:
    """BlazeFace's box style (keypoint map or offsets, chosen by cross-validation; the built-in style as
    prior) fitted on ``data``, as ``facecore.blazeface.builtin.fit_dataset_style`` fits it for a dataset."""
    raw = BlazeFaceDetector(style=BoxStyle())
    cols = ([], [], [])
    for im, rgb in data:
        for col, v in zip(cols, style_pairs(raw, rgb, im.boxes)):
            col.extend(v)
    return BoxStyle.fit(*(np.asarray(c) for c in cols[:2]), keypoints=np.asarray(cols[2]), prior=DEFAULT_STYLE)


def pooled_dataset(people, tmp: Path, limit: int | None = None) -> Dataset:
    """A dataset folder of symlinks to the photos and labels of ``people`` (names prefixed per person)."""
    root = tmp / ("pool-" + "-".join(people) + (f"-{limit}" if limit else ""))
    if root.exists():
        shutil.rmtree(root)
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for p in people:
        src = SHARED / "datasets" / p
        imgs = sorted((src / "images").iterdir())
        if limit:
            labeled = [i for i in imgs if (src / "labels" / (i.stem + ".json")).exists()]
            imgs = labeled[:limit]
        for img in imgs:
            os.symlink(img, root / "images" / f"{p}_{img.name}")
            lab = src / "labels" / (img.stem + ".json")
            if lab.exists():
                os.symlink(lab, root / "labels" / f"{p}_{img.stem}.json")
    return Dataset.open(root)


def train_detector(ds: Dataset, tmp: Path, backbone: str, **kw):
    from facecore.registry import load_detector
    from facecore.train import TrainConfig, train

    out = tmp / "models" / f"m-{backbone}-{kw.get('train_layers', 'all')}"
    cfg = TrainConfig(name=out.name, backbone=backbone, **kw)
    t = time.monotonic()
    train(ds, cfg, None, out)
    secs = time.monotonic() - t
    return load_detector(out.name, out.parent), secs


def layers_of(row: str) -> str:
    """blazeface-ft: every layer; blazeface-ft-heads: the detection heads; blazeface-ft-box,
    blazeface-ft-frame (the photo-shaped input) and blazeface-ft-close (the 128 px square): the box heads."""
    return {"heads": "heads", "box": "box", "frame": "box", "close": "box"}.get(row.rsplit("-", 1)[-1], "all")


def input_shape_of(row: str) -> str:
    """blazeface-ft-frame: the photo-shaped network input; blazeface-ft-close: the close-up 128 px square;
    the other rows: the default ("auto")."""
    return {"frame": "frame", "close": "close"}.get(row.rsplit("-", 1)[-1], "auto")


def baseline(row: str, train_data):
    """A detector that needs no training: haar, or BlazeFace / YuNet raw or with a box style fitted on
    ``train_data``; None for rows that train."""
    if row == "haar":
        return HaarDetector()
    if row == "blazeface-raw":
        return BlazeFaceDetector(style=BoxStyle())
    if row == "blazeface":
        return BlazeFaceDetector()
    if row == "blazeface-style":
        return BlazeFaceDetector(style=fit_blaze_style(train_data))
    if row == "yunet-raw":
        return YuNet()
    if row == "yunet-style":
        return YuNet(fit_style(YuNet(), train_data))
    return None


def rows_for(rows, train_people, test_data, train_data, tmp, epochs, mosaics=None, size=192, lr=None) -> dict:
    out = {}
    ds = None
    for row in rows:
        secs = None
        det = baseline(row, train_data)
        if det is None:
            ds = ds or pooled_dataset(train_people, tmp)
            if row == "tinycnn":
                det, secs = train_detector(ds, tmp, "tinycnn", weights=None, epochs=60, batch_size=16,
                                           learning_rate=1e-3, head_units=256, augmentation="on_the_fly", patience=0)
            else:
                det, secs = train_detector(ds, tmp, "blazeface", **{**model_defaults("blazeface"), "epochs": epochs,
                                                                    "input_size": size, "train_layers": layers_of(row),
                                                                    "input_shape": input_shape_of(row),
                                                                    **({"learning_rate": lr} if lr else {})})
        m = run_detector(det, test_data)
        m["train_s"] = secs
        if mosaics:
            m["mosaic"] = run_all_faces(det, mosaics)
            print(f"  {row:18s} mosaics: ap50 {m['mosaic']['ap50']:.3f} recall50 {m['mosaic']['recall50']:.3f} "
                  f"fp/image {m['mosaic']['fp_per_image']:.2f} {m['mosaic']['ms']:.1f} ms", flush=True)
        out[row] = m
        print(f"  {row:18s} ap50 {m['ap50']:.3f} ap30 {m['ap30']:.3f} iou {m['mean_iou']:.3f} "
              f"fp {m['fp_rate_noface'] if m['fp_rate_noface'] is not None else float('nan'):.3f} "
              f"{m['ms']:.1f} ms" + (f" train {secs:.0f} s" if secs else ""), flush=True)
    return out


def mosaic_table(results: dict[str, dict[str, dict]], rows) -> str:
    lines = ["| detector | AP50 all faces, mean | worst | recall50 | FP per image | ms / frame |", "|---|---|---|---|---|---|"]
    for row in rows:
        per = [r[row]["mosaic"] for r in results.values() if row in r and "mosaic" in r[row]]
        if per:
            ap = [p["ap50"] for p in per]
            lines.append(f"| {row} | {np.mean(ap):.3f} | {np.min(ap):.3f} | {np.mean([p['recall50'] for p in per]):.3f} | "
                         f"{np.mean([p['fp_per_image'] for p in per]):.2f} | {np.median([p['ms'] for p in per]):.1f} |")
    return "\n".join(lines)


def table(results: dict[str, dict[str, dict]], rows) -> str:
    lines = ["| detector | AP50 mean | AP50 worst | AP50 pooled | AP30 mean | mean IoU | FP rate (no-face) | ms / frame | train s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        per = [r[row] for r in results.values() if row in r]
        if not per:
            continue
        ap50 = [p["ap50"] for p in per]
        fp = [p["fp_rate_noface"] for p in per if p["fp_rate_noface"] is not None and np.isfinite(p["fp_rate_noface"])]
        tr = [p["train_s"] for p in per if p.get("train_s")]
        pooled = compute_metrics(*(sum((list(p["raw"][i]) for p in per), []) for i in range(3)))["ap50"]
        lines.append(f"| {row} | {np.mean(ap50):.3f} | {np.min(ap50):.3f} | {pooled:.3f} | {np.mean([p['ap30'] for p in per]):.3f} | "
                     f"{np.mean([p['mean_iou'] for p in per]):.3f} | {np.mean(fp) if fp else float('nan'):.3f} | "
                     f"{np.median([p['ms'] for p in per]):.1f} | {np.mean(tr):.0f} |" if tr else
                     f"| {row} | {np.mean(ap50):.3f} | {np.min(ap50):.3f} | {pooled:.3f} | {np.mean([p['ap30'] for p in per]):.3f} | "
                     f"{np.mean([p['mean_iou'] for p in per]):.3f} | {np.mean(fp) if fp else float('nan'):.3f} | "
                     f"{np.median([p['ms'] for p in per]):.1f} | |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", default=",".join(ALL_ROWS))
    ap.add_argument("--people", default=",".join(PEOPLE))
    ap.add_argument("--epochs", type=int, default=model_defaults("blazeface")["epochs"])
    ap.add_argument("--learning-rate", type=float, default=model_defaults("blazeface")["learning_rate"])
    ap.add_argument("--size", type=int, default=192, help="fine-tuned BlazeFace input: 192 (full range) or 128 (short)")
    ap.add_argument("--mosaic", action="store_true", help="also score every face of 2x2 mosaics of the held-out person")
    ap.add_argument("--personal", action="store_true", help="the personalization table instead")
    ap.add_argument("--shots", type=int, default=10, help="labeled photos per person for --personal")
    args = ap.parse_args(argv)
    if not (SHARED / "datasets").is_dir():
        print(f"no {SHARED / 'datasets'}: this benchmark needs the shared datasets", file=sys.stderr)
        return 2
    rows = [r for r in args.rows.split(",") if r]
    people = [p for p in args.people.split(",") if p]
    data = {p: load_person(p) for p in PEOPLE}
    results = {}
    with tempfile.TemporaryDirectory(prefix="facetrack-bench-") as tmp:
        tmp = Path(tmp)
        for p in people:
            if args.personal:
                ds = pooled_dataset([p], tmp, limit=args.shots)
                names = {f.name.split("_", 1)[1] for f in (ds.root / "images").iterdir()}
                train_data = [(im, rgb) for im, rgb in data[p] if im.path.name in names]
                test_data = [(im, rgb) for im, rgb in data[p] if im.path.name not in names]
                print(f"{p}: {len(train_data)} labeled photos to learn from, {len(test_data)} to test", flush=True)
                results[p] = rows_for_personal(rows, ds, train_data, test_data, tmp, args.epochs, args.size)
            else:
                others = [q for q in PEOPLE if q != p]
                train_data = [x for q in others for x in data[q]]
                print(f"held out {p} ({len(data[p])} photos); training on {len(train_data)}", flush=True)
                results[p] = rows_for(rows, others, data[p], train_data, tmp, args.epochs,
                                      make_mosaics(data[p]) if args.mosaic else None, args.size, args.learning_rate)
    print()
    print(table(results, rows))
    if args.mosaic:
        print()
        print(mosaic_table(results, rows))
    return 0


def rows_for_personal(rows, ds, train_data, test_data, tmp, epochs, size=192) -> dict:
    """Personalization: the few labeled photos train (all of them: no val split) and fit box styles."""
    out = {}
    for row in rows:
        secs = None
        det = baseline(row, train_data)
        if det is not None:
            pass
        elif row.startswith("blazeface-ft"):
            det, secs = train_detector(ds, tmp, "blazeface", **{**model_defaults("blazeface"), "epochs": epochs, "batch_size": 8,
                                                                "input_size": size, "train_layers": layers_of(row),
                                                                "input_shape": input_shape_of(row)},
                                       split=(1.0, 0.0, 0.0), patience=0)
        else:
            continue
        m = run_detector(det, test_data)
        m["train_s"] = secs
        out[row] = m
        print(f"  {row:18s} ap50 {m['ap50']:.3f} iou {m['mean_iou']:.3f} {m['ms']:.1f} ms", flush=True)
        chosen = getattr(getattr(det, "meta", None), "personalization", None)
        if chosen:
            print(f"  {'':18s} chose {chosen['winner']} (cross-validated IoU {chosen['cv_iou']})", flush=True)
    return out


if __name__ == "__main__":
    sys.exit(main())
