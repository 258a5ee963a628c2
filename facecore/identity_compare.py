"""Comparing identity classifiers (backbones, with and without augmentation) on one identity set, and
the ``python -m facecore identity`` command line (build crops, counts, train, compare).

The last comparison run on a set is kept in the set's folder as ``comparison.json``.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, replace
from datetime import datetime, timezone
from pathlib import Path

from . import backbones as BB
from .cliargs import float_range, positive_float
from .errors import Cancelled, FaceCoreError
from .identity import DEFAULT_K, IdentitySet, check_identity_name
from .identity_train import IdentityConfig, TrainResult, overall_fraction, train_identity
from .io import atomic_write_text
from .jobs import Cancel, Progress, ProgressFn, ignore

COMPARISON_FILE = "comparison.json"


COMPARISON_COLUMNS = ["model", "backbone", "augment", "val_accuracy", "val_loss", "params", "size_mb",
                      "latency_ms", "epochs", "train_seconds"]


def comparison_row(result: TrainResult) -> dict:
    """One row of the comparison table (the tutorial's: accuracy, loss, parameters, size, latency)."""
    m = result.meta
    return {"model": m["name"], "backbone": m["config"]["backbone"], "augment": m["config"]["augment"],
            "val_accuracy": round(m["metrics"]["val"]["accuracy"], 4), "val_loss": round(m["metrics"]["val"]["loss"], 4),
            "params": m["params"], "size_mb": round(m["size_bytes"] / 1e6, 2), "latency_ms": m["latency_ms"],
            "epochs": len(m["history"]), "train_seconds": m["train_seconds"]}


def compare(identity_set: IdentitySet, backbones, augment_options, base_config: IdentityConfig,
            models_root: str | os.PathLike, prefix: str = "cmp",
            progress: ProgressFn | None = None, cancel: Cancel | None = None) -> list[dict]:
    """Train one model per (backbone, augmentation) pair on the same data and split; each is saved
    as ``models/<prefix>-<backbone>-aug<N>``. Returns the table rows (``COMPARISON_COLUMNS``) and
    writes them to the set's ``comparison.json`` after each run.

    ``progress``: runs done of all (fractional within a run); ``stage`` and ``extra`` are the current
    run's (see ``train_identity``), with ``run`` (0-based), ``runs``, ``name`` and the run's own
    progress (``inner``) added. On ``cancel`` the runs finished so far stay saved; ``Cancelled.partial``
    holds their rows.
    """
    progress = progress or ignore
    prefix = check_identity_name(prefix, "prefix")
    runs = [(b, a) for b in backbones for a in augment_options]
    if not runs:
        raise FaceCoreError("choose at least one backbone to compare")
    rows = []
    for i, (backbone, aug) in enumerate(runs):
        name = f"{prefix}-{backbone}-aug{aug}"
        cfg = replace(base_config, backbone=backbone, augment=int(aug))

        def step(p: Progress, _i=i, _name=name):
            progress(Progress(_i + overall_fraction(p), len(runs), f"[{_i + 1}/{len(runs)}] {_name}: {p.message}",
                              p.stage, extra={**p.extra, "run": _i, "runs": len(runs), "name": _name, "inner": p}))

        try:
            rows.append(comparison_row(train_identity(identity_set, cfg, Path(models_root) / name, step, cancel)))
        except Cancelled as exc:
            raise Cancelled(str(exc), rows) from None
        save_comparison(identity_set, rows, base_config)
    return rows


def save_comparison(identity_set: IdentitySet, rows: list[dict], config: IdentityConfig) -> Path:
    doc = {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "config": asdict(config),
           "counts": identity_set.counts(), "rows": rows}
    return atomic_write_text(identity_set.root / COMPARISON_FILE, json.dumps(doc, indent=2))


def load_comparison(identity_set: IdentitySet) -> dict | None:
    """The last comparison run on this set (``{"created", "config", "counts", "rows"}``), or None."""
    p = identity_set.root / COMPARISON_FILE
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    return doc if isinstance(doc, dict) and isinstance(doc.get("rows"), list) else None


# -- command line ------------------------------------------------------------------------------
def _progress_printer(prefix: str = ""):
    def show(p: Progress):
        if p.stage == "features":
            print(f"\r{prefix}features {int(p.done)}/{int(p.total)}", end="", flush=True)
            if p.done == p.total:
                print()
        else:
            print(f"{prefix}epoch {int(p.done)}/{int(p.total)} "
                  + " ".join(f"{k}={v:.4f}" for k, v in p.extra["logs"].items()), flush=True)
    return show


def _weights_arg(value: str | None):
    return None if value in (None, "", "none", "None") else value


def _config(args, backbone: str, augment: int) -> IdentityConfig:
    return IdentityConfig(backbone=backbone, input_size=args.input_size, weights=_weights_arg(args.weights),
                          augment=augment, epochs=args.epochs, batch_size=args.batch_size,
                          learning_rate=args.lr, patience=args.patience, k=args.k, seed=args.seed)


def _cli_build(args) -> int:
    from .dataset import Dataset

    ids = IdentitySet(args.data)
    ids.root.mkdir(parents=True, exist_ok=True)
    rep = ids.build_from_dataset(args.identity, Dataset.open(args.from_dataset), k=args.k)
    print(f"added {rep.added} crop(s) to {ids.root / args.identity}; skipped {len(rep.skipped)}")
    print(json.dumps(ids.counts(), indent=2))
    return 0


def _cli_counts(args) -> int:
    print(json.dumps(IdentitySet.open(args.data).counts(), indent=2))
    return 0


def _cli_train(args) -> int:
    res = train_identity(IdentitySet.open(args.data), _config(args, args.backbone, args.augment), args.out,
                         progress=_progress_printer())
    print(json.dumps({"model": str(res.path), **comparison_row(res)}, indent=2))
    return 0


def _cli_compare(args) -> int:
    ids = IdentitySet.open(args.data)
    backbones = [b.strip() for b in args.backbones.split(",") if b.strip()]
    augs = [0, args.augment] if args.augment > 0 else [0]
    printer, shown = _progress_printer(), set()

    def show(p: Progress):
        i = p.extra["run"]
        if i not in shown:
            shown.add(i)
            print(f"[{i + 1}/{p.extra['runs']}] {p.extra['name']}")
        printer(p.extra["inner"])

    rows = compare(ids, backbones, augs, _config(args, backbones[0] if backbones else BB.IDENTITY_BACKBONES[0], 0),
                   args.out_root, args.prefix, progress=show)
    import pandas as pd

    print(pd.DataFrame(rows, columns=COMPARISON_COLUMNS).to_string(index=False))
    return 0


def _train_args(p) -> None:
    p.add_argument("--data", required=True, help="identity folder: one sub-folder of face crops per identity")
    p.add_argument("--weights", default="imagenet", help="imagenet (default), none, or a local .h5 file")
    p.add_argument("--input-size", type=int, default=128)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=positive_float, default=1e-3)
    p.add_argument("--patience", type=int, default=5, help="early stopping: epochs without a better val loss")
    p.add_argument("--k", type=float_range(0, 10), default=DEFAULT_K, help="crop margin used when recognizing")
    p.add_argument("--seed", type=int, default=0)


