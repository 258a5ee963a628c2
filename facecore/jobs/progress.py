"""The long-work protocol: one progress record and one cancel token (``facecore.jobs`` runs such work).

Every long piece of work (training a detector or an identity classifier, comparing backbones,
augmentation and mosaics, video processing, pre-labeling, evaluation) takes the same two arguments:

- ``progress``: a callable taking a ``Progress``, called from the working thread as units finish;
- ``cancel``: a ``Cancel`` token. The work checks it between units and, where it stops, raises
  ``facecore.errors.Cancelled``. Work that keeps what it finished (augmented copies, mosaics,
  proposals, images evaluated) passes its report so far as ``Cancelled.partial``; work that saves all
  or nothing (a model, a video) saves nothing and leaves older files as they were.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import Cancelled


@dataclass(frozen=True)
class Progress:
    """How far some work is: ``done`` of ``total`` (any unit: copies, frames, epochs, or a fraction of
    1.0), what it is doing (``message``, ``stage``), the seconds it expects to need still (``eta_s``)
    and whatever else the work reports (``extra``: metrics, the epoch history, the item just done)."""

    done: float = 0
    total: float = 0
    message: str = ""
    stage: str = ""
    eta_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict, hash=False)

    @property
    def fraction(self) -> float:
        """``done / total`` in 0..1 (0 while the total is unknown)."""
        return min(max(self.done / self.total, 0.0), 1.0) if self.total else 0.0


ProgressFn = Callable[[Progress], None]


def ignore(progress: Progress) -> None:
    """A ``progress`` callable that shows nothing (work called without one uses it)."""


class Cancel:
    """A cancel token: ``cancel()`` from any thread; the work polls ``cancelled`` or calls ``check``."""

    def __init__(self, event=None):
        # a multiprocessing Event crosses into a worker process (ProcessJob); a thread's one is enough otherwise
        self._event = event if event is not None else threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self, message: str = "stopped", partial: Any = None) -> None:
        """Raise ``Cancelled(message, partial)`` if cancelled."""
        if self._event.is_set():
            raise Cancelled(message, partial)

    def __repr__(self) -> str:
        return f"Cancel(cancelled={self.cancelled})"
