"""Collect & Label, Label view: draw, select, move, resize and delete every face box of a photo.

The boxes being edited and the drawing canvas are in ``label_canvas``.
"""

from __future__ import annotations

import streamlit as st

from facecore import FaceCoreError, ImageReadError
from facecore.datasets import labeling as L
from facecore.datasets import prelabel as P
from facecore.images import read_image
from pages.common import detector, show_error
from pages.common.label_canvas import (CORNERS, add_proposal, bump, delete_box, dirty, draw_canvas, new_box, num_keys,
                                       reset, select, signature, typed)
from pages.common.label_views import copy_sample_box, detector_select, flash, proposals_of, scores_text, set_current

ss = st.session_state
# Keyboard shortcuts (Streamlit's own button shortcuts: inactive while typing in an input), labelme-like.
KEYS = {"prev": "A", "next": "D", "unlabeled": "U", "save": "S", "noface": "N", "propose": "P",
        "delete_box": "Delete"}


# -- navigation --------------------------------------------------------------------------------
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


def after_save(ds, stem: str, message: str) -> None:
    proposals_of(ds).pop(stem, None)
    flash("success", message)
    if ss.get("lab_auto", True):
        nxt = L.next_unlabeled(L.entries(ds), stem)
        if nxt is not None:
            set_current(ds, nxt)
    st.rerun()


# -- the view ----------------------------------------------------------------------------------
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
    nav[0].button("Previous", icon=":material/navigate_before:", on_click=_nav, args=(ds, -1), width="stretch",
                  key="lab_prev", shortcut=KEYS["prev"])
    nav[1].button("Next", icon=":material/navigate_next:", on_click=_nav, args=(ds, 1), width="stretch",
                  key="lab_next", shortcut=KEYS["next"])
    nav[2].button("Next unlabeled", icon=":material/skip_next:", on_click=_nav, args=(ds, None), width="stretch",
                  key="lab_next_unl", shortcut=KEYS["unlabeled"])
    ss["lab_jump"] = cur
    nav[3].selectbox("Image", stems, key="lab_jump", on_change=_jump, args=(ds,), label_visibility="collapsed",
                     format_func=lambda s: f"{stems.index(s) + 1}/{len(stems)}  {s}")

    try:
        rgb = read_image(e.item.image)
    except ImageReadError as exc:
        show_error(exc)
        if not readonly:
            delete_image(ds, e)
        return
    h, w = rgb.shape[:2]
    status = L.STATUS_TEXT[e.status]
    if e.status == L.BROKEN:
        st.container().warning(f"The label file cannot be read: {e.error}. Save boxes or 'No face' to replace it.")

    if readonly:
        left, right = st.columns([3, 2])
        left.image(L.draw_label(rgb, e.label, prop, e.status), caption=f"{e.item.image.name} · {status}")
        with right:
            copy_sample_box(ds)
        return

    cand = ss.setdefault("lab_cand", {})
    sig = signature(ds, cur, e, prop)
    if cand.get("sig") != sig:
        reset(cand, sig, e, prop, w, h)

    n_saved = len(e.label.boxes) if e.status == L.FACE else 0
    st.markdown(f"**{e.item.image.name}** · {w}x{h} · **{status}**" + (f" ({n_saved} boxes)" if n_saved > 1 else ""))
    proposal_row(ds, cur, e, rgb, cand, proposals)
    # in the left part of the row: the canvas toolbar floats over the right end of the line above the photo
    # the component shows its toolbar on hover only (it pins it only while editing; its style is sealed in a
    # shadow root), so the caption says where it is
    st.columns([3, 2])[0].caption("Drag on the photo to add a box around each face. With the pointer over the "
                                  "photo a toolbar appears above its top right corner (it stays while editing): "
                                  "its pencil lets you select, move and resize boxes, and its bin deletes the "
                                  "selected one. "
                                  ":green[Green]: saved. "
                                  ":orange[Orange]: proposal. :blue[Blue]: changed, not saved yet. Fine-tune the "
                                  "selected box's corners below.")
    draw_canvas(cur, rgb, cand)
    box_editor(cand, w, h)
    actions(ds, cur, e, cand, w, h)


