"""Train: choose a backbone and settings, train in the background, watch the losses live."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
import streamlit as st

from facecore import Dataset, FaceCoreError
from facecore.facetracker.backbones import BLAZEFACE_BACKBONE, CATALOGUE, DEFAULT_INPUT_SIZE, DETECTOR_BACKBONES, IMAGENET_BACKBONES
from facecore.jobs import Job
from facecore.evaluate.provenance import kept_start
from facecore.train.personalize import note as personalization_note
from facecore.meta import ModelMeta
from facecore.registry import META_FILE
from facecore.datasets.splits import mosaic_sources
from facecore.train import AUGMENTATION_MODES, INPUT_SHAPES, JOB, PERSONALIZE, TRAIN_LAYERS, TrainConfig, failure_kind
from facecore.train import start_training as start_job
from pages.common import AUGMENT_CONFIG_KEY, dataset_picker, dataset_summary, show_error, workspace
from pages.common.figures import loss_figure
from pages.common.jobs import watch
from pages.common.style_fit import style_fit_section

INPUT_SHAPE_LABELS = {"auto": "auto", "square": "square", "frame": "photo-shaped", "close": "close-up: 128 px, fast"}
PERSONALIZE_LABELS = {"auto": "choose by cross-validation", "fine-tune": "always fine-tune"}
LAYER_LABELS = {"box": "box heads", "heads": "all detection heads", "all": "every layer"}

st.title("🧠 Train")
st.write(
    "Train a face detector. The default, **blazeface**, fine-tunes MediaPipe's BlazeFace, a network that already "
    "knows faces, on your photos: it learns your camera, your people and the way you draw boxes, and finds "
    "every face in a frame. The tutorials' *FaceTracker* (an ImageNet backbone with one face/no-face head and "
    "one box head, or a tiny CNN from scratch) is there too. Training runs in the background: you can change "
    "pages and come back; one training runs at a time on this server."
)

dataset = dataset_picker()

BACKBONE_HELP = {
    "blazeface": "BlazeFace (default): MediaPipe's face detector fine-tuned on your photos; several faces per "
                 "frame, about a minute on a CPU, no download.",
    "vgg16": "Tutorial FaceTracker, VGG16: the tutorials' choice (120 px). Large and accurate; slow on a CPU without the feature cache.",
    "mobilenetv2": "MobileNetV2: small and fast, good for the webcam.",
    "resnet50": "ResNet50: large; strong features.",
    "efficientnetb0": "EfficientNetB0: small, strong features.",
    "tinycnn": "Tiny CNN: a small network with no pretrained weights; trains from scratch quickly on a CPU.",
}
WEIGHTS_LABELS = {"blazeface": "Face-pretrained (MediaPipe BlazeFace, built in)", "imagenet": "ImageNet (pretrained, downloaded once)", "none": "None: train from scratch",
                  "file": "A weights file (.h5)"}
AUG_LABELS = {"off": "Off", "offline": "Offline copies (from the Augment page)",
              "on_the_fly": "On the fly (new random copies every epoch)"}
METRIC_COLS = {"loss": "loss", "class_loss": "classification loss", "loc_loss": "localization loss",
               "mean_iou": "mean IoU", "face_accuracy": "face accuracy", "n": "images", "n_face": "with a face"}


def _fmt_s(s: float | None) -> str:
    if s is None:
        return "--"
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else (f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s")


def metrics_table(metrics: dict) -> pd.DataFrame:
    rows = []
    for split in ("train", "val", "test"):
        m = metrics.get(split)
        if m:
            rows.append({"split": split, **{label: m.get(k) for k, label in METRIC_COLS.items()}})
    return pd.DataFrame(rows).dropna(axis=1, how="all")  # no column of blanks for figures a model has not got


def start_training(ds: Dataset, config: TrainConfig) -> None:
    try:
        start_job(ds, config, workspace().model_dir(config.name), JOB)
    except FaceCoreError as exc:  # BusyError says who is training; others name the bad setting
        show_error(exc)
    else:
        st.rerun()


# -- settings ---------------------------------------------------------------------------------------
job = JOB.job
running = job is not None and job.running


def show_running_job_settings(cfg: TrainConfig, dataset_name: str) -> None:
    """Fill the form with the running job's settings (coming back to the page dropped the widgets' state),
    once per job, with the same widget keys as the form below."""
    ss = st.session_state
    if ss.get("_train_form_job") == job.started:
        return
    ss["_train_form_job"] = job.started
    b, blaze_ = cfg.backbone, cfg.backbone == BLAZEFACE_BACKBONE
    weights_key = ("blazeface" if blaze_ and cfg.weights else "imagenet" if cfg.weights == "imagenet"
                   else "none" if cfg.weights is None else "file")
    values = {"train_backbone": b, f"train_weights_{b}": weights_key, f"train_size_{b}": cfg.size,
              f"train_head_{b}": cfg.head_units, "train_locw": float(cfg.localization_weight),
              "train_patience": cfg.patience, "train_ft": cfg.fine_tune_epochs, "train_ft_layers": cfg.fine_tune_layers,
              "train_seed": cfg.seed}
    if weights_key == "file":
        values["train_weights_path"] = str(cfg.weights)
    kind = "blaze" if blaze_ else cfg.weights is None
    values[f"train_epochs_{kind}"] = cfg.epochs
    if cfg.batch_size in (2, 4, 8, 16, 32, 64):
        values[f"train_batch_{kind}"] = cfg.batch_size
    if cfg.learning_rate in (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2):
        values[f"train_lr_{kind}"] = cfg.learning_rate
    if b == "mobilenetv2":
        values["train_alpha"] = cfg.alpha
    if blaze_:
        values["train_layers"] = getattr(cfg, "train_layers", "all")
        values["train_input_shape"] = cfg.input_shape
    if dataset_name == job.subject.dataset:
        values[f"train_name_{dataset_name}_{b}"] = cfg.name
        values[f"train_aug_{dataset_name}_{blaze_}"] = cfg.augmentation
    ss.update(values)


if running and dataset is not None and "train_backbone" not in st.session_state:
    show_running_job_settings(job.subject.config, dataset.name)
config: TrainConfig | None = None
weights_choice, weights = "imagenet", "imagenet"
if dataset is None:
    st.info("No dataset yet: create one on the Collect & Label page.")
else:
    summary = dataset_summary(dataset)
    counts, sizes = summary if summary is not None else (None, None)
    if counts is not None:
        st.caption(f"Dataset **{dataset.name}**: {counts.images} images ({counts.faces} with a face, "
                   f"{counts.no_face} without) · split train {sizes['train']} / val {sizes['val']} / "
                   f"test {sizes['test']} by source photo · {counts.augmented} augmented copies")
        if counts.faces == 0:
            st.warning("No labeled face yet: label some photos on the Collect & Label page before training.")
        elif counts.no_face < 0.1 * counts.images:
            st.warning(f"Only {counts.no_face} of {counts.images} photos ({counts.no_face / counts.images:.0%}) have no "
                       "face. A detector learns what is *not* a face from them: with too few it finds a face on "
                       "every wall and curtain. Aim for at least 10%: add photos without a face (or mark them "
                       "*No face*) on the Collect & Label page.")

    left, mid, right = st.columns(3)
    backbone = left.selectbox("Model", DETECTOR_BACKBONES, key="train_backbone", help=" ".join(BACKBONE_HELP.values()))
    blaze = backbone == BLAZEFACE_BACKBONE
    left.caption(BACKBONE_HELP[backbone])
    pretrained_ok = backbone in IMAGENET_BACKBONES
    weight_opts = (["blazeface", "none"] if blaze else ["imagenet", "none", "file"] if pretrained_ok
                   else ["none", "file"])
    weights_choice = mid.radio("Weights", weight_opts, format_func=WEIGHTS_LABELS.get, key=f"train_weights_{backbone}")
    weights: str | None = weights_choice if weights_choice in ("imagenet", "blazeface") else None
    if weights_choice == "file":
        wpath = mid.text_input("Weights file", key="train_weights_path", placeholder="/path/to/backbone_notop.h5",
                               help="Backbone weights without the classifier top, e.g. a Keras applications "
                                    "'..._notop.h5' file.")
        weights = wpath.strip() or None
        if weights is None:
            mid.caption("Enter the path of the weights file.")
    if blaze:
        input_size = right.selectbox(
            "Input size (px)", list(CATALOGUE[BLAZEFACE_BACKBONE].sizes), key="train_size_blazeface",
            format_func={192: "192: full-range model (faces near and far)", 128: "128: short-range model "
                         "(only faces a fifth of the frame wide or more; about 3x faster)"}.get,
            help="Photos are resized whole to this square, as at inference.")
    else:
        input_size = right.number_input("Input size (px)", 32, 512, DEFAULT_INPUT_SIZE[backbone], 8,
                                        key=f"train_size_{backbone}",
                                        help="Photos are resized to a square of this size (the whole frame, as at inference).")
    name = right.text_input("Model name", f"{dataset.name}-{backbone}", key=f"train_name_{dataset.name}_{backbone}",
                            help="Saved under models/<name>; a model with the same name is replaced when training ends.")

    left, mid, right = st.columns(3)
    defaults = TrainConfig.for_backbone(backbone, weights is None)  # the CLI's defaults too
    kind = "blaze" if blaze else weights is None
    epochs = left.number_input("Epochs", 1, 1000, defaults.epochs, key=f"train_epochs_{kind}")
    batch_size = mid.select_slider("Batch size", [2, 4, 8, 16, 32, 64], defaults.batch_size,
                                   key=f"train_batch_{kind}")
    lr = right.select_slider("Learning rate", [1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2], defaults.learning_rate,
                             format_func=lambda v: f"{v:g}", key=f"train_lr_{kind}")
    n_aug = counts.augmented if counts is not None else 0
    n_mosaics = len(mosaic_sources(dataset)) if n_aug else 0
    # copies made on the Augment page are used by default (the choice stays visible here)
    aug_default = "offline" if n_aug else "off" if defaults.augmentation == "offline" else defaults.augmentation
    augmentation = st.radio("Augmentation", AUGMENTATION_MODES, index=AUGMENTATION_MODES.index(aug_default),
                            horizontal=True, format_func=AUG_LABELS.get, key=f"train_aug_{dataset.name}_{blaze}",
                            help="Offline copies: the train split plus the copies written on the Augment page "
                                 "(picked by default when the dataset has some). BlazeFace also augments inside "
                                 "training in every mode but Off (zoom, shift, flip, colour).")
    aug_config = None
    if augmentation == "offline" and not n_aug:
        st.warning("This dataset has no augmented copies yet: make them on the Augment page, or choose another mode.")
    elif augmentation == "offline":
        st.caption(f"Trains on the train split plus its {n_aug} augmented copies from the Augment page"
                   + (f" ({n_mosaics} of them 2x2 mosaics)." if n_mosaics else "."))
    elif augmentation == "on_the_fly" and blaze:
        st.caption("BlazeFace makes its random copies inside training (zoom 60-220 %, shift, flip, colour); the "
                   "Augment page's transforms apply to its offline copies.")
    elif augmentation == "on_the_fly":
        aug_config = st.session_state.get(AUGMENT_CONFIG_KEY)  # set by the Augment page
        st.caption("Uses the transforms set on the Augment page in this session"
                   if aug_config is not None else "Uses the default transforms (tune them on the Augment page).")
    mosaic_note = st.empty()  # filled once the network input is known (Advanced)

    with st.expander("Advanced"):
        a1, a2, a3 = st.columns(3)
        loc_weight = a1.number_input("Localization weight", 0.1, 100.0, defaults.localization_weight, 0.5,
                                     key="train_locw",
                                     help="Total loss = classification + this x localization.")
        patience = a2.number_input("Early stopping patience (epochs, 0 = off)", 0, 100, defaults.patience,
                                   key="train_patience")
        seed = a3.number_input("Seed", 0, 2**31 - 1, defaults.seed, key="train_seed")
        # only the settings of the chosen model: BlazeFace has no Dense heads and no backbone to unfreeze
        head_units, ft_epochs, ft_layers = defaults.head_units, 0, defaults.fine_tune_layers
        alpha, train_layers, input_shape = defaults.alpha, defaults.train_layers, defaults.input_shape
        personalize = defaults.personalize
        if blaze:
            b1, b2 = st.columns(2)
            train_layers = b1.radio("Layers to train", TRAIN_LAYERS, key="train_layers", horizontal=True,
                                    index=TRAIN_LAYERS.index(defaults.train_layers),
                                    format_func=LAYER_LABELS.get,
                                    help="Box heads (the default) learn where your boxes go and keep MediaPipe's "
                                         "judgement of what is a face: on people not in your photos it kept false "
                                         "alarms at zero. All detection heads also relearn face/no-face; every layer "
                                         "fits your own photos most closely and forgets more.")
            input_shape = b2.radio("Network input", INPUT_SHAPES, key="train_input_shape", horizontal=True,
                                   index=INPUT_SHAPES.index(defaults.input_shape),
                                   format_func=INPUT_SHAPE_LABELS.get,
                                   help="Photo-shaped: the network sees a 4:3 photo as 192 x 256 pixels instead of "
                                        "inside a 192 px square, so small and distant faces get a third more pixels "
                                        "(slower: see below). Square: MediaPipe's own input, best for one face close "
                                        "to the camera. Close-up: the same square at 128 px, 2.5x less work per "
                                        "frame (for a fast webcam or video), for faces a sixth of the photo's width "
                                        "or larger; with ten photos it boxed some people's faces less well than the "
                                        "built-in detector, so Auto never picks it. Auto picks photo-shaped when a "
                                        "labeled photo holds several faces (or mosaics from the Augment page) or "
                                        "most faces are tiny (under a tenth of the photo's width), square otherwise.")
            personalize = b1.radio("With 40 labeled photos or fewer", PERSONALIZE, key="train_personalize",
                                   horizontal=True, index=PERSONALIZE.index(defaults.personalize),
                                   format_func=PERSONALIZE_LABELS.get,
                                   help="Choose by cross-validation (default): your photos are split in three, and "
                                        "the built-in detector, its box style fitted to your labels and fine-tuning "
                                        "are each scored on the photos they did not learn from; the simplest one that "
                                        "nothing beats is saved, so a few photos never make the detector worse "
                                        "(with the close-up input all three run at 128 px, so they can). "
                                        "Costs three short extra trainings. Always fine-tune: skip that choice.")
        else:
            head_units = a1.number_input("Head units", 8, 4096, defaults.head_units, 8,
                                         key=f"train_head_{backbone}", help="Width of each head's hidden Dense layer.")
            ft_epochs = a2.number_input("Fine-tuning epochs", 0, 500, defaults.fine_tune_epochs, key="train_ft",
                                        disabled=weights is None,
                                        help="A second phase that unfreezes the top of a pretrained backbone at a "
                                             "small learning rate (slow: every step runs through the backbone).")
            ft_layers = a3.number_input("Layers to unfreeze", 1, 300, defaults.fine_tune_layers,
                                        key="train_ft_layers", disabled=weights is None)
            if backbone == "mobilenetv2":
                alpha = a1.select_slider("MobileNetV2 width", [0.35, 0.5, 0.75, 1.0, 1.3, 1.4], defaults.alpha,
                                         key="train_alpha")
    if blaze and augmentation == "offline" and n_mosaics and input_shape in ("auto", "frame"):
        mosaic_note.info(
            f"**The {n_mosaics} mosaics switch the network to the photo-shaped input** "
            + ("(*Network input: auto*: several faces in a photo)" if input_shape == "auto" else "")
            + ": 192 x 256 px for 4:3 photos instead of MediaPipe's 192 px square. It finds small faces and "
            "several faces better, but training takes about 3.5x as long and the saved detector about twice as "
            "long per frame. To keep the square, choose *Network input: square* under *Advanced*, or train "
            "without the offline copies.")
    if blaze and weights is not None:
        st.caption(f"Starts from MediaPipe's face weights (shipped with the app, nothing to download) and trains "
                   f"the {LAYER_LABELS[train_layers]} (*Advanced*)"
                   + ("; every photo gets a fresh random zoom, shift, flip and colour change in every epoch."
                      if augmentation != "off" else "."))
    elif weights is None:
        st.warning("**No pretrained weights: the whole network trains from scratch.** That is much slower than "
                   "training the heads on a frozen pretrained backbone and needs more photos and epochs.")
    elif augmentation != "on_the_fly":
        st.caption("Fast path: the backbone is frozen, so its features are computed once per photo and only "
                   "the heads train on them.")
    else:
        st.caption("On-the-fly augmentation runs every image through the backbone in every epoch (slower than "
                   "offline copies, which use the feature cache).")
    try:
        config = replace(defaults, name=name.strip(), input_size=int(input_size), weights=weights,
                         alpha=float(alpha), head_units=int(head_units), epochs=int(epochs),
                         batch_size=int(batch_size), learning_rate=float(lr),
                         localization_weight=float(loc_weight), augmentation=augmentation, augment=aug_config,
                         fine_tune_epochs=int(ft_epochs) if weights is not None else 0,
                         fine_tune_layers=int(ft_layers), patience=int(patience), seed=int(seed),
                         train_layers=train_layers, input_shape=input_shape, personalize=personalize)
    except FaceCoreError as exc:
        show_error(exc)
    if config is not None and (workspace().models_root / config.name / META_FILE).exists():
        st.caption(f"A model called **{config.name}** exists: it is replaced when this training finishes.")

    style_fit_section(dataset)

if running:
    st.info(f"A training is running on this server (model **{job.subject.config.name}** on dataset "
            f"**{job.subject.dataset}**; its progress is below). One training runs at a time: wait for it to "
            "finish or press Stop.")
b1, b2, _ = st.columns([1, 1, 4])
start = b1.button("Start training", type="primary", key="train_start",
                  disabled=config is None or running or (weights_choice == "file" and not weights))
stop = b2.button("Stop", key="train_stop", disabled=not running,
                 help="Stops after the current batch; nothing is saved.")
if start and config is not None and dataset is not None:
    start_training(dataset, config)
if stop:
    JOB.cancel()
    st.rerun()


# -- live progress ----------------------------------------------------------------------------------
def show_job(job: Job | None) -> None:
    if job is None:
        st.info("No training has run on this server yet. Choose the settings above and press **Start training**.")
        return
    run, p = job.subject, job.progress
    cfg = run.config
    st.markdown(f"**{cfg.name}** · {cfg.backbone} {cfg.size}px · weights {cfg.weights or 'none'} · "
                f"dataset **{run.dataset}**")
    eta = f" · about {_fmt_s(job.eta_now)} left" if job.eta_now is not None else ""
    meta = job.result[1] if job.status == "done" else ModelMeta()
    fraction = 1.0 if job.status == "done" else p.fraction
    # one figure: the bar's own fraction; a failure's message is shown once, below, not in the bar too
    what_now = ("stopping after the current batch..." if job.cancelling else (p.message or "starting") if job.running
                else f"saved {job.result[0]}" if job.status == "done" else job.status)
    st.progress(fraction, text=f"{what_now} · {fraction:.0%} · elapsed {_fmt_s(job.elapsed_s)}{eta}")
    history = meta.history or p.extra.get("history") or []
    if history:
        st.plotly_chart(loss_figure(history), key="train_chart")
    elif job.running:
        st.caption("The chart appears after the first epoch.")
    if job.status == "done":
        chosen = personalization_note(meta)  # first, in full: which of built-in, style, fine-tuning won
        if chosen:
            st.info(chosen)
        kept = kept_start(meta)  # first, in full: the figures below are the start's, not training's
        if kept:
            st.warning(kept)
        st.success(f"Done in {_fmt_s(job.elapsed_s)}: the model is saved in `{job.result[0]}` and listed on the "
                   "home page. Measure it on the Evaluate page.")
        st.table(metrics_table(meta.metrics).set_index("split").style.format(precision=3, na_rep="--"))
        best, layers = meta.best, meta.train_layers or cfg.train_layers
        st.caption(f"{meta.epochs_run} epoch(s), "
                   + ("the start kept (above)" if best == 0 else f"best epoch {best}" if best else
                      "no epoch trained (chosen above)")
                   + f"{' (stopped early)' if meta.training_flag('stopped_early') else ''}; "
                   + (f"trained: {LAYER_LABELS.get(layers, layers)}; " if cfg.backbone == BLAZEFACE_BACKBONE else
                      f"{'feature cache (frozen backbone, heads trained)' if meta.training_flag('feature_cache') else 'full network'}; ")
                   + (f"network input {'x'.join(map(str, meta.network_input_hw))} px "
                      f"({INPUT_SHAPE_LABELS.get(meta.input_shape, meta.input_shape)}); "
                      if meta.network_input_hw else "")
                   + f"files: {', '.join(meta.file_names)}")
        for w in meta.training_warnings:
            st.warning(w)
    elif job.status == "cancelled":
        st.warning("Training stopped: nothing was saved.")
    elif job.status == "failed":
        st.error(job.error_message)
        # only for the model that failed: after switching to another one the offer no longer applies
        if failure_kind(job.error) == "weights" and st.session_state.get("train_backbone") == cfg.backbone:
            st.write("You can train without pretrained weights instead: the whole network then trains from scratch.")
            if st.button("Continue from scratch (weights: none)", key="train_scratch"):
                start_training(Dataset(run.dataset_root), replace(cfg, weights=None, fine_tune_epochs=0))


st.subheader("Progress")
watch(lambda: JOB.job, show_job, every=1.0)
