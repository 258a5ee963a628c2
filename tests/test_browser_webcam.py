"""End to end in a real browser: headless Chromium with a fake camera playing a clip of the sample
photos, the app served by ``streamlit run``, WebRTC between them over loopback (no STUN/TURN).

The test presses Start on the Webcam page, waits until the live stats (fed by the server-side video
callback through its queue) report a face, checks the processed video plays in the page, then stops
the stream and the server.
"""

import os
import shutil
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import BROWSER_ARGS, CHROMIUM, SAMPLE, chromium_or_skip, serve_app

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium "
                                                                "(apt-get install chromium)")]

CLIP_W, CLIP_H, CLIP_FPS = 320, 240, 15


def write_y4m(path: Path, frames: list[np.ndarray], fps: int = CLIP_FPS) -> Path:
    """RGB frames (H, W, 3) -> an uncompressed YUV4MPEG2 (4:2:0) clip, Chromium's fake-camera format."""
    h, w = frames[0].shape[:2]
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for rgb in frames:
            f.write(b"FRAME\n")
            f.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420).tobytes())
    return path


def face_clip(path: Path, n_images: int = 6, repeat: int = 5) -> tuple[Path, list[np.ndarray]]:
    """A clip of sample photos in which Haar finds a face at the clip's size (so the test can rely
    on a detection), each held for ``repeat`` frames."""
    from facecore.detect import HaarDetector
    from facecore.io import read_image

    haar = HaarDetector(max_width=CLIP_W)
    chosen = []
    for p in sorted(SAMPLE.glob("images/*.jpg")):
        rgb = cv2.resize(read_image(p), (CLIP_W, CLIP_H), interpolation=cv2.INTER_AREA)
        if any(d.score >= 0.5 for d in haar.detect(rgb)):
            chosen.append(rgb)
        if len(chosen) == n_images:
            break
    assert chosen, "Haar finds no face in the sample photos at the clip size"
    return write_y4m(path, [f for f in chosen for _ in range(repeat)]), chosen


@pytest.fixture
def app_server(tmp_path):
    data, models = tmp_path / "data", tmp_path / "models"
    (data / "workspace").mkdir(parents=True)
    shutil.copytree(SAMPLE, data / "sample")
    models.mkdir()
    with serve_app(data, models, tmp_path, drop_ice_servers=True) as url:
        yield url, tmp_path / "streamlit.log"


def test_webcam_detects_a_face_in_a_real_browser(app_server, tmp_path):
    playwright = chromium_or_skip()
    url, log_path = app_server
    clip, face_frames = face_clip(tmp_path / "faces.y4m")
    args = [*BROWSER_ARGS, "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-video-capture={clip}"]
    shots = Path(os.environ.get("FACETRACK_TEST_SHOTS", tmp_path))

    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=args)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(url + "/Webcam", wait_until="domcontentloaded")
            page.get_by_text("Live stats").wait_for(timeout=60_000)
            component = page.frame_locator('iframe[title*="webrtc"]')
            start = component.get_by_role("button", name="Start")
            start.wait_for(timeout=60_000)

            def face_found(timeout_ms: int) -> bool:
                try:
                    page.get_by_text("Face found").first.wait_for(timeout=timeout_ms)
                    return True
                except playwright.TimeoutError:
                    return False

            start.click()
            if not face_found(45_000):  # first connection slow (model warm-up, ICE): retry once
                page.screenshot(path=str(shots / "webcam_retry.png"))
                stop = component.get_by_role("button", name="Stop")
                if stop.count():
                    stop.click()
                start.wait_for(timeout=20_000)
                start.click()
                assert face_found(45_000), ("no face reported by the live stats; server log:\n"
                                            + log_path.read_text(errors="replace")[-3000:])

            # Frames were processed on the server...
            prob = page.locator('[data-testid="stMetric"]', has_text="Face probability")
            value = float(prob.locator('[data-testid="stMetricValue"]').inner_text())
            assert 0.5 <= value <= 1.0
            caption = page.get_by_text("frames processed").first
            end = time.time() + 30
            while int(caption.inner_text().split()[0]) < 5 and time.time() < end:
                time.sleep(0.5)
            assert int(caption.inner_text().split()[0]) >= 5, caption.inner_text()
            # ...and came back to the browser: the fps/latency bar (black, top left) is on the video,
            # where the camera clip itself is bright.
            video = component.locator("video")
            bar = video.evaluate("""v => {
                const c = document.createElement('canvas');
                c.width = v.videoWidth; c.height = v.videoHeight;
                const g = c.getContext('2d'); g.drawImage(v, 0, 0);
                const d = g.getImageData(2, 2, 60, 8).data; let s = 0;
                for (let i = 0; i < d.length; i += 4) s += (d[i] + d[i + 1] + d[i + 2]) / 3;
                return {w: v.videoWidth, mean: s / (d.length / 4)};
            }""")
            assert bar["w"] > 0, "the video does not play in the page"
            clip_top_left = float(np.mean(cv2.cvtColor(face_frames[0], cv2.COLOR_RGB2GRAY)[2:10, 2:62]))
            assert bar["mean"] < 60 < clip_top_left, (bar, clip_top_left)
            page.screenshot(path=str(shots / "webcam_playing.png"))

            # Settings reach the running callback: at threshold 1.0 no box is shown any more.
            page.locator('[data-testid="stSlider"]', has_text="Threshold").get_by_role("slider").focus()
            page.keyboard.press("End")
            page.get_by_text("No face", exact=False).first.wait_for(timeout=30_000)

            component.get_by_role("button", name="Stop").click()
            page.get_by_text("Stream stopped").wait_for(timeout=30_000)
            assert component.get_by_role("button", name="Start").is_visible()
            assert page.get_by_text("Face probability").count()  # the last stats stay on show
        finally:
            browser.close()
