"""Collect & Label: add photos (upload, zip, webcam), draw one box per face, model proposals, gallery, export.

All logic is in facecore.labeling; this page keeps only what the browser session needs: the image
being labeled, the box being edited and the proposals not accepted yet. The item list is re-read
from disk on every run, so two tabs labeling the same dataset see each other's saved work.
"""

from __future__ import annotations

import json
from pathlib import Path

import streamlit as st

from facecore import FaceCoreError, ImageReadError
from facecore import labeling as L
from facecore.dataset import Item
from facecore.detect import detector_names
from facecore.io import read_image
from facecore.workspace import SAMPLE_NAME
from pages.common import dataset_picker, detector, set_active_dataset, show_error, workspace

try:  # the drawing component; without it the numeric inputs still label everything
    from streamlit_drawable_canvas import boxes_to_drawing, st_canvas
except ImportError:  # pragma: no cover - it is in requirements.txt
    st_canvas = None

ss = st.session_state
VIEWS = ["Label", "Add images", "Gallery", "Pre-label", "Export"]
COLORS = {"saved": "#00c800", "proposal": "#ff8c00", "drawn": "#1e90ff", "typed": "#1e90ff"}
GALLERY_COLS, GALLERY_PAGE = 5, 30


def flash(kind: str, text: str) -> None:
    """Queue a message for the next run (the page reruns after every change to refresh the counts)."""
    ss.setdefault("lab_flash", []).append((kind, text))


def show_flash() -> None:
    for kind, text in ss.pop("lab_flash", []):
        getattr(st, kind)(text)


def proposals_of(ds) -> dict[str, L.Proposal]:
    return ss.setdefault("lab_proposals", {}).setdefault(str(ds.root), {})


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


# -- label view --------------------------------------------------------------------------------
def _nav(ds, delta: int | None) -> None:
    """Button callback: previous/next (``delta``) or next unlabeled (None), read from disk now."""
    entries = L.entries(ds)
    stems = [e.stem for e in entries]
    cur, idx = ss.get("lab_pos", {}).get(str(ds.root), (None, 0))
    cur = L.resolve_current(stems, cur, idx)
    if cur is None:
        return
    if delta is None:
        nxt = L.next_unlabeled(entries, cur)
        if nxt is None:
            flash("info", "Every image is labeled.")
            return
    else:
        nxt = L.step(stems, cur, delta)
    set_current(ds, nxt, stems.index(nxt))


def _jump(ds) -> None:
    set_current(ds, ss["lab_jump"])


def num_keys() -> list[str]:
    """Keys of the four corner inputs; a new set whenever the box changes from elsewhere (drag, proposal,
    another image), so the inputs show it without writing to a rendered widget's state."""
    n = ss.get("lab_nver", 0)
    return [f"lab_{c}_{n}" for c in ("x1", "y1", "x2", "y2")]


def _typed() -> None:
    vals = [ss.get(k) for k in num_keys()]
    if all(v is not None for v in vals):
        ss["lab_cand"].update(box=[float(v) for v in vals], src="typed")
        ss["lab_cver"] = ss.get("lab_cver", 0) + 1  # redraw the canvas with the typed box


def set_candidate(box, src, redraw: bool) -> None:
    """Make ``box`` (image pixels [x1, y1, x2, y2] or None) the box being edited."""
    ss["lab_cand"].update(box=box, src=src)
    ss["lab_nver"] = ss.get("lab_nver", 0) + 1
    if redraw:
        ss["lab_cver"] = ss.get("lab_cver", 0) + 1


def after_save(ds, stem: str, message: str) -> None:
    proposals_of(ds).pop(stem, None)
    flash("success", message)
    if ss.get("lab_auto", True):
        nxt = L.next_unlabeled(L.entries(ds), stem)
        if nxt is not None:
            set_current(ds, nxt)
    st.rerun()


