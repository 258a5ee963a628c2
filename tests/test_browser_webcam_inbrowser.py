"""The Webcam page's in-browser mode (pages/common/browser_webcam, facecore.live.browser).

Unit tests of what Python hands the browser; then two headless-Chromium tests:

- **parity**: still frames fed through the component's own detector (its worker, LiteRT.js) give the same
  faces as ``facecore``'s detector in Python: same faces at the page's threshold, IoU >= 0.95 each, for the
  built-in BlazeFace and for a BlazeFace model saved as fine-tuning saves it (photo-shaped input, every
  anchor decoded in the graph), on 20 frames of several shapes;
- **live**: the app served on this machine's own network address (not localhost) with no STUN/TURN
  settings, a fake 640x480 camera at 30 fps: the page opens in the in-browser mode and says why, the
  component draws >= 25 fps (``FACETRACK_INBROWSER_MIN_FPS``), the detections on the camera's frames match
  facecore's on the clip's frames, the Streamlit server uses <= 5 % of a core, no RTCPeerConnection is
  ever made, and a snapshot lands in the active dataset.
"""

import base64
import os
import shutil
import socket
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from facecore import boxes as B
from facecore.live.browser import BROWSER, SERVER, BrowserUnsupported, browser_detector, default_mode, has_turn
from facecore.testing import BROWSER_ARGS, CHROMIUM, KEEP_PEER_CONNECTIONS_JS, SAMPLE, serve_app, stamp, write_y4m

NO_CHROMIUM = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium "
                                 "(apt-get install chromium)")
MIN_FPS = float(os.environ.get("FACETRACK_INBROWSER_MIN_FPS", 25))
THRESHOLD = 0.5  # the Webcam page's default: faces at or above it are drawn
IFRAME = 'iframe[title*="browser_webcam"]'


# -- what Python hands the browser ---------------------------------------------------------------------
@pytest.mark.parametrize("name,anchors,size", [("blazeface", 2304, 192), ("blazeface-short", 896, 128)])
def test_builtin_spec_carries_facecores_anchors_and_style(tmp_path, name, anchors, size):
    from facecore.blazeface.builtin import DEFAULT_STYLE, ssd_anchors

    det = browser_detector(name, tmp_path)
    spec = det.spec()
    assert spec["kind"] == "ssd" and spec["size"] == size and len(spec["anchors"]) == anchors
    assert np.array_equal(np.asarray(spec["anchors"], np.float32), ssd_anchors("full" if size == 192 else "short")[:, :2])
    assert np.allclose(spec["style"], DEFAULT_STYLE.weights(), atol=1e-9)
    assert det.tflite_bytes()[4:8] == b"TFL3"
    assert spec["id"] == det.spec()["id"]


def test_style_model_is_the_builtin_network_with_its_own_style(tmp_path):
    from facecore.blazeface.boxstyle import BoxStyle
    from facecore.meta import STYLE_ARCH, ModelMeta

    style = BoxStyle(left=-0.1, top=-0.3, right=0.1, bottom=0.1)
    (tmp_path / "mystyle").mkdir()
    ModelMeta(name="mystyle", architecture=STYLE_ARCH, config={"input_size": 192},
              box_style=style.to_dict()).save(tmp_path / "mystyle")
    det = browser_detector("mystyle", tmp_path)
    assert det.kind == "ssd" and np.allclose(det.style, style.weights())
    assert det.spec()["id"] != browser_detector("blazeface", tmp_path).spec()["id"]


@pytest.mark.parametrize("name", ["haar", "blazeface+me", "tiny@int8"])
def test_server_only_detectors_say_so(tmp_path, name):
    with pytest.raises(BrowserUnsupported, match="server only"):
        browser_detector(name, tmp_path)


@pytest.mark.parametrize("local,config,mode", [
    (True, {"iceServers": []}, SERVER),
    (False, {"iceServers": []}, BROWSER),
    (False, {"iceServers": [{"urls": ["stun:stun.example.org:3478"]}]}, BROWSER),  # STUN does not cross NAT
    (False, {"iceServers": [{"urls": "turn:turn.example.org:3478", "username": "u", "credential": "c"}]}, SERVER),
    (False, {}, SERVER),  # a TURN provider's servers, fetched by streamlit-webrtc
])
def test_default_mode(local, config, mode):
    got, why = default_mode(local, config)
    assert got == mode and why
    assert has_turn(config) == (config == {} or "turn" in str(config))


