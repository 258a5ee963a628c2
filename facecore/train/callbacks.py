"""The Keras callbacks every training phase runs with (history, progress, cancel, non-finite loss, the
best epoch's weights, early stopping, learning rate on a plateau)."""

from __future__ import annotations

import math
import time
from typing import Callable

from ..jobs import Cancel
from .config import TrainConfig


def make_callbacks(keras, phase: str, epoch_offset: int, total_epochs: int, report: Callable[[str], None],
                   cancel: Cancel | None, monitor: str, config: TrainConfig, history: list[dict], state: dict,
                   best: float = math.inf, best_weights=None, recalibrate: tuple | None = None) -> list:
    """The Keras callbacks of one training phase: ``Watch`` (below), early stopping on ``monitor`` and
    the learning rate halved on a plateau. ``report(phase)`` is called after every batch and epoch;
    ``state`` is the run's shared counters (``batches_done``, ``epoch``, ``best``, ``best_epoch``, and
    ``cancelled`` / ``nonfinite`` when the phase had to stop)."""
    class Watch(keras.callbacks.Callback):
        """History, progress, cancel, non-finite loss, and the best epoch's weights (restored at the end).

        ``best`` / ``best_weights`` carry the previous phase's best: fine-tuning that never beats it
        leaves the phase-1 weights in place. ``recalibrate`` = (images, steps per epoch): after the
        last batch of every epoch, before validation, BatchNorm statistics are recomputed for the
        current weights (``facecore.facetracker.model.recalibrate_batchnorm``), so that val figures, the best
        epoch and the saved model are those of the network in eval mode.
        """

        def __init__(self):
            super().__init__()
            self.best = best
            self.best_weights = best_weights
            self.t_epoch = time.monotonic()

        def on_epoch_begin(self, epoch, logs=None):
            self.t_epoch = time.monotonic()
            self.batches_before = state["batches_done"]

        def on_train_batch_end(self, batch, logs=None):
            loss = (logs or {}).get("loss")
            if loss is not None and not math.isfinite(float(loss)):
                state["nonfinite"] = f"{phase} epoch {epoch_offset + state['epoch'] + 1}, batch {batch + 1}"
                self.model.stop_training = True
            if cancel is not None and cancel.cancelled:
                state["cancelled"] = True
                self.model.stop_training = True
            # with steps_per_execution > 1 this runs once per group of steps; ``batch`` is the last one
            state["batches_done"] = self.batches_before + batch + 1
            if recalibrate is not None and batch + 1 == recalibrate[1] and not self.model.stop_training:
                from ..facetracker.model import recalibrate_batchnorm

                recalibrate_batchnorm(self.model.net, recalibrate[0], max(int(config.batch_size), 32))
            report(phase)

        def on_epoch_end(self, epoch, logs=None):
            logs = dict(logs or {})
            state["epoch"] = epoch + 1
            if state.get("nonfinite") or state.get("cancelled"):
                return
            row = {"epoch": epoch_offset + epoch + 1, "phase": phase,
                   "seconds": round(time.monotonic() - self.t_epoch, 3)}
            lr = self.model.optimizer.learning_rate
            row["lr"] = float(lr.numpy() if hasattr(lr, "numpy") else lr)
            for k, v in logs.items():
                if k != "learning_rate":
                    row[k] = float(v)
            if not all(math.isfinite(row[k]) for k in row if k.endswith("loss")):
                state["nonfinite"] = f"{phase} epoch {epoch_offset + epoch + 1} (validation)"
                self.model.stop_training = True
                return
            history.append(row)
            value = row.get(monitor, row.get("loss"))
            if value < self.best:
                self.best = value
                self.best_weights = self.model.net.get_weights()
                state["best_epoch"] = row["epoch"]
                state["best"] = value
            report(phase)

        def on_train_end(self, logs=None):
            if self.best_weights is not None:
                self.model.net.set_weights(self.best_weights)

    cbs = [Watch()]
    if config.patience > 0:
        cbs.append(keras.callbacks.EarlyStopping(monitor=monitor, mode="min", patience=config.patience))
    if config.lr_patience > 0:
        cbs.append(keras.callbacks.ReduceLROnPlateau(monitor=monitor, mode="min", factor=config.lr_factor,
                                                     patience=config.lr_patience, min_lr=1e-7))
    return cbs