def label_view(ds, entries: list[L.Entry], readonly: bool) -> None:
    if not entries:
        st.info("No images yet: add some under **Add images**.")
        return
    stems = [e.stem for e in entries]
    prev, prev_idx = ss.get("lab_pos", {}).get(str(ds.root), (None, 0))
    cur = L.resolve_current(stems, prev, prev_idx)
    idx = stems.index(cur)
    set_current(ds, cur, idx)
    e = entries[idx]
    proposals = proposals_of(ds)
    prop = proposals.get(cur)

    nav = st.columns([1.3, 1, 1.7, 2.6])
    nav[0].button("Previous", icon=":material/navigate_before:", on_click=_nav, args=(ds, -1), width="stretch", key="lab_prev")
    nav[1].button("Next", icon=":material/navigate_next:", on_click=_nav, args=(ds, 1), width="stretch", key="lab_next")
    nav[2].button("Next unlabeled", icon=":material/skip_next:", on_click=_nav, args=(ds, None), width="stretch", key="lab_next_unl")
    ss["lab_jump"] = cur
    nav[3].selectbox("Image", stems, key="lab_jump", on_change=_jump, args=(ds,), label_visibility="collapsed",
                     format_func=lambda s: f"{stems.index(s) + 1}/{len(stems)}  {s}")

    try:
        rgb = read_image(e.item.image)
    except ImageReadError as exc:
        show_error(exc)
        if not readonly:
            delete_box(ds, e)
        return
    h, w = rgb.shape[:2]
    status = L.STATUS_TEXT[e.status]
    if e.status == L.BROKEN:
        st.warning(f"The label file cannot be read: {e.error}. Save a box or 'No face' to replace it.")

    if readonly:
        left, right = st.columns([3, 2])
        left.image(L.draw_label(rgb, e.label, prop, e.status), caption=f"{e.item.image.name} · {status}")
        with right:
            copy_sample_box(ds)
        return

    # The box being edited: reset to the saved box (or the proposal) whenever the image, its label
    # file (saved here or in another tab) or its proposal changes.
    label_stamp = e.item.label.stat().st_mtime_ns if e.item.label is not None and e.item.label.exists() else None
    sig = json.dumps([str(ds.root), cur, label_stamp, None if prop is None else [prop.score, prop.box.tolist()]])
    cand = ss.setdefault("lab_cand", {})
    if cand.get("sig") != sig:
        cand.clear()
        cand["sig"] = sig
        if e.status == L.FACE:
            set_candidate(e.label.pixel_boxes()[0].tolist(), "saved", redraw=True)
        elif prop is not None:
            set_candidate(L.B.to_pixels(prop.box, w, h)[0].tolist(), "proposal", redraw=True)
        else:
            set_candidate(None, None, redraw=True)

    st.markdown(f"**{e.item.image.name}** · {w}x{h} · **{status}**")
    c1, c2, c3, c4 = st.columns([2, 1.2, 1.5, 1.2], vertical_alignment="bottom")
    names = detector_names(workspace().models_root)
    det_name = c1.selectbox("Detector", names, key="lab_det",
                            help="'haar' is OpenCV's built-in face cascade; the others are your trained models.")
    if c2.button("Propose box", key="lab_propose", width="stretch",
                 help="Let the detector propose a box (orange); it is saved only when you accept it."):
        try:
            p = L.propose(detector(det_name), rgb)
        except FaceCoreError as exc:
            show_error(exc)
        else:
            if p is None:
                st.info(f"{det_name} found no face here: draw the box or mark 'No face'.")
            else:
                proposals[cur] = p
                st.rerun()
    if prop is not None:
        if c3.button("Accept proposal", type="primary", key="lab_accept", width="stretch"):
            try:
                L.accept_proposal(ds, cur, prop)
            except FaceCoreError as exc:
                show_error(exc)
            else:
                after_save(ds, cur, f"Saved the proposal for {cur}.")
        if c4.button("Discard", key="lab_discard", width="stretch", help="Forget this proposal."):
            proposals.pop(cur, None)
            st.rerun()
        st.markdown(f":orange[Proposal by **{prop.detector}**, score {prop.score:.2f}: the orange box. "
                    "Accept it, or adjust it and save.]")

    draw_canvas(e, rgb, cand)

    cols = st.columns(4)
    box = cand.get("box") or [None] * 4
    for col, key, label, top, v in zip(cols, num_keys(), ("x1", "y1", "x2", "y2"), (w, h, w, h), box):
        col.number_input(f"{label} (px)", min_value=0.0, max_value=float(top), step=1.0, format="%.1f", key=key,
                         value=None if v is None else min(max(round(float(v), 1), 0.0), float(top)),
                         on_change=_typed)
    c1, c2, c3, c4 = st.columns(4)
    if c1.button("Save box", type="primary", key="lab_save", width="stretch"):
        vals = [ss.get(k) for k in num_keys()]
        if any(v is None for v in vals):
            st.error("Draw a box on the photo (or type its corners) first.")
        else:
            try:
                L.save_pixel_box(ds, cur, vals, (w, h))
            except FaceCoreError as exc:
                show_error(exc)
            else:
                after_save(ds, cur, f"Saved the face box of {cur}.")
    if c2.button("No face", key="lab_noface", width="stretch",
                 help="This photo has no face: a useful negative example for training."):
        try:
            L.mark_no_face(ds, cur, (w, h))
        except FaceCoreError as exc:
            show_error(exc)
        else:
            after_save(ds, cur, f"Marked {cur} as 'no face'.")
    if e.item.label is not None and c3.button("Clear label", key="lab_clear", width="stretch",
                                              help="Back to unlabeled."):
        try:
            ds.clear_label(cur)
        except FaceCoreError as exc:
            show_error(exc)
        else:
            st.rerun()
    with c4:
        delete_box(ds, e)
    if cand.get("src") in ("drawn", "typed"):
        st.caption(":blue[The blue box is not saved yet.]")
    st.checkbox("After saving, go to the next unlabeled image", value=True, key="lab_auto")


