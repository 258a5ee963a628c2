"""``python -m facecore augment``: offline augmentation of a dataset's train split."""

from __future__ import annotations

from ..augment import AugmentConfig, augment_dataset
from ..datasets.dataset import Dataset
from .progress import bar, line_printer


def _augment(args) -> int:
    ds = Dataset.open(args.data)
    progress = line_printer(lambda p: f"{bar(p.fraction)} {int(p.done)}/{int(p.total)} copies")
    try:
        rep = augment_dataset(ds, AugmentConfig(), args.per_image, seed=args.seed, split_seed=args.split_seed,
                              workers=args.workers, progress=progress)
    except KeyboardInterrupt:
        print()
        raise
    print()
    print(f"{rep.written} written, {rep.skipped} already there, {rep.removed} stale removed, "
          f"{rep.no_face} without a face, {len(rep.failed)} failed, {rep.seconds:.1f} s "
          f"({rep.written / max(rep.seconds, 1e-9):.1f} copies/s) -> {ds.augmented.root}")
    for stem, why in rep.failed:
        print(f"failed {stem}: {why}")
    for name, why in rep.left_out:
        print(f"left out {name}: {why}")
    return 1 if rep.failed else 0


def add_parser(sub) -> None:
    p = sub.add_parser("augment", help="write N augmented copies of each train-split photo (offline augmentation)")
    p.add_argument("--data", required=True, help="dataset folder (with images/ and labels/)")
    p.add_argument("--per-image", type=int, required=True, help="copies per train-split photo (tutorials: 5 or 60)")
    p.add_argument("--seed", type=int, default=0, help="augmentation seed (same seed, same copies)")
    p.add_argument("--split-seed", type=int, default=0, help="train/val/test split seed (as for training)")
    p.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    p.set_defaults(func=_augment)
