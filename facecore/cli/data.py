"""``python -m facecore info|validate|import|export``: dataset commands."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from ..dataset import Dataset
from ..errors import ImportRejected


def _info(args) -> int:
    ds = Dataset.open(args.data)
    out = {"dataset": str(ds.root), **asdict(ds.counts()), "split": ds.split(seed=args.seed).sizes()}
    print(json.dumps(out, indent=2))
    return 0


def _validate(args) -> int:
    problems = Dataset.open(args.data).validate()
    for p in problems:
        print(f"{p.kind}: {p.message}")
    print(f"{len(problems)} problem(s)")
    return 1 if problems else 0


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
    print(f"imported {len(report.added)} image(s), {report.labeled} with labels, into {ds.root}")
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
    p = sub.add_parser("validate", help="list unreadable images, malformed labels, boxes outside images")
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
