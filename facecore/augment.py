"""Data augmentation with albumentations, boxes included: offline copies on disk and on the fly.

The default pipeline is the tutorial's: a random crop, horizontal flip, brightness/contrast, gamma and
RGB shift, each with its probability; vertical flip (the tutorial's, off by default: a webcam never sees
an upside-down face, and such copies teach the model faces that do not occur), rotation, scale, blur and
noise are optional.
The crop is a *fraction* of the image (the tutorial's fixed 450x450 crop fails on images smaller than
that and keeps a different share of 640x480, 1280x720 and portrait photos).

Boxes are facecore's: float32 normalized ``[x1, y1, x2, y2]`` (N, 4), which is albumentations'
``"albumentations"`` format, so they go in and come out unconverted. A box that keeps less than
``min_visibility`` of its area after a crop is dropped: the sample becomes a no-face sample (class 0),
as in the tutorial. No-face images stay no-face.

Offline mode (``augment_dataset``) writes ``per_image`` copies of every *train-split* photo into
``dataset.augmented`` as ``<stem>__aug<k:03d>.jpg`` with a label in the dataset's format (a no-face copy
gets a label with no boxes, so every finished copy has a label). Copy ``k`` of photo ``stem`` depends only
on (seed, stem, k) and the config, so a rerun is resumable and reproducible. Val and test are never
augmented: they must measure the model on photos it has not seen in any form.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sys
import threading
import time
import warnings
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no network check on import

import albumentations as A  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402
from albumentations.augmentations.crops.transforms import BaseCrop  # noqa: E402

from . import boxes as B  # noqa: E402
from .dataset import AUG_SEP, Dataset  # noqa: E402
from .errors import BusyError, Cancelled, DatasetError, FaceCoreError  # noqa: E402
from .io import atomic_write_text, encode_jpeg, read_image, storage_errors, storage_message  # noqa: E402
from .jobs import Cancel, Progress, ProgressFn, ignore  # noqa: E402
from .labels import LABEL_EXTS, ImageLabel, labelme_document, read_label, voc_document  # noqa: E402
from .splits import DEFAULT_SPLIT  # noqa: E402

LABEL_FIELD = "class_labels"
MANIFEST = "augment.json"


@dataclass(frozen=True)
class AugmentConfig:
    """The augmentation pipeline. ``*_p`` are probabilities per sample (0 turns a transform off).

    Defaults are the tutorial's set without its vertical flip; rotation, scale, blur and noise are off too. ``crop_fraction`` is the
    crop's side as a fraction of the image's (0.75 keeps 480x360 of 640x480). The random seed is not
    part of the config: pass it to ``augment_sample`` / ``augment_dataset``.
    """

    crop_fraction: float = 0.75
    crop_p: float = 1.0
    hflip_p: float = 0.5
    vflip_p: float = 0.0  # upside-down faces do not occur on a webcam
    brightness_contrast_p: float = 0.2
    brightness_limit: float = 0.2
    contrast_limit: float = 0.2
    gamma_p: float = 0.2
    gamma_limit: float = 20.0  # percent: gamma drawn from [1 - l/100, 1 + l/100]
    rgb_shift_p: float = 0.2
    rgb_shift_limit: int = 20
    rotate_p: float = 0.0
    rotate_limit: float = 15.0  # degrees
    scale_p: float = 0.0
    scale_limit: float = 0.15  # scale drawn from [1 - l, 1 + l]
    blur_p: float = 0.0
    blur_limit: int = 5  # largest kernel size (odd, >= 3)
    noise_p: float = 0.0
    noise_std: float = 0.08  # largest noise std as a fraction of 255
    min_visibility: float = 0.5

    def __post_init__(self):
        for f in fields(self):
            v = getattr(self, f.name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not np.isfinite(v):
                raise ValueError(f"AugmentConfig.{f.name} must be a finite number, got {v!r}")
            if f.name.endswith("_p") and not 0.0 <= v <= 1.0:
                raise ValueError(f"AugmentConfig.{f.name} is a probability and must be in [0, 1], got {v}")
        if not 0.05 <= self.crop_fraction <= 1.0:
            raise ValueError(f"crop_fraction must be in [0.05, 1], got {self.crop_fraction}")
        if not 0.0 <= self.min_visibility <= 1.0:
            raise ValueError(f"min_visibility must be in [0, 1], got {self.min_visibility}")
        for name, lo, hi in (("brightness_limit", 0, 1), ("contrast_limit", 0, 1), ("gamma_limit", 0, 90),
                             ("rgb_shift_limit", 0, 255), ("rotate_limit", 0, 180), ("scale_limit", 0, 0.9),
                             ("blur_limit", 3, 51), ("noise_std", 0, 1)):
            if not lo <= getattr(self, name) <= hi:
                raise ValueError(f"{name} must be in [{lo}, {hi}], got {getattr(self, name)}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "AugmentConfig":
        """Inverse of ``to_dict``; unknown keys are ignored (configs saved by older versions load)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


