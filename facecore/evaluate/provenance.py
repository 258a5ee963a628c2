"""Where the labels being scored came from (boxes accepted unchanged from a detector's proposals), and what
a saved model is when training kept its starting point.

Pre-labeling records, per box, the detector whose proposal was accepted unchanged
(``ImageLabel.proposed_by``, labelme's shape key ``"proposed_by"``). Scoring that detector on those
labels measures how well it agrees with its own boxes (IoU 1.000 for the built-in detector), not where a
person would draw the face; the same holds for a model fine-tuned from that detector's network, which
starts out drawing its boxes. ``own_labels`` counts such boxes so the Evaluate page can say so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from ..detect import BLAZEFACE, BLAZEFACE_SHORT
from ..meta import BLAZEFACE_ARCH, STYLE_ARCH, ModelMeta
from ..registry import split_name

SHORT_RANGE_SIZE = 128  # a fine-tuned BlazeFace of this input size started from the short-range network


def start_detectors(meta: ModelMeta | dict | None) -> tuple[str, ...]:
    """The built-in detector whose network (and boxes) a trained model started from: ``("blazeface",)``
    for a fitted box style or a BlazeFace fine-tuned from MediaPipe's weights (``"blazeface-short"`` for
    the 128 px one); ``()`` for anything trained from scratch or not a model."""
    meta = ModelMeta.of(meta)
    if meta.architecture == STYLE_ARCH:
        return (BLAZEFACE,)
    if meta.architecture == BLAZEFACE_ARCH and meta.pretrained:
        return (BLAZEFACE_SHORT if meta.config_size == SHORT_RANGE_SIZE else BLAZEFACE,)
    return ()



@dataclass(frozen=True)
class OwnLabels:
    """Of the ``boxes`` face boxes scored, ``unchanged`` were accepted unchanged from the proposals of
    ``detector`` itself (``from_itself``) or of the network it started from (``from_start``)."""

    detector: str
    boxes: int
    from_itself: int
    from_start: int
    start: str = ""

    @property
    def unchanged(self) -> int:
        return self.from_itself + self.from_start

    def message(self) -> str:
        """What the figures mean, for people; ``""`` when no scored box is an unchanged proposal."""
        if not self.unchanged:
            return ""
        whose = []
        if self.from_itself:
            whose.append(f"`{self.detector}`'s own proposals")
        if self.from_start:
            whose.append(f"the proposals of `{self.start}`, the network `{self.detector}` started from")
        return (f"**`{self.detector}` is scored against its own boxes:** {self.unchanged} of the {self.boxes} "
                f"face boxes here were accepted unchanged from {' and '.join(whose)}. On those photos its IoU "
                f"and AP say how well it agrees with boxes it drew itself (near 1.0 by construction), not how "
                f"well it finds faces where you would draw them. Correct those boxes on Collect & Label (moving "
                f"a box makes it yours), or evaluate on photos you boxed by hand.")


def own_labels(images: Iterable, detector: str, meta: ModelMeta | dict | None = None) -> OwnLabels:
    """Count the face boxes of ``images`` (``facecore.evaluate.metrics.EvalImage``) accepted unchanged from the
    proposals of ``detector`` (``NAME@int8``: of ``NAME`` too) or of the network it started from
    (``start_detectors(meta)``, ``meta`` its ``meta.json``)."""
    own = {detector, split_name(detector)[0]}
    start = [s for s in start_detectors(meta) if s not in own]
    boxes = itself = from_start = 0
    for im in images:
        boxes += len(im.boxes)
        for source in getattr(im, "proposed_by", ()):
            itself += source in own
            from_start += source in start
    return OwnLabels(detector, boxes, itself, from_start, start[0] if start else "")


def kept_start(meta: ModelMeta | dict | None) -> str:
    """For a finished training whose epochs never beat the starting point on the val split
    (``meta.best == 0``): what the saved model is, for people, first thing on the Train page's result;
    ``""`` when an epoch was kept."""
    meta = ModelMeta.of(meta)
    if meta.best != 0:
        return ""
    runs = meta.epochs_run
    head = (f"**No training epoch beat the starting point on the val split**, so the {runs} epoch(s) of "
            f"training were dropped and the saved model is the start: " if isinstance(runs, int) else
            "**No training epoch beat the starting point on the val split**, so the saved model is the start: ")
    if meta.architecture == BLAZEFACE_ARCH and not meta.pretrained:
        return head + ("the network as initialized, untrained (no pretrained weights). It will not find faces: "
                       "train with MediaPipe's weights instead.")
    if meta.architecture == BLAZEFACE_ARCH:
        start = start_detectors(meta)[0]
        style = meta.start_style
        fitted = (f"with your labels' box style fitted ({style.get('method', 'offsets')}, from "
                  f"{style.get('n_faces', '?')} faces)" if style else "with its own box style")
        return head + (f"MediaPipe's network, unchanged (the built-in `{start}`), {fitted}. Compare it with "
                       f"`{start}` on the Evaluate page. Training may beat the start with more labeled photos "
                       f"(a val split of a few photos is a noisy judge), more epochs or other *Layers to train*.")
    return head + "the network as it was before training."
