"""What the stages of one training run share: its inputs, progress (one bar over all stages), the
per-epoch history, warnings and the counters the callbacks keep; the ETA and the end-of-phase check."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..facetracker.backbones import BLAZEFACE_BACKBONE
from ..datasets.dataset import Dataset
from ..errors import Cancelled
from ..jobs import Cancel, Progress, ProgressFn
from .config import STOPPED, TrainConfig, TrainingError


def stage_spans(config: TrainConfig) -> dict[str, tuple[float, float]]:
    """Each stage's share of the progress bar (the feature cache's stage is empty without it)."""
    fast = config.uses_feature_cache
    spans = {"loading": (0.0, 0.08), "features": (0.08, 0.2 if fast else 0.08),
             "training": (0.2 if fast else 0.08, 0.93), "evaluating": (0.93, 0.96), "saving": (0.96, 1.0)}
    if config.backbone == BLAZEFACE_BACKBONE:
        spans.update(training=(0.08, 0.93))
    return spans


@dataclass
class Run:
    """One training run: its inputs and what its stages share.

    ``state`` holds the counters the callbacks keep (``epoch``, ``batches_done``, ``batches_total``,
    ``t_train``, ``best``, ``best_epoch``, and ``cancelled`` / ``nonfinite`` when a phase had to stop);
    ``history`` one row per epoch; ``warnings`` go into ``meta.json``.
    """

    dataset: Dataset
    config: TrainConfig
    out_dir: Path
    progress: ProgressFn | None
    cancel: Cancel | None
    t_start: float = field(default_factory=time.monotonic)
    state: dict = field(default_factory=lambda: {"epoch": 0, "batches_done": 0, "batches_total": 1, "t_train": None})
    history: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self):
        self.spans = stage_spans(self.config)

    def emit(self, stage: str, frac_in_stage: float, message: str = "", eta: float | None = None, epoch: int = 0,
             epochs: int = 0) -> None:
        """Report ``frac_in_stage`` of ``stage`` as a ``Progress`` of the whole run (``done`` of 1.0;
        ``extra``: ``epoch``, ``epochs``, ``history``). Raises ``Cancelled`` once cancelled, except in the
        training stages, which stop at the end of a batch (``make_callbacks``)."""
        if self.cancel is not None and self.cancel.cancelled and stage not in ("training", "fine-tuning"):
            raise Cancelled(STOPPED)
        if self.progress is None:
            return
        lo, hi = self.spans[stage if stage != "fine-tuning" else "training"]
        self.progress(Progress(lo + (hi - lo) * min(max(frac_in_stage, 0.0), 1.0), 1.0, message, stage, eta,
                               {"epoch": epoch, "epochs": epochs, "history": list(self.history)}))

    def reporter(self, total_epochs: int) -> Callable[[str], None]:
        """``report(phase)`` for ``make_callbacks``: batches done of all, the epoch and the ETA."""
        def report(phase: str) -> None:
            ep = len(self.history)
            self.emit(phase, self.state["batches_done"] / max(self.state["batches_total"], 1),
                      f"{phase}: epoch {min(ep + 1, total_epochs)}/{total_epochs}", training_eta(self.state), ep,
                      total_epochs)
        return report


def training_eta(state: dict) -> float | None:
    """Seconds left in the training stage, from ``state["batches_done"]`` / ``["batches_total"]``.

    The clock starts at the first report, after the first batch: building the training graph takes
    seconds to minutes and would otherwise inflate the rate; the time of validation and other
    end-of-epoch work is included, since the rate is measured over whole stretches of time. None until
    a second report has a rate to give.
    """
    now, done = time.monotonic(), state["batches_done"]
    if state.get("t_train") is None:
        state["t_train"], state["b_train"] = now, done
        return None
    counted = done - state.get("b_train", 0)
    if counted <= 0:
        return None
    return (now - state["t_train"]) / counted * max(state["batches_total"] - done, 0)


def check_stop(state: dict, cancel: Cancel | None) -> None:
    """After a phase's ``fit``: raise ``Cancelled`` if it was stopped, ``TrainingError`` if its loss
    became non-finite (nothing is saved either way)."""
    if state.get("cancelled") or (cancel is not None and cancel.cancelled):
        raise Cancelled(STOPPED)
    if state.get("nonfinite"):
        raise TrainingError(f"the loss became non-finite (NaN or infinity) in {state['nonfinite']}; training "
                            f"stopped and nothing was saved. Lower the learning rate and try again.")