# -- the page's mode choice (AppTest: the component itself only runs in a browser) ---------------------------
def test_page_runs_the_server_on_localhost_and_the_browser_when_asked(workspace_env):
    from conftest import run_page, texts

    at = run_page("pages/6_Webcam.py")
    assert at.radio(key="webcam_where").value == SERVER
    assert at.button(key="webcam_start").label == "Start"  # the WebRTC path, as before
    at.radio(key="webcam_where").set_value(BROWSER).run()
    assert not at.exception, at.exception
    assert "No video leaves this browser" in texts(at.caption)
    assert not [b for b in at.button if b.key == "webcam_start"]  # no WebRTC component, no peer connection
    at.sidebar.selectbox(key="webcam_detector").select("haar").run()
    assert "runs on the server only" in texts(at.error)


def test_page_defaults_to_the_browser_away_from_localhost_without_turn(workspace_env, monkeypatch):
    from conftest import run_page, texts
    from facecore.live import rtc

    monkeypatch.setattr(rtc, "is_local_host", lambda host: False)
    at = run_page("pages/6_Webcam.py")
    assert at.radio(key="webcam_where").value == BROWSER
    assert "no TURN server is configured" in texts(at.info)
    at.radio(key="webcam_where").set_value(SERVER).run()
    assert "will probably not get through" in texts(at.warning)


# -- in Chromium -------------------------------------------------------------------------------------------
DETECT_JS = """async ([b64, w, h]) => {
    const bin = atob(b64), rgba = new Uint8ClampedArray(w * h * 4);
    for (let i = 0, j = 0; i < w * h; i++, j += 3) {
        rgba[4 * i] = bin.charCodeAt(j); rgba[4 * i + 1] = bin.charCodeAt(j + 1); rgba[4 * i + 2] = bin.charCodeAt(j + 2);
        rgba[4 * i + 3] = 255;
    }
    return (await window.__facetrack.detect(rgba, w, h)).faces;
}"""


def sample_frames() -> list[np.ndarray]:
    """20 RGB frames: 14 sample photos at 640x480, a 16:9 and a portrait crop, a small 160x120 frame (the
    network input is larger: the enlarging path), a 1280x960 one, and two 2x2 mosaics (four faces each)."""
    from facecore.images import read_image

    photos = [cv2.resize(read_image(p), (640, 480), interpolation=cv2.INTER_AREA)
              for p in sorted(SAMPLE.glob("images/*.jpg"))[::5][:18]]
    frames = photos[:14]
    frames.append(np.ascontiguousarray(photos[14][60:420]))  # 640x360
    frames.append(np.ascontiguousarray(photos[15][:, 140:500]))  # 360x480
    frames.append(cv2.resize(photos[16], (160, 120), interpolation=cv2.INTER_AREA))
    frames.append(cv2.resize(photos[17], (1280, 960), interpolation=cv2.INTER_LINEAR))
    for k in (0, 4):
        quarter = [cv2.resize(p, (320, 240), interpolation=cv2.INTER_AREA) for p in photos[k:k + 4]]
        frames.append(np.concatenate([np.concatenate(quarter[:2], 1), np.concatenate(quarter[2:], 1)], 0))
    return frames


def save_trained_blazeface(models: Path) -> str:
    """A BlazeFace detector saved exactly as fine-tuning saves one (MediaPipe's weights, the photo-shaped
    192x256 input, the built-in style in the graph, model.tflite decoding every anchor)."""
    from facecore.blazeface.network import detector_net, network_hw, raw_net
    from facecore.blazeface.builtin import DEFAULT_STYLE, ssd_anchors
    from facecore.train import save_model

    aspect = 4 / 3
    hw = network_hw(192, aspect, "frame")
    net = detector_net(raw_net("full", input_hw=hw), ssd_anchors("full", hw), max(hw),
                       style=DEFAULT_STYLE.scaled(hw[0] / hw[1], 1.0), aspect=aspect, hw=hw)
    meta = {"name": "blaze-photo", "kind": "facetracker", "architecture": "blazeface", "created": "test",
            "config": {"backbone": "blazeface", "input_size": max(hw)}, "frame_aspect": aspect,
            "input_shape": "frame", "network_input_hw": list(hw)}
    save_model(net, models / "blaze-photo", meta, tflite_fixed_batch=True)
    assert (models / "blaze-photo" / "model.tflite").is_file()
    return "blaze-photo"


