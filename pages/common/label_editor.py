"""Collect & Label, Label view: draw, select, move, resize and delete every face box of a photo.

The boxes being edited live in ``st.session_state["lab_cand"]``: ``boxes`` (image pixels
``[x1, y1, x2, y2]``), ``srcs`` (where each came from: ``saved``, ``proposal``, ``drawn``, ``typed``;
it picks the colour) and ``sel`` (the box the numeric inputs fine-tune, None to type a new one).
The canvas always shows exactly these boxes, so *Save* and *Accept* write only boxes the user sees.
"""

from __future__ import annotations

import json

import streamlit as st

from facecore import FaceCoreError, ImageReadError
from facecore import labeling as L
from facecore import prelabel as P
from facecore.images import read_image
from pages.common import detector, show_error
from pages.common.label_views import (COLORS, copy_sample_box, detector_select, flash, proposals_of, scores_text,
                                      set_current)

try:  # the drawing component; without it the numeric inputs still label everything
    from streamlit_drawable_canvas import boxes_to_drawing, st_canvas
except ImportError:  # pragma: no cover - it is in requirements.txt
    st_canvas = None

ss = st.session_state
CORNERS = ("x1", "y1", "x2", "y2")
MIN_CANVAS_BOX = 8  # display pixels: a click without a drag makes a tiny box, not a face
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


# -- the boxes being edited --------------------------------------------------------------------
def num_keys() -> list[str]:
    """Keys of the four corner inputs; a new set whenever the selected box changes from elsewhere (canvas,
    proposal, another box or image), so the inputs show it without writing to a rendered widget's state."""
    n = ss.get("lab_nver", 0)
    return [f"lab_{c}_{n}" for c in CORNERS]


def _bump(name: str) -> None:
    ss[name] = ss.get(name, 0) + 1


def _signature(ds, stem: str, e: L.Entry, prop: P.Proposal | None) -> str:
    """Changes when the image, its label file (saved here or in another tab) or its proposal changes."""
    stamp = e.item.label.stat().st_mtime_ns if e.item.label is not None and e.item.label.exists() else None
    return json.dumps([str(ds.root), stem, stamp, None if prop is None else [prop.scores, prop.boxes.tolist()]])


def _proposal_px(prop: P.Proposal, w: int, h: int) -> list[list[float]]:
    return [[round(v, 1) for v in b] for b in L.B.to_pixels(prop.boxes, w, h).tolist()]


def _add_proposal(cand: dict, prop: P.Proposal, w: int, h: int) -> int:
    """Add the proposal's boxes that are not already boxed (orange); returns how many were added."""
    px = _proposal_px(prop, w, h)
    fresh = L.new_boxes(cand["boxes"], px)
    for i in fresh:
        cand["boxes"].append(px[i])
        cand["srcs"].append("proposal")
    if fresh:
        cand["sel"] = len(cand["boxes"]) - len(fresh)
    return len(fresh)


def _reset(cand: dict, sig: str, e: L.Entry, prop: P.Proposal | None, w: int, h: int) -> None:
    saved = [[round(v, 1) for v in b] for b in e.label.pixel_boxes().tolist()] if e.status == L.FACE else []
    cand.clear()
    cand.update(sig=sig, boxes=[list(b) for b in saved], srcs=["saved"] * len(saved), saved=saved,
                sel=0 if saved else None)
    if prop is not None:
        _add_proposal(cand, prop, w, h)
    _bump("lab_nver")
    _bump("lab_cver")


def _typed() -> None:
    cand = ss["lab_cand"]
    vals = [ss.get(k) for k in num_keys()]
    if any(v is None for v in vals):
        return
    box = [float(v) for v in vals]
    if cand.get("sel") is None:  # typing a new box
        cand["boxes"].append(box)
        cand["srcs"].append("typed")
        cand["sel"] = len(cand["boxes"]) - 1
    else:
        cand["boxes"][cand["sel"]] = box
        cand["srcs"][cand["sel"]] = "typed"
    cand["drawing"] = None


def _select() -> None:
    ss["lab_cand"].update(sel=ss.get("lab_sel"), drawing=None)
    _bump("lab_nver")


def _new_box() -> None:
    ss["lab_cand"]["sel"] = None
    _bump("lab_nver")


def _delete_box() -> None:
    cand = ss["lab_cand"]
    i = cand.get("sel")
    if i is None or i >= len(cand["boxes"]):
        return
    del cand["boxes"][i]
    del cand["srcs"][i]
    cand["sel"] = min(i, len(cand["boxes"]) - 1) if cand["boxes"] else None
    cand["drawing"] = None
    _bump("lab_nver")


