"""Several and small faces: crowd photos of ../shared/datasets/facemask_dev, every face scored.

448 street and crowd photos (about 400 px wide, 1,156 faces, many under 20 px, most masked; CC0).
The photos are split by their number: every fourth (``tune``, 112 photos) is where this project chose its
settings (the scan's levels and zoom, the training recipe for crowds); the other 336 (``report``) are
only scored, never looked at while tuning. Detectors that learn use ``--train`` photos of the tune part.

Rows: the built-in BlazeFace on the whole frame and scanned in tiles (``facecore.scan``), with its
built-in box style and with a style fitted on the training photos; BlazeFace fine-tuned on the training
photos (the Train page's defaults), whole frame and scanned; YuNet (OpenCV, a benchmark peer only,
../shared/models/yunet) raw at its input size = the photo's, and with the same kind of fitted offsets.

    python -m benchmarks.crowd                    # report part, every row
    python -m benchmarks.crowd --part tune --rows blazeface,blazeface-scan,yunet

Prints a markdown table: AP50 and AP30 over every face, recall50 and false positives per photo at
score 0.5, ms per photo.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path


from benchmarks.accuracy import SHARED, YuNet, fit_blaze_style, fit_style, train_detector
from facecore.blazeface.builtin import BlazeFaceDetector
from facecore.datasets.dataset import Dataset
from facecore.evaluate.metrics import collect_images
from facecore.evaluate.every_face import all_faces_metrics
from facecore.images import read_image
from facecore.scan import ScanConfig, ScanningDetector
from facecore.train import model_defaults

CROWD = SHARED / "datasets" / "facemask_dev"
ROWS = ("blazeface", "blazeface-scan", "blazeface-style-scan", "yunet", "yunet-style",
        "blazeface-ft", "blazeface-ft-scan")


def number(path: Path) -> int:
    m = re.search(r"(\d+)$", path.stem)
    return int(m.group(1)) if m else 0


def load_parts() -> dict[str, list]:
    """``{"tune": [(EvalImage, rgb)], "report": [...]}``: every fourth photo by number tunes."""
    images, _ = collect_images(CROWD, split="all")
    images = sorted(images, key=lambda im: number(im.path))
    parts = {"tune": [], "report": []}
    for i, im in enumerate(images):
        parts["tune" if i % 4 == 0 else "report"].append((im, read_image(im.path)))
    return parts


def subset_dataset(data, tmp: Path) -> Dataset:
    """A dataset folder of links to ``data``'s photos and labels."""
    root = tmp / "crowd-train"
    if root.exists():
        shutil.rmtree(root)
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for im, _ in data:
        (root / "images" / im.path.name).symlink_to(im.path)
        lab = CROWD / "labels" / (im.path.stem + ".json")
        if lab.exists():
            (root / "labels" / lab.name).symlink_to(lab)
    return Dataset.open(root)


def score(det, data) -> dict:
    t = time.perf_counter()
    dets = [det.detect(rgb) for _, rgb in data]
    m = all_faces_metrics([im.boxes for im, _ in data], dets)
    m["ms"] = (time.perf_counter() - t) / max(len(data), 1) * 1000
    return m


def detector_for(row: str, train, tmp: Path, epochs: int, scan: ScanConfig, cache: dict, personalize: str = "auto"):
    if row.startswith("blazeface-ft"):
        if "ft" not in cache:
            ds = subset_dataset(train, tmp)
            cache["ft"], cache["ft_s"] = train_detector(ds, tmp, "blazeface", **{**model_defaults("blazeface"), "epochs": epochs},
                                                        personalize=personalize)
            chosen = getattr(getattr(cache["ft"], "meta", None), "personalization", None)
            if chosen:
                print(f"  trained: chose {chosen['winner']} (cross-validated IoU {chosen['cv_iou']})", flush=True)
        det = cache["ft"]
    elif row.startswith("blazeface-style"):
        det = BlazeFaceDetector(style=fit_blaze_style(train))
    elif row.startswith("blazeface"):
        det = BlazeFaceDetector()
    elif row == "yunet":
        return YuNet()
    elif row == "yunet-style":
        return YuNet(fit_style(YuNet(), train))
    else:
        raise SystemExit(f"unknown row {row!r}")
    return ScanningDetector(det, scan) if row.endswith("-scan") else det


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", default=",".join(ROWS))
    ap.add_argument("--part", choices=("tune", "report"), default="report", help="the photos scored")
    ap.add_argument("--train", type=int, default=40, help="photos of the tune part that detectors learn from")
    ap.add_argument("--epochs", type=int, default=model_defaults("blazeface")["epochs"])
    ap.add_argument("--levels", type=int, default=ScanConfig().max_levels)
    ap.add_argument("--zoom", type=float, default=ScanConfig().max_zoom)
    ap.add_argument("--limit", type=int, default=0, help="score only the first N photos (quick looks)")
    ap.add_argument("--personalize", default="auto", choices=("auto", "fine-tune"), help="the trained rows' choice")
    args = ap.parse_args(argv)
    if not CROWD.is_dir():
        print(f"no {CROWD}: this benchmark needs the shared crowd set", file=sys.stderr)
        return 2
    parts = load_parts()
    train = parts["tune"][: args.train]
    test = parts[args.part][: args.limit or None]
    scan = ScanConfig(max_levels=args.levels, max_zoom=args.zoom)
    print(f"{len(test)} {args.part} photos ({sum(len(im.boxes) for im, _ in test)} faces); "
          f"learning from {len(train)} tune photos; scan {scan}", flush=True)
    lines = ["| detector | AP50 all faces | AP30 | recall50 | FP per photo | ms / photo | train s |",
             "|---|---|---|---|---|---|---|"]
    cache: dict = {}
    with tempfile.TemporaryDirectory(prefix="facetrack-crowd-") as tmp:
        for row in [r for r in args.rows.split(",") if r]:
            m = score(detector_for(row, train, Path(tmp), args.epochs, scan, cache, args.personalize), test)
            secs = f"{cache['ft_s']:.0f}" if row.startswith("blazeface-ft") else ""
            lines.append(f"| {row} | {m['ap50']:.3f} | {m['ap30']:.3f} | {m['recall50']:.3f} | "
                         f"{m['fp_per_image']:.2f} | {m['ms']:.1f} | {secs} |")
            print(lines[-1], flush=True)
    print()
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
