"""``python -m facecore boxstyle``: fit the built-in BlazeFace's box style to a dataset and save it as a detector."""

from __future__ import annotations

import json
from pathlib import Path


def _boxstyle(args) -> int:
    from ..blazeface.builtin import fit_dataset_style
    from ..datasets.dataset import Dataset
    from ..meta import ModelMeta
    from ..datasets.workspace import Workspace, check_name

    ds = Dataset.open(args.data)
    out = Path(args.out) if args.out else Workspace.from_env().model_dir(f"{ds.name}-boxstyle")
    check_name(out.name, "model")
    path = fit_dataset_style(ds, out)
    meta = ModelMeta.load(path)
    print(json.dumps({"model": str(path), "box_style": meta.box_style, "metrics": meta.metrics}, indent=2))
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("boxstyle", help="fit the built-in BlazeFace's box style to a dataset's labels and save it "
                                        "as a detector (seconds, no training)")
    p.add_argument("--data", required=True, help="dataset folder (with images/ and labels/)")
    p.add_argument("--out", help="model folder to write (default: models/<dataset>-boxstyle)")
    p.set_defaults(func=_boxstyle)
