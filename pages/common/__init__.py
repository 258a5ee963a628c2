"""Streamlit-side helpers shared by the pages (this folder is not a page: Streamlit lists only
``pages/*.py``). Everything that is not about widgets belongs in facecore."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from facecore import Dataset, FaceCoreError, Workspace

ROOT = Path(__file__).resolve().parents[2]


def _keep_keras_state_between_runs() -> None:
    """Stop Streamlit from calling ``keras.backend.clear_session()`` after every script run.

    Streamlit does that (``script_runner._clean_problem_modules``) to free Keras models that a script
    builds on each run. This app keeps its networks across runs (cached detectors, the background
    training), and each call clears TensorFlow's kernel cache and runs a full garbage collection: with
    the Train page refreshing its progress every second, a 2-epoch tinycnn training took 320-400 s and
    160-180 CPU seconds instead of 12 s. Streamlit's other cleanup (closing matplotlib figures) is kept.
    """
    import sys

    from streamlit.runtime.scriptrunner import script_runner

    original = getattr(script_runner, "_clean_problem_modules", None)
    if original is None or getattr(original, "keeps_keras", False):
        return

    def clean_without_keras() -> None:
        plt = sys.modules.get("matplotlib.pyplot")  # what the original does besides Keras
        if plt is not None:
            try:
                plt.close("all")
            except Exception:  # noqa: BLE001, S110 - as Streamlit: never fail a run over it
                pass

    clean_without_keras.keeps_keras = True
    script_runner._clean_problem_modules = clean_without_keras


_keep_keras_state_between_runs()

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
AUGMENT_CONFIG_KEY = "augment_config"  # the Augment page's AugmentConfig; the Train page's on-the-fly augmentation
PICKER_KEY = "_dataset_picker"
# The active dataset also lives in the page URL (``?dataset=<name>``), so it survives a reload, a new
# tab, and a page URL opened directly; session state alone is lost on each of those.
QUERY_KEY = "dataset"
HOME = ("streamlit_app.py", "Home", "🏠")


def workspace() -> Workspace:
    """The data/models folders (``$FACETRACK_DATA`` / ``$FACETRACK_MODELS`` override them)."""
    return Workspace.from_env()


def existing_pages() -> list[tuple[str, str, str, str]]:
    return [p for p in WORKFLOW if (ROOT / p[0]).exists()]


def page_setup(active: str | None = None) -> None:
    """Wide layout and the sidebar's page links (Home first), for every page.

    Streamlit's own sidebar navigation is off (``client.showSidebarNavigation`` in
    ``.streamlit/config.toml``): in the ``pages/`` mode it calls the home page "streamlit app", and
    ``st.navigation``, which could rename it, changed the layout by which URL a session opened first
    (commit cd9801f). The links carry the active dataset in their URL.
    """
    st.set_page_config(layout="wide")
    if not _served_from_home():
        return  # a page run on its own (AppTest): links are relative to streamlit_app.py
    params = {QUERY_KEY: active} if active else None
    with st.sidebar:
        st.page_link(HOME[0], label=HOME[1], icon=HOME[2], query_params=params)
        for path, title, icon, _ in existing_pages():
            st.page_link(path, label=title, icon=icon, query_params=params)
        st.divider()


def _served_from_home() -> bool:
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    main = getattr(ctx, "main_script_path", None)
    return bool(main) and Path(main).resolve() == ROOT / HOME[0]


def active_dataset_name(names) -> str | None:
    """The active dataset among ``names``: this session's choice, else the URL's ``?dataset=``, else the
    user's dataset changed last (``Workspace.recent_dataset``: a new tab at the bare URL opens the one the
    user works in, not ``sample``), else the first."""
    names = list(names)
    current = st.session_state.get(ACTIVE_KEY)
    if current not in names:
        wanted = st.query_params.get(QUERY_KEY)
        recent = workspace().recent_dataset() if wanted not in names else None
        current = wanted if wanted in names else recent if recent in names else (names[0] if names else None)
        st.session_state[ACTIVE_KEY] = current
    return current


def dataset_picker(where=st.sidebar) -> Dataset | None:
    """The active-dataset selector, shown on every page (with ``page_setup``); the choice carries across
    pages, reloads and direct page URLs.

    The choice lives in ``st.session_state["active_dataset"]`` (not in the widget's own key, which
    Streamlit drops when a page without that widget runs) and in the URL's ``?dataset=``.
    """
    ws = workspace()
    datasets = ws.datasets()
    current = active_dataset_name(datasets)
    page_setup(current)
    if not datasets:
        where.warning("No dataset yet: create one on the Collect & Label page.")
        return None
    if st.query_params.get(QUERY_KEY) != current:
        st.query_params[QUERY_KEY] = current
    # Set before the widget exists in this run: the widget then shows the active dataset, whatever
    # value the browser still holds for it (e.g. right after set_active_dataset).
    st.session_state[PICKER_KEY] = current

    def _sync():
        st.session_state[ACTIVE_KEY] = st.session_state[PICKER_KEY]
        st.query_params[QUERY_KEY] = st.session_state[PICKER_KEY]

    where.selectbox("Active dataset", list(datasets), key=PICKER_KEY, on_change=_sync,
                    help="Used by every page. Create new datasets on Collect & Label.")
    return datasets[current]


def dataset_summary(dataset: Dataset):
    """``(counts, split sizes)`` of ``dataset``, or None after showing the error (e.g. a broken folder)."""
    try:
        return dataset.counts(), dataset.split().sizes()
    except FaceCoreError as exc:
        show_error(exc)
        return None


def set_active_dataset(name: str) -> None:
    """Make ``name`` the active dataset (e.g. right after creating it), here and in the page URL.

    The picker's widget state is left alone: dropping it made the browser's stale value look like a
    user's change on the next run, which switched straight back (to ``sample``).
    """
    st.session_state[ACTIVE_KEY] = name
    st.query_params[QUERY_KEY] = name


@st.cache_resource(show_spinner="Loading the model...")
def cached_model(names: tuple[str, ...], models_root: str, versions: tuple):
    """The one place pages load saved models, cached per server by (names, models folder, versions).

    ``names``: ``(detector,)`` (``facecore.registry.load_detector``) or ``(detector, identity model)``
    (``facecore.identity.recognize.load_recognizer``); ``versions``: ``facecore.registry.model_version`` of each, so
    a retrained or re-quantized model is loaded afresh. A model may be shared by sessions and threads:
    see its own locking. Pages call ``detector`` and ``recognizer``.
    """
    from facecore.identity.recognize import load_recognizer
    from facecore.registry import load_detector

    if len(names) == 2:
        return load_recognizer(*names, models_root)
    return load_detector(names[0], models_root)


def _cached(*names: str):
    from facecore.registry import model_version

    root = workspace().models_root
    return cached_model(names, str(root), tuple(model_version(n, root) for n in names))


def detector(name: str, scan=None):
    """The cached detector ``name`` (built in, or a model in models/); reloaded if the model was retrained.
    With ``scan`` (a ``facecore.scan.ScanConfig``) it also runs over tiles of the photo, for small faces."""
    det = _cached(name)
    if scan is None:
        return det
    from facecore.scan import ScanningDetector

    return ScanningDetector(det, scan)


def small_faces_toggle(where=st, key: str = "small_faces", value: bool = True) -> bool:
    """The "Small faces" switch of the pages that look at photos (``facecore.scan``)."""
    return where.toggle("Small faces", value=value, key=key,
                        help="Also scan the photo in overlapping tiles, so faces too small for the detector's "
                             "192 px input (group photos, crowds, large photos) are found. Slower: about 30 "
                             "detector runs for a 400 px photo.")


def detector_select(where=st, key: str = "detector", label: str = "Detector", help: str | None = None) -> str:
    """The one detector selector of every page (Video, Webcam, Recognize, pre-labeling): it starts on
    ``facecore.registry.default_detector`` (the face detector saved last, else the built-in blazeface),
    shown as such in the list."""
    from facecore.registry import default_detector, detector_names

    models_root = workspace().models_root
    names = detector_names(models_root)
    default = default_detector(models_root)
    return where.selectbox(label, names, index=names.index(default) if default in names else 0, key=key,
                           format_func=default_marker(default),
                           help=help or "'blazeface' finds every face without training; 'haar' is OpenCV's cascade; "
                                        "the others are your saved models. The default is the detector you saved "
                                        "last, else the built-in blazeface.")


def default_marker(default: str):
    """``format_func`` for detector lists: the default detector says why it is the default."""
    from facecore.detect import BUILT_IN

    why = "built in" if default in BUILT_IN else "saved last"
    return lambda name: f"{name}  (default: {why})" if name == default else name


def detector_picker(where=st, key: str = "detector"):
    """Detector selector shared by the Video, Webcam and Recognize pages (``detector_select``).

    Returns ``(name, detector)``; ``detector`` is None (with the error shown) when loading failed.
    When identity models exist, a "Recognize faces" checkbox wraps the chosen detector in a recognizer:
    its detections are labelled with the identity's name and scored with its probability (name then
    reads ``"<detector>+<identity>"``).
    """
    from facecore.registry import identity_model_names

    models_root = workspace().models_root
    name = detector_select(where, key)
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


def recognizer(detector_name: str, identity_name: str, scan=None):
    """The cached recognizer (``facecore.identity.recognize.Recognizer``) naming the faces ``detector_name`` finds with
    identity model ``identity_name``. Thread-safe (it locks itself). With ``scan``, its detector also runs
    over tiles of the photo (a copy: the cached one stays the fast path)."""
    rec = _cached(detector_name, identity_name)
    if scan is None:
        return rec
    import copy

    from facecore.scan import ScanningDetector

    rec = copy.copy(rec)
    rec.detector = ScanningDetector(rec.detector, scan)
    return rec


def show_error(exc: BaseException) -> None:
    """Show a facecore error as the user-facing message it is; anything else with its type."""
    if isinstance(exc, FaceCoreError):
        st.error(str(exc))
    else:
        st.error(f"{type(exc).__name__}: {exc}")