class RandomFractionCrop(BaseCrop):
    """Crop ``fraction`` of the image's width and height at a random position (no resize)."""

    def __init__(self, fraction: float = 0.75, p: float = 1.0):
        super().__init__(p=p)
        self.fraction = float(fraction)

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        height, width = params["shape"][:2]
        ch = min(height, max(1, int(round(self.fraction * height))))
        cw = min(width, max(1, int(round(self.fraction * width))))
        y0 = self.py_random.randint(0, height - ch)
        x0 = self.py_random.randint(0, width - cw)
        return {"crop_coords": (x0, y0, x0 + cw, y0 + ch)}

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("fraction",)


def build_augmenter(config: AugmentConfig = AugmentConfig()) -> A.Compose:
    """The albumentations pipeline for ``config``, boxes in the ``"albumentations"`` format.

    Build it once and call ``augment_sample`` many times: building validates every transform.
    """
    c = config
    steps: list[A.BasicTransform] = []
    if c.crop_p > 0 and c.crop_fraction < 1.0:
        steps.append(RandomFractionCrop(c.crop_fraction, p=c.crop_p))
    if c.hflip_p > 0:
        steps.append(A.HorizontalFlip(p=c.hflip_p))
    if c.brightness_contrast_p > 0:
        steps.append(A.RandomBrightnessContrast(brightness_limit=c.brightness_limit,
                                                contrast_limit=c.contrast_limit, p=c.brightness_contrast_p))
    if c.gamma_p > 0:
        g = float(c.gamma_limit)
        steps.append(A.RandomGamma(gamma_limit=(100 - g, 100 + g), p=c.gamma_p))
    if c.rgb_shift_p > 0:
        s = int(c.rgb_shift_limit)
        steps.append(A.RGBShift(r_shift_limit=s, g_shift_limit=s, b_shift_limit=s, p=c.rgb_shift_p))
    if c.vflip_p > 0:
        steps.append(A.VerticalFlip(p=c.vflip_p))
    if c.rotate_p > 0:
        # "ellipse" keeps boxes tight: a face is closer to an ellipse than to its box's corners.
        steps.append(A.Rotate(limit=(-c.rotate_limit, c.rotate_limit), border_mode=cv2.BORDER_CONSTANT,
                              fill=0, rotate_method="ellipse", p=c.rotate_p))
    if c.scale_p > 0:
        steps.append(A.Affine(scale=(1 - c.scale_limit, 1 + c.scale_limit), keep_ratio=True,
                              border_mode=cv2.BORDER_CONSTANT, fill=0, p=c.scale_p))
    if c.blur_p > 0:
        k = int(c.blur_limit) | 1
        steps.append(A.Blur(blur_limit=(3, max(3, k)), p=c.blur_p))
    if c.noise_p > 0:
        steps.append(A.GaussNoise(std_range=(min(0.01, c.noise_std), c.noise_std), p=c.noise_p))
    with warnings.catch_warnings():
        # With every transform off the pipeline is the identity, which albumentations warns about.
        warnings.filterwarnings("ignore", message="Got processor for bboxes, but no transform")
        aug = A.Compose(
            steps,
            bbox_params=A.BboxParams(format="albumentations", label_fields=[LABEL_FIELD],
                                     min_visibility=c.min_visibility, clip=True,
                                     # Crop and flips never need boxes re-checked between steps (flips keep
                                     # every box inside and its area), so filtering once at the end gives
                                     # the same boxes at half the cost; rotation and scale do need it.
                                     check_each_transform=c.rotate_p > 0 or c.scale_p > 0),
        )
    # albumentations transforms keep per-call state; one lock per pipeline keeps a shared one safe.
    aug._facecore_lock = threading.Lock()
    return aug


