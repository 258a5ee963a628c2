"""Recognize: "me / not me". Build identity crops, train and compare classifiers, name faces in photos."""

from __future__ import annotations

import functools
from pathlib import Path

import pandas as pd
import streamlit as st

from facecore import FaceCoreError
from facecore.facetracker.backbones import IDENTITY_BACKBONES
from facecore.detect import DEFAULT_DETECTOR
from facecore.identity.data import DEFAULT_K, IdentitySet, create_identity_set, list_identity_sets
from facecore.identity.compare import COMPARISON_COLUMNS, compare, load_comparison
from facecore.identity.train import (RANDOM_FEATURES, IdentityConfig, overall_fraction, train_identity,
                                     weights_missing)
from facecore.images import decode_image, read_image
from facecore.jobs import Job, ProcessJob
from facecore.identity.recognize import draw_recognitions
from facecore.registry import identity_model_names
from facecore.scan import STILLS
from pages.common import dataset_picker, detector, detector_select, recognizer, show_error, small_faces_toggle, workspace
from pages.common.figures import comparison_figure, history_figure
from pages.common.jobs import progress_bar, session_job, start_session_job, watch

st.title("🙋 Recognize")
st.write(
    "Tell **me** from **not me** (or any people): collect face crops per person, train a small classifier "
    "on top of a pretrained backbone, then name every face the detector finds. The same models can be "
    "switched on in the Video and Webcam pages (*Recognize faces*)."
)

active = dataset_picker()
ws = workspace()
SET_KEY = "recognize_set"
TRAIN_JOB, CMP_JOB = "recognize_train_job", "recognize_cmp_job"  # this session's background trainings
BUILD_JOB = "recognize_build_job"  # cropping a dataset's faces into an identity
WEIGHTS = {"imagenet": "ImageNet (pretrained, downloaded once)", "none": "None: random frozen features (try-out only)"}


def _weights(choice: str):
    return None if choice == "none" else choice


def _train_without_weights() -> None:
    """The offline fallback: weights 'none' in the form, and train again with it."""
    st.session_state["recognize_train_weights"] = "none"
    st.session_state["recognize_train_retry"] = True


def _crop(ids: IdentitySet, identity: str, dataset, k: float, progress, cancel):
    return ids.build_from_dataset(identity, dataset, k=k, progress=progress, cancel=cancel)


def crop_messages(job: Job) -> list:
    """What an ended cropping job did, as (kind, text) for the page's messages."""
    ident, src = job.subject
    rep = job.result if job.status == "done" else job.partial
    added = rep.added if rep is not None else 0
    msgs = [("success", f"Added {added} crop(s) to '{ident}'.") if job.status == "done" else
            ("warning", f"Cropping stopped: {added} crop(s) added to '{ident}' before that.")]
    if rep is not None and rep.skipped:
        msgs.append(("warning", f"{len(rep.skipped)} photo(s) of '{src}' skipped: they have no face label."))
    return msgs


def show_crop_job(job: Job | None) -> None:
    if job is None:
        return
    if job.running:
        progress_bar(job, (job.progress.message or "cropping faces...").capitalize(), "recognize_build_cancel",
                     help="Stop cropping; the crops written so far stay.")
    elif job.status == "failed":
        show_error(job.error)


# ------------------------------------------------------------------------------------------------
st.header("1. Identity data")
st.caption("One folder per identity under `data/identities/<set>/<identity>/`, each holding face crops. "
           "A crop is the face box grown by *k* times its size on every side (k = 0.5 doubles it).")
sets = list_identity_sets(ws.data_root)
with st.expander("New identity set", expanded=not sets):
    new_name = st.text_input("Name", value="me_not_me" if "me_not_me" not in sets else "", key="recognize_new_set")
    if st.button("Create identity set", key="recognize_create_set"):
        try:
            created = create_identity_set(ws.data_root, new_name)
            st.session_state[SET_KEY] = created.name
            st.rerun()
        except FaceCoreError as exc:
            show_error(exc)
if not sets:
    st.info("No identity set yet: create one above (e.g. `me_not_me`).")
    st.stop()

names = list(sets)
if st.session_state.get(SET_KEY) not in sets:
    st.session_state[SET_KEY] = names[0]
ids: IdentitySet = sets[st.selectbox("Identity set", names, key=SET_KEY)]
counts = ids.counts()
if counts:
    cols = st.columns(min(len(counts), 6))
    for i, (ident, n) in enumerate(counts.items()):
        cols[i % len(cols)].metric(ident, n, help=f"face crops of {ident}")
    with st.expander("Preview crops"):
        for ident in counts:
            paths = ids.images(ident)[:8]
            if paths:
                st.caption(ident)
                st.image([str(p) for p in paths], width=90)
