"""Seconds per training epoch: heads on cached backbone features vs a plain ``fit`` through the frozen backbone.

    python benchmarks/train.py [--samples 1000] [--backbones vgg16 mobilenetv2] [--epochs 3]
    python benchmarks/train.py --pipeline DATASET_FOLDER [--epochs 3] [--backbones tinycnn]

``--pipeline`` times a whole ``facecore.train.train`` run on a real dataset instead (from scratch, no
augmentation), stage by stage as its progress reports them: importing TensorFlow and building the
network, reading the images, training (the first epoch, which builds the training graph, apart from
the others), evaluating, saving; wall and CPU seconds for each.

Uses generated 160x120 face images (facecore.testing.face_image) and ``weights=None`` backbones, frozen as if they
were pretrained (the timing does not depend on the weights' values). For each backbone it prints:
the one-off feature computation, the seconds per epoch on cached features, the seconds per epoch of a
plain fit through the backbone (after a short warm-up that builds the graphs), and the speed-up per epoch
and over a whole ``--total-epochs`` run (feature computation included). Wall seconds and the process's
CPU seconds are both printed: on a shared machine the CPU seconds are the steadier figure.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402


def make_samples(n: int, size: int, seed: int = 0):
    from facecore.preprocess import resize_for_model
    from facecore.testing import face_image

    rng = np.random.default_rng(seed)
    x = np.empty((n, size, size, 3), np.float32)
    cls = np.zeros((n, 1), np.float32)
    box = np.zeros((n, 4), np.float32)
    for i in range(n):
        img, b = face_image(rng, 160, 120, face=(i % 4 != 0))
        x[i] = resize_for_model(img, size)
        if b is not None:
            cls[i], box[i] = 1.0, b
    return x, cls, box


def _dataset(x, cls, box, batch):
    import tensorflow as tf

    return tf.data.Dataset.from_tensor_slices((x, (cls, box))).shuffle(len(x), seed=0).batch(batch).prefetch(2)


def timed_epochs(trainer, x, cls, box, batch: int, epochs: int) -> tuple[float, float]:
    """Median (wall seconds, process CPU seconds) per epoch over ``epochs`` full epochs, after a warm-up
    on a few batches that builds the graph. CPU seconds are what the process itself used: on a shared
    machine they vary less than wall time."""
    import keras

    walls, cpus = [], []

    class T(keras.callbacks.Callback):
        def on_epoch_begin(cb, epoch, logs=None):
            cb.w, cb.c = time.perf_counter(), time.process_time()

        def on_epoch_end(cb, epoch, logs=None):
            walls.append(time.perf_counter() - cb.w)
            cpus.append(time.process_time() - cb.c)

    k = batch * 4 + len(x) % batch  # same last partial batch: its graph is built before timing too
    trainer.fit(_dataset(x[:k], cls[:k], box[:k], batch), epochs=1, verbose=0, shuffle=False)
    trainer.fit(_dataset(x, cls, box, batch), epochs=epochs, callbacks=[T()], verbose=0, shuffle=False)
    return float(np.median(walls)), float(np.median(cpus))


def bench(backbone: str, n: int, epochs: int, batch: int, total_epochs: int) -> dict:
    import keras

    from facecore.facetracker import losses as L
    from facecore.facetracker import model as M
    from facecore.facetracker.backbones import DEFAULT_INPUT_SIZE

    size = DEFAULT_INPUT_SIZE[backbone]
    x, cls, box = make_samples(n, size)
    net = M.build_model(backbone, size, None, 2048)
    M.backbone_of(net).trainable = False  # frozen, as with pretrained weights

    fm = M.feature_model(net)
    fm.predict(x[:8], verbose=0)  # build the graph
    t, c = time.perf_counter(), time.process_time()
    feats = fm.predict(x, batch_size=64, verbose=0)
    t_features, c_features = time.perf_counter() - t, time.process_time() - c

    # as facecore.train does: heads on cached features with XLA; the full network without
    cached = L.FaceTracker(M.heads_of(net))
    cached.compile(keras.optimizers.Adam(1e-4), localization_weight=2.0, jit_compile=True, steps_per_execution=16)
    t_cached, c_cached = timed_epochs(cached, feats, cls, box, batch, epochs)

    plain = L.FaceTracker(net)
    plain.compile(keras.optimizers.Adam(1e-4), localization_weight=2.0, jit_compile=False)
    t_plain, c_plain = timed_epochs(plain, x, cls, box, batch, epochs)
    return {"backbone": backbone, "size": size, "features_s": t_features, "features_cpu": c_features,
            "cached_epoch_s": t_cached, "cached_epoch_cpu": c_cached,
            "plain_epoch_s": t_plain, "plain_epoch_cpu": c_plain, "per_epoch_x": t_plain / t_cached,
            "per_epoch_cpu_x": c_plain / c_cached,
            "run_x": (t_plain * total_epochs) / (t_features + t_cached * total_epochs)}


def _stage_of(p) -> str:
    """The benchmark's stage for a progress report (messages of older versions included)."""
    msg = p.message.lower()
    if p.stage == "loading":
        return "build" if ("tensorflow" in msg or "building" in msg) else "read"
    if p.stage in ("training", "fine-tuning"):
        return "epoch 1" if p.extra["epoch"] < 1 else "epochs 2+"
    return p.stage