def delete_box(ds, e: L.Entry) -> None:
    with st.popover("Delete image", width="stretch"):
        st.write(f"Delete **{e.item.image.name}** and its label from the dataset? This cannot be undone.")
        if st.button("Delete permanently", type="primary", key="lab_delete"):
            try:
                ds.delete(e.stem)
            except FaceCoreError as exc:
                show_error(exc)
            else:
                proposals_of(ds).pop(e.stem, None)
                flash("success", f"Deleted {e.item.image.name}.")
                st.rerun()


def draw_canvas(e: L.Entry, rgb, cand: dict) -> None:
    """The image with the box being edited; a mouse drag draws a new box (it replaces the old one)."""
    h, w = rgb.shape[:2]
    if st_canvas is None:
        st.image(L.draw_label(rgb, e.label, None, e.status))
        return
    scale = L.canvas_scale(w, h, max_width=700, max_height=520)
    box = cand.get("box")
    rects = [] if box is None else [L.box_to_canvas_rect(L.B.from_pixels(box, w, h), w, h, scale)]
    init = boxes_to_drawing(rects, stroke_color=COLORS.get(cand.get("src"), "#1e90ff"), stroke_width=2)
    ckey = f"lab_canvas_{ss.get('lab_cver', 0)}"
    cw, ch = round(w * scale), round(h * scale)
    res = st_canvas(background_image=L.display_jpeg(rgb, cw, ch), background_image_fit="stretch", drawing_mode="labeled_rect",
                    label="face", width=cw, height=ch, stroke_color="#1e90ff",
                    stroke_width=2, fill_color="rgba(30, 144, 255, 0.08)", font_size=12, initial_drawing=init,
                    key=ckey)
    # React only when the canvas output changes: after a redraw it still reports the old drawing.
    out = json.dumps(res.boxes)
    seen = ss.setdefault("lab_seen", {})
    if ckey not in seen:
        seen.clear()
        seen[ckey] = out
    elif out != seen[ckey]:
        seen[ckey] = out
        if res.boxes:
            px = L.canvas_rect_to_pixels(res.boxes[-1], scale, w, h)
            # A second box replaces the first: one face per image; redraw with the new one only.
            set_candidate(px, "drawn", redraw=len(res.boxes) > 1)
        else:
            set_candidate(None, None, redraw=False)
        if len(res.boxes) > 1:
            st.rerun()
    st.caption("Drag on the photo to draw the face box (a new box replaces the old one); the toolbar's pencil "
               "moves or resizes it. :green[Green]: saved. :orange[Orange]: proposal. :blue[Blue]: not saved yet. "
               "Fine-tune the corners below.")


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
        with st.spinner(f"Adding {len(files)} file(s)..."):
            report = L.add_files(ds, [(f.name, f.getvalue()) for f in files])
        ss["lab_upload_n"] = n + 1  # a fresh, empty uploader: the same files are not added twice
        if report.added:
            extra = f" ({report.labeled} with a label)" if report.labeled else ""
            flash("success", f"Added {len(report.added)} image(s){extra}.")
        if report.skipped:
            flash("warning", f"Skipped {len(report.skipped)} file(s):\n\n" + skipped_text(report.skipped))
        st.rerun()

    st.markdown("**Take photos with your webcam**: each photo is saved as soon as it is taken; "
                "press *Clear photo* to take the next one.")
    shot = st.camera_input("Webcam photo", key="lab_camera", label_visibility="collapsed")
    if shot is not None:
        seen = ss.setdefault("lab_camera_seen", set())
        try:
            item = L.add_snapshot(ds, shot.getvalue(), seen)
        except FaceCoreError as exc:
            show_error(exc)
        else:
            if item is not None:
                flash("success", f"Saved webcam photo {item.image.name}.")
                st.rerun()