def app_folders(tmp_path: Path) -> tuple[Path, Path]:
    data, models = tmp_path / "data", tmp_path / "models"
    (data / "workspace").mkdir(parents=True)
    shutil.copytree(SAMPLE, data / "sample")
    shutil.copytree(SAMPLE, data / "workspace" / "mine")
    models.mkdir()
    return data, models


def open_in_browser_mode(page, url: str, choose: bool = True):
    """The Webcam page with the in-browser mode on; returns the component's frame once its model is loaded."""
    page.goto(url + "/Webcam?dataset=mine", wait_until="domcontentloaded")
    page.get_by_text("Run the detector", exact=True).wait_for(timeout=120_000)
    if choose:
        page.get_by_text("in the browser", exact=True).click()
    page.wait_for_selector(IFRAME, timeout=60_000)
    frame = page.locator(IFRAME).element_handle().content_frame()
    frame.wait_for_function("() => window.__facetrack && window.__facetrack.ready", timeout=120_000)
    return frame


def pick_detector(page, frame, name: str, models: Path) -> None:
    """Choose detector ``name`` in the sidebar and wait until the browser runs it."""
    want = browser_detector(name, models).spec()["id"]
    if frame.evaluate("() => window.__facetrack.modelId") != want:
        sidebar = page.locator('[data-testid="stSidebar"]')
        sidebar.locator('[data-testid="stSelectbox"]', has_text="Detector").click()
        page.get_by_role("option", name=name).first.click()
    frame.wait_for_function("([id]) => window.__facetrack.ready && window.__facetrack.modelId === id", arg=[want],
                            timeout=120_000)


def assert_same_faces(py, js, what: str) -> list[float]:
    """Every face at the page's threshold found by both, IoU >= 0.95; a face whose score is within 0.02 of
    the threshold may be on one side only. Returns the IoUs of the faces matched."""
    matched = []
    near = lambda s: abs(s - THRESHOLD) < 0.02  # noqa: E731
    py_boxes = [(d.score, d.box) for d in py if d.score >= THRESHOLD - 0.02]
    js_boxes = [(f["score"], np.asarray(f["box"], np.float32)) for f in js if f["score"] >= THRESHOLD - 0.02]
    for score, box in py_boxes:
        ious = [float(B.iou(box, b)[0]) for _, b in js_boxes]
        if not ious or max(ious) < 0.95:
            assert score < THRESHOLD or near(score), f"{what}: facecore's face {box} ({score:.3f}) not in the browser's {js}"
            continue
        j = int(np.argmax(ious))
        assert abs(js_boxes[j][0] - score) < 0.01, f"{what}: scores {score:.4f} vs {js_boxes[j][0]:.4f}"
        matched.append(ious[j])
        js_boxes.pop(j)
    assert all(s < THRESHOLD or near(s) for s, _ in js_boxes), f"{what}: the browser found more faces: {js_boxes}"
    return matched


