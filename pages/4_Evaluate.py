"""Evaluate: measure trained models and the Haar baseline on held-out photos, side by side.

All the work is ``facecore.evaluate.metrics``, run as a background job of this session (Cancel stops it; the
detectors measured by then are kept); results stay in the session until the selection changes.
"""

import functools

import pandas as pd
import streamlit as st

from facecore import FaceCoreError, ImageReadError
from facecore.detect import BLAZEFACE, BUILT_IN, HAAR
from facecore.evaluate.metrics import (calibration_sample, choose_split, collect_images, comparison_table,
                                       render_result)
from facecore.evaluate.each import evaluate_each
from facecore.jobs import Job, run_in_worker
from facecore.evaluate.provenance import own_labels
from facecore.registry import (INT8_SUFFIX, default_detector, detector_names, list_models, model_meta, model_version,
                               quantize)
from facecore.scan import STILLS
from pages.common import cached_model, dataset_picker, detector, show_error, small_faces_toggle, workspace
from pages.common.figures import iou_figure, pr_figure
from pages.common.jobs import progress_bar, session_job, start_session_job, watch

RESULTS_KEY, JOB_KEY = "eval_results", "eval_job"
NOTES_KEY = "eval_notes"  # what the last Evaluate could not do (a detector that failed, Cancel): shown until the next


st.title("📏 Evaluate")
st.write("Measure your models on photos they did not train on, next to OpenCV's Haar cascade as a baseline: "
         "box overlap (IoU), recall and average precision, face-presence accuracy, false alarms on photos "
         "without a face, and speed.")
dataset = dataset_picker()
if dataset is None:
    st.stop()

ws = workspace()
models = {m.name: m for m in list_models(ws.models_root, kind="facetracker")}
names = detector_names(ws.models_root)
if not models:
    st.info("No trained model yet: train one on the Train page. Meanwhile you can evaluate the built-in "
            "blazeface and the Haar baseline.")

left, mid, right = st.columns([3, 1, 1])
first = default_detector(ws.models_root)  # every page's default: the detector saved last, else blazeface
default = list(dict.fromkeys([first, *[n for n in names if n not in BUILT_IN][:2], BLAZEFACE, HAAR]))
chosen = left.multiselect("Detectors", names, default=default, key="eval_detectors",
                          help="'blazeface' finds every face without training; 'haar' is OpenCV's cascade; the "
                               "others are your saved models.")
left.caption(f"Default: **{first}**, the detector you saved last, beside the built-in ones." if first not in BUILT_IN
             else f"Default: the built-in **{first}** (until you save a detector of your own), with haar beside it.")
split = mid.selectbox("Split", ["test", "val", "train", "all"], key="eval_split",
                      help="'test' holds photos no model saw in training (the split each model was trained with).")
threshold = right.slider("Threshold", 0.05, 0.95, 0.5, 0.05, key="eval_threshold",
                         help="Score from which a prediction means 'a face is here' (recall, accuracy, "
                              "false positives). AP and mean IoU do not depend on it.")
small = small_faces_toggle(right, "eval_small_faces")

# All detectors are measured on the same photos: the split of the first trained model chosen.
choice = choose_split(chosen, {n: m.meta for n, m in models.items()}, dataset.name, split)
seed, fractions = choice.seed, choice.fractions
for warning in choice.warnings:
    st.warning(warning)
for name in choice.trained:  # a broken or lying meta.json: one clear line, never a traceback
    if models[name].problem:
        st.warning(models[name].problem)
if split in ("train", "all") and choice.trained:
    st.caption("Trained models saw the train split: their scores there say how well they fit, not how well they generalize.")

try:
    images, skipped = collect_images(dataset, split, seed, fractions)
except FaceCoreError as exc:
    show_error(exc)
    st.stop()
n_face = sum(im.has_face for im in images)
st.caption(f"{len(images)} photos in the {split} split of `{dataset.name}`: {n_face} with a face, "
           f"{len(images) - n_face} without (unlabelled photos count as no-face).")