# -- gallery -----------------------------------------------------------------------------------
@st.cache_data(max_entries=2000, show_spinner=False)
def _thumb(image: str, label: str | None, stamps: tuple, prop: tuple | None):
    import numpy as np

    e = L.entry(Item(Path(image).stem, Path(image), None if label is None else Path(label)))
    p = None if prop is None else L.Proposal(np.asarray(prop[0], np.float32), prop[1], prop[2])
    return L.thumbnail(e, proposal=p)


def thumb(e: L.Entry, prop: L.Proposal | None):
    def stamp(p):
        try:
            return p.stat().st_mtime_ns
        except (OSError, AttributeError):
            return None

    key = None if prop is None else (tuple(prop.box.tolist()), prop.score, prop.detector)
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
                except ImageReadError:
                    st.error("unreadable image")
                st.button(f"{e.stem[:18]} · {L.STATUS_TEXT[e.status]}", key=f"{key}_open_{e.stem}",
                          on_click=open_in_label_view, args=(ds, e.stem), width="stretch",
                          help="Open this image in the Label view.")


def gallery_view(ds, entries: list[L.Entry]) -> None:
    counts = {name: len(L.filter_entries(entries, name)) for name in L.FILTERS}
    flt = st.segmented_control("Show", list(L.FILTERS), default="all", required=True, key="lab_filter",
                               format_func=lambda f: f"{f} ({counts[f]})")
    st.caption(":green[Green]: saved face box. :orange[Orange]: proposal not accepted yet. "
               "Click an image's name to open it.")
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
    if ss.get("lab_prelabel_cancel"):
        st.info(f"Pre-labeling cancelled: the {len(proposals)} proposal(s) made so far are kept.")
    st.markdown("A detector proposes a box for every unlabeled image. **Nothing is saved** until you accept "
                "a proposal (here all at once, or one by one in the Label view).")
    c1, c2 = st.columns([2, 1], vertical_alignment="bottom")
    names = detector_names(workspace().models_root)
    det_name = c1.selectbox("Detector", names, key="lab_det_batch")
    min_score = c2.slider("Minimum score", 0.0, 1.0, 0.5, 0.05, key="lab_min_score")
    if st.button(f"Pre-label all unlabeled ({len(todo)})", type="primary", disabled=not todo, key="lab_prelabel"):
        try:
            det = detector(det_name)
        except FaceCoreError as exc:
            show_error(exc)
            return
        bar = st.progress(0.0, text=f"0 of {len(todo)}")
        st.button("Cancel", key="lab_prelabel_cancel",
                  help="Stops after the current image; the proposals made so far are kept.")

        def on_progress(done, total, stem, p):
            if p is not None:
                proposals[stem] = p  # kept in the session at once: a cancel keeps what was done
            bar.progress(done / total, text=f"{done} of {total}: {stem}")

        result = L.prelabel(ds, det, todo, on_progress, min_score=min_score, skip_labeled=True)
        msg = f"{det_name} proposed {len(result.proposals)} box(es); no face found in {len(result.no_face)} image(s)."
        if result.skipped:
            msg += f" {len(result.skipped)} image(s) were labeled meanwhile and left alone."
        if result.failed:
            msg += f" {len(result.failed)} failed:\n\n" + skipped_text(result.failed)
        flash("success" if not result.failed else "warning", msg)
        st.rerun()

    if proposals:
        st.markdown(f"**{len(proposals)} proposal(s) waiting.** Check them below (orange), then:")
        c1, c2 = st.columns(2)
        if c1.button(f"Accept all {len(proposals)} proposals", type="primary", key="lab_accept_all",
                     width="stretch"):
            saved, skipped = L.accept_proposals(ds, dict(proposals))
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
    st.markdown(
        f"A labelme `.zip`: `{ds.name}/images/` and `{ds.name}/labels/*.json` (labelme 5, no embedded image data). "
        f"Open it in labelme with `labelme {ds.name}/images --output {ds.name}/labels`. "
        "Unlabeled images have no JSON (no-face by convention); VOC labels are converted.")
    try:
        data = ds.export_labelme_zip()
    except FaceCoreError as exc:
        show_error(exc)
        return
    st.download_button(f"Download {ds.name}.zip ({len(data) / 1e6:.1f} MB)", data, file_name=f"{ds.name}_labelme.zip",
                       mime="application/zip", type="primary", key="lab_export")


# -- page --------------------------------------------------------------------------------------
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
n_noface = sum(e.status == L.NO_FACE for e in entries)
st.progress(done / total if total else 0.0, text=f"{done} of {total} labeled")
st.caption(f"**{dataset.name}**: {n_face} with a face · {n_noface} no face · {total - done} unlabeled"
           + (f" · {len(proposals_of(dataset))} proposal(s) waiting" if proposals_of(dataset) else "")
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
