"""Progress on a terminal: one line rewritten in place from ``facecore.jobs.Progress`` reports."""

from __future__ import annotations

import sys
import time
from typing import Callable

from ..jobs import Progress, ProgressFn


def fmt_s(s: float | None) -> str:
    """Seconds as ``"42s"`` or ``"3m07s"`` (``"--"`` when unknown)."""
    if s is None:
        return "--"
    s = int(s)
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def bar(fraction: float, width: int = 30) -> str:
    """``[#####.....]`` filled to ``fraction`` (0..1)."""
    filled = int(round(min(max(fraction, 0.0), 1.0) * width))
    return f"[{'#' * filled}{'.' * (width - filled)}]"


def line_printer(render: Callable[[Progress], str], stream=None, every: float = 0.2) -> ProgressFn:
    """A ``progress`` callable that rewrites one line with ``render(p)`` at most every ``every`` seconds,
    and always for the last unit (so the line ends on 100 %). ``stream``: default stdout."""
    last = [-float("inf")]

    def show(p: Progress) -> None:
        now = time.monotonic()
        if now - last[0] < every and p.done < p.total:
            return
        last[0] = now
        out = stream or sys.stdout
        out.write(f"\r{render(p)}")
        out.flush()

    return show