else:
    st.info("This set has no identities yet: add crops from a labeled dataset or upload photos below.")

build_col, upload_col = st.columns(2, gap="large")
with build_col:
    st.subheader("From a labeled dataset")
    datasets = ws.datasets()
    if datasets:
        ds_names = list(datasets)
        default_ds = ds_names.index(active.name) if active is not None and active.name in ds_names else 0
        src = st.selectbox("Dataset", ds_names, index=default_ds, key="recognize_build_ds",
                           help="Every labeled face of every photo is cropped; photos without a face are skipped.")
        b_ident = st.text_input("Identity", value="me", key="recognize_build_identity")
        k = st.slider("Margin k", 0.0, 1.0, DEFAULT_K, 0.05, key="recognize_build_k",
                      help="How much background around the face: k x its width/height on every side.")
        build = session_job(BUILD_JOB)
        if st.button("Crop faces into this identity", key="recognize_build", type="primary",
                     disabled=build is not None and build.running):
            source = datasets[src]
            start_session_job(BUILD_JOB, Job(functools.partial(_crop, ids, b_ident, source, k), "crop",
                                             subject=(b_ident.strip(), src)))
        if build is not None and not build.running and build.status != "failed":
            st.session_state.pop(BUILD_JOB)  # its outcome shows once, below, with the uploads'
            st.session_state["recognize_msg"] = crop_messages(build)
        watch(lambda: session_job(BUILD_JOB), show_crop_job)
    else:
        st.info("No dataset: create one on the Collect & Label page.")
with upload_col:
    st.subheader("Upload photos")
    u_ident = st.text_input("Identity", value="not_me", key="recognize_upload_identity")
    files = st.file_uploader("Photos of this person", type=["jpg", "jpeg", "png", "webp", "bmp"],
                             accept_multiple_files=True, key="recognize_upload")
    crop = st.checkbox("Find the face (BlazeFace) and crop it with margin k", value=True, key="recognize_upload_crop",
                       help="Off: the photos are stored as they are (use this for ready-made face crops).")
    if st.button("Add photos", key="recognize_add", disabled=not files):
        added, skipped = 0, []
        try:
            det = detector(DEFAULT_DETECTOR, STILLS) if crop else None  # the built-in BlazeFace, small faces too
            for f in files:
                rep = ids.add_upload(u_ident, f.getvalue(), f.name, detector=det,
                                     k=st.session_state.get("recognize_build_k", DEFAULT_K))
                added += rep.added
                skipped += rep.skipped
            st.session_state["recognize_msg"] = [("success", f"Added {added} photo(s) to '{u_ident.strip()}'.")]
            if skipped:
                st.session_state["recognize_msg"].append(
                    ("warning", f"Skipped {len(skipped)} photo(s): " + "; ".join(f"{n} ({why})" for n, why in skipped)))
            st.rerun()
        except FaceCoreError as exc:
            show_error(exc)
for kind, text in st.session_state.pop("recognize_msg", []):  # added: success; skipped: a warning
    getattr(st, kind)(text)
if counts:
    with st.expander("Remove an identity"):
        rm = st.selectbox("Identity", list(counts), key="recognize_rm_identity")
        sure = st.checkbox(f"Yes, delete all {counts.get(rm, 0)} crops of '{rm}'", key="recognize_rm_sure")
        if st.button("Remove", key="recognize_rm", disabled=not sure):
            ids.remove_identity(rm)
            st.session_state.pop("recognize_rm_sure", None)
            st.rerun()

ready = sum(1 for n in counts.values() if n >= 2) >= 2


# ------------------------------------------------------------------------------------------------
def settings(prefix: str, with_backbone: bool = True) -> dict:
    cols = st.columns(4 if with_backbone else 3)
    out = {}
    if with_backbone:
        out["backbone"] = cols[0].selectbox("Backbone", IDENTITY_BACKBONES, key=f"{prefix}_backbone")
    c2, c3, c4 = cols[-3:]
    out["weights"] = c2.selectbox("Weights", list(WEIGHTS), format_func=WEIGHTS.get, key=f"{prefix}_weights")
    out["input_size"] = c3.selectbox("Input size", [64, 96, 128, 160, 224], index=2, key=f"{prefix}_size")
    out["epochs"] = c4.number_input("Max epochs", 1, 200, 30, key=f"{prefix}_epochs",
                                    help="Early stopping ends sooner when the val loss stops improving.")
    return out