def proposal_row(ds, cur: str, e: L.Entry, rgb, cand: dict, proposals: dict) -> None:
    h, w = rgb.shape[:2]
    c1, c2, c3 = st.columns([2, 1.5, 1.3], vertical_alignment="bottom")
    # Messages and the Accept/Discard buttons come and go inside blocks that are always there, so the
    # canvas and the buttons below keep their place (see label_views.show_flash).
    note = st.container()
    a1, a2, _ = st.columns([1.3, 1.3, 2.4])
    det_name = detector_select(c1, "lab_det")
    min_score = c2.slider("Minimum score", 0.0, 1.0, 0.5, 0.05, key="lab_min_score_one",
                          help="Faces scoring lower are not proposed.")
    if c3.button("Propose boxes", key="lab_propose", width="stretch", shortcut=KEYS["propose"],
                 help="Let the detector propose a box for every face (orange); they are saved only when you "
                      "accept or save them."):
        try:
            p = P.propose(detector(det_name), rgb, min_score)
        except FaceCoreError as exc:
            with note:
                show_error(exc)
        else:
            if p is None:
                note.info(f"{det_name} found no face here scoring {min_score:.2f} or more: draw the boxes or "
                          "mark 'No face'.")
            else:
                added = add_proposal(cand, p, w, h)
                if added:
                    proposals[cur] = p
                    cand["sig"] = signature(ds, cur, e, p)  # keep the edits made so far: no reset
                    cand["drawing"] = None
                    bump("lab_nver")
                    st.rerun()
                note.info(f"{det_name} found {len(p.boxes)} face(s) (score {scores_text(p)}), all already boxed: "
                          "nothing new to propose.")
    n_prop = sum(s == "proposal" for s in cand["srcs"])
    if not n_prop:
        return
    prop = proposals.get(cur)
    who = f"**{prop.detector}**, score {scores_text(prop)}" if prop is not None else "a detector"
    note.markdown(f":orange[Proposal by {who}: {n_prop} orange box(es). *Accept* saves every box shown; select a "
                  "wrong one and delete it first, or adjust it.]")
    if a1.button("Accept proposal", type="primary", key="lab_accept", width="stretch",
                 help="Save every box on the photo: the orange ones and any others shown."):
        save_boxes(ds, cur, cand, w, h, "Saved {n} box(es) for {stem}, proposal included.")
    if a2.button("Discard proposal", key="lab_discard", width="stretch", help="Remove the orange boxes."):
        keep = [i for i, s in enumerate(cand["srcs"]) if s != "proposal"]
        cand["boxes"] = [cand["boxes"][i] for i in keep]
        cand["srcs"] = [cand["srcs"][i] for i in keep]
        cand["sel"] = 0 if keep else None
        proposals.pop(cur, None)
        cand["sig"] = signature(ds, cur, e, None)
        cand["drawing"] = None
        bump("lab_nver")
        st.rerun()


def save_boxes(ds, cur: str, cand: dict, w: int, h: int, message: str) -> None:
    if not cand["boxes"]:
        st.error("Draw a box on the photo (or type its corners) first, or mark the photo 'No face'.")
        return
    try:
        # boxes of the waiting proposal saved unchanged record its detector (Evaluate warns about them)
        L.save_pixel_boxes(ds, cur, cand["boxes"], (w, h), proposal=proposals_of(ds).get(cur))
    except FaceCoreError as exc:
        show_error(exc)
    else:
        after_save(ds, cur, message.format(n=len(cand["boxes"]), stem=cur))


def box_editor(cand: dict, w: int, h: int) -> None:
    """Pick the box to fine-tune (or a new one), its corners in pixels, and delete it."""
    n = len(cand["boxes"])
    sel = cand.get("sel")
    if sel is not None and sel >= n:
        sel = cand["sel"] = n - 1 if n else None
    c1, c2, c3 = st.columns([3, 1, 1], vertical_alignment="bottom")
    if n:
        ss["lab_sel"] = sel
        c1.segmented_control("Box", list(range(n)), key="lab_sel", on_change=select,
                             format_func=lambda i: f"{i + 1}", help="The box the corner inputs below edit; the "
                             "numbers match the labels on the photo.")
    c2.button("New box", key="lab_new_box", on_click=new_box, width="stretch", disabled=sel is None,
              help="Type the corners of another box below (or drag one on the photo).")
    c3.button("Delete box", key="lab_delete_box", on_click=delete_box, width="stretch", disabled=sel is None,
              shortcut=KEYS["delete_box"], help="Remove the selected box (not saved until you save).")
    box = cand["boxes"][sel] if sel is not None else [None] * 4
    what = f"box {sel + 1}" if sel is not None else "a new box"
    cols = st.columns(4)
    for col, key, label, top, v in zip(cols, num_keys(), CORNERS, (w, h, w, h), box):
        col.number_input(f"{label} (px)", min_value=0.0, max_value=float(top), step=1.0, format="%.1f", key=key,
                         value=None if v is None else min(max(round(float(v), 1), 0.0), float(top)),
                         on_change=typed, help=f"Corner of {what}, in image pixels.")


def actions(ds, cur: str, e: L.Entry, cand: dict, w: int, h: int) -> None:
    c1, c2, c3, c4 = st.columns(4)
    if c1.button("Save boxes", type="primary", key="lab_save", width="stretch", shortcut=KEYS["save"]):
        save_boxes(ds, cur, cand, w, h, "Saved {n} face box(es) of {stem}.")
    if c2.button("No face", key="lab_noface", width="stretch", shortcut=KEYS["noface"],
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
        delete_image(ds, e)
    if dirty(cand):
        st.caption(":blue[Not saved yet: the boxes shown differ from the saved label. *Save boxes* writes them all.]")
    st.checkbox("After saving, go to the next unlabeled image", value=True, key="lab_auto")
    st.caption(f"Keys: **{KEYS['prev']}** previous · **{KEYS['next']}** next · **{KEYS['unlabeled']}** next "
               f"unlabeled · **{KEYS['save']}** save · **{KEYS['noface']}** no face · **{KEYS['propose']}** propose "
               f"· **{KEYS['delete_box']}** delete the selected box (not while typing in a field).")


def delete_image(ds, e: L.Entry) -> None:
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
