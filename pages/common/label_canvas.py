"""Collect & Label, Label view: the boxes being edited and the drawing canvas that shows them.

The boxes being edited live in ``st.session_state["lab_cand"]``: ``boxes`` (image pixels
``[x1, y1, x2, y2]``), ``srcs`` (where each came from: ``saved``, ``proposal``, ``drawn``, ``typed``;
it picks the colour) and ``sel`` (the box the numeric inputs fine-tune, None to type a new one).
The canvas always shows exactly these boxes, so *Save* and *Accept* write only boxes the user sees.
"""

from __future__ import annotations

import json

import streamlit as st

from facecore.datasets import labeling as L
from facecore.datasets import prelabel as P
from pages.common.label_views import COLORS

try:  # the drawing component; without it the numeric inputs still label everything
    from streamlit_drawable_canvas import boxes_to_drawing, st_canvas
except ImportError:  # pragma: no cover - it is in requirements.txt
    st_canvas = None

ss = st.session_state
CORNERS = ("x1", "y1", "x2", "y2")
MIN_CANVAS_BOX = 8  # display pixels: a click without a drag makes a tiny box, not a face


# -- the boxes being edited --------------------------------------------------------------------
def num_keys() -> list[str]:
    """Keys of the four corner inputs; a new set whenever the selected box changes from elsewhere (canvas,
    proposal, another box or image), so the inputs show it without writing to a rendered widget's state."""
    n = ss.get("lab_nver", 0)
    return [f"lab_{c}_{n}" for c in CORNERS]


def bump(name: str) -> None:
    ss[name] = ss.get(name, 0) + 1


def signature(ds, stem: str, e: L.Entry, prop: P.Proposal | None) -> str:
    """Changes when the image, its label file (saved here or in another tab) or its proposal changes."""
    stamp = e.item.label.stat().st_mtime_ns if e.item.label is not None and e.item.label.exists() else None
    return json.dumps([str(ds.root), stem, stamp, None if prop is None else [prop.scores, prop.boxes.tolist()]])


def _proposal_px(prop: P.Proposal, w: int, h: int) -> list[list[float]]:
    return [[round(v, 1) for v in b] for b in L.B.to_pixels(prop.boxes, w, h).tolist()]


def add_proposal(cand: dict, prop: P.Proposal, w: int, h: int) -> int:
    """Add the proposal's boxes that are not already boxed (orange); returns how many were added."""
    px = _proposal_px(prop, w, h)
    fresh = L.new_boxes(cand["boxes"], px)
    for i in fresh:
        cand["boxes"].append(px[i])
        cand["srcs"].append("proposal")
    if fresh:
        cand["sel"] = len(cand["boxes"]) - len(fresh)
    return len(fresh)


def reset(cand: dict, sig: str, e: L.Entry, prop: P.Proposal | None, w: int, h: int) -> None:
    saved = [[round(v, 1) for v in b] for b in e.label.pixel_boxes().tolist()] if e.status == L.FACE else []
    cand.clear()
    cand.update(sig=sig, boxes=[list(b) for b in saved], srcs=["saved"] * len(saved), saved=saved,
                sel=0 if saved else None)
    if prop is not None:
        add_proposal(cand, prop, w, h)
    bump("lab_nver")
    bump("lab_cver")


def typed() -> None:
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


def select() -> None:
    ss["lab_cand"].update(sel=ss.get("lab_sel"), drawing=None)
    bump("lab_nver")


def new_box() -> None:
    ss["lab_cand"]["sel"] = None
    bump("lab_nver")


def delete_box() -> None:
    cand = ss["lab_cand"]
    i = cand.get("sel")
    if i is None or i >= len(cand["boxes"]):
        return
    del cand["boxes"][i]
    del cand["srcs"][i]
    cand["sel"] = min(i, len(cand["boxes"]) - 1) if cand["boxes"] else None
    cand["drawing"] = None
    bump("lab_nver")


def dirty(cand: dict) -> bool:
    return len(cand["boxes"]) != len(cand["saved"]) or any(s != "saved" for s in cand["srcs"])


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
        if len(rects) < len(res.boxes):
            bump("lab_cver")  # a click without a drag: redraw without the speck
        edit = L.apply_canvas(cand["boxes"], cand["srcs"], cand.get("sel"), px, tol=max(1.0, 1.0 / scale))
        if edit is not None:
            cand.update(boxes=edit.boxes, srcs=edit.srcs, sel=edit.sel)
            if edit.renumber:  # deleted or reordered there: send the boxes again, numbered anew
                cand["drawing"] = None
            bump("lab_nver")
            st.rerun()
        elif len(rects) < len(res.boxes):
            st.rerun()
