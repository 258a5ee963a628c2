"""Fine-tuning BlazeFace (the default model): one training run's stages, on the same ``Run`` as the
FaceTracker's (``facecore.train.facetracker``). The graph pieces (trainer, start style, decoding) are in
``facecore.blazeface.finetune`` and ``facecore.blazeface.network``; the choice among built-in, box style and
fine-tuning for few photos in ``facecore.train.personalize``."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from ..meta import BLAZEFACE_ARCH, ModelMeta
from .callbacks import make_callbacks
from .context import Run, check_stop, training_eta
from .data import load_samples, read_splits
from .save import run_meta, save_model
from . import personalize as P


def _start(variant: str, config, hw):
    """MediaPipe's network (pretrained unless ``config.weights`` is None) with ``config.train_layers`` trainable."""
    from ..blazeface import network as BK

    net = BK.raw_net(variant, "blazeface" if config.weights else None, input_hw=hw)
    BK.set_trainable(net, config.train_layers)
    return net


def _trainer(net, ctx: dict, style):
    import keras

    from ..blazeface.finetune import build_trainer

    trainer = build_trainer(net, ctx["anchors"], ctx["size"], float(ctx["config"].localization_weight),
                            ctx["config"].augmentation != "off", style, ctx["aspect"], ctx["hw"])
    trainer.compile(keras.optimizers.Adam(ctx["config"].learning_rate))
    return trainer


def _mean_iou(net, style, samples, ctx: dict) -> float:
    """Mean over every labeled face of its IoU with the best-overlapping of its photo's n best faces (n: the
    photo's labeled faces), found as the app finds them (the saved graph's anchors, weighted NMS:
    ``predict_best``). For one face a photo: the IoU of the best face with the label; for group photos a
    candidate also has to find every face."""
    from ..blazeface import network as BK
    from .. import boxes as B
    from ..blazeface.finetune import predict_best

    model = BK.detector_net(net, ctx["anchors"], ctx["size"], style=style, aspect=ctx["aspect"], hw=ctx["hw"])
    most = max([len(t) for t in samples.all_boxes] + [1])
    _, _, faces = predict_best(model, samples.images, max_faces=min(most, 64))
    ious = []
    for found, truth in zip(faces, samples.all_boxes):
        truth = np.asarray(truth, np.float32).reshape(-1, 4)
        if not len(truth):
            continue
        boxes = np.asarray([b for _, b in found[:len(truth)]], np.float32).reshape(-1, 4)
        best = B.iou_matrix(truth, boxes).max(axis=1) if len(boxes) else np.zeros(len(truth))
        ious.extend(float(v) for v in best)
    return float(np.mean(ious)) if ious else 0.0