st.header("2. Train a classifier")
busy = any((j := session_job(k)) is not None and j.running for k in (TRAIN_JOB, CMP_JOB))
train_job = session_job(TRAIN_JOB)
if train_job is not None and train_job.status == "done":  # its model's summary stays; the job is done with
    st.session_state["recognize_trained"] = train_job.result.meta
    st.session_state.pop(TRAIN_JOB)
if not ready:
    st.info("Training needs at least two identities with two or more crops each (dozens are better).")
else:
    st.caption("Frozen backbone + global average pooling + a small dense head. The backbone's features of each "
               "crop are computed once, so training is quick even on a CPU. Early stopping keeps the best epoch. "
               "It runs in the background: the page stays usable; Cancel stops it and saves nothing.")
    s = settings("recognize_train")
    c1, c2 = st.columns(2)
    augment = c1.number_input("Augmentation: copies per training crop", 0, 50, 5, key="recognize_train_aug",
                              help="Flips, small shifts and rotations, brightness and colour changes. 0 = off.")
    model_name = c2.text_input("Model name", value=f"{ids.name}-{s['backbone']}", key="recognize_train_name")
    if s["weights"] == "none":
        st.warning("Without ImageNet weights the frozen backbone is random: fine to try the app, poor on real faces.")
    retry = st.session_state.pop("recognize_train_retry", False)  # the offline fallback's button, below
    if st.button("Train", type="primary", key="recognize_train_go", disabled=busy) or (retry and not busy):
        try:
            cfg = IdentityConfig(backbone=s["backbone"], input_size=int(s["input_size"]), weights=_weights(s["weights"]),
                                 augment=int(augment), epochs=int(s["epochs"]),
                                 k=st.session_state.get("recognize_build_k", DEFAULT_K))
            out = ws.model_dir(model_name)
        except FaceCoreError as exc:
            show_error(exc)
        else:
            st.session_state.pop("recognize_trained", None)
            # a worker process: TensorFlow never loads in the server
            start_session_job(TRAIN_JOB, ProcessJob(functools.partial(train_identity, ids, cfg, out), "identity-train"))

    def show_training(job: Job | None) -> None:
        if job is None:
            return
        if job.running:
            p = job.progress
            logs = p.extra.get("logs", {})
            text = (f"Backbone features {int(p.done)}/{int(p.total)}" if p.stage == "features" else
                    f"Epoch {int(p.done)}/{int(p.total)}: val accuracy {logs.get('val_accuracy', 0):.3f}"
                    if p.stage == "epoch" else "Preparing crops...")
            progress_bar(job, text, "recognize_train_cancel", overall_fraction(p),
                         help="Stops after the current epoch; nothing is saved.")
            if p.extra.get("history"):
                st.plotly_chart(history_figure(p.extra["history"]), key="recognize_live")
        elif job.status == "cancelled":
            st.warning("Training stopped: nothing was saved.")
        elif job.status == "failed":
            show_error(job.error)
            if weights_missing(job.error):  # offline: the try-out fallback, one click away
                st.button("Train with random features instead (weights: none)", key="recognize_train_random",
                          on_click=_train_without_weights)

    watch(lambda: session_job(TRAIN_JOB), show_training)
    trained = st.session_state.get("recognize_trained")  # a facecore.meta.ModelMeta
    if trained is not None:
        val = trained.split_metrics("val")
        st.success(f"Saved model '{trained.name}' (best epoch {trained.best} of {len(trained.history)}).")
        c = st.columns(4)
        c[0].metric("Val accuracy", f"{val.get('accuracy', float('nan')):.3f}")
        c[1].metric("Val loss", f"{val.get('loss', float('nan')):.4f}")
        c[2].metric("Size", f"{(trained.size_bytes or 0) / 1e6:.1f} MB")
        c[3].metric("Latency / face", f"{trained.latency_ms or 0:.1f} ms")
        for line in trained.training_warnings:  # e.g. random features: the accuracy means nothing
            st.warning(line)
        st.plotly_chart(history_figure(trained.history), key="recognize_final_chart")


