"""Collect & Label: the shared session helpers and the Add images, Gallery, Pre-label and Export views.

The Label view (the box editor) is in ``label_editor`` and ``label_canvas``. All logic is in
facecore.datasets.labeling and facecore.datasets.prelabel; the session keeps only what the browser needs: which image is
open, the boxes being edited and the proposals not accepted yet. Items are re-read from disk on every
run, so two tabs see each other's saved work.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from facecore import FaceCoreError, ImageReadError
from facecore.datasets import labeling as L
from facecore.datasets import prelabel as P
from facecore.datasets.contents import DuplicateImageError
from facecore.datasets.dataset import Item
from facecore.errors import DamagedImageError
from facecore.jobs import Job
from facecore.scan import STILLS
from facecore.datasets.workspace import SAMPLE_NAME
from pages.common import detector, set_active_dataset, show_error, small_faces_toggle, workspace
from pages.common import detector_select as common_detector_select
from pages.common.jobs import progress_bar, session_job, start_session_job, watch

ss = st.session_state
VIEWS = ["Label", "Add images", "Gallery", "Pre-label", "Export"]
GALLERY_COLS, GALLERY_PAGE = 5, 30
PRELABEL_JOB = "lab_prelabel_job"  # this session's pre-label job; subject (dataset root, detector name)


def hex_color(rgb) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


# Box colours on the canvas, the same as facecore draws them in thumbnails: saved green, proposal orange.
COLORS = {"saved": hex_color(L.SAVED_COLOR), "proposal": hex_color(L.PROPOSAL_COLOR), "drawn": "#1e90ff",
          "typed": "#1e90ff"}


def flash(kind: str, text: str) -> None:
    """Queue a message for the next run (the page reruns after every change to refresh the counts)."""
    ss.setdefault("lab_flash", []).append((kind, text))


def show_flash() -> None:
    """The queued messages, in a container of their own: the elements after it keep their place in the page
    whether there are messages or not, so Streamlit does not remount them (a remounted button loses its
    keyboard shortcut for a moment, a remounted canvas its edit mode)."""
    box = st.container()
    for kind, text in ss.pop("lab_flash", []):
        getattr(box, kind)(text)


def proposals_of(ds) -> dict[str, P.Proposal]:
    """The proposals of ``ds`` waiting in this session (a finished pre-label job's are added first)."""
    collect_prelabel()
    return ss.setdefault("lab_proposals", {}).setdefault(str(ds.root), {})


def collect_prelabel() -> None:
    """Move the proposals of a pre-label job that has ended into the session, and say what it did."""
    job = session_job(PRELABEL_JOB)
    if job is None or not job.finished:
        return
    ss.pop(PRELABEL_JOB)
    root, det_name = job.subject
    result = job.result or job.partial
    if result is not None:
        ss.setdefault("lab_proposals", {}).setdefault(root, {}).update(result.proposals)
    if job.status == "failed":
        flash("error", f"Pre-labeling failed: {job.error_message}")
    elif job.status == "cancelled":
        flash("info", f"Pre-labeling cancelled: the {len(result.proposals) if result else 0} proposal(s) made so "
                      "far are kept.")
    else:
        n_boxes = sum(len(p.boxes) for p in result.proposals.values())
        msg = (f"{det_name} proposed {n_boxes} box(es) in {len(result.proposals)} image(s); "
               f"no face found in {len(result.no_face)} image(s).")
        if result.skipped:
            msg += f" {len(result.skipped)} image(s) were labeled meanwhile and left alone."
        if result.failed:
            msg += f" {len(result.failed)} failed:\n\n" + skipped_text(result.failed)
        flash("success" if not result.failed else "warning", msg)


def set_current(ds, stem: str | None, index: int = 0) -> None:
    ss.setdefault("lab_pos", {})[str(ds.root)] = (stem, index)


def open_in_label_view(ds, stem: str) -> None:
    set_current(ds, stem)
    ss["lab_view"] = "Label"


def skipped_text(skipped: list[tuple[str, str]]) -> str:
    lines = [f"- **{name}**: {why}" for name, why in skipped[:20]]
    if len(skipped) > 20:
        lines.append(f"- ... and {len(skipped) - 20} more")
    return "\n".join(lines)


def detector_select(where, key: str, help: str | None = None) -> str:
    """The detector picker of the proposal tools: every page's picker (``pages.common.detector_select``), which
    starts on the detector saved last, else the built-in blazeface."""
    return common_detector_select(where, key, help=help or "Every face it finds above the minimum score is proposed "
                                  "(orange). The default is the detector you saved last, else the built-in "
                                  "blazeface; 'haar' is OpenCV's face cascade.")


def scores_text(prop: P.Proposal) -> str:
    return ", ".join(f"{s:.2f}" for s in prop.scores)


# -- datasets ----------------------------------------------------------------------------------
def dataset_section(ds) -> None:
    with st.expander("New dataset", expanded=ds is None):
        with st.form("lab_new_dataset", clear_on_submit=True, border=False):
            name = st.text_input("Name", placeholder="my-faces", help="Letters, digits, '_', '.', '-'.")
            if st.form_submit_button("Create dataset"):
                create_and_activate(name, None, "Created dataset **{name}**. Add photos below.")


def copy_sample_box(ds) -> None:
    ws = workspace()
    st.info(f"**{SAMPLE_NAME}** is the shipped example and is read-only here. "
            "Copy it to your workspace to add photos or change labels.")
    default = "sample-copy"
    n = 2
    while (ws.user_root / default).exists():
        default, n = f"sample-copy-{n}", n + 1
    name = st.text_input("Name of the copy", value=default, key="lab_copy_name")
    if st.button("Copy to my workspace to edit", type="primary", key="lab_copy"):
        create_and_activate(name, ds, "Copied the sample to **{name}**: it is now the active dataset.")


def create_and_activate(name: str, copy_from, message: str) -> None:
    """Create a user dataset (a copy of ``copy_from`` if given), make it active and say so."""
    try:
        workspace().create_dataset(name, copy_from=copy_from)
    except FaceCoreError as exc:
        show_error(exc)
        return
    set_active_dataset(name.strip())
    flash("success", message.format(name=name.strip()))
    st.rerun()


# -- add images --------------------------------------------------------------------------------
def add_view(ds, readonly: bool) -> None:
    if readonly:
        copy_sample_box(ds)
        return
    st.markdown("**Upload photos** (jpg, png, webp), or a **.zip** of images with labelme JSON or VOC XML labels.")
    n = ss.setdefault("lab_upload_n", 0)
    files = st.file_uploader("Photos or a .zip", type=list(L.UPLOAD_TYPES), accept_multiple_files=True,
                             key=f"lab_upload_{n}", label_visibility="collapsed")
    if files:
        ss["lab_upload_n"] = n + 1  # a fresh, empty uploader: the same files are not added twice, even after an error
        try:
            with st.spinner(f"Adding {len(files)} file(s)..."):
                report = L.add_files(ds, [(f.name, f.getvalue()) for f in files])
        except FaceCoreError as exc:  # e.g. a full disk or read-only folder: say so, keep the page
            show_error(exc)
            return
        if report.notes:
            flash("info", f"{len(report.notes)} label(s) needed a look:\n\n" + skipped_text(report.notes))
        if report.added:
            extra = f" ({report.labeled} with a label)" if report.labeled else ""
            flash("success", f"Added {len(report.added)} image(s){extra}.")
        if report.duplicates:
            flash("info", f"{len(report.duplicates)} photo(s) already in the dataset, not added again:\n\n"
                  + skipped_text(report.duplicates))
        if report.skipped:
            flash("warning", f"Skipped {len(report.skipped)} file(s):\n\n" + skipped_text(report.skipped))
        st.rerun()

    st.markdown("**Take photos with your webcam**: each photo is saved as soon as it is taken; "
                "press *Clear photo* to take the next one.")
    # the camera switches on only when asked: opening Add images to upload must not light the webcam
    if not st.toggle("Use the webcam", key="lab_camera_on", help="Turns the camera on (the browser asks first)."):
        return
    shot = st.camera_input("Webcam photo", key="lab_camera", label_visibility="collapsed")
    if shot is not None:
        seen = ss.setdefault("lab_camera_seen", set())
        try:
            item = L.add_snapshot(ds, shot.getvalue(), seen)
        except DuplicateImageError as exc:
            flash("info", f"Webcam photo not saved: it is already in the dataset as {exc.existing} ({exc.how}).")
            st.rerun()
        except FaceCoreError as exc:
            show_error(exc)
        else:
            if item is not None:
                flash("success", f"Saved webcam photo {item.image.name}.")
                st.rerun()


# -- gallery -----------------------------------------------------------------------------------
@st.cache_data(max_entries=2000, show_spinner=False)
def _thumb(image: str, label: str | None, stamps: tuple, prop: tuple | None):
    e = L.entry(Item(Path(image).stem, Path(image), None if label is None else Path(label)))
    p = None if prop is None else P.Proposal(prop[0], prop[1], prop[2])
    return L.thumbnail(e, proposal=p)


def thumb(e: L.Entry, prop: P.Proposal | None):
    def stamp(p):
        try:
            return p.stat().st_mtime_ns
        except (OSError, AttributeError):
            return None

    key = None if prop is None else (tuple(map(tuple, prop.boxes.tolist())), prop.scores, prop.detector)
    return _thumb(str(e.item.image), None if e.item.label is None else str(e.item.label),
                  (stamp(e.item.image), stamp(e.item.label)), key)


def grid(ds, shown: list[L.Entry], proposals: dict, key: str) -> None:
    if not shown:
        st.info("Nothing to show with this filter.")
        return
    pages = (len(shown) - 1) // GALLERY_PAGE + 1
    page = 1
    if pages > 1:
        page = st.columns([1, 3])[0].number_input(f"Page (of {pages})", 1, pages, 1, key=f"{key}_page")
    chunk = shown[(page - 1) * GALLERY_PAGE: page * GALLERY_PAGE]
    for row in range(0, len(chunk), GALLERY_COLS):
        cols = st.columns(GALLERY_COLS)
        for col, e in zip(cols, chunk[row:row + GALLERY_COLS]):
            with col:
                try:
                    st.image(thumb(e, proposals.get(e.stem)))
                except DamagedImageError:  # corrupt or cut short: validate names the damage
                    st.error("damaged image")
                except ImageReadError:
                    st.error("unreadable image")
                n = len(e.label.boxes) if e.label is not None else 0
                what = f"{n} faces" if n > 1 else L.STATUS_TEXT[e.status]
                st.button(f"{e.stem[:18]} · {what}", key=f"{key}_open_{e.stem}",
                          on_click=open_in_label_view, args=(ds, e.stem), width="stretch",
                          help="Open this image in the Label view.")


def gallery_view(ds, entries: list[L.Entry]) -> None:
    counts = {name: len(L.filter_entries(entries, name)) for name in L.FILTERS}
    flt = st.segmented_control("Show", list(L.FILTERS), default="all", required=True, key="lab_filter",
                               format_func=lambda f: f"{f} ({counts[f]})")
    st.caption(":green[Green]: saved face boxes. :orange[Orange]: proposals not accepted yet. "
               "Click an image's name to open it.")
    near = ds.contents().near_pairs()  # the same picture re-encoded or resized: flagged, never refused
    if near:
        with st.expander(f"{len(near)} photo(s) look like another one (a near duplicate)"):
            st.markdown("Re-encoded or resized copies, or burst shots: keep one unless they really differ.\n\n"
                        + "\n".join(f"- **{b}** ≈ {a}" for a, b in near[:50]))
    grid(ds, L.filter_entries(entries, flt or "all"), proposals_of(ds), "gal")


# -- pre-label ---------------------------------------------------------------------------------
def prelabel_view(ds, entries: list[L.Entry], readonly: bool) -> None:
    if readonly:
        copy_sample_box(ds)
        return
    proposals = proposals_of(ds)
    # Proposals for images labeled since (here or in another tab) are moot.
    unlabeled = {e.stem for e in entries if e.status == L.UNLABELED}
    for stem in [s for s in proposals if s not in unlabeled]:
        proposals.pop(stem)
    todo = [s for s in sorted(unlabeled) if s not in proposals]
    running = (job := session_job(PRELABEL_JOB)) is not None and job.running
    st.markdown("A detector proposes a box for **every face** it finds in each unlabeled image. **Nothing is "
                "saved** until you accept the proposals (here all at once, or one image at a time in the Label view).")
    c1, c2 = st.columns([2, 1], vertical_alignment="bottom")
    det_name = detector_select(c1, "lab_det_batch")
    min_score = c2.slider("Minimum score", 0.0, 1.0, 0.5, 0.05, key="lab_min_score",
                          help="Faces scoring lower are not proposed.")
    small = small_faces_toggle(c2, "lab_small_faces")
    if st.button(f"Pre-label all unlabeled ({len(todo)})", type="primary", disabled=not todo or running,
                 key="lab_prelabel"):
        try:
            det = detector(det_name, STILLS if small else None)
        except FaceCoreError as exc:
            show_error(exc)
            return
        start_session_job(PRELABEL_JOB, Job(lambda progress, cancel: P.prelabel(
            ds, det, todo, progress, cancel, min_score=min_score, skip_labeled=True), "prelabel",
            (str(ds.root), det_name)))

    def show_job(job: Job | None) -> None:
        if job is not None and job.running:
            progress_bar(job, job.progress.message or f"0 of {len(todo)}", "lab_prelabel_cancel",
                         help="Stops after the current image; the proposals made so far are kept.")

    watch(lambda: session_job(PRELABEL_JOB), show_job)

    if proposals:
        n_boxes = sum(len(p.boxes) for p in proposals.values())
        st.markdown(f"**{len(proposals)} proposal(s) waiting** ({n_boxes} box(es)). Check them below (orange), then:")
        c1, c2 = st.columns(2)
        if c1.button(f"Accept all {len(proposals)} proposals", type="primary", key="lab_accept_all",
                     width="stretch", help="Saves every orange box of every image shown below."):
            saved, skipped = P.accept_proposals(ds, dict(proposals))
            for stem in saved + [s for s, _ in skipped]:
                proposals.pop(stem, None)
            flash("success", f"Saved {len(saved)} proposal(s).")
            if skipped:
                flash("warning", f"Kept {len(skipped)} existing label(s):\n\n" + skipped_text(skipped))
            st.rerun()
        if c2.button("Discard all proposals", key="lab_discard_all", width="stretch"):
            proposals.clear()
            st.rerun()
        shown = [e for e in entries if e.stem in proposals]
        grid(ds, shown, proposals, "pre")
    elif not todo:
        st.success("No unlabeled images left.")


# -- export ------------------------------------------------------------------------------------
def export_view(ds, entries: list[L.Entry]) -> None:
    if not entries:
        st.info("Nothing to export yet.")
        return
    file_name = f"{ds.name}_labelme.zip"
    st.markdown(
        f"A labelme `.zip`: `{ds.name}/images/` and `{ds.name}/labels/*.json` (labelme 5, no embedded image data, "
        f"one rectangle per face). Open it in labelme with `labelme {ds.name}/images --output {ds.name}/labels`. "
        "Unlabeled images have no JSON (no-face by convention); VOC labels are converted.")
    try:
        data = ds.export_labelme_zip()
    except FaceCoreError as exc:
        show_error(exc)
        return
    st.download_button(f"Download {file_name} ({len(data) / 1e6:.1f} MB)", data, file_name=file_name,
                       mime="application/zip", type="primary", key="lab_export")
