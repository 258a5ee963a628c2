"""The home page's *Manage* section: rename or delete your datasets, download or delete your models.

The logic is in facecore (``Workspace.rename_dataset`` / ``delete_dataset``, ``registry.delete_model`` /
``model_zip``); deleting asks for a confirmation first, and the shipped sample is never offered.
"""

from __future__ import annotations

import streamlit as st

from facecore import Dataset, FaceCoreError
from facecore.registry import delete_model, model_zip
from facecore.datasets.workspace import SAMPLE_NAME

from . import set_active_dataset, show_error, workspace

CONFIRM_KEY = "manage_confirm"  # ("dataset" | "model", name) waiting for "Yes, delete"


def _flash(text: str, tab: str = "dataset") -> None:
    """A message for the next run, shown inside the tab it concerns (``tab``: "dataset" or "model")."""
    st.session_state["manage_flash"] = (tab, text)


def _show_flash(tab: str) -> None:
    flash = st.session_state.get("manage_flash")
    if flash and flash[0] == tab:
        st.session_state.pop("manage_flash")
        st.success(flash[1])


def _confirm_box(kind: str, name: str, what: str, on_yes) -> None:
    """Ask before deleting ``name``: "Yes, delete" runs ``on_yes()``, "Cancel" forgets the request."""
    st.warning(f"Delete {kind} **{name}** ({what})? This cannot be undone.")
    yes, no, _ = st.columns([1, 1, 4])
    if yes.button("Yes, delete", type="primary", key=f"manage_yes_{kind}"):
        st.session_state.pop(CONFIRM_KEY, None)
        try:
            on_yes()
        except FaceCoreError as exc:
            show_error(exc)
            return
        _flash(f"Deleted {kind} **{name}**.", kind)
        st.rerun()
    if no.button("Cancel", key=f"manage_no_{kind}"):
        st.session_state.pop(CONFIRM_KEY, None)
        st.rerun()


def _datasets(dataset: Dataset | None) -> None:
    ws = workspace()
    if dataset is None or dataset.name == SAMPLE_NAME and dataset.root == ws.sample_root:
        st.caption(f"The shipped **{SAMPLE_NAME}** set cannot be renamed or deleted: pick one of your own "
                   "datasets in the sidebar (copy the sample on Collect & Label to get one).")
        return
    name = dataset.name
    with st.form("manage_rename", border=False):
        left, right = st.columns([3, 1], vertical_alignment="bottom")
        new = left.text_input(f"Rename {name} to", value=name, key="manage_new_name")  # a plain label: no markdown
        if right.form_submit_button("Rename"):
            try:
                ws.rename_dataset(name, new)
            except FaceCoreError as exc:
                show_error(exc)
            else:
                set_active_dataset(new.strip())
                _flash(f"Renamed **{name}** to **{new.strip()}**.")
                st.rerun()
    if st.session_state.get(CONFIRM_KEY) == ("dataset", name):
        n = len(dataset.items())
        _confirm_box("dataset", name, f"{n} photo(s), their labels and augmented copies",
                     lambda: ws.delete_dataset(name))
    elif st.button(f"Delete dataset {name}...", key="manage_delete_dataset"):
        st.session_state[CONFIRM_KEY] = ("dataset", name)
        st.rerun()


def _models(models) -> None:
    if not models:
        st.caption("No model yet.")
        return
    root = workspace().models_root
    names = [m.name for m in models]
    name = st.selectbox("Model", names, key="manage_model")
    left, right, _ = st.columns([1, 1, 3])
    left.download_button(f"Download {name}.zip", data=lambda: model_zip(name, root), file_name=f"{name}.zip",
                         mime="application/zip", key="manage_download", on_click="ignore",
                         help="model.keras, model.tflite and meta.json (files as the app saved them).")
    if st.session_state.get(CONFIRM_KEY) == ("model", name):
        _confirm_box("model", name, "its weights and its int8 copy, if any", lambda: delete_model(name, root))
    elif right.button(f"Delete {name}...", key="manage_delete_model"):
        st.session_state[CONFIRM_KEY] = ("model", name)
        st.rerun()


def manage_section(dataset: Dataset | None, models) -> None:
    """Rename / delete the active dataset (not the sample) and download / delete a model."""
    st.subheader("Manage")
    # a keyed tab widget keeps the open tab across reruns (a rename or delete reruns the page, and a message
    # above the tabs used to remount them on "Datasets"); each tab shows its own messages
    tab_data, tab_models = st.tabs(["Datasets", "Models"], key="manage_tab", on_change="rerun")
    with tab_data:
        _show_flash("dataset")
        _datasets(dataset)
    with tab_models:
        _show_flash("model")
        _models(models)
