"""``python -m facecore info|validate|import|export``: dataset commands."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from ..datasets.checks import WARNING_KINDS
from ..datasets.dataset import Dataset
from ..errors import ImportRejected


def _info(args) -> int:
    ds = Dataset.open(args.data)
    split = ds.split(seed=args.seed)
    out = {"dataset": str(ds.root), **asdict(ds.counts()), "split": split.sizes(),
           # labels training leaves out, and why (the label rule of facecore.datasets.labels); copies that disagree
           "left_out": {name: why for name, why in split.skipped}, "conflicting_copies": list(split.conflicts)}
    print(json.dumps(out, indent=2))
    return 0


def _validate(args) -> int:
    problems = Dataset.open(args.data).validate()
    errors = [p for p in problems if p.kind not in WARNING_KINDS]
    for p in problems:
        print(f"{p.kind}: {p.message}")
    print(f"{len(errors)} problem(s)" + (f", {len(problems) - len(errors)} near duplicate(s) to look at"
                                         if len(problems) > len(errors) else ""))
    return 1 if errors else 0


def _import(args) -> int:
    src = Path(args.source)
    if not src.exists():
        raise ImportRejected(f"{src}: no such file or folder")
    ds = Dataset.create(args.data)
    report = ds.import_folder(src) if src.is_dir() else ds.import_zip(src)
    for name, why in report.skipped:
        print(f"skipped {name}: {why}")
    for name, what in report.notes:
        print(f"note {name}: {what}")
    for name, what in report.duplicates:
        print(f"already there {name}: {what}")
    print(f"imported {len(report.added)} image(s), {report.labeled} with labels, into {ds.root}; "
          f"{len(report.duplicates)} already there (same photo), {len(report.skipped)} skipped")
    return 0


def _export(args) -> int:
    out = Dataset.open(args.data).export_labelme_zip(args.out)
    print(f"wrote {out}")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("info", help="counts and split sizes of a dataset")
    p.add_argument("--data", required=True, help="dataset folder (with images/ and labels/)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_info)
    p = sub.add_parser("validate", help="list unreadable images, malformed labels, boxes outside images, the same "
                                        "photo twice and near duplicates (a warning: exit status 0)")
    p.add_argument("--data", required=True)
    p.set_defaults(func=_validate)
    p = sub.add_parser("import", help="import a .zip or folder of images + labelme/VOC labels")
    p.add_argument("source", help=".zip file or folder")
    p.add_argument("--data", required=True, help="dataset folder to import into (created if missing)")
    p.set_defaults(func=_import)
    p = sub.add_parser("export", help="export a dataset as a labelme .zip")
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True, help="the .zip file to write")
    p.set_defaults(func=_export)
