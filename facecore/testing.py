"""Support for tests and benchmarks (the app never imports it): synthetic face photos and datasets, the
app served by ``streamlit run`` in a subprocess, headless Chromium, and a fake-camera clip for WebRTC.

Nothing here imports streamlit: the app runs in its own process.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np

from .datasets.dataset import Dataset
from .images import encode_jpeg, read_image
from .datasets.labels import ImageLabel
from .datasets.workspace import PROJECT_ROOT

SAMPLE = PROJECT_ROOT / "data" / "sample"


# -- synthetic photos ------------------------------------------------------------------------------
def face_image(rng: np.random.Generator, width: int = 160, height: int = 120, face: bool = True):
    """An RGB image (H, W, 3) with a cartoon face, and its normalized box (or None)."""
    img = np.empty((height, width, 3), np.uint8)
    img[:] = rng.integers(40, 200, size=3)
    noise = rng.integers(0, 25, size=(height, width, 1), dtype=np.uint8)
    img = cv2.add(img, np.repeat(noise, 3, axis=2))
    if not face:
        for _ in range(3):
            x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
            cv2.rectangle(img, (x, y), (x + 20, y + 15), tuple(int(c) for c in rng.integers(0, 255, 3)), -1)
        return img, None
    fw = int(rng.integers(width // 5, width // 2))
    fh = int(fw * 1.25)
    fh = min(fh, height - 4)
    x1 = int(rng.integers(1, width - fw - 1))
    y1 = int(rng.integers(1, height - fh - 1))
    cx, cy = x1 + fw // 2, y1 + fh // 2
    cv2.ellipse(img, (cx, cy), (fw // 2, fh // 2), 0, 0, 360, (224, 172, 140), -1)
    ex = max(fw // 6, 2)
    for dx in (-ex, ex):
        cv2.circle(img, (cx + dx, cy - fh // 8), max(fw // 12, 1), (30, 30, 30), -1)
    cv2.ellipse(img, (cx, cy + fh // 5), (fw // 5, max(fh // 14, 1)), 0, 0, 180, (120, 40, 40), -1)
    box = np.array([x1, y1, x1 + fw, y1 + fh], np.float32) / np.array([width, height, width, height], np.float32)
    return img, box


def make_dataset(root: Path, n_face: int = 12, n_noface: int = 4, size=(160, 120), seed: int = 0) -> Dataset:
    """A dataset folder with labelme labels for the face images and no label for the rest."""
    rng = np.random.default_rng(seed)
    ds = Dataset.create(root)
    for i in range(n_face + n_noface):
        face = i < n_face
        img, box = face_image(rng, *size, face=face)
        label = ImageLabel(size[0], size[1], box) if face else None
        ds.add_image(encode_jpeg(img), f"img{i:03d}.jpg", label=label)
    return ds


# -- the app in a subprocess, and headless Chromium ------------------------------------------------
CHROMIUM = Path("/usr/bin/chromium")  # Debian's Chromium, never a downloaded browser
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]


@contextlib.contextmanager
def serve_app(data_root, models_root, tmp_path, timeout: float = 60, drop_ice_servers: bool = False,
              python: str | None = None, cwd=None, file_watcher: str | None = "none", with_process: bool = False,
              address: str = "127.0.0.1"):
    """``streamlit run streamlit_app.py`` on a free port of ``address`` (loopback unless given: e.g. this
    machine's own network address, to serve the app as a remote user sees it) against ``data_root``/``models_root``.

    Yields the base URL once /_stcore/health answers; the server's output goes to
    ``tmp_path / "streamlit.log"``. With ``drop_ice_servers`` any FACETRACK_* STUN/TURN/ICE settings
    are left out of the server's environment (WebRTC over loopback needs none). ``python`` / ``cwd``: the
    interpreter and project folder to serve from (default: this one, the repository); ``file_watcher``
    sets ``server.fileWatcherType`` (None: whatever ``.streamlit/config.toml`` says); ``with_process``
    yields ``(url, Popen)`` instead of the URL.
    """
    with socket.socket() as s:
        s.bind((address, 0))
        port = s.getsockname()[1]
    env = {**os.environ, "FACETRACK_DATA": str(data_root), "FACETRACK_MODELS": str(models_root),
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    if drop_ice_servers:
        for k in [k for k in env if k.startswith("FACETRACK_") and ("TURN" in k or "STUN" in k or "ICE" in k)]:
            env.pop(k)
    log_path = tmp_path / "streamlit.log"
    log = open(log_path, "wb")
    proc = subprocess.Popen(
        [python or sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.port", str(port),
         "--server.address", address, "--server.headless", "true", "--browser.gatherUsageStats", "false",
         *(["--server.fileWatcherType", file_watcher] if file_watcher else [])],
        cwd=cwd or PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://{address}:{port}"
    try:
        end = time.monotonic() + timeout
        while True:
            assert proc.poll() is None, log_path.read_text(errors="replace")
            try:
                with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < end, f"streamlit did not answer at {url} within {timeout:.0f} s"
            time.sleep(0.3)
        yield (url, proc) if with_process else url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()



def group_photo(width: int = 4000, height: int = 3000, n_faces: int = 8, face_px: int = 110, seed: int = 0):
    """A large "group photo": ``n_faces`` faces of the shipped sample, each about ``face_px`` wide, spread
    over a plain (width x height) RGB photo. Returns ``(rgb, boxes (n, 4) normalized: the faces' labels)``."""
    from . import boxes as B
    from .datasets.labels import read_label

    rng = np.random.default_rng(seed)
    photo = np.full((height, width, 3), 90, np.uint8)
    faces = [p for p in sorted((SAMPLE / "images").glob("*.jpg")) if (SAMPLE / "labels" / f"{p.stem}.json").exists()]
    cols = max(1, (n_faces + 1) // 2)
    truth = []
    for i, p in enumerate(faces[:n_faces * 10:10]):
        rgb = read_image(p)
        box = B.clip(read_label(SAMPLE / "labels" / f"{p.stem}.json").boxes)[0]
        h, w = rgb.shape[:2]
        x1, y1, x2, y2 = (box * [w, h, w, h]).astype(int)
        cx, cy, side = (x1 + x2) // 2, (y1 + y2) // 2, int(max(x2 - x1, y2 - y1) * 1.6)
        left, top = max(cx - side // 2, 0), max(cy - side // 2, 0)
        crop = rgb[top:cy + side // 2, left:cx + side // 2]
        scale = face_px * 1.6 / crop.shape[1]
        crop = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        cell_w, cell_h = width // cols, height // 2
        ox = (i % cols) * cell_w + int(rng.integers(0, max(cell_w - crop.shape[1], 1)))
        oy = (i // cols) * cell_h + int(rng.integers(0, max(cell_h - crop.shape[0], 1)))
        photo[oy:oy + crop.shape[0], ox:ox + crop.shape[1]] = crop[:height - oy, :width - ox]
        fx1, fy1 = ox + (x1 - left) * scale, oy + (y1 - top) * scale
        truth.append([fx1 / width, fy1 / height, (fx1 + (x2 - x1) * scale) / width, (fy1 + (y2 - y1) * scale) / height])
    return photo, np.asarray(truth, np.float32)


# -- process memory, for the benchmarks that measure the server ------------------------------------
def rss_mb(pid: int) -> tuple[float, float]:
    """(current, peak) resident memory of ``pid`` in MiB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def settled_rss_mb(pid: int, quiet_s: float = 3.0, timeout_s: float = 60.0) -> float:
    """RSS of ``pid`` in MiB once it has moved less than 5 MiB for ``quiet_s`` (e.g. a model finished loading)."""
    end, last, since = time.time() + timeout_s, rss_mb(pid)[0], time.time()
    while time.time() < end:
        time.sleep(0.5)
        now = rss_mb(pid)[0]
        if abs(now - last) > 5:
            last, since = now, time.time()
        elif time.time() - since >= quiet_s:
            break
    return rss_mb(pid)[0]

# -- a fake camera for WebRTC: a clip of sample photos, each frame stamped with its index -------------
CLIP_W, CLIP_H, CLIP_FPS = 320, 240, 15
CODE_BITS, CODE_ROWS = 8, 16  # frame index in 8 blocks across the bottom 16 rows


def write_y4m(path: Path, frames: list[np.ndarray], fps: int = CLIP_FPS) -> Path:
    """RGB frames (H, W, 3) -> an uncompressed YUV4MPEG2 (4:2:0) clip, Chromium's fake-camera format."""
    h, w = frames[0].shape[:2]
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for rgb in frames:
            f.write(b"FRAME\n")
            f.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420).tobytes())
    return path


def stamp(rgb: np.ndarray, index: int) -> np.ndarray:
    """A copy of ``rgb`` with ``index`` written as CODE_BITS black/white blocks along the bottom."""
    out = rgb.copy()
    h, w = out.shape[:2]
    for b in range(CODE_BITS):
        on = (index >> (CODE_BITS - 1 - b)) & 1
        out[h - CODE_ROWS:, b * w // CODE_BITS:(b + 1) * w // CODE_BITS] = 235 if on else 16
    return out


def read_code(rgb: np.ndarray) -> int:
    """The index ``stamp`` wrote (block centres, so codec smearing at the edges does not matter)."""
    h, w = rgb.shape[:2]
    row = rgb[h - CODE_ROWS * h // CLIP_H // 2].mean(axis=-1)
    bits = [row[int((b + 0.5) * w / CODE_BITS)] > 128 for b in range(CODE_BITS)]
    return sum(int(on) << (CODE_BITS - 1 - b) for b, on in enumerate(bits))


def face_clip(path: Path, n_images: int = 6, repeat: int = 30):
    """A clip of sample photos with one face Haar finds at the clip's size and on the lighter path's
    smaller copy, near the middle (so a box
    held over from the previous photo still covers the face) and above the code strip, each held for
    ``repeat`` frames and stamped with its frame index. Returns (path, frames, boxes) with the face box
    (normalized) of each frame."""
    from facecore.detect import HaarDetector
    from facecore.images import read_image

    from facecore.live.pacing import LEVELS

    haar = HaarDetector(max_width=CLIP_W)
    light = HaarDetector(max_width=min(lv.width for lv in LEVELS if lv.width))  # the lighter path's size
    chosen = []
    for p in sorted(SAMPLE.glob("images/*.jpg")):
        rgb = cv2.resize(read_image(p), (CLIP_W, CLIP_H), interpolation=cv2.INTER_AREA)
        faces = [d for d in haar.detect(rgb) if d.score >= 0.5]
        if (len(faces) == 1 and any(d.score >= 0.5 for d in light.detect(rgb)) and faces[0].box[3] < 1 - 1.5 * CODE_ROWS / CLIP_H
                and abs((faces[0].box[0] + faces[0].box[2]) / 2 - 0.5) < 0.07):
            chosen.append((rgb, faces[0].box))
        if len(chosen) == n_images:
            break
    assert chosen, "Haar finds no face in the sample photos at the clip size"
    frames, boxes = [], []
    for rgb, box in chosen:
        for _ in range(repeat):
            frames.append(stamp(rgb, len(frames)))
            boxes.append(box)
    assert len(frames) < 2 ** CODE_BITS
    return write_y4m(path, frames), frames, boxes


# Test instrumentation, in every frame before its scripts: keeps the page's RTCPeerConnections so the
# test can read the browser's own count of video frames received and decoded (getStats).
KEEP_PEER_CONNECTIONS_JS = """(() => {
    const Native = window.RTCPeerConnection;
    if (!Native) return;
    window.__pcs = [];
    window.RTCPeerConnection = function (...args) { const pc = new Native(...args); window.__pcs.push(pc); return pc; };
    window.RTCPeerConnection.prototype = Native.prototype;
})()"""

# Every 250 ms: (time, video frames decoded so far) from getStats.
COUNT_DECODED_JS = """() => {
    window.__decoded = [];
    setInterval(async () => {
        for (const pc of window.__pcs || []) {
            if (pc.connectionState !== 'connected') continue;
            (await pc.getStats()).forEach(r => {
                if (r.type === 'inbound-rtp' && r.kind === 'video') window.__decoded.push([Date.now() / 1000, r.framesDecoded]);
            });
        }
    }, 250);
}"""


def decoded_rate(decoded: list, t0: float, t1: float) -> float:
    """Frames per second the browser decoded between about ``t0`` and ``t1`` (getStats samples)."""
    inside = [(t, n) for t, n in decoded if t0 <= t <= t1]
    if len(inside) < 2 or inside[-1][0] <= inside[0][0]:
        return 0.0
    return (inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0])
