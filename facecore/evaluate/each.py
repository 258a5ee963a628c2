"""Several detectors measured on the same photos, one after another: the Evaluate page's job."""

from __future__ import annotations

from ..errors import Cancelled, FaceCoreError
from ..jobs import Cancel, Progress, ProgressFn
from .metrics import evaluate


def evaluate_each(detectors: dict, images: list, threshold: float, progress: ProgressFn,
                  cancel: Cancel) -> tuple[dict, list]:
    """``evaluate`` each detector (selection key -> detector; a key's first item is the name shown) on the
    same photos (``facecore.evaluate.metrics.EvalImage``): ``(results by key, errors)``. One detector's
    ``FaceCoreError`` does not stop the others; it is returned in ``errors``. Cancel raises ``Cancelled``
    whose ``partial`` is ``(results, errors)`` of the detectors finished."""
    results, errors = {}, []
    for i, (key, det) in enumerate(detectors.items()):
        def each(p, i=i, name=key[0]):
            progress(Progress(i + p.fraction, len(detectors), f"{name}: {p.message}", "evaluate"))

        try:
            results[key] = evaluate(det, images, threshold=threshold, progress=each, cancel=cancel)
        except Cancelled as exc:
            raise Cancelled(str(exc), (results, errors)) from exc
        except FaceCoreError as exc:
            errors.append(exc)
    return results, errors
