"""Personalization that never makes things worse: with few labeled photos, choose by cross-validation.

Ten photos of one person are too few for a val split to say whether fine-tuning helped (one or two val
photos), and fine-tuning on them can do worse than the detector it started from. So with at most
``MAX_PHOTOS`` labeled face photos in the train and val splits, training first runs ``FOLDS``-fold
cross-validation on them, scoring three candidates on each held-out fold:

- ``built-in``: MediaPipe's network with the built-in box style (what the ``blazeface`` detector draws);
- ``box style``: the same network with the box style fitted on the other folds' labels;
- ``fine-tuned``: that start fine-tuned on the other folds for the configured epochs.

The score is the mean IoU of each face photo's best box with its label (what the val split's early
stopping watches). A candidate that learns more must beat the simpler one by ``MARGIN`` to be chosen
(``decide``); the chosen one is then trained on all the photos and saved, and the figures go into
``meta.json`` (``"personalization"``) and onto the Train page.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .data import Samples

MAX_PHOTOS = 40
FOLDS = 3
MARGIN = 0.005
BUILT_IN, STYLE, FINE_TUNED = "built-in", "box style", "fine-tuned"
CANDIDATES = (BUILT_IN, STYLE, FINE_TUNED)


@dataclass(frozen=True)
class Choice:
    """What cross-validation chose: ``winner`` (one of ``CANDIDATES``), ``cv_iou`` (candidate -> mean IoU
    on held-out folds), over ``folds`` folds of ``photos`` labeled face photos."""

    winner: str
    cv_iou: dict
    folds: int
    photos: int

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d) -> "Choice | None":
        """``to_dict``'s output, or None for anything else (an older or edited ``meta.json``)."""
        try:
            iou = {str(k): float(v) for k, v in dict(d["cv_iou"]).items()}
            if str(d["winner"]) not in iou:
                return None
            return cls(str(d["winner"]), iou, int(d["folds"]), int(d["photos"]))
        except (KeyError, TypeError, ValueError, AttributeError):
            return None

    def summary(self) -> str:
        """One sentence for the Train page: which candidate won, by how much."""
        others = [c for c in CANDIDATES if c in self.cv_iou and c != self.winner]
        vs = ", ".join(f"{c} {self.cv_iou[c]:.3f}" for c in others)
        return (f"Chosen by {self.folds}-fold cross-validation on your {self.photos} labeled photos: "
                f"**{self.winner}** (mean IoU on held-out photos {self.cv_iou[self.winner]:.3f}; {vs}).")


WHAT_IS_SAVED = {
    BUILT_IN: "the saved model is MediaPipe's network with the built-in box style, as the built-in `blazeface` "
              "detector draws faces (at the network input this model was trained at): neither a box style fitted "
              "to your labels nor fine-tuning beat it on your held-out photos",
    STYLE: "the saved model is MediaPipe's network with your labels' box style fitted to all of them; no training "
           "epoch ran: fine-tuning did not beat the fitted style on your held-out photos",
    FINE_TUNED: "the saved model was fine-tuned on all of them",
}


def note(meta) -> str:
    """What cross-validation chose and what the saved model therefore is, for the Train page ("" when the
    run did not cross-validate: many photos, or ``personalize="fine-tune"``)."""
    from ..meta import ModelMeta

    choice = Choice.from_dict(ModelMeta.of(meta).personalization) if isinstance(meta, (ModelMeta, dict)) else None
    if choice is None:
        return ""
    return f"{choice.summary()} So {WHAT_IS_SAVED.get(choice.winner, choice.winner)}."


def applies(train: Samples, val: Samples) -> bool:
    """Whether the labeled photos are few enough (at most ``MAX_PHOTOS`` with a face) to cross-validate."""
    n = train.n_face + val.n_face
    return 3 <= n <= MAX_PHOTOS


def decide(cv_iou: dict) -> str:
    """The simplest candidate that no more learned one beats by ``MARGIN``: built-in, then box style,
    then fine-tuned."""
    best = BUILT_IN
    for cand in (STYLE, FINE_TUNED):
        if cand in cv_iou and cv_iou[cand] > cv_iou[best] + MARGIN:
            best = cand
    return best


def subset(s: Samples, idx) -> Samples:
    """The samples at indices ``idx``."""
    idx = [int(i) for i in idx]
    return Samples([s.stems[i] for i in idx], [s.paths[i] for i in idx], s.images[idx], s.has_face[idx],
                   s.boxes[idx], [s.all_boxes[i] for i in idx])


def concat(a: Samples, b: Samples) -> Samples:
    """``a`` then ``b``."""
    if not len(b):
        return a
    return Samples(a.stems + b.stems, a.paths + b.paths, np.concatenate([a.images, b.images]),
                   np.concatenate([a.has_face, b.has_face]), np.concatenate([a.boxes, b.boxes]),
                   a.all_boxes + b.all_boxes)


def folds_of(s: Samples, k: int = FOLDS) -> list[np.ndarray]:
    """``k`` disjoint index arrays covering ``s``, face photos and no-face photos each dealt round-robin
    (so every fold holds faces to score)."""
    face = np.flatnonzero(s.has_face[:, 0] > 0)
    none = np.flatnonzero(s.has_face[:, 0] <= 0)
    k = max(2, min(k, len(face)))
    out = [[] for _ in range(k)]
    for j, i in enumerate(np.concatenate([face, none])):
        out[j % k].append(int(i))
    return [np.asarray(sorted(f), int) for f in out]


def cross_validate(pool: Samples, score_fold, k: int = FOLDS) -> Choice:
    """Run ``score_fold(train, test) -> {candidate: mean IoU over test's face photos}`` on each fold of
    ``pool`` and ``decide``; fold means are weighted by the fold's face photos."""
    folds = folds_of(pool, k)
    sums, weight = {}, 0
    for held in folds:
        rest = np.setdiff1d(np.arange(len(pool)), held)
        test = subset(pool, held)
        scores = score_fold(subset(pool, rest), test)
        weight += test.n_face
        for cand, v in scores.items():
            sums[cand] = sums.get(cand, 0.0) + float(v) * test.n_face
    cv = {c: round(sums[c] / max(weight, 1), 4) for c in CANDIDATES if c in sums}
    return Choice(decide(cv), cv, len(folds), pool.n_face)
