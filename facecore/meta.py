"""A saved model's ``meta.json`` as one typed value, ``ModelMeta``: every writer builds one and saves it
(``ModelMeta.save``, atomic), every reader loads one (``ModelMeta.load``) and reads attributes, never raw keys.

Older files load too: a missing key gets its default, a key this version does not know is kept in ``extra``
(and written back unchanged), and a known key of the wrong type is kept there as well while ``problem`` says
what is wrong in one line for people. The network input has one home, ``input_hw`` (``input.shape``, else
the older ``config.input_size``); the network's own input shape always decides (``fit_sample``)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from .errors import ModelFileError

META_FILE = "meta.json"
FACETRACKER, IDENTITY = "facetracker", "identity"  # the kinds of saved model
BLAZEFACE_ARCH, STYLE_ARCH = "blazeface", "blazeface-style"  # face detectors that are not a FaceTracker

# the JSON type each typed field must have in meta.json (anything else: a problem, the value kept in extra)
_STR, _DICT, _LIST, _NUM, _INT = (str,), (dict,), (list,), (int, float), (int,)
_TYPES = {
    "name": _STR, "kind": _STR, "architecture": _STR, "created": _STR, "config": _DICT, "dataset": _DICT,
    "metrics": _DICT, "history": _LIST, "training": _DICT, "input": _DICT, "frame_aspect": _NUM,
    "input_shape": _STR, "network_input_hw": _LIST, "box_style": _DICT, "start_style": _DICT,
    "personalization": _DICT, "attribution": _STR, "classes": _LIST, "crop_margin": _NUM, "best_epoch": _INT,
    "size_bytes": _INT, "latency_ms": _NUM, "warnings": _LIST, "files": _DICT, "tflite": _DICT,
}


@dataclass(frozen=True)
class ModelMeta:
    """What a saved model's ``meta.json`` says. ``kind``: ``"facetracker"`` (a face detector) or
    ``"identity"``; ``architecture`` (face detectors): ``""`` for the tutorials' FaceTracker,
    ``"blazeface"`` (fine-tuned) or ``"blazeface-style"`` (the built-in network with a fitted
    ``box_style``). ``config``: the training config; ``dataset``: name, fingerprint, split sizes;
    ``metrics``: ``{split: {metric: value}}``; ``training``: epochs run, best epoch, warnings...;
    ``input``: how to feed the network (``input_hw`` reads it); ``extra``: every other key, kept as read."""

    name: str = ""
    kind: str = FACETRACKER
    architecture: str = ""
    created: str = ""
    config: dict = field(default_factory=dict)
    dataset: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    history: list = field(default_factory=list)
    training: dict = field(default_factory=dict)
    input: dict = field(default_factory=dict)
    frame_aspect: float | None = None  # width / height of most training photos (a photo-shaped BlazeFace)
    input_shape: str = ""  # "frame", "square" or "close" (a fine-tuned BlazeFace)
    network_input_hw: list = field(default_factory=list)  # what the network sees after unstretching
    box_style: dict | None = None
    start_style: dict | None = None
    personalization: dict | None = None
    attribution: str = ""
    classes: list = field(default_factory=list)  # identity models: the people, in output order
    crop_margin: float | None = None
    best_epoch: int | None = None  # identity models (face detectors keep theirs in ``training``)
    size_bytes: int | None = None
    latency_ms: float | None = None
    warnings: list = field(default_factory=list)
    files: dict = field(default_factory=dict)
    tflite: dict | None = None
    extra: dict = field(default_factory=dict)
    problems: tuple = field(default=(), compare=False)  # what from_dict found wrong, for people

    # -- reading and writing ------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, d, name: str = "", strict: bool = False) -> "ModelMeta":
        """``d`` (a parsed ``meta.json``) as a ModelMeta; ``name``: the model's, for messages. Missing keys
        get their defaults, unknown keys go to ``extra``. A known key of the wrong type raises ModelFileError
        naming it when ``strict``, else keeps its default (the value goes to ``extra``, so saving loses
        nothing) and is listed in ``problems``. ``d`` that is not a JSON object always raises."""
        if isinstance(d, ModelMeta):
            return d
        name = name or (d.get("name") if isinstance(d, dict) and isinstance(d.get("name"), str) else "") or "model"
        if not isinstance(d, dict):
            raise ModelFileError(f"model {name!r}: {META_FILE} is not a JSON object; retrain the model "
                                 "(or fix its meta.json)")
        typed, extra, problems = {}, {}, []
        for key, value in d.items():
            kinds = _TYPES.get(key)
            if kinds is None:
                extra[key] = value
            elif value is None:
                continue  # an explicit null: the default
            elif isinstance(value, kinds) and not isinstance(value, bool):
                typed[key] = value
            else:
                what = "an object" if kinds is _DICT else "a list" if kinds is _LIST else \
                    "text" if kinds is _STR else "a number"
                msg = (f"model {name!r}: {META_FILE} field {key!r} is {str(value)[:40]!r}, not {what}; retrain "
                       "the model (or fix its meta.json)")
                if strict:
                    raise ModelFileError(msg)
                problems.append(msg)
                extra[key] = value
        return cls(**typed, extra=extra, problems=tuple(problems))

    @classmethod
    def of(cls, meta, name: str = "") -> "ModelMeta":
        """``meta`` as a ModelMeta: itself, a parsed ``meta.json`` (``from_dict``, lenient) or None (empty).
        Anything else (a list: a broken file) is an empty one whose ``problem`` says so; never raises."""
        if meta is None:
            return cls(name=name)
        try:
            return cls.from_dict(meta, name)
        except ModelFileError as exc:
            return cls(name=name, problems=(str(exc),))

    @classmethod
    def load(cls, folder: str | Path, strict: bool = False) -> "ModelMeta":
        """The ``meta.json`` of model folder ``folder``; raises ModelFileError when it is missing, unreadable
        or not a JSON object (e.g. a training still running), or (``strict``) has a field of the wrong type."""
        folder = Path(folder)
        try:
            d = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError) as exc:
            raise ModelFileError(f"model {folder.name!r}: no readable {META_FILE} (is training still running?) "
                                 f"({type(exc).__name__}: {exc})") from exc
        return cls.from_dict(d, folder.name, strict)

    def to_dict(self) -> dict:
        """The ``meta.json`` content: ``name``, ``kind`` and ``created`` always, every other typed field
        that is set, then ``extra`` (keys older code wrote, kept)."""
        out = {}
        for f in fields(self):
            if f.name in ("extra", "problems"):
                continue
            value = getattr(self, f.name)
            if f.name in ("name", "kind", "created") or value not in (None, "", {}, []):
                out[f.name] = list(value) if isinstance(value, tuple) else value
        return {**out, **{k: v for k, v in self.extra.items() if k not in out}}

    def save(self, folder: str | Path) -> Path:
        """Write ``folder/meta.json`` atomically (savers write it last: it marks the model finished)."""
        from .io import atomic_write_text

        return atomic_write_text(Path(folder) / META_FILE, json.dumps(_jsonable(self.to_dict()), indent=2))

    def with_(self, **changes) -> "ModelMeta":
        """A copy with ``changes`` (``dataclasses.replace``)."""
        return replace(self, **changes)

    # -- what readers ask -----------------------------------------------------------------------------
    @property
    def input_hw(self) -> tuple[int, int] | None:
        """The network input ``(height, width)`` to feed: ``input.shape`` (e.g. a photo-shaped BlazeFace's
        square canvas), else ``config.input_size`` (older models); None when it states none. Only a hint:
        the network's own input shape decides (``quantize``, the loaders). Raises ModelFileError naming the
        field when it is not a size in pixels."""
        from .facetracker.inference import MAX_INPUT_SIZE, MIN_INPUT_SIZE

        for p in self.problems:
            if "field 'input'" in p or "field 'config'" in p:
                raise ModelFileError(p)
        shape = self.input.get("shape")
        if shape is not None:
            what, hw = f"input.shape {str(shape)[:60]}", shape[1:3] if isinstance(shape, list) and len(shape) == 4 else []
        else:
            size = self.config.get("input_size")
            if size is None:
                return None
            what, hw = f"config.input_size {str(size)[:40]!r}", [size, size]
        if len(hw) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and MIN_INPUT_SIZE <= v <= MAX_INPUT_SIZE
                                   for v in hw):
            raise ModelFileError(f"model {self.name or 'model'!r}: {META_FILE} says {what}, which is not an input size "
                                 f"in pixels ({MIN_INPUT_SIZE}..{MAX_INPUT_SIZE}); the network's own input is used "
                                 "where it can be; retrain the model (or fix its meta.json)")
        return int(hw[0]), int(hw[1])

    @property
    def input_side(self) -> int | None:
        """``input_hw``'s side for a square input (the loaders' size hint), else None; never raises."""
        try:
            hw = self.input_hw
        except ModelFileError:
            return None
        return hw[0] if hw and hw[0] == hw[1] else None

    @property
    def problem(self) -> str | None:
        """One line for people on what is wrong in this ``meta.json`` (a field of the wrong type, an input
        size that is not one), or None."""
        if self.problems:
            return self.problems[0]
        try:
            self.input_hw
        except ModelFileError as exc:
            return str(exc)
        return None

    def split_metrics(self, split: str) -> dict:
        """The metrics on ``split`` (``"train"``, ``"val"``, ``"test"``), ``{}`` when there are none."""
        m = self.metrics.get(split)
        return dict(m) if isinstance(m, dict) else {}

    def headline(self) -> dict:
        """The test-split metrics (val when there is no test split), for tables ({} when there are none)."""
        return self.split_metrics("test") or self.split_metrics("val")

    @property
    def backbone(self) -> str:
        """The backbone the model was trained on (``config.backbone``), ``""`` when none is said."""
        b = self.config.get("backbone")
        return b if isinstance(b, str) else ""

    @property
    def dataset_name(self) -> str:
        """The dataset the model was trained on, ``""`` when none is said."""
        n = self.dataset.get("name")
        return n if isinstance(n, str) else ""

    @property
    def config_size(self) -> int | None:
        """The training config's ``input_size`` (e.g. which pretrained BlazeFace a model started from: 128
        is the short-range one). Not the network input: a photo-shaped model's is larger (``input_hw``)."""
        size = self.config.get("input_size")
        return size if isinstance(size, int) and not isinstance(size, bool) else None

    @property
    def pretrained(self) -> bool:
        """Whether training started from pretrained weights (``config.weights``)."""
        return bool(self.config.get("weights"))

    @property
    def epochs_run(self) -> int | None:
        """Training epochs run (face detectors: ``training.epochs_run``; identity models: the history's length)."""
        runs = self.training.get("epochs_run")
        return runs if isinstance(runs, int) else (len(self.history) if self.kind == IDENTITY else None)

    @property
    def best(self) -> int | None:
        """The epoch kept (0: the start, no epoch beat it), None when not said."""
        best = self.training.get("best_epoch", self.best_epoch)
        return best if isinstance(best, int) and not isinstance(best, bool) else None

    @property
    def training_warnings(self) -> list[str]:
        """What training warned about (face detectors: ``training.warnings``; identity models: ``warnings``)."""
        w = self.training.get("warnings") if self.kind != IDENTITY else self.warnings
        return [str(x) for x in w] if isinstance(w, list) else []

    def training_flag(self, key: str) -> bool:
        """A yes/no fact of the training (``stopped_early``, ``feature_cache``, ``fine_tuned``)."""
        return bool(self.training.get(key))

    @property
    def train_layers(self) -> str:
        """Which BlazeFace layers trained (``training.train_layers``), ``""`` when not said."""
        t = self.training.get("train_layers")
        return t if isinstance(t, str) else ""

    @property
    def file_names(self) -> list[str]:
        """The model's network files as saved (``model.keras``, ``model.tflite``)."""
        return [str(v) for v in self.files.values()]


