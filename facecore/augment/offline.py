"""Offline augmentation: ``per_image`` augmented copies of every *train-split* photo, on disk.

``augment_dataset`` writes them into ``dataset.augmented`` as ``<stem>__aug<k:03d>.jpg`` with a label in
the dataset's format (a no-face copy gets a label with no boxes, so every finished copy has a label).
Copy ``k`` of photo ``stem`` depends only on (seed, stem, k) and the config, so a rerun is resumable and
reproducible. Val and test are never augmented: they must measure the model on photos it has not seen
in any form. The copies are made on a pool of worker processes that end with the process that started
them.
"""

from __future__ import annotations

import json
import os
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2

from .. import boxes as B
from ..datasets.dataset import AUG_SEP, Dataset
from ..errors import Cancelled, DatasetError, FaceCoreError
from ..images import encode_jpeg, read_image
from ..io import atomic_write_text, storage_errors, storage_message
from ..jobs import Cancel, Progress, ProgressFn, ignore
from ..datasets.labels import LABEL_EXTS, ImageLabel, labelme_document, read_label, voc_document
from ..jobs.procs import without_main_script
from ..datasets.splits import DEFAULT_SPLIT
from .copies import CopyReport, DatasetLock, remove_copy, source_signature, write_fast
from .pipeline import AugmentConfig, augment_sample, build_augmenter, copy_seed, copy_stem

MANIFEST = "augment.json"


@dataclass
class AugmentReport(CopyReport):
    """What ``augment_dataset`` did: ``total`` = sources x per_image."""

    sources: int = 0
    per_image: int = 0
    no_face: int = 0        # written copies whose crop lost the face (or whose source had none)
    # (image, why) of photos left out: their label is broken or refused by the label rule (facecore.datasets.labels)
    left_out: list = field(default_factory=list)


_WORKER: dict[str, Any] = {}


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


def _pool_context():
    """forkserver where there is one (Linux, macOS), else spawn.

    Not fork: the app process runs threads (Streamlit, TensorFlow) that a fork would copy mid-lock.
    The fork server is one clean process that imports this module once (never the program's main
    script: see ``facecore.jobs.procs``); workers fork from it, so a pool starts in milliseconds instead of
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
            write_fast(out_images / f"{cs}.jpg", encode_jpeg(img))
            written += 1
            no_face += not label.has_face
        return stem, written, no_face, None
    except FaceCoreError as exc:
        return stem, written, no_face, str(exc)
    except OSError as exc:  # full disk, read-only folder, a name too long for a copy
        return stem, written, no_face, storage_message(exc, f"write the copies of {stem}")
    except Exception as exc:  # noqa: BLE001 - one bad photo must not end the whole run
        return stem, written, no_face, f"{type(exc).__name__}: {exc}"


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
    with DatasetLock(out.root):
        return _delete_augmented(out)


def _delete_augmented(out: Dataset) -> int:
    n = 0
    for it in out.items():
        remove_copy(out, it.stem)
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
    split = dataset.split(fractions, split_seed)
    train = split.train
    report = AugmentReport(sources=len(train), per_image=per_image, total=len(train) * per_image,
                           left_out=list(split.skipped))
    if not train:
        raise DatasetError(f"{dataset.name}: the train split is empty; add labeled photos first")
    out = Dataset.create(dataset.augmented.root)
    with DatasetLock(out.root), storage_errors(f"write augmented copies of {dataset.name}"):
        return _augment_locked(dataset, out, train, report, config, per_image, seed, split_seed, fractions,
                               workers, progress or ignore, cancel or Cancel(), t0)


def _augment_locked(dataset, out, train, report, config, per_image, seed, split_seed, fractions, workers,
                    progress, cancel, t0) -> AugmentReport:
    label_ext = "." + dataset.label_format()
    sigs = _prune_copies(out, train, report, config, per_image, seed, label_ext)
    new_manifest = {"config": config.to_dict(), "seed": seed, "label_ext": label_ext,
                    "split_seed": split_seed, "fractions": list(fractions), "per_image": per_image,
                    "source_dataset": dataset.name, "sources": sigs}
    atomic_write_text(out.root / MANIFEST, json.dumps(new_manifest, indent=1))
    tasks = _copy_tasks(out, train, report, per_image, seed, label_ext)
    # bounded: "--workers 100000" must not start one process per photo
    workers = max(1, min(workers or os.cpu_count() or 1, 4 * (os.cpu_count() or 1), len(tasks) or 1))

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
    if tasks and workers == 1:
        _run_here(tasks, config, cancel, record)
    elif tasks:
        _run_on_pool(tasks, config, workers, cancel, record)
    report.cancelled = cancel.cancelled and report.done < report.total
    report.seconds = time.perf_counter() - t0
    if report.cancelled:
        raise Cancelled(f"augmentation stopped after {report.done} of {report.total} copies; they are kept",
                        report)
    return report


def _prune_copies(out: Dataset, train, report: AugmentReport, config: AugmentConfig, per_image: int, seed: int,
                  label_ext: str) -> dict:
    """Delete the copies this request does not keep (another config or seed, a changed or dropped photo,
    a number past ``per_image``) and a killed run's leftovers. Returns the sources' signatures."""
    manifest = _read_manifest(out)
    same_run = (manifest.get("config") == config.to_dict() and manifest.get("seed") == seed
                and manifest.get("label_ext") == label_ext)
    old_sigs = manifest.get("sources", {}) if same_run else {}
    sigs = {it.stem: source_signature(it) for it in train}
    keep = {(s, k) for s, sig in sigs.items() if old_sigs.get(s) == sig for k in range(per_image)}
    for it in out.items():
        stem, k = it.source, it.stem[len(it.source) + len(AUG_SEP):]
        if (stem, int(k) if k.isdigit() else -1) not in keep:
            remove_copy(out, it.stem)
            report.removed += 1
    # Leftovers of a killed run: temp files, and labels whose image was never written (redone later).
    for folder in (out.images_dir, out.labels_dir):
        for p in folder.iterdir():
            if p.name.startswith(".") and p.name.endswith(".tmp"):
                p.unlink(missing_ok=True)
    images = {p.stem for p in out.images_dir.iterdir()}
    for p in out.labels_dir.iterdir():
        if p.suffix.lower() in LABEL_EXTS and AUG_SEP in p.stem and p.stem not in images:
            p.unlink(missing_ok=True)
    return sigs


def _copy_tasks(out: Dataset, train, report: AugmentReport, per_image: int, seed: int, label_ext: str) -> list:
    """One ``_augment_source`` task per photo with copies still to write (counting the rest as skipped)."""
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
    return tasks


def _run_here(tasks: list, config: AugmentConfig, cancel: Cancel, record) -> None:
    """The tasks in this process, one after another (``workers=1``)."""
    _worker_init(config.to_dict(), pool=False)
    _WORKER["stopped"] = lambda: cancel.cancelled
    for task in tasks:
        if cancel.cancelled:
            break
        record(_augment_source(task))


def _run_on_pool(tasks: list, config: AugmentConfig, workers: int, cancel: Cancel, record) -> None:
    """The tasks on a pool of ``workers`` processes; ``record`` gets each result on this thread."""
    with without_main_script():  # under Streamlit the main script is the page: workers must not run it
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
