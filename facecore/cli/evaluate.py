"""``python -m facecore evaluate|quantize``: measure a detector on a dataset split; an int8 copy of a model."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ..errors import DatasetError
from ..evaluate.metrics import EVAL_SPLITS, METRIC_KEYS, collect_images, evaluate, split_config
from ..images import read_image
from .args import probability


def _evaluate(args) -> int:
    from ..registry import load_detector, model_meta
    from ..datasets.workspace import Workspace

    ws = Workspace.from_env()
    models_root = Path(args.models) if args.models else ws.models_root
    det = load_detector(args.model, models_root)
    data = Path(args.data)
    if not data.exists() and args.data in ws.datasets():
        data = ws.dataset(args.data).root  # a dataset name, as the pages show it
    seed, fractions = split_config(model_meta(args.model, models_root))
    if args.seed is not None:
        seed = args.seed
    images, skipped = collect_images(data, args.split, seed, fractions)
    if not images:
        raise DatasetError(f"{data}: no images to evaluate in the {args.split} split")
    res = evaluate(det, images, threshold=args.threshold)
    res.metrics["skipped"] += len(skipped)
    if args.json:
        out = res.to_json()
        out.update(data=str(data), split=args.split)
        if not args.pr:
            out.pop("pr_curve")
        print(json.dumps(out))
    else:
        m = res.metrics
        print(f"{res.detector} on {data} ({args.split}: {m['n_images']} images, {m['n_face']} with a face, "
              f"{m['n_noface']} without)")
        for k in METRIC_KEYS:
            v = m[k]
            print(f"  {k:15s} {'n/a' if v is None or not math.isfinite(v) else f'{v:.3f}'}")
        for s in skipped:
            print(f"  skipped {s}")
    return 0


def _quantize(args) -> int:
    from ..preprocess import resize_for_model
    from ..registry import KERAS_FILE, model_folder, quantize
    from ..datasets.workspace import Workspace

    models_root = Path(args.models) if args.models else Workspace.from_env().models_root
    folder = model_folder(models_root, args.model)  # a name, never a path outside the models folder
    sample = None
    if args.data:
        from ..facetracker.inference import load_keras_model

        size = int(load_keras_model(folder / KERAS_FILE).inputs[0].shape[1])  # the network's own, not meta.json's
        images, _ = collect_images(args.data, "all")
        sample = np.stack([resize_for_model(read_image(im.path), size) for im in images[:8]]) if images else None
    info = quantize(folder, sample)
    print(f"wrote {info['file']} ({info['mb']} MB); largest output difference from the float model "
          f"{info['max_abs_diff']:.2g}. Use it as '{args.model}@int8'.")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="measure a detector (a trained model or haar) on a dataset split")
    p.add_argument("--model", required=True, help="model name in models/ (NAME@int8 for its int8 copy), or 'haar'")
    p.add_argument("--data", required=True, help="dataset folder (images/ + labels/), a dataset name, "
                   "or a folder of images with labels beside them (use --split all)")
    p.add_argument("--split", default="test", choices=EVAL_SPLITS,
                   help="which split (the model's training split seed is used); default test")
    p.add_argument("--threshold", type=probability, default=0.5, help="score at which a prediction means 'face' (0.5)")
    p.add_argument("--seed", type=int, default=None, help="split seed (default: the model's, else 0)")
    p.add_argument("--models", default=None, help="models folder (default: models/ or $FACETRACK_MODELS)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--pr", action="store_true", help="with --json: include the PR curve data")
    p.set_defaults(func=_evaluate)
    p = sub.add_parser("quantize", help="write an int8 copy of a model (smaller, faster on CPU): NAME@int8")
    p.add_argument("--model", required=True, help="model name in models/")
    p.add_argument("--data", default=None, help="dataset whose photos check the copy against the model")
    p.add_argument("--models", default=None, help="models folder (default: models/ or $FACETRACK_MODELS)")
    p.set_defaults(func=_quantize)