for s in skipped:
    st.warning(f"Skipped a malformed label: {s}")
if not images:
    st.info(f"The {split} split of `{dataset.name}` is empty: add photos, or choose another split.")
    st.stop()


with st.expander("Make a model faster: an int8 copy"):
    st.write("Stores the model's weights as 8-bit integers (`model_int8.tflite`): about 4x smaller and "
             "2-4x faster on most CPUs (VGG16 gains the most), usually at a tiny cost in accuracy. The copy "
             f"appears as `<name>{INT8_SUFFIX}` here and on the Video and Webcam pages: evaluate both side "
             "by side before choosing.")
    plain = [n for n in models if f"{n}{INT8_SUFFIX}" not in names]
    if not plain:
        st.caption("Every trained model has its int8 copy." if models else "Train a model first.")
    else:
        q1, q2 = st.columns([3, 1], vertical_alignment="bottom")
        to_quantize = q1.selectbox("Model", plain, key="eval_quantize_model")
        if q2.button("Make int8 copy", key="eval_quantize"):
            with st.spinner(f"Converting {to_quantize} (a minute for VGG16)..."):
                try:
                    # at the network input meta.json states; quantize resizes it to the network's own
                    sample = calibration_sample(models[to_quantize].meta, images, name=to_quantize)
                    # TensorFlow's converter runs in a worker process, never in the server
                    info = run_in_worker(quantize, models[to_quantize].path, sample, job_name="int8")
                except FaceCoreError as exc:
                    show_error(exc)
                else:
                    cached_model.clear()  # an older int8 copy of this model may be cached
                    st.session_state["eval_quantized"] = (f"`{to_quantize}{INT8_SUFFIX}` is ready ({info['mb']} MB); "
                                                          f"largest output difference {info['max_abs_diff']:.2g}.")
                    st.rerun()
if "eval_quantized" in st.session_state:
    st.success(st.session_state.pop("eval_quantized"))

fingerprint = dataset.fingerprint()


def selection_key(name: str):
    """Results are reused while the model (its version), the photos and the settings are unchanged."""
    return (name, model_version(name, ws.models_root), fingerprint, split, seed, tuple(fractions), round(threshold, 3),
            small)


def fmt(v) -> str:
    if v is None:
        return "n/a"
    return str(v) if isinstance(v, int) else f"{v:.3f}"


job = session_job(JOB_KEY)
start = st.button("Evaluate", type="primary", disabled=not chosen or (job is not None and job.running),
                  key="eval_start")
store = st.session_state.setdefault(RESULTS_KEY, {})
if start:
    todo, notes = {}, []
    for name in chosen:
        key = selection_key(name)
        if key in store or key in todo:
            continue
        try:
            todo[key] = detector(name, STILLS if small else None)
        except FaceCoreError as exc:
            notes.append(exc)
    st.session_state[NOTES_KEY] = notes
    if todo:
        start_session_job(JOB_KEY, Job(functools.partial(evaluate_each, todo, images, threshold), "evaluate"))
if job is not None and job.status in ("done", "cancelled"):  # the results move into the session, once
    st.session_state.pop(JOB_KEY)
    done, failed = (job.result if job.status == "done" else job.partial) or ({}, [])
    store.update(done)
    stopped = [f"Evaluation stopped: {len(done)} detector(s) measured before Cancel."] * (job.status == "cancelled")
    st.session_state[NOTES_KEY] = [*st.session_state.get(NOTES_KEY, []), *failed, *stopped]
for note in st.session_state.get(NOTES_KEY, []):
    if isinstance(note, str):
        st.warning(note)
    else:
        show_error(note)


def show_job(job: Job | None) -> None:
    if job is not None and job.running:
        progress_bar(job, job.progress.message or "Starting...", "eval_cancel",
                     help="Stop evaluating; the detectors measured so far are kept.")
    elif job is not None and job.status == "failed":
        show_error(job.error)


