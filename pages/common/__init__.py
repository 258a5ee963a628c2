"""Streamlit-side helpers shared by the pages (this folder is not a page: Streamlit lists only
``pages/*.py``). Everything that is not about widgets belongs in facecore."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from facecore import Dataset, FaceCoreError, Workspace

ROOT = Path(__file__).resolve().parents[2]

# The workflow, in order: (page file, title, icon, what it is for). Links appear for pages that exist.
WORKFLOW = [
    ("pages/1_Collect_and_Label.py", "Collect & Label", "🏷️", "upload or capture photos and draw one box per face"),
    ("pages/2_Augment.py", "Augment", "🎛️", "multiply the training photos with flips, crops and colour changes"),
    ("pages/3_Train.py", "Train", "🧠", "train a face detector with live loss charts"),
    ("pages/4_Evaluate.py", "Evaluate", "📏", "measure it on held-out photos against the Haar baseline"),
    ("pages/5_Video.py", "Video", "🎞️", "run it on an uploaded video and download the result"),
    ("pages/6_Webcam.py", "Webcam", "📷", "run it live on your webcam"),
    ("pages/7_Recognize.py", "Recognize", "🙋", "tell 'me' from 'not me'"),
]

ACTIVE_KEY = "active_dataset"


def workspace() -> Workspace:
    """The data/models folders (``$FACETRACK_DATA`` / ``$FACETRACK_MODELS`` override them)."""
    return Workspace.from_env()


def existing_pages() -> list[tuple[str, str, str, str]]:
    return [p for p in WORKFLOW if (ROOT / p[0]).exists()]


def dataset_picker(where=st.sidebar) -> Dataset | None:
    """The active-dataset selector, shown on every page; the choice carries across pages.

    The choice lives in ``st.session_state["active_dataset"]`` (not in the widget's own key,
    which Streamlit drops when a page without that widget runs).
    """
    ws = workspace()
    datasets = ws.datasets()
    if not datasets:
        where.warning("No dataset yet: create one on the Collect & Label page.")
        return None
    names = list(datasets)
    current = st.session_state.get(ACTIVE_KEY)
    if current not in datasets:
        current = names[0]
        st.session_state[ACTIVE_KEY] = current

    def _sync():
        st.session_state[ACTIVE_KEY] = st.session_state["_dataset_picker"]

    where.selectbox("Active dataset", names, index=names.index(current), key="_dataset_picker",
                    on_change=_sync, help="Used by every page. Create new datasets on Collect & Label.")
    return datasets[st.session_state[ACTIVE_KEY]]


def dataset_summary(dataset: Dataset):
    """``(counts, split sizes)`` of ``dataset``, or None after showing the error (e.g. a broken folder)."""
    try:
        return dataset.counts(), dataset.split().sizes()
    except FaceCoreError as exc:
        show_error(exc)
        return None


def set_active_dataset(name: str) -> None:
    """Make ``name`` the active dataset (e.g. right after creating it)."""
    st.session_state[ACTIVE_KEY] = name
    st.session_state.pop("_dataset_picker", None)


@st.cache_resource(show_spinner="Loading the detector...")
def cached_detector(name: str, models_root: str, version: tuple = ()):
    """The one place detectors are loaded, cached per server by (name, models folder, version).

    ``version`` is ``facecore.registry.model_version``, so a retrained or re-quantized model is loaded afresh. Pages call
    ``detector(name)``. A detector may be shared by sessions and threads: see its own locking.
    """
    from facecore.detect import load_detector

    return load_detector(name, models_root)


def detector(name: str):
    """The cached detector ``name`` (``"haar"`` or a model in models/); reloaded if the model was retrained."""
    from facecore.registry import model_version

    ws = workspace()
    return cached_detector(name, str(ws.models_root), model_version(name, ws.models_root))


def detector_picker(where=st, key: str = "detector"):
    """Detector selector shared by the Video, Webcam and Recognize pages.

    Returns ``(name, detector)``; ``detector`` is None (with the error shown) when loading failed.
    Haar needs no training, so it is always offered. When identity models exist, a "Recognize faces"
    checkbox wraps the chosen detector in a recognizer: its detections are labelled with the
    identity's name and scored with its probability (name then reads ``"<detector>+<identity>"``).
    """
    from facecore.detect import detector_names
    from facecore.recognize import identity_model_names

    models_root = workspace().models_root
    names = detector_names(models_root)
    name = where.selectbox("Detector", names, key=key,
                           help="'haar' is OpenCV's built-in cascade; the others are your trained models.")
    identities = identity_model_names(models_root)
    if identities and where.checkbox("Recognize faces (me / not me)", key=f"{key}_recognize",
                                     help="Name each detected face with an identity model trained on the Recognize page."):
        ident = where.selectbox("Identity model", identities, key=f"{key}_identity")
        try:
            return f"{name}+{ident}", recognizer(name, ident)
        except FaceCoreError as exc:
            show_error(exc)
            return f"{name}+{ident}", None
    try:
        return name, detector(name)
    except FaceCoreError as exc:
        show_error(exc)
        return name, None


@st.cache_resource(show_spinner="Loading the recognizer...")
def cached_recognizer(detector_name: str, identity_name: str, models_root: str,
                      detector_version: tuple = (), identity_version: tuple = ()):
    """Detector + identity classifier (``facecore.recognize.Recognizer``), cached per server like
    ``cached_detector`` (versions from ``facecore.registry.model_version``). Thread-safe (it locks itself)."""
    from facecore.recognize import load_recognizer

    return load_recognizer(detector_name, identity_name, models_root)


def recognizer(detector_name: str, identity_name: str):
    """The cached recognizer naming the faces ``detector_name`` finds with identity model ``identity_name``."""
    from facecore.registry import model_version

    root = workspace().models_root
    return cached_recognizer(detector_name, identity_name, str(root),
                             model_version(detector_name, root), model_version(identity_name, root))


def show_error(exc: BaseException) -> None:
    """Show a facecore error as the user-facing message it is; anything else with its type."""
    if isinstance(exc, FaceCoreError):
        st.error(str(exc))
    else:
        st.error(f"{type(exc).__name__}: {exc}")
