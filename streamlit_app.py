"""FaceTrack Studio: home page."""

import pandas as pd
import streamlit as st

from facecore import list_models
from pages.common import dataset_picker, dataset_summary, existing_pages, workspace
from pages.common.manage import manage_section

st.set_page_config(page_title="FaceTrack Studio", page_icon="🙂", layout="wide")
st.title("FaceTrack Studio")
st.write(
    "Build your own face detector in the browser: collect and label photos, augment them, and train a "
    "TensorFlow model with live loss charts. Then evaluate it and run it on videos and on your webcam."
)

dataset = dataset_picker()

st.subheader("Workflow")
for i, (path, title, icon, what) in enumerate(existing_pages(), start=1):
    left, right = st.columns([1, 3])
    with left:
        st.page_link(path, label=f"{i}. {title}", icon=icon)
    right.write(what)

st.subheader("Active dataset")
if dataset is None:
    st.info("No dataset yet. Start on Collect & Label, or use the sample set shipped in data/sample.")
elif (summary := dataset_summary(dataset)) is not None:
    counts, sizes = summary
    st.caption(f"`{dataset.root}`")
    cols = st.columns(4)
    cols[0].metric("Images", counts.images)
    cols[1].metric("With a face", counts.faces)
    cols[2].metric("No face", counts.no_face, help="Images marked 'no face' plus unlabeled images.")
    cols[3].metric("Augmented copies", counts.augmented)
    cols = st.columns(3)
    for col, name in zip(cols, ("train", "val", "test")):
        col.metric(f"{name} split", sizes[name])
    if counts.unlabeled:
        st.caption(f"{counts.unlabeled} image(s) have no label file yet: training treats them as no-face.")

st.subheader("Models")
models = list_models(workspace().models_root)


def _fmt(v) -> str:
    """A metric for the table: 3 decimals, or blank where a model kind has no such figure."""
    return f"{v:.3f}" if isinstance(v, (int, float)) else ""


if not models:
    st.info("No trained model yet: train one on the Train page.")
else:
    rows = []
    for m in models:
        h = m.headline()
        identity = m.kind == "identity"
        rows.append({"model": m.name, "kind": "me / not me" if identity else "face detector",
                     "backbone": m.meta.backbone, "dataset": m.meta.dataset_name,
                     "mean IoU": "" if identity else _fmt(h.get("mean_iou")),
                     "face accuracy": "" if identity else _fmt(h.get("face_accuracy")),
                     "identity accuracy": _fmt(h.get("accuracy")) if identity else "",
                     "created": m.meta.created})
    st.dataframe(pd.DataFrame(rows), hide_index=True)
    st.caption("Figures on each model's test split (val when it has none); identity models (Recognize page) "
               "report their val accuracy.")

manage_section(dataset, models)
