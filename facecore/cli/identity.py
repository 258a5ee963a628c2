"""``python -m facecore identity build|counts|train|compare``: me / not me identity crops and classifiers.

Defaults are ``IdentityConfig``'s, as on the Recognize page.
"""

from __future__ import annotations

import json

from ..facetracker.backbones import IDENTITY_BACKBONES
from ..identity.data import IdentitySet
from ..identity.compare import COMPARISON_COLUMNS, compare, comparison_row
from ..identity.train import IdentityConfig, train_identity
from ..jobs import Progress
from .args import float_range, positive_float

DEFAULTS = IdentityConfig()


def _printer(prefix: str = ""):
    def show(p: Progress):
        if p.stage == "features":
            print(f"\r{prefix}features {int(p.done)}/{int(p.total)}", end="", flush=True)
            if p.done == p.total:
                print()
        else:
            print(f"{prefix}epoch {int(p.done)}/{int(p.total)} "
                  + " ".join(f"{k}={v:.4f}" for k, v in p.extra["logs"].items()), flush=True)
    return show


def _weights(value: str | None):
    return None if value in (None, "", "none", "None") else value


def _config(args, backbone: str, augment: int) -> IdentityConfig:
    return IdentityConfig(backbone=backbone, input_size=args.input_size, weights=_weights(args.weights),
                          augment=augment, epochs=args.epochs, batch_size=args.batch_size,
                          learning_rate=args.lr, patience=args.patience, k=args.k, seed=args.seed)


def _build(args) -> int:
    from ..datasets.dataset import Dataset

    ids = IdentitySet(args.data)
    ids.root.mkdir(parents=True, exist_ok=True)
    rep = ids.build_from_dataset(args.identity, Dataset.open(args.from_dataset), k=args.k)
    print(f"added {rep.added} crop(s) to {ids.root / args.identity}; skipped {len(rep.skipped)}")
    print(json.dumps(ids.counts(), indent=2))
    return 0


def _counts(args) -> int:
    print(json.dumps(IdentitySet.open(args.data).counts(), indent=2))
    return 0


def _train(args) -> int:
    res = train_identity(IdentitySet.open(args.data), _config(args, args.backbone, args.augment), args.out,
                         progress=_printer())
    print(json.dumps({"model": str(res.path), **comparison_row(res)}, indent=2))
    for line in res.meta.training_warnings:  # e.g. random features: the accuracy means nothing
        print(f"warning: {line}")
    return 0


def _compare(args) -> int:
    ids = IdentitySet.open(args.data)
    backbones = [b.strip() for b in args.backbones.split(",") if b.strip()]
    augs = [0, args.augment] if args.augment > 0 else [0]
    printer, shown = _printer(), set()

    def show(p: Progress):
        i = p.extra["run"]
        if i not in shown:
            shown.add(i)
            print(f"[{i + 1}/{p.extra['runs']}] {p.extra['name']}")
        printer(p.extra["inner"])

    rows = compare(ids, backbones, augs, _config(args, backbones[0] if backbones else DEFAULTS.backbone, 0),
                   args.out_root, args.prefix, progress=show)
    import pandas as pd

    print(pd.DataFrame(rows, columns=COMPARISON_COLUMNS).to_string(index=False))
    return 0


def _train_args(p) -> None:
    p.add_argument("--data", required=True, help="identity folder: one sub-folder of face crops per identity")
    p.add_argument("--weights", default=DEFAULTS.weights, help="imagenet (default), none, or a local .h5 file")
    p.add_argument("--input-size", type=int, default=DEFAULTS.input_size)
    p.add_argument("--epochs", type=int, default=DEFAULTS.epochs)
    p.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size)
    p.add_argument("--lr", type=positive_float, default=DEFAULTS.learning_rate)
    p.add_argument("--patience", type=int, default=DEFAULTS.patience,
                   help="early stopping: epochs without a better val loss")
    p.add_argument("--k", type=float_range(0, 10), default=DEFAULTS.k, help="crop margin used when recognizing")
    p.add_argument("--seed", type=int, default=DEFAULTS.seed)


def add_parser(sub) -> None:
    p = sub.add_parser("identity", help="me / not me: build identity crops, train and compare classifiers")
    isub = p.add_subparsers(dest="identity_command", required=True)
    b = isub.add_parser("build", help="crop the labeled faces of a dataset into one identity folder")
    b.add_argument("--data", required=True, help="identity set folder, e.g. data/identities/me_not_me")
    b.add_argument("--identity", required=True, help="identity name, e.g. me")
    b.add_argument("--from-dataset", required=True, help="labeled dataset folder (images/ + labels/)")
    b.add_argument("--k", type=float_range(0, 10), default=DEFAULTS.k, help="margin: k x the face size on every side")
    b.set_defaults(func=_build)
    c = isub.add_parser("counts", help="crops per identity")
    c.add_argument("--data", required=True)
    c.set_defaults(func=_counts)
    t = isub.add_parser("train", help="train a classifier (frozen backbone + dense head)")
    _train_args(t)
    t.add_argument("--backbone", default=DEFAULTS.backbone, choices=IDENTITY_BACKBONES)
    t.add_argument("--augment", type=int, default=DEFAULTS.augment, help="augmented copies per training crop")
    t.add_argument("--out", required=True, help="model folder to write, e.g. models/me_not_me")
    t.set_defaults(func=_train)
    m = isub.add_parser("compare", help="train several backbones with and without augmentation; print the table")
    _train_args(m)
    m.add_argument("--backbones", default=",".join(IDENTITY_BACKBONES), help="comma-separated")
    m.add_argument("--augment", type=int, default=5, help="also train with this many copies per crop (0: only without)")
    m.add_argument("--out-root", default="models", help="folder for the models (<prefix>-<backbone>-aug<N>)")
    m.add_argument("--prefix", default="cmp")
    m.set_defaults(func=_compare)
