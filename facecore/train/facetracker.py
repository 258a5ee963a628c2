"""Training the tutorials' FaceTracker (an ImageNet backbone with one face/no-face head and one box head,
or tinycnn from scratch): build, read, cache features, fit, fine-tune, evaluate in eval mode, save."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .callbacks import make_callbacks
from .context import Run, check_stop
from .data import Samples, array_dataset, load_samples, on_the_fly_dataset, read_splits
from .save import run_meta, save_model


@dataclass
class _Data:
    """The run's samples: the splits, the train split without offline copies (``train_orig``, what
    is evaluated), and with the feature cache each split's pooled backbone features."""

    split: object
    train: Samples
    val: Samples
    test: Samples
    train_orig: Samples
    feats: dict[str, np.ndarray] = field(default_factory=dict)


def train_facetracker(run: Run) -> Path:
    """Train a FaceTracker as ``run.config`` says and save it into ``run.out_dir``; returns the folder."""
    config = run.config
    # 1. the network first: unavailable pretrained weights fail now, not after reading every image
    run.emit("loading", 0.0, "loading TensorFlow")
    import keras

    from ..facetracker import losses as L
    from ..facetracker import model as M

    run.emit("loading", 0.0, f"building {config.backbone} ({'pretrained' if config.frozen else 'from scratch'})")
    keras.utils.set_random_seed(config.seed)
    net = M.build_model(config.backbone, config.size, config.weights, config.head_units, config.alpha)

    # 2. data, and the heads' starting point: the mean face box and the share of photos with a face
    split, train_s, val_s, test_s = read_splits(run.dataset, config, config.size, run.emit, run.warnings, run.cancel)
    train_orig = train_s if config.augmentation != "offline" else load_samples(split.train, config.size)
    data = _Data(split, train_s, val_s, test_s, train_orig)
    faces = train_s.has_face[:, 0] > 0.5
    M.init_heads_to_prior(net, train_s.boxes[faces].mean(axis=0), float(faces.mean()))
    if config.uses_feature_cache:
        data.feats = _backbone_features(run, M.feature_model(net), data)

    # 3. phase 1: heads on cached features, or the whole network on images; 4. optional fine-tuning
    _fit(run, keras, L, M, net, data)
    phase1_epochs = len(run.history)
    backbone_changed = _fine_tune(run, keras, L, M, net, data, phase1_epochs) or not config.frozen

    # 5. evaluate in eval mode; 6. save
    metrics, checks = _evaluate(run, L, M, net, data, backbone_changed)
    run.emit("saving", 0.0, "saving the model")
    meta = run_meta(
        run.out_dir, config, run.dataset, split, train_s, config.size, history=run.history, metrics=metrics,
        training={"seconds": round(time.monotonic() - run.t_start, 2), "feature_cache": config.uses_feature_cache,
                  "epochs_run": len(run.history), "best_epoch": run.state.get("best_epoch"),
                  "stopped_early": phase1_epochs < config.epochs,
                  "fine_tuned": bool(_fine_tune_epochs(config) and backbone_changed and config.frozen),
                  "warnings": run.warnings, "checks": checks},
        extra={"outputs": ["prob (N, 1) sigmoid face probability", "box (N, 4) sigmoid normalized [x1, y1, x2, y2]"]})
    sample = np.concatenate([train_orig.images[:2], val_s.images[:2]]).astype(np.float32)
    path = save_model(net, run.out_dir, meta, export_tflite=config.export_tflite, sample=sample)
    run.emit("saving", 1.0, f"saved {path}")
    return path


def _fine_tune_epochs(config) -> int:
    return config.fine_tune_epochs if config.frozen else 0


def _backbone_features(run: Run, fm, data: _Data) -> dict[str, np.ndarray]:
    """The frozen backbone's pooled features of every sample, computed once (the fast path)."""
    extra = len(data.train_orig) if data.train_orig is not data.train else 0
    total = len(data.train) + len(data.val) + len(data.test) + extra
    feats, seen = {}, 0
    for key, s in (("train", data.train), ("val", data.val), ("test", data.test), ("train_orig", data.train_orig)):
        if key == "train_orig" and s is data.train:
            feats[key] = feats["train"]
            continue
        chunks = []
        for i in range(0, len(s), 64):
            chunks.append(np.asarray(fm.predict(s.images[i:i + 64].astype(np.float32), verbose=0)))
            seen += len(chunks[-1])
            run.emit("features", seen / max(total, 1), f"computing backbone features {seen}/{total}")
        feats[key] = (np.concatenate(chunks).astype(np.float32) if chunks
                      else np.zeros((0, int(fm.outputs[0].shape[-1])), np.float32))
    return feats


def _image_datasets(run: Run, data: _Data, seed: int):
    """(train, val) tf.data of images: freshly augmented every epoch with on-the-fly augmentation."""
    config, bs = run.config, int(run.config.batch_size)
    train_ds = (on_the_fly_dataset(data.train, config.size, bs, seed, config.augment_config())
                if config.augmentation == "on_the_fly" else array_dataset(data.train.images, data.train, bs, True, seed))
    val_ds = array_dataset(data.val.images, data.val, bs, False, config.seed) if len(data.val) else None
    return train_ds, val_ds