def augment_sample(augmenter: A.Compose, image: np.ndarray, boxes, seed: int | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Augment one sample.

    ``image``: RGB uint8 (H, W, 3); ``boxes``: float32 (N, 4) normalized ``[x1, y1, x2, y2]`` (N may be 0).
    Returns ``(image, boxes)``: RGB uint8 (H', W', 3) and float32 (M, 4) normalized; M == 0 means the
    sample holds no face (a crop lost it, or there was none). The same ``seed`` gives the same result;
    ``None`` continues the pipeline's own random stream.
    """
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be RGB uint8 (H, W, 3), got {image.dtype} {image.shape}")
    b = B.clip(B.order_corners(boxes))
    # albumentations rejects zero-area boxes; a box squeezed to nothing by clipping marks no face.
    b = b[B.is_valid(b, 1e-6)]
    lock = getattr(augmenter, "_facecore_lock", None) or threading.Lock()
    with lock:
        if seed is not None:
            # One shared stream for all transforms: per-transform seeds would make e.g. the horizontal
            # and vertical flip draw the same number and always fire together.
            augmenter.set_random_state(np.random.default_rng(seed), random.Random(seed))
        out = augmenter(image=np.ascontiguousarray(image), bboxes=b, **{LABEL_FIELD: np.zeros(len(b), np.int64)})
    img = np.ascontiguousarray(out["image"], dtype=np.uint8)
    ob = np.asarray(out["bboxes"], np.float32).reshape(-1, 4)
    return img, B.clip(ob)


def preview_samples(augmenter: A.Compose, image: np.ndarray, boxes, n: int, seed: int = 0
                    ) -> list[tuple[np.ndarray, np.ndarray]]:
    """``n`` augmented versions of one image (``augment_sample`` with seeds derived from ``seed``)."""
    return [augment_sample(augmenter, image, boxes, copy_seed(seed, "preview", i)) for i in range(n)]


def copy_seed(seed: int, stem: str, k: int) -> int:
    """The random seed of copy ``k`` of photo ``stem``: independent of order, worker and machine."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{stem}:{k}".encode()).digest()[:8], "little") >> 1


def copy_stem(stem: str, k: int) -> str:
    return f"{stem}{AUG_SEP}{k:03d}"


# -- offline mode -------------------------------------------------------------------------------

@dataclass
class CopyReport:
    """What a run that writes derived copies into ``augmented/`` did (augmentation, mosaics).
    ``failed`` holds ``(source stem, reason)``."""

    total: int = 0          # copies wanted
    written: int = 0
    skipped: int = 0        # already on disk from an earlier (interrupted) run
    removed: int = 0        # stale copies deleted (sources no longer in train, or another config)
    failed: list[tuple[str, str]] = field(default_factory=list)
    cancelled: bool = False
    seconds: float = 0.0

    @property
    def done(self) -> int:
        return self.written + self.skipped


@dataclass
class AugmentReport(CopyReport):
    """What ``augment_dataset`` did: ``total`` = sources x per_image."""

    sources: int = 0
    per_image: int = 0
    no_face: int = 0        # written copies whose crop lost the face (or whose source had none)