def add_parser(sub) -> None:
    p = sub.add_parser("identity", help="me / not me: build identity crops, train and compare classifiers")
    isub = p.add_subparsers(dest="identity_command", required=True)
    b = isub.add_parser("build", help="crop the labeled faces of a dataset into one identity folder")
    b.add_argument("--data", required=True, help="identity set folder, e.g. data/identities/me_not_me")
    b.add_argument("--identity", required=True, help="identity name, e.g. me")
    b.add_argument("--from-dataset", required=True, help="labeled dataset folder (images/ + labels/)")
    b.add_argument("--k", type=float_range(0, 10), default=DEFAULT_K, help="margin: k x the face size on every side")
    b.set_defaults(func=_cli_build)
    c = isub.add_parser("counts", help="crops per identity")
    c.add_argument("--data", required=True)
    c.set_defaults(func=_cli_counts)
    t = isub.add_parser("train", help="train a classifier (frozen backbone + dense head)")
    _train_args(t)
    t.add_argument("--backbone", default=IdentityConfig.backbone, choices=BB.IDENTITY_BACKBONES)
    t.add_argument("--augment", type=int, default=0, help="augmented copies per training crop")
    t.add_argument("--out", required=True, help="model folder to write, e.g. models/me_not_me")
    t.set_defaults(func=_cli_train)
    m = isub.add_parser("compare", help="train several backbones with and without augmentation; print the table")
    _train_args(m)
    m.add_argument("--backbones", default=",".join(BB.IDENTITY_BACKBONES), help="comma-separated")
    m.add_argument("--augment", type=int, default=5, help="also train with this many copies per crop (0: only without)")
    m.add_argument("--out-root", default="models", help="folder for the models (<prefix>-<backbone>-aug<N>)")
    m.add_argument("--prefix", default="cmp")
    m.set_defaults(func=_cli_compare)