def pipeline(data: str, backbone: str, epochs: int, batch: int) -> dict:
    """Wall and CPU seconds per stage of one ``train`` run of ``backbone`` from scratch on ``data``."""
    import tempfile

    from facecore import Dataset
    from facecore.train import TrainConfig, train

    ds = Dataset.open(data)
    cfg = TrainConfig(name="bench", backbone=backbone, weights=None, epochs=epochs, batch_size=batch,
                      learning_rate=1e-3, augmentation="off", head_units=256, patience=0)
    marks = []

    def progress(p):
        stage = _stage_of(p)
        if not marks or marks[-1][0] != stage:
            marks.append((stage, time.perf_counter(), time.process_time()))

    t0, c0 = time.perf_counter(), time.process_time()
    with tempfile.TemporaryDirectory() as d:
        train(ds, cfg, progress, Path(d) / "bench")
    marks.append(("end", time.perf_counter(), time.process_time()))
    out = {"images": len(ds.items()), "total": (marks[-1][1] - t0, marks[-1][2] - c0)}
    for (stage, t, c), (_, t2, c2) in zip(marks, marks[1:]):
        w, cpu = out.get(stage, (0.0, 0.0))
        out[stage] = (w + t2 - t, cpu + c2 - c)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--backbones", nargs="+", default=["vgg16", "mobilenetv2"])
    ap.add_argument("--epochs", type=int, default=1, help="timed epochs per method (after a short warm-up)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--total-epochs", type=int, default=40, help="run length for the whole-run speed-up")
    ap.add_argument("--pipeline", metavar="DATASET", help="time the stages of a whole training run on DATASET")
    args = ap.parse_args(argv)
    if args.pipeline:
        for b in (args.backbones if args.backbones != ["vgg16", "mobilenetv2"] else ["tinycnn"]):
            r = pipeline(args.pipeline, b, max(args.epochs, 2), 16)
            print(f"{b} from scratch, {r['images']} images, {max(args.epochs, 2)} epochs, batch 16: wall s [CPU s]")
            for stage in ("build", "read", "epoch 1", "epochs 2+", "evaluating", "saving", "total"):
                if stage in r:
                    print(f"  {stage:<11} {r[stage][0]:7.1f} [{r[stage][1]:6.1f}]")
        return 0
    import tensorflow as tf

    print(f"{args.samples} samples, batch {args.batch_size}, CPU threads: intra {tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count()}, "
          f"devices {[d.device_type for d in tf.config.list_physical_devices()]}")
    print("seconds are wall (CPU seconds of this process in brackets)")
    print(f"{'backbone':<12} {'px':>4} {'features once':>18} {'cached s/epoch':>18} {'plain s/epoch':>18} "
          f"{'x per epoch':>16} {f'x per {args.total_epochs}-epoch run':>22}")
    for b in args.backbones:
        r = bench(b, args.samples, args.epochs, args.batch_size, args.total_epochs)
        print(f"{r['backbone']:<12} {r['size']:>4} {r['features_s']:>8.1f} [{r['features_cpu']:>6.1f}] "
              f"{r['cached_epoch_s']:>8.2f} [{r['cached_epoch_cpu']:>6.2f}] {r['plain_epoch_s']:>8.1f} "
              f"[{r['plain_epoch_cpu']:>6.1f}] {r['per_epoch_x']:>6.1f}x [{r['per_epoch_cpu_x']:>5.1f}x] "
              f"{r['run_x']:>21.1f}x", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
