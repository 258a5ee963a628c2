"""Comparing identity classifiers (backbones, with and without augmentation) on one identity set.

The last comparison run on a set is kept in the set's folder as ``comparison.json``.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, replace
from datetime import datetime, timezone
from pathlib import Path

from ..errors import Cancelled, FaceCoreError
from .data import IdentitySet, check_identity_name
from .train import IdentityConfig, TrainResult, overall_fraction, train_identity
from ..io import atomic_write_text
from ..jobs import Cancel, Progress, ProgressFn, ignore

COMPARISON_FILE = "comparison.json"


COMPARISON_COLUMNS = ["model", "backbone", "augment", "val_accuracy", "val_loss", "params", "size_mb",
                      "latency_ms", "epochs", "train_seconds"]


def comparison_row(result: TrainResult) -> dict:
    """One row of the comparison table (the tutorial's: accuracy, loss, parameters, size, latency)."""
    m = result.meta
    val = m.split_metrics("val")
    return {"model": m.name, "backbone": m.backbone, "augment": m.config.get("augment"),
            "val_accuracy": round(val["accuracy"], 4), "val_loss": round(val["loss"], 4),
            "params": m.extra.get("params"), "size_mb": round((m.size_bytes or 0) / 1e6, 2),
            "latency_ms": m.latency_ms, "epochs": len(m.history), "train_seconds": m.extra.get("train_seconds")}


def compare(identity_set: IdentitySet, backbones, augment_options, base_config: IdentityConfig,
            models_root: str | os.PathLike, prefix: str = "cmp",
            progress: ProgressFn | None = None, cancel: Cancel | None = None) -> list[dict]:
    """Train one model per (backbone, augmentation) pair on the same data and split; each is saved
    as ``models/<prefix>-<backbone>-aug<N>``. Returns the table rows (``COMPARISON_COLUMNS``) and
    writes them to the set's ``comparison.json`` after each run.

    ``progress``: runs done of all (fractional within a run); ``stage`` and ``extra`` are the current
    run's (see ``train_identity``), with ``run`` (0-based), ``runs``, ``name`` and the run's own
    progress (``inner``) added. On ``cancel`` the runs finished so far stay saved; ``Cancelled.partial``
    holds their rows.
    """
    progress = progress or ignore
    prefix = check_identity_name(prefix, "prefix")
    runs = [(b, a) for b in backbones for a in augment_options]
    if not runs:
        raise FaceCoreError("choose at least one backbone to compare")
    rows = []
    for i, (backbone, aug) in enumerate(runs):
        name = f"{prefix}-{backbone}-aug{aug}"
        cfg = replace(base_config, backbone=backbone, augment=int(aug))

        def step(p: Progress, _i=i, _name=name):
            progress(Progress(_i + overall_fraction(p), len(runs), f"[{_i + 1}/{len(runs)}] {_name}: {p.message}",
                              p.stage, extra={**p.extra, "run": _i, "runs": len(runs), "name": _name, "inner": p}))

        try:
            rows.append(comparison_row(train_identity(identity_set, cfg, Path(models_root) / name, step, cancel)))
        except Cancelled as exc:
            raise Cancelled(str(exc), rows) from None
        save_comparison(identity_set, rows, base_config)
    return rows


def save_comparison(identity_set: IdentitySet, rows: list[dict], config: IdentityConfig) -> Path:
    doc = {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "config": asdict(config),
           "counts": identity_set.counts(), "rows": rows}
    return atomic_write_text(identity_set.root / COMPARISON_FILE, json.dumps(doc, indent=2))


def load_comparison(identity_set: IdentitySet) -> dict | None:
    """The last comparison run on this set (``{"created", "config", "counts", "rows"}``), or None."""
    p = identity_set.root / COMPARISON_FILE
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    return doc if isinstance(doc, dict) and isinstance(doc.get("rows"), list) else None
