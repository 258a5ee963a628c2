"""The Webcam page's *in the browser* mode: a Streamlit component (``frontend/``, built into
``frontend/build/`` with npm; the build is committed) that runs the chosen detector's ``.tflite`` next to
the camera with LiteRT.js, draws boxes, blur and the fps line, and measures its own stats. No video goes
to the server; a frame comes back only when the user saves a snapshot (the component's value).

The network file (about 1 MB) is sent once per detector: the component reports which model it has loaded
(``value["model"]``), and the page sends the bytes only while that differs from the detector chosen.
The decoding (anchors, box style, NMS) comes from ``facecore.live.browser``.
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path

import streamlit as st
import streamlit.components.v1 as components

from facecore import FaceCoreError
from facecore.live.browser import BrowserDetector, browser_detector
from facecore.datasets.labeling import add_snapshot
from facecore.registry import model_version

BUILD = Path(__file__).parent / "frontend" / "build"
KEY = "webcam_browser"
SEEN_KEY, SAVED_KEY = "webcam_browser_seen", "webcam_browser_saved"  # snapshot digests; last snapshot handled

_component = components.declare_component("browser_webcam", path=str(BUILD))


@st.cache_data(max_entries=16, show_spinner=False)
def _package(name: str, models_root: str, version: tuple) -> tuple[dict, bytes]:
    """``(spec, tflite bytes)`` of detector ``name``, cached per model version (``version`` keys it)."""
    det: BrowserDetector = browser_detector(name, models_root)
    return det.spec(), det.tflite_bytes()


def package(name: str, models_root: Path) -> tuple[dict, bytes]:
    """The detector's spec and network file for the browser. Raises FaceCoreError (``BrowserUnsupported``
    for a detector that runs on the server only)."""
    return _package(name, str(models_root), model_version(name, models_root))


def browser_webcam(name: str, models_root: Path, *, threshold: float, blur: bool, smoothing: float,
                   overlay: bool, dataset=None, can_save: bool = False, save_note: str = "") -> dict | None:
    """Render the in-browser webcam with detector ``name`` and these settings (they apply at the next frame
    the browser draws). Returns the component's value (``model``: the model id the browser has loaded,
    ``error``, ``snapshot``). Raises FaceCoreError when the detector has no in-browser form."""
    spec, data = package(name, models_root)
    value = st.session_state.get(KEY)
    have = value.get("model") if isinstance(value, dict) else None
    send = have != spec["id"]
    return _component(model_id=spec["id"], model=data if send else None, spec=spec if send else None,
                      detector=name, threshold=float(threshold), blur=bool(blur), smoothing=float(smoothing),
                      overlay=bool(overlay), dataset=getattr(dataset, "name", ""), can_save=bool(can_save),
                      save_note=save_note, key=KEY, default=None)


def save_snapshot(value, dataset) -> str | None:
    """Save the snapshot in the component's value to ``dataset`` once (``facecore.datasets.labeling.add_snapshot``);
    returns the saved file's name, None when there is no new snapshot. Raises FaceCoreError."""
    shot = value.get("snapshot") if isinstance(value, dict) else None
    if not isinstance(shot, dict) or dataset is None:
        return None
    mark = (shot.get("n"), shot.get("t"))
    if st.session_state.get(SAVED_KEY) == mark:
        return None
    st.session_state[SAVED_KEY] = mark
    try:
        data = base64.b64decode(str(shot.get("jpeg", "")), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise FaceCoreError(f"the snapshot did not arrive intact ({exc}); take it again") from exc
    item = add_snapshot(dataset, data, st.session_state.setdefault(SEEN_KEY, set()))
    return None if item is None else item.image.name


def browser_section(name: str, models_root: Path, settings, dataset, readonly: bool) -> None:
    """The Webcam page's in-browser mode: the component, then what came back (a load error, a snapshot).
    ``settings``: a ``facecore.live.processor.LiveSettings``; ``readonly``: the active dataset takes no snapshots."""
    # Messages go in a container above the component, which thus keeps its place in the page: a
    # component that moves is remounted (camera and loaded model lost).
    messages = st.container()
    note = ("" if dataset is not None and not readonly else
            "Snapshots are saved to one of your datasets: create or pick one (the shipped sample is read-only).")
    try:
        value = browser_webcam(name, models_root, threshold=settings.threshold, blur=settings.blur,
                               smoothing=settings.smoothing, overlay=settings.overlay, dataset=dataset,
                               can_save=dataset is not None and not readonly, save_note=note)
    except FaceCoreError as exc:
        messages.error(str(exc))
        return
    if isinstance(value, dict) and value.get("error"):
        messages.error(value["error"])
    try:
        saved = None if readonly else save_snapshot(value, dataset)
    except FaceCoreError as exc:
        messages.error(str(exc))
        return
    if saved:
        messages.success(f"Saved snapshot {saved} to dataset {dataset.name}; label it on Collect & Label.")
    st.caption("No video leaves this browser: the detector's network file is sent to it once, and a frame "
               "only when you save a snapshot.")