@pytest.mark.browser
@pytest.mark.slow
@NO_CHROMIUM
def test_browser_detector_draws_facecores_boxes(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    from facecore.registry import load_detector

    data, models = app_folders(tmp_path)
    trained = save_trained_blazeface(models)
    frames = sample_frames()
    assert len(frames) == 20
    with serve_app(data, models, tmp_path, drop_ice_servers=True) as url, sync_api.sync_playwright() as p:
        chrome = p.chromium.launch(executable_path=str(CHROMIUM), args=BROWSER_ARGS)
        try:
            page = chrome.new_page(viewport={"width": 1280, "height": 1000})
            frame = open_in_browser_mode(page, url)
            found, ious = 0, {}
            for name in ("blazeface", trained):
                pick_detector(page, frame, name, models)
                det = load_detector(name, models)
                for i, rgb in enumerate(frames):
                    js = frame.evaluate(DETECT_JS, [base64.b64encode(rgb.tobytes()).decode(), rgb.shape[1], rgb.shape[0]])
                    py = det.detect(rgb)
                    ious.setdefault(name, []).extend(
                        assert_same_faces(py, js, f"{name}, frame {i} ({rgb.shape[1]}x{rgb.shape[0]})"))
                    found += sum(d.score >= THRESHOLD for d in py)
            assert found >= 40, f"too few faces to compare ({found}): the frames must hold faces"
            print("browser vs facecore, IoU per face: " + ", ".join(
                f"{n}: {len(v)} faces, min {min(v):.4f}, mean {np.mean(v):.4f}" for n, v in ious.items()))
        finally:
            chrome.close()



# -- live, on this machine's own network address, no ICE servers ---------------------------------------------
STRIP = 16  # facecore.testing.stamp: the frame index in 8 blocks along the bottom 16 rows
# In every frame (the component's keeps the window of its first, blank document): the index of each camera
# frame handed to the detector, read from its pixels.
READ_CODES_JS = """(() => {
    window.__codes = {};
    window.__facetrackOnFrame = (frame, seq) => {
        const w = frame.width, y = frame.height - %d / 2, d = frame.data;
        let code = 0;
        for (let b = 0; b < 8; b++) {
            const i = (y * w + Math.floor((b + 0.5) * w / 8)) * 4;
            code = code * 2 + ((d[i] + d[i + 1] + d[i + 2]) / 3 > 128 ? 1 : 0);
        }
        window.__codes[seq] = code;
    };
})()""" % STRIP


def own_address() -> str | None:
    """This machine's own non-loopback IPv4 address (nothing is sent: a UDP socket only picks a route)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))
            addr = s.getsockname()[0]
        except OSError:
            return None
    return None if addr.startswith("127.") else addr


def camera_clip(path: Path, photos: int = 8, hold: int = 30):
    """A 640x480, 30 fps fake-camera clip of sample photos, each held ``hold`` frames, stamped with its index."""
    from facecore.images import read_image

    frames = []
    for p in sorted(SAMPLE.glob("images/*.jpg"))[::7][:photos]:
        rgb = cv2.resize(read_image(p), (640, 480), interpolation=cv2.INTER_AREA)
        base = len(frames)
        frames.extend([stamp(rgb, base + k) for k in range(hold)])
    return write_y4m(path, frames, fps=30), frames


# The drawn canvas and the camera's own frame at one moment, as PNG data URLs, and the boxes shown.
GRAB_JS = """() => {
    const v = document.getElementById('video'), c = document.createElement('canvas');
    c.width = v.videoWidth; c.height = v.videoHeight;
    c.getContext('2d').drawImage(v, 0, 0);
    const log = window.__facetrack.log;
    return [document.getElementById('view').toDataURL('image/png'), c.toDataURL('image/png'), log[log.length - 1].shown];
}"""


def png(url: str) -> np.ndarray:
    raw = np.frombuffer(base64.b64decode(url.split(",", 1)[1]), np.uint8)
    return cv2.cvtColor(cv2.imdecode(raw, cv2.IMREAD_COLOR), cv2.COLOR_BGR2GRAY)


def sharpness_inside(gray: np.ndarray, box, keep: float = 0.6) -> float:
    """Laplacian variance of the central ``keep`` share of a normalized box."""
    h, w = gray.shape
    cx, cy, bw, bh = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2, (box[2] - box[0]) * keep, (box[3] - box[1]) * keep
    x1, y1, x2, y2 = int((cx - bw / 2) * w), int((cy - bh / 2) * h), int((cx + bw / 2) * w), int((cy + bh / 2) * h)
    return float(cv2.Laplacian(gray[y1:y2, x1:x2], cv2.CV_64F).var())


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.browser
@pytest.mark.slow
@NO_CHROMIUM
def test_in_browser_webcam_away_from_localhost(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    from facecore.registry import load_detector

    address = own_address()
    if address is None:
        pytest.skip("this machine has no non-loopback address to serve the app on")
    data, models = app_folders(tmp_path)
    clip, frames = camera_clip(tmp_path / "camera.y4m")
    # the camera frames as Chromium decodes them pass through 4:2:0 YUV, as the clip does
    seen = [cv2.cvtColor(cv2.cvtColor(f, cv2.COLOR_RGB2YUV_I420), cv2.COLOR_YUV2RGB_I420) for f in frames]
    det = load_detector("blazeface", models)
    with serve_app(data, models, tmp_path, drop_ice_servers=True, address=address, with_process=True) as (url, proc):
        # a camera needs a secure page: http://<address> stands for the https:// address a deployed app has
        args = [*BROWSER_ARGS, "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-video-capture={clip}", f"--unsafely-treat-insecure-origin-as-secure={url}"]
        with sync_api.sync_playwright() as p:
            chrome = p.chromium.launch(executable_path=str(CHROMIUM), args=args)
            try:
                page = chrome.new_page(viewport={"width": 1280, "height": 1000})
                page.add_init_script(KEEP_PEER_CONNECTIONS_JS)
                page.add_init_script(READ_CODES_JS)
                frame = open_in_browser_mode(page, url, choose=False)  # the default away from localhost
                page.get_by_text("no TURN server is configured").first.wait_for(timeout=10_000)
                pick_detector(page, frame, "blazeface", models)
                frame.locator("#start").click()
                frame.wait_for_function("() => window.__facetrack.stats && window.__facetrack.stats.detectFps > 0",
                                        timeout=60_000)
                time.sleep(4)  # past the start
                cpu0, t0, log0 = cpu_seconds(proc.pid), time.monotonic(), len(frame.evaluate("() => window.__facetrack.log"))
                fps = []
                for _ in range(10):
                    time.sleep(1)
                    fps.append(frame.evaluate("() => window.__facetrack.stats.fps"))
                server_share = (cpu_seconds(proc.pid) - cpu0) / (time.monotonic() - t0)
                stats = frame.evaluate("() => window.__facetrack.stats")
                log = frame.evaluate("() => window.__facetrack.log")
                codes = frame.evaluate("() => window.__codes")
                pcs = [f.evaluate("() => (window.__pcs || []).length") for f in page.frames]
                text = frame.locator("#stats").inner_text()

                # a snapshot goes to the active dataset, and only then does a frame reach the server
                before = set((data / "workspace" / "mine" / "images").iterdir())
                frame.locator("#snapshot").click()
                page.get_by_text("Saved snapshot").wait_for(timeout=30_000)
                added = set((data / "workspace" / "mine" / "images").iterdir()) - before

                # Box -> Blur in the sidebar: the component's next frames blur the faces
                page.locator('[data-testid="stSidebar"]').get_by_text("Blur", exact=True).click()
                time.sleep(2)
                ratios = []
                for _ in range(5):
                    drawn, camera, shown = frame.evaluate(GRAB_JS)
                    if shown:
                        ratios.append(sharpness_inside(png(drawn), shown[0]) / max(sharpness_inside(png(camera), shown[0]), 1e-6))
                    time.sleep(0.3)
            finally:
                chrome.close()
    print(f"in-browser: drawn fps {np.median(fps):.1f} (min {min(fps):.1f}), detections/s {stats['detectFps']:.1f}, "
          f"model {stats['latencyMs']:.0f} ms, server {100 * server_share:.1f} % of a core")
    assert sum(pcs) == 0, "a WebRTC peer connection was made"
    assert np.median(fps) >= MIN_FPS, f"drawn fps {fps} (camera {stats['cameraFps']:.1f})"
    assert server_share <= 0.05, f"the server used {100 * server_share:.1f} % of a core while the browser detected"
    assert "Face found" in text and "Delivered FPS" in text and "Model latency" in text
    # every detection on a camera frame: the faces facecore finds on that clip frame
    checked, ious = 0, []
    for entry in log[log0 - 1:]:
        code = codes.get(str(entry["seq"]))
        if code is None or code >= len(frames):
            continue
        py = [d for d in det.detect(seen[code]) if d.score >= THRESHOLD]
        js = [f for f in entry["faces"] if f["score"] >= THRESHOLD]
        assert len(js) == len(py), f"frame {code}: facecore {py}, browser {js}"
        for d, f in zip(py, js):
            ious.append(float(B.iou(d.box, np.asarray(f["box"], np.float32))[0]))
        checked += 1
    assert checked >= 20, f"only {checked} detections could be matched to clip frames"
    assert min(ious) >= 0.9, f"IoU with facecore on the camera's frames: min {min(ious):.3f}"
    assert len(added) == 1 and next(iter(added)).name.startswith("webcam_")
    assert ratios and np.median(ratios) < 0.25, f"the face is not blurred: Laplacian variance ratios {ratios}"
    print(f"camera frames: {checked} detections, IoU with facecore min {min(ious):.4f}, mean {np.mean(ious):.4f}")