def _fold_scorer(run: Run, ctx: dict):
    """``score_fold(train, test)`` for ``personalize.cross_validate``: built-in, fitted style and
    fine-tuned, each scored on ``test``; fine-tuning counts toward the progress bar's batches."""
    import keras

    from ..blazeface.finetune import dataset_of, fit_start_style
    from ..blazeface.builtin import DEFAULT_STYLE

    config, state = run.config, run.state
    h, w = ctx["hw"]
    built_in = DEFAULT_STYLE.scaled(h / w, 1.0)  # the built-in style, from the square to the input's axes

    class Watch(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            loss = (logs or {}).get("loss")
            if loss is not None and not math.isfinite(float(loss)):
                self.model.stop_training = True  # a diverging fold just scores what it reached
            if run.cancel is not None and run.cancel.cancelled:
                state["cancelled"] = True
                self.model.stop_training = True
            state["batches_done"] += 1
            run.emit("training", state["batches_done"] / max(state["batches_total"], 1),
                     "cross-validation: built-in, box style or fine-tuning?", training_eta(state))

    def score_fold(train, test) -> dict:
        keras.utils.set_random_seed(config.seed)
        net = _start(ctx["variant"], config, ctx["hw"])
        out = {P.BUILT_IN: _mean_iou(net, built_in, test, ctx)}
        style = fit_start_style(net, ctx["anchors"], ctx["size"], train, [], ctx["aspect"], ctx["hw"])
        out[P.STYLE] = _mean_iou(net, style, test, ctx) if style is not None else out[P.BUILT_IN]
        trainer = _trainer(net, ctx, style)
        trainer.fit(dataset_of(train.images, train.all_boxes, int(config.batch_size), True, config.seed),
                    epochs=config.epochs, callbacks=[Watch()], verbose=0, shuffle=False)
        check_stop(state, run.cancel)
        out[P.FINE_TUNED] = _mean_iou(net, style, test, ctx)
        return out

    return score_fold


def train_blazeface(run: Run) -> Path:
    """Split, read, (for few photos) cross-validate the choice, fine-tune, evaluate in eval mode, save;
    returns the model folder. Progress, history, early stopping, cancel and the non-finite-loss check
    behave as for every model (``Run``)."""
    import keras

    from ..blazeface import network as BK
    from ..blazeface.finetune import (LOAD_SCALE, VARIANT_BY_SIZE, dataset_of, dominant_aspect, fit_start_style,
                                      label_boxes, pick_input_shape, resize_all, short_range_warning)
    from ..blazeface.builtin import DEFAULT_STYLE, network_file, ssd_anchors

    dataset, config, state, warnings = run.dataset, run.config, run.state, run.warnings
    variant = VARIANT_BY_SIZE[config.size]
    network_file(variant)  # the pretrained network must be there before any photo is read
    # "frame": the network's input follows the photos' shape (shorter side config.size): a 4:3 photo
    # fills 192 x 256 instead of sitting in a 192 px square, so small faces keep a third more pixels. The
    # saved model takes the whole frame stretched to a square of the longer side, unstretched in the graph.
    first = dataset.split(config.split, config.seed)
    items = dataset.training_items(first) if config.augmentation == "offline" else list(first.train)
    frame_aspect = dominant_aspect([it.image for it in first.train])
    shape = pick_input_shape(config.input_shape, label_boxes(dataset, items))
    if (note := short_range_warning(variant, label_boxes(dataset, first.train))) is not None:  # not mosaics
        warnings.append(note)
    hw = BK.network_hw(config.size, frame_aspect, shape)
    size = max(hw)
    load_size = int(round(size * LOAD_SCALE))
    split, *parts = read_splits(dataset, config, load_size, run.emit, warnings, run.cancel)
    samples = dict(zip(("train", "val", "test"), parts))
    tr, val = samples["train"], samples["val"]
    run.emit("loading", 1.0, "building BlazeFace (face-pretrained)" if config.weights else "building BlazeFace (from scratch)")
    keras.utils.set_random_seed(config.seed)
    anchors = ssd_anchors(variant, hw)
    ctx = {"variant": variant, "config": config, "hw": hw, "size": size, "anchors": anchors, "aspect": frame_aspect}
    bs = int(config.batch_size)
    steps = math.ceil(len(tr) / bs)
    choice = None
    if config.weights and config.personalize == "auto" and P.applies(tr, val):
        pool = P.concat(tr, val)
        k = len(P.folds_of(pool))
        fold_steps = sum(math.ceil((len(pool) - len(f)) / bs) for f in P.folds_of(pool))
        state["batches_total"] = fold_steps * config.epochs + steps * config.epochs
        choice = P.cross_validate(pool, _fold_scorer(run, ctx), k)
        warnings.append(f"personalization: {choice.winner} chosen by cross-validation (mean IoU "
                        + ", ".join(f"{c} {v:.3f}" for c, v in choice.cv_iou.items()) + ")")
    else:
        state["batches_total"] = steps * config.epochs
    net = _start(variant, config, hw)
    run.emit("loading", 1.0, "measuring how the labels sit around the pretrained detector's boxes")
    if choice is not None and choice.winner == P.BUILT_IN:
        style = DEFAULT_STYLE.scaled(hw[0] / hw[1], 1.0)
    else:
        style = fit_start_style(net, anchors, size, tr, warnings, frame_aspect, hw)
    trainer = _trainer(net, ctx, style)
    val_ds = dataset_of(resize_all(val.images, size).astype(np.uint8), val.all_boxes, bs, False, 0) if len(val) else None
    if choice is None or choice.winner == P.FINE_TUNED:
        _fit(run, trainer, net, tr, val_ds, steps)
    else:
        state["best_epoch"] = None  # no epoch ran: cross-validation chose the start (meta's "personalization")
        state["batches_done"] = state["batches_total"]
    model = BK.detector_net(net, anchors, size, style=style, aspect=frame_aspect, hw=hw)
    metrics = _evaluate(run, model, samples, split, load_size)
    run.emit("saving", 0.0, "saving the model")
    meta = _meta(run, split, tr, style, frame_aspect, shape, hw, size, variant, metrics, choice)
    sample = resize_all(np.concatenate([tr.images[:2], val.images[:2]]), size)
    path = save_model(model, run.out_dir, meta, export_tflite=config.export_tflite, sample=sample,
                      tflite_fixed_batch=True)
    run.emit("saving", 1.0, f"saved {path}")
    return path


def _fit(run: Run, trainer, net, tr, val_ds, steps: int) -> None:
    """Fine-tune: the start (pretrained network + the fitted style) is a candidate too: fine-tuning that
    never beats it on the val split leaves it in place."""
    import keras

    from ..blazeface.finetune import dataset_of

    config, state = run.config, run.state
    train_ds = dataset_of(tr.images, tr.all_boxes, int(config.batch_size), True, config.seed)
    monitor = "val_box_error" if val_ds is not None else "box_error"
    start = trainer.evaluate(val_ds, verbose=0, return_dict=True).get("box_error") if val_ds is not None else None
    start = float(start) if start is not None and math.isfinite(float(start)) else math.inf
    state["best_epoch"] = 0 if math.isfinite(start) else None
    cbs = make_callbacks(keras, "training", 0, config.epochs, run.reporter(config.epochs), run.cancel, monitor,
                         config, run.history, state, best=start,
                         best_weights=net.get_weights() if math.isfinite(start) else None)
    trainer.fit(train_ds, validation_data=val_ds, epochs=config.epochs, callbacks=cbs, verbose=0, shuffle=False)
    check_stop(state, run.cancel)


def _evaluate(run: Run, model, samples: dict, split, load_size: int) -> dict:
    """Metrics of the saved graph on the train, val and test splits, in eval mode."""
    from ..blazeface.finetune import predict_best
    from ..evaluate.metrics import compute_metrics
    from ..facetracker.losses import evaluate_predictions

    run.emit("evaluating", 0.0, "evaluating on train, val and test")
    metrics = {}
    for key in ("train", "val", "test"):
        s = samples[key] if key != "train" else load_samples(split.train, load_size)
        if len(s) == 0:
            continue
        prob, box, _ = predict_best(model, s.images)
        m = evaluate_predictions(s.has_face, s.boxes, prob, box)
        m.pop("loss", None), m.pop("class_loss", None), m.pop("loc_loss", None)
        ap = compute_metrics([b for b in s.all_boxes], prob[:, 0], list(box))
        m.update({k: ap[k] for k in ("ap50", "ap30", "fp_rate_noface", "recall50") if k in ap})
        metrics[key] = m
    return metrics


def _meta(run: Run, split, tr, style, frame_aspect, shape, hw, size, variant, metrics, choice) -> ModelMeta:
    from ..blazeface.finetune import saved_outputs_doc

    config, state, history = run.config, run.state, run.history
    return run_meta(
        run.out_dir, config, run.dataset, split, tr, size,  # size: the graph's square input (input_hw)
        architecture=BLAZEFACE_ARCH, start_style=style.to_dict() if style is not None else None,
        # width / height of most training photos: the graph letterboxes its input to it, and inference
        # pads frames of another shape to it first
        frame_aspect=frame_aspect,
        input_shape=shape,  # "frame", "square" or "close" (config.input_shape "auto" picks one: pick_input_shape)
        network_input_hw=list(hw),  # what the network sees after the graph's unstretching
        history=history, metrics=metrics, personalization=choice.to_dict() if choice is not None else None,
        attribution=f"fine-tuned from MediaPipe BlazeFace {variant}-range (Apache-2.0), see NOTICE",
        training={"seconds": round(time.monotonic() - run.t_start, 2), "epochs_run": len(history),
                  "best_epoch": state.get("best_epoch"), "stopped_early": len(history) < config.epochs,
                  "train_layers": config.train_layers, "warnings": run.warnings},
        extra={"outputs": saved_outputs_doc()})