def _write_fast(path: Path, data: bytes) -> None:
    # Temp file + rename: readers and resumes never see half an image. No fsync: copies are derived data,
    # regenerated exactly from their seed, and an fsync per file would cost more than augmenting it.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _source_signature(item) -> str:
    """Changes when the photo or its label changes, so its copies are made again."""
    h = hashlib.sha256()
    st = item.image.stat()
    h.update(f"{item.image.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    if item.label is not None:
        h.update(item.label.read_bytes())
    return h.hexdigest()[:16]


_WORKER: dict[str, Any] = {}
LOCK_FILE = ".augment.lock"


class _DatasetLock:
    """An exclusive, non-blocking lock on one dataset's augmented copies, across processes and threads
    (``flock`` on a file of its own open: the kernel drops it when the holder dies, even by SIGKILL).
    Two runs with different settings would otherwise write copies under each other's manifest."""

    def __init__(self, folder: Path):
        self.path = folder / LOCK_FILE
        self._fh = None

    def __enter__(self):
        try:
            import fcntl
        except ImportError:  # Windows: no cross-process lock; the page still runs one job per dataset
            return self
        with storage_errors(f"lock {self.path.parent}"):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fh = open(self.path, "a+b")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            raise BusyError(f"{self.path.parent.parent.name}: another augmentation of this dataset is running "
                            "(on the Augment page or the command line); wait for it to finish or stop it") from None
        self._fh = fh
        return self

    def __exit__(self, *exc):
        if self._fh is not None:
            self._fh.close()  # closing releases the lock
            self._fh = None


def _die_with(parent_pid: int) -> None:
    """Make this worker end when the process that started the run ends, even if it is SIGKILLed:
    the kernel's parent-death signal (Linux) and, everywhere, a thread watching that process."""
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001  not Linux: the watcher below still does it
        pass

    def watch():
        while True:
            time.sleep(0.5)
            try:
                os.kill(parent_pid, 0)
            except ProcessLookupError:
                os._exit(1)
            except OSError:
                pass

    if os.name != "nt":  # on Windows os.kill(pid, 0) would terminate the parent
        threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _worker_init(config_dict: dict, stop_event=None, pool: bool = True, parent_pid: int | None = None) -> None:
    """Set up a process (or this one) to write copies; ``stop_event`` (a multiprocessing Event) ends
    them between copies."""
    if pool:
        cv2.setNumThreads(1)  # one process per core already; more threads only fight over the cores
    if parent_pid is not None:
        _die_with(parent_pid)
    _WORKER["augmenter"] = build_augmenter(AugmentConfig.from_dict(config_dict))
    _WORKER["stopped"] = stop_event.is_set if stop_event is not None else (lambda: False)


_MAIN_LOCK = threading.Lock()


class _bare_main:
    """While workers start, ``__main__`` is an empty module: they need nothing from it, and under
    Streamlit it is the page script being run (``sys.modules["__main__"]`` is swapped per run),
    which each worker would otherwise run again on start (a page that needs a browser component
    even dies there)."""

    def __enter__(self):
        import types

        _MAIN_LOCK.acquire()
        self._main = sys.modules.get("__main__")
        sys.modules["__main__"] = types.ModuleType("__main__")

    def __exit__(self, *exc):
        sys.modules["__main__"] = self._main
        _MAIN_LOCK.release()


def _pool_context():
    """forkserver where there is one (Linux, macOS), else spawn.

    Not fork: the app process runs threads (Streamlit, TensorFlow) that a fork would copy mid-lock.
    The fork server is one clean process that imports this module once (never the program's main
    script: see ``_bare_main``); workers fork from it, so a pool starts in milliseconds instead of
    re-importing albumentations and OpenCV per worker.
    """
    import multiprocessing as mp
    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload([__name__])
        return ctx
    return mp.get_context("spawn")


def _augment_source(task: tuple) -> tuple[str, int, int, str | None]:
    """Write copies ``todo`` of one photo. Returns (stem, written, no_face, error or None)."""
    stem, image_path, label_path, out_images, out_labels, label_ext, seed, todo = task
    augmenter, stopped = _WORKER["augmenter"], _WORKER["stopped"]
    out_images, out_labels = Path(out_images), Path(out_labels)
    written = no_face = 0
    try:
        image = read_image(image_path)
        boxes = read_label(label_path, (image.shape[1], image.shape[0])).boxes if label_path else B.EMPTY
        for k in todo:
            if stopped():
                break
            img, ob = augment_sample(augmenter, image, boxes, copy_seed(seed, stem, k))
            cs = copy_stem(stem, k)
            label = ImageLabel(img.shape[1], img.shape[0], ob)
            doc = (voc_document(label, f"{cs}.jpg") if label_ext == ".xml"
                   else json.dumps(labelme_document(label, f"{cs}.jpg"), indent=2))
            # Label first, image last: the image appearing (an atomic rename) is what makes the copy exist
            # for Dataset.items() and for a resume. A label cut short by a kill has no image yet, so it is
            # ignored and rewritten; writing it in place saves a rename, which is costly on a busy disk.
            (out_labels / f"{cs}{label_ext}").write_text(doc, encoding="utf-8")
            _write_fast(out_images / f"{cs}.jpg", encode_jpeg(img))
            written += 1
            no_face += not label.has_face
        return stem, written, no_face, None
    except FaceCoreError as exc:
        return stem, written, no_face, str(exc)
    except OSError as exc:  # full disk, read-only folder, a name too long for a copy
        return stem, written, no_face, storage_message(exc, f"write the copies of {stem}")
    except Exception as exc:  # noqa: BLE001 - one bad photo must not end the whole run
        return stem, written, no_face, f"{type(exc).__name__}: {exc}"


def _remove_copy(out: Dataset, stem: str) -> None:
    (out.images_dir / f"{stem}.jpg").unlink(missing_ok=True)
    for ext in LABEL_EXTS:
        (out.labels_dir / f"{stem}{ext}").unlink(missing_ok=True)


def _read_manifest(out: Dataset) -> dict:
    try:
        doc = json.loads((out.root / MANIFEST).read_text("utf-8"))
    except (OSError, ValueError, RecursionError):  # a broken manifest only means the copies are made again
        return {}
    return doc if isinstance(doc, dict) else {}


def delete_augmented(dataset: Dataset) -> int:
    """Delete every offline-augmented copy of ``dataset`` (the originals are untouched). Returns how many."""
    out = dataset.augmented
    if not out.root.is_dir():
        return 0
    with _DatasetLock(out.root):
        return _delete_augmented(out)


def _delete_augmented(out: Dataset) -> int:
    n = 0
    for it in out.items():
        _remove_copy(out, it.stem)
        n += 1
    for folder in (out.images_dir, out.labels_dir):
        if folder.is_dir():
            for p in folder.iterdir():
                if p.name.startswith(".") and p.name.endswith(".tmp"):
                    p.unlink(missing_ok=True)
                elif p.suffix.lower() in LABEL_EXTS and AUG_SEP in p.stem:
                    p.unlink(missing_ok=True)  # labels whose image was never written
    (out.root / MANIFEST).unlink(missing_ok=True)
    return n


def augment_dataset(
    dataset: Dataset,
    config: AugmentConfig = AugmentConfig(),
    per_image: int = 5,
    seed: int = 0,
    split_seed: int = 0,
    fractions: tuple[float, float, float] = DEFAULT_SPLIT,
    workers: int | None = None,
    progress: ProgressFn | None = None,
    cancel: Cancel | None = None,
) -> AugmentReport:
    """Write ``per_image`` augmented copies of every train-split photo into ``dataset.augmented``.

    Runs on ``workers`` processes (default: all cores; 1 runs in this process). Resumable: copies
    already on disk are kept. Copies of photos no longer in the train split, of photos that changed,
    copies numbered ``per_image`` or more, and all copies made with another config or seed are deleted,
    so the folder always matches the request. ``progress`` gets copies done of the total (stage
    "augment") from this thread as they finish. ``cancel`` stops soon after and raises ``Cancelled``
    whose ``partial`` is the report so far: finished copies stay, whole, and are reused next time.
    """
    if not isinstance(per_image, int) or per_image < 1 or per_image > 1000:
        raise DatasetError(f"copies per image must be between 1 and 1000, got {per_image}")
    t0 = time.perf_counter()
    train = dataset.split(fractions, split_seed).train
    report = AugmentReport(sources=len(train), per_image=per_image, total=len(train) * per_image)
    if not train:
        raise DatasetError(f"{dataset.name}: the train split is empty; add labeled photos first")
    out = Dataset.create(dataset.augmented.root)
    with _DatasetLock(out.root), storage_errors(f"write augmented copies of {dataset.name}"):
        return _augment_locked(dataset, out, train, report, config, per_image, seed, split_seed, fractions,
                               workers, progress or ignore, cancel or Cancel(), t0)


def _augment_locked(dataset, out, train, report, config, per_image, seed, split_seed, fractions, workers,
                    progress, cancel, t0) -> AugmentReport:
    label_ext = "." + dataset.label_format()

    # Decide which existing copies are still valid for this request; the rest go.
    manifest = _read_manifest(out)
    same_run = (manifest.get("config") == config.to_dict() and manifest.get("seed") == seed
                and manifest.get("label_ext") == label_ext)
    old_sigs = manifest.get("sources", {}) if same_run else {}
    sigs = {it.stem: _source_signature(it) for it in train}
    keep = {(s, k) for s, sig in sigs.items() if old_sigs.get(s) == sig for k in range(per_image)}
    for it in out.items():
        stem, k = it.source, it.stem[len(it.source) + len(AUG_SEP):]
        if (stem, int(k) if k.isdigit() else -1) not in keep:
            _remove_copy(out, it.stem)
            report.removed += 1
    # Leftovers of a killed run: temp files, and labels whose image was never written (redone below).
    for folder in (out.images_dir, out.labels_dir):
        for p in folder.iterdir():
            if p.name.startswith(".") and p.name.endswith(".tmp"):
                p.unlink(missing_ok=True)
    images = {p.stem for p in out.images_dir.iterdir()}
    for p in out.labels_dir.iterdir():
        if p.suffix.lower() in LABEL_EXTS and AUG_SEP in p.stem and p.stem not in images:
            p.unlink(missing_ok=True)
    new_manifest = {"config": config.to_dict(), "seed": seed, "label_ext": label_ext,
                    "split_seed": split_seed, "fractions": list(fractions), "per_image": per_image,
                    "source_dataset": dataset.name, "sources": sigs}
    atomic_write_text(out.root / MANIFEST, json.dumps(new_manifest, indent=1))

    tasks = []
    for it in train:
        todo = []
        try:
            for k in range(per_image):
                cs = copy_stem(it.stem, k)
                if (out.images_dir / f"{cs}.jpg").exists() and (out.labels_dir / f"{cs}{label_ext}").exists():
                    report.skipped += 1
                else:
                    todo.append(k)
        except OSError as exc:  # e.g. a photo name too long for "<name>__aug000.jpg": costs only that photo
            report.failed.append((it.stem, storage_message(exc, f"write the copies of {it.stem}")))
            continue
        if todo:
            tasks.append((it.stem, str(it.image), str(it.label) if it.label else None, str(out.images_dir),
                          str(out.labels_dir), label_ext, seed, tuple(todo)))
    # bounded: "--workers 100000" must not start one process per photo
    workers = max(1, min(workers or os.cpu_count() or 1, 4 * (os.cpu_count() or 1), len(tasks) or 1))
    main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    if main_file and not os.path.isfile(main_file):
        workers = 1  # e.g. a script piped to stdin: pool workers could not re-import it and would die

    def show():
        progress(Progress(report.done, report.total, f"{report.done}/{report.total} copies", "augment"))

    def record(res):
        stem, w, nf, err = res
        report.written += w
        report.no_face += nf
        if err:
            report.failed.append((stem, err))
        show()

    show()
    if not tasks:
        pass
    elif workers == 1:
        _worker_init(config.to_dict(), pool=False)
        _WORKER["stopped"] = lambda: cancel.cancelled
        for task in tasks:
            if cancel.cancelled:
                break
            record(_augment_source(task))
    else:
        with _bare_main():
            ctx = _pool_context()
            stop = ctx.Event()
            pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init,
                                       initargs=(config.to_dict(), stop, True, os.getpid()))
            try:
                pending = {pool.submit(_augment_source, t) for t in tasks}  # the workers start here
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                raise
        with pool:
            try:
                while pending:
                    done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                    for f in done:
                        if not f.cancelled():  # cancelled ones never ran: nothing to record
                            record(f.result())
                    if cancel.cancelled and not stop.is_set():
                        stop.set()
                        for f in pending:
                            f.cancel()
            except BaseException:
                # Ctrl-C or an error: leaving the with-block would otherwise wait for every queued photo.
                stop.set()
                pool.shutdown(wait=True, cancel_futures=True)
                raise
    report.cancelled = cancel.cancelled and report.done < report.total
    report.seconds = time.perf_counter() - t0
    if report.cancelled:
        raise Cancelled(f"augmentation stopped after {report.done} of {report.total} copies; they are kept",
                        report)
    return report
