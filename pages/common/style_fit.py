"""The Train page's shortcut: fit the built-in BlazeFace's box style to a dataset's labels, as a background
job of this session (``facecore.blazeface.builtin.fit_dataset_style``) with a progress bar and Cancel."""

from __future__ import annotations

import functools

import pandas as pd
import streamlit as st

from facecore import Dataset, FaceCoreError
from facecore.jobs import Job
from pages.common import show_error, workspace
from pages.common.jobs import progress_bar, session_job, start_session_job, watch

STYLE_JOB = "train_style_job"  # this session's box-style fit


def fit_style(ds: Dataset, out, progress, cancel):
    from facecore.blazeface.builtin import fit_dataset_style

    return fit_dataset_style(ds, out, progress=progress, cancel=cancel)


def show_style_job(style_job: Job | None) -> None:
    """The box-style fit: its progress and Cancel, then the detector it saved."""
    if style_job is None:
        return
    if style_job.running:
        progress_bar(style_job, style_job.progress.message or "running blazeface on the labeled photos",
                     "style_cancel", help="Stop fitting; nothing is saved.")
    elif style_job.status == "cancelled":
        st.warning("Box style fit stopped: nothing was saved.")
    elif style_job.status == "failed":
        show_error(style_job.error)
    elif style_job.status == "done":
        from facecore.blazeface.boxstyle import BoxStyle
        from facecore.registry import model_meta

        path = style_job.result
        fitted = model_meta(path.name, path.parent)
        rows = [{"split": k, "faces": v.get("n_face"), "IoU before": v.get("mean_iou_before"),
                 "IoU after": v.get("mean_iou")} for k, v in fitted.metrics.items()]
        style = BoxStyle.from_dict(fitted.box_style or {})
        st.success(f"Saved detector **{path.name}** (style from {style.method}, "
                   f"{style.n_faces} faces): pick it on the Evaluate, Video or Webcam page.")
        st.dataframe(pd.DataFrame(rows), hide_index=True)


def style_fit_section(dataset: Dataset) -> None:
    """The expander: a name, Fit box style, and the running or finished fit."""
    with st.expander("No time to train? Fit the built-in detector's box style (seconds)"):
        st.write("The built-in **blazeface** finds faces without training, but its box is tighter than the way "
                 "most people draw faces. This measures how your labels sit around its boxes and face keypoints "
                 "(eyes, nose, mouth, ears) and saves a detector that draws boxes your way; it appears in every "
                 "detector list. With a dozen or more labeled faces it learns from the keypoints; with fewer, "
                 "it adjusts the built-in style.")
        style_name = st.text_input("Name", f"{dataset.name}-boxstyle", key=f"style_name_{dataset.name}")
        style_job = session_job(STYLE_JOB)
        if st.button("Fit box style", key="style_fit", disabled=style_job is not None and style_job.running):
            try:
                style_dir = workspace().model_dir(style_name.strip())
            except FaceCoreError as exc:
                show_error(exc)
            else:
                start_session_job(STYLE_JOB, Job(functools.partial(fit_style, dataset, style_dir), "boxstyle"))
        watch(lambda: session_job(STYLE_JOB), show_style_job)