watch(lambda: session_job(JOB_KEY), show_job)

results = {n: store[selection_key(n)] for n in chosen if selection_key(n) in store}
if not results:
    st.info("Choose detectors and a split, then press **Evaluate**.")
    st.stop()
missing = [n for n in chosen if n not in results]
if missing:
    st.caption(f"Not evaluated yet with these settings: {', '.join(missing)}. Press **Evaluate**.")

st.subheader("Metrics")
n_noface = len(images) - n_face
st.markdown(f"On **{len(images)} photos** of the **{split}** split of `{dataset.name}`: {n_face} with a face, "
            f"{n_noface} without.")
if n_noface == 0:
    st.warning("**False positives cannot be measured here:** this split has no photo without a face, so a "
               "detector that says *face* on every photo, walls included, scores as well as a good one. The "
               "false-positive rate reads n/a and AP and face accuracy only count the photos with a face. Add "
               "photos without a face (Collect & Label, *No face*) and retrain, or evaluate on `all`.")
elif n_noface < 5:
    st.caption(f"Only {n_noface} photo(s) without a face: the false-positive rate moves in steps of "
               f"{1 / n_noface:.0%}.")
for name in results:  # labels accepted unchanged from this detector's (or its start network's) proposals
    own = own_labels(images, name, model_meta(name, ws.models_root))
    if own.unchanged:
        st.warning(own.message())
rows_ = [{k: (v if k == "metric" else fmt(v)) for k, v in row.items()} for row in comparison_table(results)]
st.dataframe(pd.DataFrame(rows_).set_index("metric"), height="content", key="eval_table")
backends = [f"`{n}`: {detector(n).backend}" for n in results if n != HAAR]
st.caption("AP ranks every photo's best prediction by score (a box on a no-face photo is a false positive). "
           "Latency is per photo, preprocessing included, on this server."
           + (f" Inference: {', '.join(backends)}." if backends else ""))

c1, c2 = st.columns(2)
with c1:
    st.markdown("**Precision-recall at IoU 0.5**")
    st.plotly_chart(pr_figure(results), key="eval_pr")
with c2:
    st.markdown("**IoU on photos with a face**")
    st.plotly_chart(iou_figure(results), key="eval_iou")

st.subheader("Photos, worst first")
g1, g2, g3 = st.columns([2, 2, 1])
grid_names = sorted(results, key=lambda n: n in BUILT_IN)  # the user's models before the built-in ones
shown = g1.selectbox("Detector", grid_names, key="eval_grid_detector")
only_errors = g2.toggle("Only mistakes (missed, misplaced, false positives)", key="eval_only_errors")
count = g3.number_input("Photos", 4, 200, 12, 4, key="eval_grid_count")
res = results[shown]
rows = [r for r in res.worst() if not only_errors or r.outcome in ("missed", "misplaced", "false positive")]
if not rows and n_noface:
    st.success(f"`{shown}` made no mistakes on these {len(images)} photos at threshold {threshold:.2f}.")
elif not rows:
    st.info(f"`{shown}` found every face on these {n_face} photos at threshold {threshold:.2f}, but with no "
            "photo without a face here, false alarms were not tested.")
st.caption("Green: the label. Orange: the detector's box (the colour of a proposal on every page); grey when "
           "its score is below the threshold.")
per_row = 4
rows = rows[:int(count)]
for i in range(0, len(rows), per_row):
    cols = st.columns(per_row)
    for col, r in zip(cols, rows[i:i + per_row]):
        try:
            img = render_result(r, threshold)
        except ImageReadError as exc:
            col.warning(str(exc))
            continue
        iou = f"IoU {r.iou:.2f} · " if len(r.true_boxes) else ""
        col.image(img, caption=f"{r.stem[:24]} · {r.outcome} · {iou}score {r.score:.2f}", width="stretch")
