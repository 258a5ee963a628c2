"""Augment: tune the albumentations pipeline, preview it on a photo, write augmented copies of the train split."""

import json

import streamlit as st

from facecore import FaceCoreError
from facecore.augment import AugmentConfig, build_augmenter, delete_augmented, preview_samples
from facecore.detect import draw_boxes
from facecore.jobs import Job, JobSlot
from facecore.augment.mosaic import augment_and_mosaic
from pages.common import AUGMENT_CONFIG_KEY, dataset_picker, show_error
from pages.common.jobs import progress_bar, watch

st.title("🎛️ Augment")
st.write(
    "Multiply the **training** photos with random crops, flips and colour changes; the face boxes move with "
    "the image. A crop that cuts the face off makes a *no face* example. Validation and test photos are "
    "never augmented, so they keep measuring the model on photos it has not seen."
)

dataset = dataset_picker()
if dataset is None:
    st.info("No dataset yet: create one on the Collect & Label page.")
    st.stop()

DEFAULTS = AugmentConfig()


@st.cache_resource(show_spinner=False)
def _jobs() -> dict[str, JobSlot]:
    """The offline job of each dataset folder (running or finished), shared by all sessions."""
    return {}


@st.cache_resource(show_spinner=False, max_entries=8)
def _augmenter(config_json: str):
    return build_augmenter(AugmentConfig.from_dict(json.loads(config_json)))


def _reset_controls():
    for k in [k for k in st.session_state if str(k).startswith("aug_")]:
        del st.session_state[k]


def _p(label: str, name: str, where=st, help: str | None = None) -> float:
    return where.slider(label, 0.0, 1.0, float(getattr(DEFAULTS, name)), 0.05, key=f"aug_{name}", help=help)


controls, preview = st.columns([1, 2], gap="large")

with controls:
    st.subheader("Transforms")
    st.caption("Each transform fires with its probability per copy; 0 turns it off.")
    crop_on = st.toggle("Random crop", True, key="aug_crop_on",
                        help="Keeps a part of the photo at a random position, like the tutorial's 450x450 crop, "
                             "but as a fraction of each side so any photo size works.")
    crop_fraction = st.slider("Crop size (fraction of width and height)", 0.3, 1.0, DEFAULTS.crop_fraction, 0.05,
                              key="aug_crop_fraction", disabled=not crop_on)
    crop_p = _p("Crop probability", "crop_p") if crop_on else 0.0
    hflip_p = _p("Horizontal flip", "hflip_p")
    vflip_p = _p("Vertical flip", "vflip_p")
    bc_p = _p("Brightness / contrast", "brightness_contrast_p")
    gamma_p = _p("Gamma", "gamma_p")
    rgb_p = _p("RGB shift", "rgb_shift_p")
    with st.expander("More transforms (off by default)"):
        rotate_p = _p("Rotation", "rotate_p")
        rotate_limit = st.slider("Rotation up to (degrees)", 1, 45, int(DEFAULTS.rotate_limit), key="aug_rotate_limit")
        scale_p = _p("Scale", "scale_p")
        scale_limit = st.slider("Scale by up to (±)", 0.05, 0.5, DEFAULTS.scale_limit, 0.05, key="aug_scale_limit")
        blur_p = _p("Blur", "blur_p")
        blur_limit = st.slider("Blur kernel up to (px)", 3, 15, DEFAULTS.blur_limit, 2, key="aug_blur_limit")
        noise_p = _p("Gaussian noise", "noise_p")
    min_vis = st.slider("Keep a box if at least this share of it stays in the crop", 0.1, 1.0,
                        DEFAULTS.min_visibility, 0.05, key="aug_min_visibility",
                        help="A face cut below this share is dropped and the copy becomes a no-face example.")
    st.button("Reset to the tutorial's settings", on_click=_reset_controls)

try:
    config = AugmentConfig(
        crop_fraction=float(crop_fraction), crop_p=float(crop_p), hflip_p=hflip_p, vflip_p=vflip_p,
        brightness_contrast_p=bc_p, gamma_p=gamma_p, rgb_shift_p=rgb_p,
        rotate_p=rotate_p, rotate_limit=float(rotate_limit), scale_p=scale_p, scale_limit=float(scale_limit),
        blur_p=blur_p, blur_limit=int(blur_limit), noise_p=noise_p, min_visibility=float(min_vis))
except ValueError as exc:
    st.error(f"These settings are not valid: {exc}")
    st.stop()
st.session_state[AUGMENT_CONFIG_KEY] = config
augmenter = _augmenter(json.dumps(config.to_dict(), sort_keys=True))

try:
    items = dataset.items()
    split = dataset.split()
except FaceCoreError as exc:
    show_error(exc)
    st.stop()

with preview:
    st.subheader("Preview")
    if not items:
        st.info("This dataset has no photos yet: add some on the Collect & Label page.")
    else:
        train_stems = {it.stem for it in split.train}
        stems = [it.stem for it in items]
        default = next((i for i, s in enumerate(stems) if s in train_stems), 0)
        c1, c2, c3 = st.columns([3, 1, 1], vertical_alignment="bottom")
        stem = c1.selectbox("Photo", stems, index=default, key="aug_preview_stem",
                            format_func=lambda s: s + ("" if s in train_stems else "  (val/test: not augmented)"))
        n_samples = c2.selectbox("Samples", [4, 8, 12], index=1, key="aug_preview_n")
        if c3.button("🎲 Re-roll", key="aug_reroll", width="stretch"):
            st.session_state["aug_roll"] = st.session_state.get("aug_roll", 0) + 1
        item = items[stems.index(stem)]
        try:
            from facecore.images import read_image
            image = read_image(item.image)
            label = dataset.label_or_noface(item, (image.shape[1], image.shape[0]))
            samples = preview_samples(augmenter, image, label.boxes, int(n_samples), st.session_state.get("aug_roll", 0))
        except FaceCoreError as exc:
            show_error(exc)
        else:
            cols = st.columns(4)
            cols[0].image(draw_boxes(image, label.boxes, (255, 200, 0)),
                          caption=f"original {image.shape[1]}x{image.shape[0]}", width="stretch")
            for i, (img, bxs) in enumerate(samples, start=1):
                what = f"{len(bxs)} face" if len(bxs) else "no face"
                cols[i % 4].image(draw_boxes(img, bxs), caption=f"{what} · {img.shape[1]}x{img.shape[0]}",
                                  width="stretch")
            lost = sum(1 for _, b in samples if not len(b))
            if label.has_face and lost:
                st.caption(f"{lost} of {len(samples)} samples lost the face to the crop: they train the "
                           "'no face' class.")