def _dirty(cand: dict) -> bool:
    return len(cand["boxes"]) != len(cand["saved"]) or any(s != "saved" for s in cand["srcs"])


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
    sig = _signature(ds, cur, e, prop)
    if cand.get("sig") != sig:
        _reset(cand, sig, e, prop, w, h)

    n_saved = len(e.label.boxes) if e.status == L.FACE else 0
    st.markdown(f"**{e.item.image.name}** · {w}x{h} · **{status}**" + (f" ({n_saved} boxes)" if n_saved > 1 else ""))
    proposal_row(ds, cur, e, rgb, cand, proposals)
    # in the left part of the row: the canvas toolbar floats over the right end of the line above the photo
    st.columns([3, 2])[0].caption("Drag on the photo to add a box around each face. The toolbar's pencil lets "
                                  "you select, move and resize boxes, and its bin deletes the selected one. "
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
                added = _add_proposal(cand, p, w, h)
                if added:
                    proposals[cur] = p
                    cand["sig"] = _signature(ds, cur, e, p)  # keep the edits made so far: no reset
                    cand["drawing"] = None
                    _bump("lab_nver")
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
        cand["sig"] = _signature(ds, cur, e, None)
        cand["drawing"] = None
        _bump("lab_nver")
        st.rerun()


def save_boxes(ds, cur: str, cand: dict, w: int, h: int, message: str) -> None:
    if not cand["boxes"]:
        st.error("Draw a box on the photo (or type its corners) first, or mark the photo 'No face'.")
        return
    try:
        L.save_pixel_boxes(ds, cur, cand["boxes"], (w, h))
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
        c1.segmented_control("Box", list(range(n)), key="lab_sel", on_change=_select,
                             format_func=lambda i: f"{i + 1}", help="The box the corner inputs below edit; the "
                             "numbers match the labels on the photo.")
    c2.button("New box", key="lab_new_box", on_click=_new_box, width="stretch", disabled=sel is None,
              help="Type the corners of another box below (or drag one on the photo).")
    c3.button("Delete box", key="lab_delete_box", on_click=_delete_box, width="stretch", disabled=sel is None,
              shortcut=KEYS["delete_box"], help="Remove the selected box (not saved until you save).")
    box = cand["boxes"][sel] if sel is not None else [None] * 4
    what = f"box {sel + 1}" if sel is not None else "a new box"
    cols = st.columns(4)
    for col, key, label, top, v in zip(cols, num_keys(), CORNERS, (w, h, w, h), box):
        col.number_input(f"{label} (px)", min_value=0.0, max_value=float(top), step=1.0, format="%.1f", key=key,
                         value=None if v is None else min(max(round(float(v), 1), 0.0), float(top)),
                         on_change=_typed, help=f"Corner of {what}, in image pixels.")


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
    if _dirty(cand):
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


# -- the drawing canvas ------------------------------------------------------------------------
def _drawing(cand: dict, w: int, h: int, scale: float) -> dict:
    """The canvas objects for the boxes being edited: numbered, coloured by origin, the selected one thicker."""
    objects = []
    for i, (box, src) in enumerate(zip(cand["boxes"], cand["srcs"])):
        rect = L.box_to_canvas_rect(L.B.from_pixels(box, w, h), w, h, scale)
        rect["label"] = str(i + 1)
        objects += boxes_to_drawing([rect], stroke_color=COLORS.get(src, COLORS["drawn"]),
                                    stroke_width=3 if i == cand.get("sel") else 2,
                                    fill_color="rgba(30, 144, 255, 0.06)")["objects"]
    return {"objects": objects}


def draw_canvas(cur: str, rgb, cand: dict) -> None:
    """The photo with every box being edited. A drag draws one more box; the toolbar's pencil (edit) selects,
    moves, resizes and deletes boxes. Whatever the canvas reports is matched against the boxes: the ones the
    user touched count as changed (blue from the next redraw) and the last one touched is selected for the
    corner inputs."""
    h, w = rgb.shape[:2]
    if st_canvas is None:
        st.image(L.draw_label(rgb, L.ImageLabel(w, h, L.B.from_pixels(cand["boxes"], w, h)) if cand["boxes"]
                              else None))
        return
    scale = L.canvas_scale(w, h, max_width=700, max_height=520)
    # The boxes are sent to the canvas again only after a change made here (typed, selected, deleted,
    # proposed, another photo): each new drawing makes the canvas reload, which drops a change the user is
    # making at that moment. Boxes drawn or moved on the canvas are already shown there as they are.
    if cand.get("drawing") is None:
        cand["drawing"] = _drawing(cand, w, h, scale)
    ckey = f"lab_canvas_{ss.get('lab_cver', 0)}"
    cw, ch = round(w * scale), round(h * scale)
    res = st_canvas(background_image=L.display_jpeg(rgb, cw, ch), background_image_fit="stretch",
                    drawing_mode="labeled_rect", label=str(len(cand["boxes"]) + 1), width=cw, height=ch,
                    stroke_color=COLORS["drawn"], stroke_width=2, fill_color="rgba(30, 144, 255, 0.06)",
                    font_size=12, initial_drawing=cand["drawing"], key=ckey)
    # React only when the canvas output changes: after a redraw it still reports the old drawing, and
    # after it loads new boxes it echoes them (they match, so nothing changes).
    out = json.dumps(res.boxes)
    seen = ss.setdefault("lab_seen", {})
    if ckey not in seen:
        seen.clear()
        seen[ckey] = out
    elif out != seen[ckey]:
        seen[ckey] = out
        rects = [r for r in res.boxes if min(abs(r["width"]), abs(r["height"])) >= MIN_CANVAS_BOX]
        px = [L.canvas_rect_to_pixels(r, scale, w, h) for r in rects]
        match = L.match_boxes(cand["boxes"], px, tol=max(1.0, 1.0 / scale))
        if len(rects) < len(res.boxes):
            _bump("lab_cver")  # a click without a drag: redraw without the speck
        if len(px) != len(cand["boxes"]) or any(m is None for m in match) or match != sorted(match):
            n_before = len(cand["boxes"])
            srcs = [cand["srcs"][m] if m is not None else "drawn" for m in match]
            touched = [i for i, m in enumerate(match) if m is None]
            cand["boxes"] = [cand["boxes"][m] if m is not None else b for m, b in zip(match, px)]
            cand["srcs"] = srcs
            cand["sel"] = touched[-1] if touched else (min(cand.get("sel") or 0, len(px) - 1) if px else None)
            if len(px) < n_before or not touched:  # deleted or reordered there: renumber the boxes
                cand["drawing"] = None
            _bump("lab_nver")
            st.rerun()
        elif len(rects) < len(res.boxes):
            st.rerun()