# ------------------------------------------------------------------------------------------------
st.header("3. Compare backbones")
if ready:
    st.caption("Trains one model per backbone, without and with augmentation, on the same crops and split; "
               "each is saved as `<prefix>-<backbone>-aug<N>`.")
    backbones = st.multiselect("Backbones", IDENTITY_BACKBONES, default=["mobilenetv2", "efficientnetb0"],
                               key="recognize_cmp_backbones")
    s2 = settings("recognize_cmp", with_backbone=False)
    c1, c2 = st.columns(2)
    cmp_aug = c1.number_input("Augmented copies for the 'with augmentation' runs", 0, 50, 5, key="recognize_cmp_aug",
                              help="0: only runs without augmentation.")
    prefix = c2.text_input("Model name prefix", value=f"{ids.name}-cmp", key="recognize_cmp_prefix")
    augs = [0, int(cmp_aug)] if cmp_aug else [0]
    if st.button(f"Run comparison ({len(backbones) * len(augs)} trainings)", key="recognize_cmp_go",
                 disabled=not backbones or busy):
        try:
            base = IdentityConfig(input_size=int(s2["input_size"]), weights=_weights(s2["weights"]),
                                  epochs=int(s2["epochs"]), k=st.session_state.get("recognize_build_k", DEFAULT_K))
        except FaceCoreError as exc:
            show_error(exc)
        else:
            start_session_job(CMP_JOB, ProcessJob(functools.partial(
                compare, ids, list(backbones), augs, base, ws.models_root, prefix), "identity-compare"))

    def show_comparison(job: Job | None) -> None:
        if job is None or job.status == "done":
            return
        if job.running:
            progress_bar(job, job.progress.message or "Starting...", "recognize_cmp_cancel",
                         help="Stops after the current epoch; the trainings finished so far stay saved.")
        elif job.status == "cancelled":
            st.warning(f"Comparison stopped: {len(job.partial or [])} training(s) finished and saved.")
        else:
            show_error(job.error)

    watch(lambda: session_job(CMP_JOB), show_comparison)
doc = load_comparison(ids)
if doc and doc["rows"]:
    df = pd.DataFrame(doc["rows"], columns=COMPARISON_COLUMNS)
    st.caption(f"Last comparison on this set: {doc['created']}, crops {doc.get('counts')}, "
               f"input {doc['config']['input_size']} px, weights {doc['config']['weights'] or 'none'}.")
    if not doc["config"].get("weights"):
        st.warning(f"These models were {RANDOM_FEATURES}.")
    st.dataframe(df, hide_index=True)
    st.plotly_chart(comparison_figure(df), key="recognize_cmp_chart")
elif not ready:
    st.info("Add crops of at least two identities first.")


# ------------------------------------------------------------------------------------------------
st.header("4. Recognize faces in a photo")
models = identity_model_names(ws.models_root)
if not models:
    st.info("No identity model yet: train one above.")
    st.stop()
c1, c2, c3 = st.columns(3)
ident_model = c1.selectbox("Identity model", models, key="recognize_model")
det_name = detector_select(c2, "recognize_detector", label="Face detector")
face_thr = c3.slider("Face threshold", 0.0, 1.0, 0.5, 0.05, key="recognize_face_thr",
                     help="Faces the detector scores lower are ignored.")
small = small_faces_toggle(c3, "recognize_small_faces")
photos = st.file_uploader("Photos", type=["jpg", "jpeg", "png", "webp", "bmp"], accept_multiple_files=True,
                          key="recognize_photos")
sample = None
if active is not None and not photos:
    stems = {it.stem: it for it in active.items()}
    pick = st.selectbox(f"...or a photo of the active dataset '{active.name}'", ["(none)"] + list(stems),
                        key="recognize_sample")
    sample = stems.get(pick)

images: list[tuple[str, object]] = []
for f in photos or []:
    try:
        images.append((f.name, decode_image(f.getvalue(), f.name)))
    except FaceCoreError as exc:
        show_error(exc)
if sample is not None:
    try:
        images.append((Path(sample.image).name, read_image(sample.image)))
    except FaceCoreError as exc:
        show_error(exc)
if images:
    try:
        rec = recognizer(det_name, ident_model, STILLS if small else None)
    except FaceCoreError as exc:
        show_error(exc)
        st.stop()
    for name, rgb in images:
        results = rec.recognize(rgb, face_threshold=face_thr)
        st.image(draw_recognitions(rgb, results, rec.classes), caption=f"{name}: {len(results)} face(s)")
        if results:
            st.dataframe(pd.DataFrame([{"face": i + 1, "name": r.name, "score": round(r.score, 3),
                                        "face score": round(r.face_score, 3),
                                        **{f"p({c})": round(float(p), 3) for c, p in zip(rec.classes, r.probs)}}
                                       for i, r in enumerate(results)]), hide_index=True)
        else:
            st.warning(f"{name}: no face found above the face threshold.")