st.divider()
st.subheader("Offline augmentation")
st.write(
    "Writes augmented copies of every train-split photo to disk (`augmented/` inside the dataset), on all CPU "
    "cores. The Train page then trains on the train-split originals plus these copies: its *Augmentation* "
    "choice is *Offline copies* by default once the dataset has some (you can switch it there). Rerunning with "
    "the same settings resumes and keeps the copies already written; changed settings replace them."
)

key = str(dataset.root.resolve())
slot = _jobs().setdefault(key, JobSlot())
busy = slot.running

counts = dataset.counts()
train_copies = len(dataset.training_items(split)) - len(split.train)
cols = st.columns(4)
cols[0].metric("Photos", counts.images)
cols[1].metric("Train-split photos", len(split.train))
cols[2].metric("Augmented copies", counts.augmented)
cols[3].metric("Training images", len(split.train) + train_copies,
               help="Train-split photos plus the augmented copies of train-split photos.")

c1, c2 = st.columns(2)
per_image = c1.number_input("Copies per train photo", 1, 1000, 5, key="aug_per_image",
                            help="The tutorials use 60 (one small set) or 5.")
seed = c2.number_input("Seed", 0, 2**31 - 1, 0, key="aug_seed", help="The same seed writes the same copies.")
st.caption(f"This will give {len(split.train)} x {int(per_image)} = {len(split.train) * int(per_image)} copies.")
m1, m2 = st.columns(2)
mosaic_on = m1.checkbox("Add 2x2 mosaics", key="aug_mosaic", disabled=len(split.train) < 4,
                        help="Four train photos in one, each in a quarter, boxes moved along: photos with several "
                             "faces for a detector that finds them all. Written after the copies, same size as a photo.")
n_mosaics = m2.number_input("Mosaics", 1, 100_000, max(len(split.train), 1), key="aug_mosaic_n",
                            disabled=not mosaic_on, help="How many mosaics (one per train photo by default).")
if mosaic_on:
    st.info("**Mosaics make BlazeFace train on photo-shaped input.** Photos with several faces make the Train "
            "page's *Network input: auto* give the network the photo's shape (192 x 256 px for 4:3 photos) instead "
            "of MediaPipe's 192 px square: better on small faces and groups, but training takes about 3.5x as long "
            "and the saved detector about twice as long per frame. Choose *Network input: square* on the Train "
            "page to keep the square.")

b1, b2 = st.columns(2)
if b1.button("Augment the train split", type="primary", disabled=busy or not split.train, key="aug_run"):
    n_mosaic = int(n_mosaics) if mosaic_on else 0
    try:
        slot.start(Job(lambda progress, cancel: augment_and_mosaic(dataset, config, int(per_image), seed=int(seed),
                                                                   mosaics=n_mosaic, progress=progress,
                                                                   cancel=cancel), "augment"))
    except FaceCoreError as exc:
        show_error(exc)
    busy = slot.running
if b2.button("Delete augmented copies", disabled=busy or counts.augmented == 0, key="aug_delete"):
    try:
        n = delete_augmented(dataset)
    except (FaceCoreError, OSError) as exc:
        show_error(exc)
    else:
        slot.forget()
        st.session_state["aug_flash"] = f"Deleted {n} augmented copies; the original photos are untouched."
        st.rerun()
if msg := st.session_state.pop("aug_flash", None):
    st.success(msg)


def show_job(job: Job | None) -> None:
    if job is None:
        return
    if job.running:
        p = job.progress
        what = "Making mosaics" if p.stage == "mosaic" else "Augmenting"
        text = (f"{what}: {int(p.done)} / {int(p.total)} copies" if p.total else
                "Starting: checking which copies are already there...")
        progress_bar(job, text, "aug_cancel")
        return
    if job.status == "failed":
        st.error(f"Augmentation failed: {job.error_message}")
        return
    run = job.result or job.partial
    if run is None:
        st.warning("Cancelled before any copy was made.")
        return
    r = run.copies
    line = (f"{r.written} copies written, {r.skipped} kept from before, {r.removed} stale removed, "
            f"{r.no_face} without a face, in {r.seconds:.1f} s.")
    if r.cancelled:
        st.warning(f"Cancelled after {r.done} of {r.total} copies. {line} Run again to finish.")
    else:
        st.success(f"Done: {r.done} of {r.total} copies ready. {line}")
    for stem, why in r.failed:
        st.error(f"{stem}: {why}")
    if (m := run.mosaics) is not None:
        (st.warning if m.cancelled else st.success)(
            f"Mosaics: {m.done} of {m.total} ready ({m.written} written with {m.faces} faces, {m.skipped} kept, "
            f"{m.removed} stale removed) in {m.seconds:.1f} s.")
        for stem, why in m.failed:
            st.error(f"{stem}: {why}")


watch(lambda: slot.job, show_job)