def _jsonable(x):
    """``x`` with numpy numbers as Python ones, tuples and Paths as lists and text, NaN/inf as null."""
    import math

    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, Path):
        return str(x)
    if hasattr(x, "tolist") and not isinstance(x, (str, bytes)):  # a numpy number or array
        return _jsonable(x.tolist())
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    return x


def meta_input_hw(meta, name: str = "model") -> tuple[int, int] | None:
    """``ModelMeta.of(meta, name).input_hw``: for callers holding a parsed ``meta.json``."""
    return ModelMeta.of(meta, name).input_hw


def check_model_dir(out_dir, kind: str = FACETRACKER) -> Path:
    """Make sure saving a ``kind`` model to ``out_dir`` can only replace an older model of that kind:
    a missing or empty folder is fine; a file, a folder that is not a saved model (no ``meta.json``, or
    holding sub-folders such as a dataset's ``images/``) or a model of another kind is refused with
    ModelFileError, and left untouched."""
    from .io import storage_errors

    out = Path(out_dir)
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise ModelFileError(f"{out}: is a file or link, not a model folder; choose another place for the model")
    if not out.exists():
        return out
    with storage_errors(f"look into {out}"):
        entries = list(out.iterdir())
    if not entries:
        return out
    try:
        meta = ModelMeta.load(out)
    except ModelFileError:
        meta = None
    folders = [p.name for p in entries if p.is_dir()]
    if meta is None or folders:
        what = f"it holds {', '.join(sorted(folders)[:3])}/" if folders and meta is not None else f"no {META_FILE}"
        raise ModelFileError(f"{out}: exists and is not a saved model ({what}); nothing was replaced. "
                             "Choose a new folder for the model, or move this one away yourself")
    if meta.kind != kind:
        raise ModelFileError(f"{out}: holds a {meta.kind} model; a {kind} model will not replace it. Choose another name")
    return out


def fit_sample(sample, net):
    """``sample`` frames (N, h, w, 3) resized to the network's own input (H, W) when they differ (a sample made
    from a meta.json that lies about the input, or for a photo-shaped model); None stays None."""
    if sample is None:
        return None
    import cv2
    import numpy as np

    sample = np.asarray(sample, np.float32)
    h, w = (int(v) for v in net.inputs[0].shape[1:3])
    if sample.ndim != 4 or sample.shape[1:3] == (h, w):
        return sample
    return np.stack([cv2.resize(x, (w, h), interpolation=cv2.INTER_AREA) for x in sample])
