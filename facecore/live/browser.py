"""What the in-browser webcam needs from Python: a detector's ``.tflite`` and how to decode it, as JSON.

The Webcam page's *in the browser* mode (``pages/common/browser_webcam``, a Streamlit component) runs the
chosen detector next to the camera with LiteRT.js; no video goes to the server. The browser gets the
network file once and a ``spec``: everything facecore does around the network, so its JavaScript port
(``frontend/src/detector.js``) draws the same boxes as ``facecore`` on the same frame:

- the built-in BlazeFace (``blazeface``, ``blazeface-short``) and its box-style models
  (``"architecture": "blazeface-style"``): ``kind "ssd"``: the frame letterboxed into the square input,
  MediaPipe's anchors (``facecore.blazeface.builtin.ssd_anchors``), weighted NMS, then the ``BoxStyle`` as its
  (14, 4) weights (``BoxStyle.weights``; the offsets form written the same way) applied in the square;
- a fine-tuned BlazeFace (``"architecture": "blazeface"``): ``kind "anchors"``: the frame padded to the
  training photos' aspect (``frame_aspect``) and resized whole; the graph decodes every anchor, and
  weighted NMS (``facecore.blazeface.saved.MIN_SCORE``) gives the faces.

Other detectors (Haar, the tutorials' FaceTracker, int8 copies, a recognizer) run on the server only:
``browser_detector`` raises ``BrowserUnsupported`` saying so. ``default_mode`` picks where the detector
runs when the page opens.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..errors import FaceCoreError

BROWSER, SERVER = "browser", "server"  # where the Webcam page runs the detector


class BrowserUnsupported(FaceCoreError):
    """This detector has no in-browser form (it runs on the server only)."""


@dataclass(frozen=True)
class BrowserDetector:
    """A detector as the browser runs it: ``tflite`` (the network file) and ``spec()`` (its decoding).

    ``kind``: ``"ssd"`` (raw BlazeFace outputs, decoded with ``anchors`` (A, 2) centres, ``style`` (14, 4)
    weights) or ``"anchors"`` (per-anchor probabilities and boxes from the graph, ``frame_aspect``)."""

    name: str
    kind: str
    tflite: Path
    min_score: float
    nms_iou: float
    size: int | None = None
    anchors: tuple | None = None
    style: tuple | None = None
    frame_aspect: float | None = None
    average_floor: float = 0.0  # facecore.blazeface.builtin.weighted_nms's: the weakest anchor a face's box averages

    def spec(self) -> dict:
        """The decoding as JSON-able numbers (no file contents), with ``id``: changes with the file or spec."""
        body = {"name": self.name, "kind": self.kind, "min_score": self.min_score, "nms_iou": self.nms_iou,
                "size": self.size, "anchors": self.anchors, "style": self.style, "frame_aspect": self.frame_aspect,
                "average_floor": self.average_floor}
        digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode())
        digest.update(self.tflite_bytes())
        return {**body, "id": digest.hexdigest()[:16]}

    def tflite_bytes(self) -> bytes:
        """The network file, as the browser loads it. Raises FaceCoreError when it cannot be read."""
        try:
            return self.tflite.read_bytes()
        except OSError as exc:
            raise FaceCoreError(f"{self.tflite.name} of detector {self.name!r} could not be read ({exc})") from exc


def _rows(a: np.ndarray, digits: int = 7) -> tuple:
    return tuple(tuple(round(float(v), digits) for v in r) for r in np.asarray(a, np.float64))


def builtin_detector(variant: str, name: str, style=None) -> BrowserDetector:
    """The built-in BlazeFace ``variant`` (``"full"`` or ``"short"``) with ``style`` (``DEFAULT_STYLE`` if None)."""
    from ..blazeface.builtin import DEFAULT_STYLE, NMS_IOU, VARIANTS, network_file, ssd_anchors

    v = VARIANTS[variant]
    weights = (DEFAULT_STYLE if style is None else style).weights()
    # float32 anchors as facecore decodes with them, written exactly (repr of a float32 widened to float64)
    anchors = tuple((float(cx), float(cy)) for cx, cy, _ in ssd_anchors(variant).astype(np.float64))
    return BrowserDetector(name, "ssd", network_file(variant), float(v.min_score), float(NMS_IOU), v.size,
                           anchors, _rows(weights, 12))


def browser_detector(name: str, models_root: str | Path) -> BrowserDetector:
    """Detector ``name`` (as ``facecore.registry.load_detector`` names it) in its in-browser form.
    Raises ``BrowserUnsupported`` for a detector that runs on the server only, FaceCoreError for a
    model that cannot be read."""
    from ..detect import BLAZEFACE, BLAZEFACE_SHORT
    from ..registry import BLAZEFACE_ARCH, STYLE_ARCH, TFLITE_FILE, model_meta, model_folder, split_name

    if name in (BLAZEFACE, BLAZEFACE_SHORT):
        return builtin_detector("full" if name == BLAZEFACE else "short", name)
    base, int8 = split_name(name)
    if "+" in name:
        raise BrowserUnsupported(f"{name}: recognizing faces runs on the server only; untick *Recognize faces* "
                                 "or run the detector on the server")
    if name in ("haar",) or int8:
        raise BrowserUnsupported(f"{name} runs on the server only; pick a BlazeFace detector (built in or trained) "
                                 "to run it in the browser")
    path = model_folder(models_root, base)
    meta = model_meta(base, models_root)
    arch = meta.architecture
    if arch == STYLE_ARCH:
        from ..blazeface.boxstyle import BoxStyle

        return builtin_detector("full", base, BoxStyle.from_dict(meta.box_style or {}))
    if arch != BLAZEFACE_ARCH:
        raise BrowserUnsupported(f"{name} (a {meta.backbone or 'FaceTracker'} model) runs on "
                                 "the server only; a BlazeFace model (built in or trained) runs in the browser")
    tfl = path / TFLITE_FILE
    if not tfl.is_file():
        raise BrowserUnsupported(f"{name} has no {TFLITE_FILE} (only model.keras), so it runs on the server only")
    from ..blazeface.saved import AVERAGE_FLOOR, MIN_SCORE
    from ..blazeface.builtin import NMS_IOU

    aspect = float(meta.frame_aspect) if meta.frame_aspect is not None else None
    return BrowserDetector(base, "anchors", tfl, float(MIN_SCORE), float(NMS_IOU), frame_aspect=aspect,
                           average_floor=float(AVERAGE_FLOOR))


def has_turn(config: Mapping[str, Any]) -> bool:
    """Whether an ``rtc_configuration`` (``facecore.live.rtc.rtc_configuration``) relays through TURN (``{}``: a
    TURN provider's servers, fetched by streamlit-webrtc)."""
    servers = config.get("iceServers")
    if servers is None:
        return True
    urls = []
    for s in servers:
        u = s.get("urls") if isinstance(s, Mapping) else None
        urls.extend([u] if isinstance(u, str) else list(u or []))
    return any(str(u).startswith(("turn:", "turns:")) for u in urls)


def default_mode(local: bool, config: Mapping[str, Any]) -> tuple[str, str]:
    """Where the Webcam page runs the detector when it opens, and why: ``(BROWSER | SERVER, reason)``.

    On the server's own computer WebRTC needs no relay, so the server is the default; elsewhere, without
    TURN settings, a WebRTC connection usually never gets through NAT, and the browser is the default."""
    if local:
        return SERVER, "The app runs on this computer: WebRTC to the server needs no relay."
    if has_turn(config):
        return SERVER, "A TURN server is configured, so WebRTC to the server can get through."
    return BROWSER, ("The app is not on this computer and no TURN server is configured, so a WebRTC connection "
                     "to the server would probably never get through: the detector runs in your browser "
                     "instead (no video leaves it).")
