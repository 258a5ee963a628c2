"""Collect & Label: add photos (upload, zip, webcam), draw a box around every face, model proposals,
gallery, export. The views live in pages/common/label_editor.py and label_canvas.py (Label) and
pages/common/label_views.py."""

from __future__ import annotations

import streamlit as st

from facecore.datasets import labeling as L
from facecore.datasets.workspace import SAMPLE_NAME
from pages.common import dataset_picker, workspace
from pages.common.label_editor import label_view
from pages.common.label_views import (VIEWS, add_view, dataset_section, export_view, gallery_view, prelabel_view,
                                      proposals_of, show_flash)

st.title("Collect & Label")
dataset = dataset_picker()
dataset_section(dataset)
if dataset is None:
    show_flash()
    st.stop()

readonly = dataset.name == SAMPLE_NAME and dataset.root == workspace().sample_root
entries = L.entries(dataset)
done, total = L.progress(entries)
n_face = sum(e.status == L.FACE for e in entries)
n_boxes = sum(len(e.label.boxes) for e in entries if e.status == L.FACE)
n_noface = sum(e.status == L.NO_FACE for e in entries)
waiting = proposals_of(dataset)
st.progress(done / total if total else 0.0, text=f"{done} of {total} labeled")
st.caption(f"**{dataset.name}**: {n_face} with a face ({n_boxes} boxes) · {n_noface} no face · "
           f"{total - done} unlabeled"
           + (f" · {len(waiting)} proposal(s) waiting" if waiting else "")
           + (" · read-only" if readonly else ""))
show_flash()

view = st.segmented_control("View", VIEWS, default="Label", required=True, key="lab_view",
                            label_visibility="collapsed") or "Label"
if view == "Label":
    label_view(dataset, entries, readonly)
elif view == "Add images":
    add_view(dataset, readonly)
elif view == "Gallery":
    gallery_view(dataset, entries)
elif view == "Pre-label":
    prelabel_view(dataset, entries, readonly)
else:
    export_view(dataset, entries)
