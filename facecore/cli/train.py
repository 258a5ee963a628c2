"""``python -m facecore train``: train a face detector on a dataset.

Unset options take the Train page's defaults for the same choice: ``TrainConfig.for_backbone`` (the
model's epochs, batch size, learning rate, augmentation, head width and layers; ``TrainConfig``'s own
defaults for the rest, which are the default model's).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..facetracker.backbones import DETECTOR_BACKBONES
from ..datasets.dataset import Dataset
from ..meta import ModelMeta
from ..train import AUGMENTATION_MODES, INPUT_SHAPES, PERSONALIZE, TRAIN_LAYERS, TrainConfig, train
from ..datasets.workspace import Workspace, check_name
from .progress import bar, fmt_s, line_printer


def _line(p) -> str:
    extra = ""
    if p.extra.get("history"):
        h = p.extra["history"][-1]
        extra = f" loss {h.get('loss', float('nan')):.4f}"
        if "val_loss" in h:
            extra += f" val {h['val_loss']:.4f} iou {h.get('val_mean_iou', float('nan')):.3f}"
    return f"{bar(p.fraction)} {p.fraction:4.0%} {p.message[:40]:<40}{extra} ETA {fmt_s(p.eta_s)}   "


def config_from_args(args, name: str) -> TrainConfig:
    """The ``TrainConfig`` the options ask for; options left unset take ``TrainConfig.for_backbone``'s
    (as the Train page)."""
    weights = None if args.weights.lower() == "none" else args.weights
    per_model = {"head_units": args.head_units, "epochs": args.epochs, "batch_size": args.batch_size,
                 "learning_rate": args.lr, "augmentation": args.augmentation, "train_layers": args.train_layers}
    return TrainConfig.for_backbone(
        args.backbone, weights is None, **{k: v for k, v in per_model.items() if v is not None},
        name=name, input_size=args.input_size, weights=weights, alpha=args.alpha,
        fine_tune_epochs=args.fine_tune_epochs, patience=args.patience, seed=args.seed,
        cache_features=not args.no_cache, export_tflite=not args.no_tflite, input_shape=args.input_shape,
        personalize=args.personalize)


def _train(args) -> int:
    ds = Dataset.open(args.data)
    out = Path(args.out) if args.out else Workspace.from_env().model_dir(f"{ds.name}-{args.backbone}")
    config = config_from_args(args, check_name(out.name, "model"))
    if config.weights is None:
        print("weights: none -> the whole network trains from scratch (slower; needs more data and epochs)",
              file=sys.stderr)
    path = train(ds, config, line_printer(_line, sys.stderr), out)
    print(file=sys.stderr)
    meta = ModelMeta.load(path)
    for w in meta.training_warnings:
        print(f"warning: {w}", file=sys.stderr)
    print(json.dumps({"model": str(path), "metrics": meta.metrics, "epochs_run": meta.epochs_run,
                      "seconds": meta.training.get("seconds")}, indent=2))
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train a face detector on a dataset and save it under models/")
    p.add_argument("--data", required=True, help="dataset folder (with images/ and labels/)")
    p.add_argument("--out", help="model folder to write (default: models/<dataset>-<backbone>)")
    p.add_argument("--backbone", default=TrainConfig.backbone, choices=DETECTOR_BACKBONES,
                   help="blazeface (default): MediaPipe's face detector fine-tuned on the dataset; the others are "
                        "the tutorials' FaceTracker")
    p.add_argument("--weights", default=TrainConfig.weights,
                   help="pretrained weights ('imagenet' for the FaceTracker backbones, downloaded by Keras into "
                        "~/.keras/models; blazeface always starts from its built-in face weights), 'none' (train "
                        "from scratch) or a weights .h5 file")
    p.add_argument("--train-layers", default=None, choices=TRAIN_LAYERS,
                   help="blazeface: the box-regression heads (default), all detection heads, or every layer")
    p.add_argument("--input-shape", default=TrainConfig.input_shape, choices=INPUT_SHAPES,
                   help="blazeface: the network's input: the photos' shape (frame: small faces get a third more "
                        "pixels), MediaPipe's square, close (that square at 128 px: 2.5x less work, for faces a "
                        "sixth of the photo wide or more), or auto (frame when the labels hold several or small "
                        "faces, square otherwise)")
    p.add_argument("--personalize", default=TrainConfig.personalize, choices=PERSONALIZE,
                   help="blazeface, 40 labeled photos or fewer: auto chooses the built-in detector, its box style "
                        "fitted to the labels or fine-tuning by cross-validation on them; fine-tune always fine-tunes")
    p.add_argument("--epochs", type=int, default=None, help="default: per model (TrainConfig.for_backbone)")
    p.add_argument("--batch-size", type=int, default=None, help="default: per model")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: per model)")
    p.add_argument("--input-size", type=int, default=None, help="input pixels (default: per backbone)")
    p.add_argument("--augmentation", default=None, choices=AUGMENTATION_MODES, help="default: per model")
    p.add_argument("--head-units", type=int, default=None, help="FaceTracker head width (default: per model)")
    p.add_argument("--alpha", type=float, default=TrainConfig.alpha, help="MobileNetV2 width multiplier")
    p.add_argument("--fine-tune-epochs", type=int, default=TrainConfig.fine_tune_epochs)
    p.add_argument("--patience", type=int, default=TrainConfig.patience, help="early stopping patience (0: off)")
    p.add_argument("--seed", type=int, default=TrainConfig.seed)
    p.add_argument("--no-cache", action="store_true", help="never train on cached backbone features")
    p.add_argument("--no-tflite", action="store_true", help="skip the TFLite export")
    p.set_defaults(func=_train)