def _fit(run: Run, keras, L, M, net, data: _Data) -> None:
    """Phase 1: the heads on cached features (the fast path), or the whole network on images."""
    config, bs, fast = run.config, int(run.config.batch_size), run.config.uses_feature_cache
    total_epochs = config.epochs + _fine_tune_epochs(config)
    steps = math.ceil(len(data.train) / bs)
    run.state["batches_total"] = steps * total_epochs
    trainer = L.FaceTracker(M.heads_of(net) if fast else net)
    # XLA halves the CPU time of a heads-only step (mostly Adam's update of the two wide Dense layers);
    # it is off for the full network, where compiling the backbone's gradient would take minutes on a CPU.
    # Heads steps take milliseconds, so running 16 per call halves an epoch by saving Python dispatch.
    trainer.compile(keras.optimizers.Adam(config.learning_rate), L.classification_loss, L.localization_loss,
                    config.localization_weight, jit_compile=bool(fast),
                    steps_per_execution=min(16, steps) if fast else 1)
    if fast:
        train_ds = array_dataset(data.feats["train"], data.train, bs, True, config.seed)
        val_ds = array_dataset(data.feats["val"], data.val, bs, False, config.seed) if len(data.val) else None
    else:
        train_ds, val_ds = _image_datasets(run, data, config.seed)
    run.emit("training", 0.0, f"training: epoch 1/{total_epochs} (building the training step)", None, 0, total_epochs)
    recal = None if config.frozen else (data.train.images, steps)
    cbs = make_callbacks(keras, "training", 0, total_epochs, run.reporter(total_epochs), run.cancel,
                         _monitor(data), config, run.history, run.state, recalibrate=recal)
    trainer.fit(train_ds, validation_data=val_ds, epochs=config.epochs, callbacks=cbs, verbose=0, shuffle=False)
    check_stop(run.state, run.cancel)


def _monitor(data: _Data) -> str:
    return "val_loss" if len(data.val) else "loss"


def _fine_tune(run: Run, keras, L, M, net, data: _Data, phase1_epochs: int) -> bool:
    """Optional phase 2: unfreeze the top of a pretrained backbone and train through images at a small
    learning rate. Returns whether the backbone's weights changed."""
    config = run.config
    ft_epochs = _fine_tune_epochs(config)
    if not ft_epochs:
        return False
    changed = False
    if M.unfreeze_top(net, config.fine_tune_layers):
        changed = True
        total_epochs = config.epochs + ft_epochs
        steps = math.ceil(len(data.train) / int(config.batch_size))
        run.state["batches_done"] = steps * config.epochs  # skipped epochs of phase 1 count as done
        run.state["t_train"] = None  # its steps run through the backbone: measure their rate afresh
        tuner = L.FaceTracker(net)
        tuner.compile(keras.optimizers.Adam(config.fine_tune_lr), L.classification_loss, L.localization_loss,
                      config.localization_weight)
        train_ds, val_ds = _image_datasets(run, data, config.seed + 1)
        run.state["epoch"] = 0
        cbs = make_callbacks(keras, "fine-tuning", phase1_epochs, total_epochs, run.reporter(total_epochs),
                             run.cancel, _monitor(data), config, run.history, run.state,
                             run.state.get("best", math.inf), net.get_weights())
        tuner.fit(train_ds, validation_data=val_ds, epochs=ft_epochs, callbacks=cbs, verbose=0, shuffle=False)
        check_stop(run.state, run.cancel)
    else:
        run.warnings.append("fine-tuning skipped: the top layers of the backbone have no weights to train")
    net.get_layer("backbone").trainable = False
    return changed


def _evaluate(run: Run, L, M, net, data: _Data, backbone_changed: bool) -> tuple[dict, dict]:
    """Metrics of the network in eval mode on train (without offline copies), val and test, and checks:
    a warning when eval mode falls far behind training, and (cached features) that the saved network
    gives what its heads gave on the features."""
    run.emit("evaluating", 0.0, "evaluating on train, val and test")
    config, bs = run.config, int(run.config.batch_size)
    metrics = {}
    for key, s in (("train", data.train_orig), ("val", data.val), ("test", data.test)):
        if len(s) == 0:
            continue
        if backbone_changed:
            prob, box = _predict(net, s.images, bs * 4)
        else:
            prob, box = _predict(M.heads_of(net), data.feats["train_orig" if key == "train" else key], 256)
        metrics[key] = L.evaluate_predictions(s.has_face, s.boxes, prob, box, config.localization_weight)
    best_row = next((h for h in run.history if h["epoch"] == run.state.get("best_epoch")), None)
    if best_row and metrics.get("train", {}).get("mean_iou") is not None and best_row.get("mean_iou") is not None:
        # Training-mode figures use batch statistics; eval mode uses BatchNorm's moving statistics.
        gap = best_row["mean_iou"] - metrics["train"]["mean_iou"]
        if gap > 0.1:
            run.warnings.append(f"in eval mode the model reaches a mean IoU of {metrics['train']['mean_iou']:.2f} "
                                f"on its own training photos, {gap:.2f} below what training reported: its "
                                f"BatchNorm statistics do not match its weights. Train longer, or use pretrained "
                                f"weights.")
    checks = {}
    if not backbone_changed:
        k = min(8, len(data.train_orig))
        p_full, b_full = _predict(net, data.train_orig.images[:k], k)
        p_h, b_h = _predict(M.heads_of(net), data.feats["train_orig"][:k], k)
        checks["full_vs_cached_max_abs_diff"] = float(max(np.abs(p_full - p_h).max(), np.abs(b_full - b_h).max()))
    return metrics, checks


def _predict(model, x: np.ndarray, batch: int) -> tuple[np.ndarray, np.ndarray]:
    if len(x) == 0:
        return np.zeros((0, 1), np.float32), np.zeros((0, 4), np.float32)
    prob, box = model.predict(x.astype(np.float32) if x.dtype == np.uint8 else x, batch_size=batch, verbose=0)
    return np.asarray(prob), np.asarray(box)
