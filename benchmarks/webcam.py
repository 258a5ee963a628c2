"""Webcam benchmark: frames per second the WebRTC callback sustains, per detector.

Frames are ``av.VideoFrame``s made from data/sample photos (640x480 by default) and go through the
same ``LiveProcessor`` the Webcam page hands to streamlit-webrtc (decode to RGB, detect, smooth,
draw, overlay, encode back). Two measurements per detector:

- **callback**: frames back to back through ``video_frame_callback``: the most the callback can do.
- **live 30 fps**: a 30 fps camera feeding streamlit-webrtc's own async track
  (``AsyncVideoProcessTrack`` + ``queued_video_frames_callback``) for a few seconds: frames shown
  per second, the share of stale frames skipped, and how old a frame is when the model sees it
  (stays about one model call when stale frames are dropped).

Trained detectors are built with random weights (``weights=None``; speed does not depend on them),
exported to TFLite and loaded by ``facecore.registry.load_facetracker``, the path the app uses.

    python benchmarks/webcam.py                      # haar, blazeface, mobilenetv2
    python benchmarks/webcam.py --detectors haar mobilenetv2 --seconds 5 --size 1280x720
    python benchmarks/webcam.py --browser --seconds 20            # end to end, the machine as it is
    python benchmarks/webcam.py --browser --seconds 20 --hogs 1   # ... with a CPU hog beside it

``--browser``: starts the app with ``streamlit run``, opens the Webcam page in headless Chromium
(/usr/bin/chromium, the fake-camera clip of facecore.testing.face_clip, 320x240 at 15 fps), starts
the stream and switches through the detectors, printing for each the delivered fps and model latency
the page shows, the fps the browser decodes (getStats), the lighter path taken, and the server's
resident memory (RSS) while streaming: what a host such as Streamlit Community Cloud must allow.
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import os
import re
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]

import av  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402

from facecore.live import rtc  # noqa: E402
from facecore.registry import load_detector, load_facetracker  # noqa: E402
from facecore.images import read_image  # noqa: E402
from facecore.live.processor import LiveProcessor, LiveSettings  # noqa: E402

TIME_BASE = fractions.Fraction(1, 90000)
rtc.preload_srtp()  # aiortc after TensorFlow would crash otherwise


def sample_frames(width: int, height: int, n: int = 30) -> list[np.ndarray]:
    paths = sorted((ROOT / "data" / "sample" / "images").glob("*.jpg"))[:n]
    if not paths:
        raise SystemExit("no images in data/sample/images")
    return [cv2.resize(read_image(p), (width, height), interpolation=cv2.INTER_AREA) for p in paths]


def to_video_frame(rgb: np.ndarray, i: int) -> av.VideoFrame:
    f = av.VideoFrame.from_ndarray(rgb, format="rgb24")
    f.pts, f.time_base = i * 3000, TIME_BASE
    return f


def save_random_model(backbone: str, models_root: Path, input_size: int | None) -> Path:
    """A random-weight model of ``backbone`` saved as training saves one (model.keras, model.tflite, meta.json);
    ``blazeface-finetuned``: BlazeFace saved as fine-tuning saves it (MediaPipe's weights: timing and memory
    do not depend on training)."""
    from facecore.facetracker.model import build_model
    from facecore.train import save_model

    if backbone == "blazeface-finetuned":
        from facecore.blazeface.network import detector_net, raw_net
        from facecore.blazeface.builtin import ssd_anchors

        meta = {"name": backbone, "kind": "facetracker", "architecture": "blazeface", "created": "benchmark",
                "config": {"backbone": "blazeface", "input_size": 192}}
        return save_model(detector_net(raw_net("full"), ssd_anchors("full"), 192), models_root / backbone, meta,
                          tflite_fixed_batch=True)

    net = build_model(backbone, input_size=input_size, weights=None)
    size = int(net.inputs[0].shape[1])
    meta = {"name": backbone, "kind": "facetracker", "created": "benchmark",
            "config": {"backbone": backbone, "input_size": size}}
    return save_model(net, models_root / backbone, meta)


def trained_detector(backbone: str, workdir: Path, input_size: int | None):
    """A random-weight model of ``backbone``, loaded as the app does."""
    det = load_facetracker(save_random_model(backbone, workdir, input_size))
    return det, f"{backbone} {det.input_size}px {det.backend}"


def bench_callback(proc: LiveProcessor, frames: list[av.VideoFrame], seconds: float) -> dict:
    for f in frames[:5]:  # warm-up
        proc(f)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        proc(frames[n % len(frames)])
        n += 1
    wall = time.perf_counter() - t0
    stats = proc.drain_stats()
    return {"fps": n / wall, "latency_ms": stats[-1].latency_ms if stats else float("nan"),
            "face": np.mean([s.faces > 0 for s in stats[-n:]]) if stats else 0.0}


def bench_live(proc: LiveProcessor, rgb_frames: list[np.ndarray], seconds: float, fps: float = 30.0) -> dict:
    """A camera at ``fps`` through streamlit-webrtc's async processing track."""
    from aiortc import MediaStreamTrack
    from streamlit_webrtc.models import CallbackAttachableProcessor
    from streamlit_webrtc.process import AsyncVideoProcessTrack

    created: dict[int, float] = {}
    ages: list[float] = []

    class Camera(MediaStreamTrack):
        kind = "video"

        def __init__(self):
            super().__init__()
            self.i, self.start = 0, None

        async def recv(self):
            if self.start is None:
                self.start = time.monotonic()
            self.i += 1
            await asyncio.sleep(max(0.0, self.start + self.i / fps - time.monotonic()))
            created[self.i] = time.monotonic()
            return to_video_frame(rgb_frames[self.i % len(rgb_frames)], self.i)

    class Probe:
        """Records how old each frame is when the processor takes it."""

        def __init__(self, inner):
            self.inner = inner

        def __call__(self, frame, arrived: int = 1):
            ages.append(time.monotonic() - created[frame.pts // 3000])
            return self.inner(frame, arrived)

        async def process_queued(self, frames):
            return [self(frames[-1], len(frames))]

    proc.reset_stream()
    probe = Probe(proc)
    track = AsyncVideoProcessTrack(Camera(), CallbackAttachableProcessor(probe, probe.process_queued, None),
                                   stop_timeout=5)
    n_in = int(seconds * fps)

    async def consume():
        for _ in range(n_in):
            await track.recv()

    t0 = time.perf_counter()
    asyncio.run(consume())
    wall = time.perf_counter() - t0
    track.stop()
    return {"shown_fps": len(ages) / wall, "dropped": proc.dropped / max(1, n_in),
            "age_ms_p50": 1000 * float(np.median(ages)) if ages else float("nan"),
            "age_ms_max": 1000 * float(np.max(ages[2:] or ages)) if ages else float("nan")}


def server_pid(port: int) -> int:
    """The pid of the `streamlit run` serving ``port`` (facecore.testing.serve_app does not expose it)."""
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmd = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"streamlit" in b" ".join(cmd) and str(port).encode() in cmd:
                return int(proc.name)
    raise SystemExit(f"no streamlit server on port {port}")


def browser_run(detectors: list[str], seconds: float, hogs: int, input_size: int | None) -> None:
    """End to end in headless Chromium, as tests/test_browser_webcam.py: per detector, the delivered fps
    and model latency the page shows (medians of its 1 s refreshes), the frames per second the browser
    decodes (its getStats), the lighter path if one was taken, and the server's memory while streaming.
    ``hogs`` busy processes run beside it (0: the machine as it is)."""
    import shutil
    import subprocess
    import urllib.parse

    from playwright.sync_api import sync_playwright

    from facecore.testing import (BROWSER_ARGS, CHROMIUM, COUNT_DECODED_JS, KEEP_PEER_CONNECTIONS_JS, decoded_rate,
                                  face_clip, rss_mb, serve_app)

    if not CHROMIUM.exists():
        raise SystemExit(f"--browser needs {CHROMIUM}")
    code = "import time\nend = time.time() + 3600\nwhile time.time() < end:\n    pass\n"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data, models = tmp / "data", tmp / "models"
        (data / "workspace").mkdir(parents=True)
        shutil.copytree(ROOT / "data" / "sample", data / "sample")
        models.mkdir()
        for name in detectors:
            if name not in ("haar", "blazeface"):
                save_random_model(name, models, input_size)
        clip, _, _ = face_clip(tmp / "faces.y4m")
        hog_procs = []
        try:
            with serve_app(data, models, tmp, drop_ice_servers=True) as url, sync_playwright() as p:
                pid = server_pid(urllib.parse.urlsplit(url).port)
                print(f"server started: {rss_mb(pid)[0]:.0f} MiB; {os.cpu_count()} CPUs, load average "
                      f"{os.getloadavg()[0]:.1f}, {hogs} CPU hog(s) added", flush=True)
                hog_procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(hogs)]
                args = [*BROWSER_ARGS, "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                        f"--use-file-for-fake-video-capture={clip}"]
                browser = p.chromium.launch(executable_path=str(CHROMIUM), args=args)
                page = browser.new_page(viewport={"width": 1280, "height": 1000})
                page.add_init_script(KEEP_PEER_CONNECTIONS_JS)
                page.goto(url + "/Webcam")
                page.get_by_text("Live stats").wait_for(timeout=120_000)
                sidebar = page.locator('[data-testid="stSidebar"]')
                page.locator(".st-key-webcam_start").get_by_role("button", name="Start").click()
                fps_metric = page.locator('[data-testid="stMetric"]', has_text="Delivered FPS")
                fps_metric.wait_for(timeout=120_000)
                page.locator('iframe[title*="webrtc"]').element_handle().content_frame().evaluate(COUNT_DECODED_JS)
                frame = page.locator('iframe[title*="webrtc"]').element_handle().content_frame()
                print(f"{'detector':<14} {'page fps':>8} {'decoded fps':>11} {'latency ms':>10} {'camera fps':>10} "
                      f"{'server MiB':>10}  lighter path", flush=True)
                for name in detectors:
                    sidebar.locator('[data-testid="stSelectbox"]', has_text="Detector").click()
                    # options carry markers ("blazeface (built in, default)"): match the name at the start
                    page.get_by_role("option", name=re.compile(rf"^{re.escape(name)}(\s|$)")).first.click()
                    page.get_by_text(f"| {name}").first.wait_for(timeout=120_000)
                    time.sleep(5)  # the window of the figures holds only this detector's frames
                    t0, figures, lat, cam, light, peak = time.time(), [], [], [], set(), 0.0
                    while time.time() - t0 < seconds:
                        time.sleep(1)
                        figures.append(float(fps_metric.locator('[data-testid="stMetricValue"]').inner_text()))
                        lat.append(float(page.locator('[data-testid="stMetric"]', has_text="Model latency")
                                         .locator('[data-testid="stMetricValue"]').inner_text().split()[0]))
                        caption = page.get_by_text("the camera sends").first.inner_text()
                        cam.append(float(caption.split("the camera sends")[1].split()[0]))
                        if page.get_by_text("Lighter path:").count():
                            light.add(page.get_by_text("Lighter path:").first.inner_text().split(",")[0][14:])
                        peak = max(peak, rss_mb(pid)[0])
                    decoded = decoded_rate(frame.evaluate("window.__decoded"), t0, time.time())
                    print(f"{name:<14} {np.median(figures):>8.1f} {decoded:>11.1f} {np.median(lat):>10.0f} "
                          f"{np.median(cam):>10.1f} {peak:>10.0f}  {'; '.join(sorted(light)) or '-'}", flush=True)
                print(f"load average at the end: {os.getloadavg()[0]:.1f}; peak server memory "
                      f"{rss_mb(pid)[1]:.0f} MiB")
                browser.close()
        finally:
            for h in hog_procs:
                h.kill()
                h.wait()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--detectors", nargs="+", default=["haar", "blazeface", "mobilenetv2"])
    ap.add_argument("--seconds", type=float, default=4.0, help="per measurement")
    ap.add_argument("--size", default="640x480", help="camera frame size WxH")
    ap.add_argument("--input-size", type=int, default=None, help="model input size (default: the backbone's)")
    ap.add_argument("--smoothing", type=float, default=0.6)
    ap.add_argument("--browser", action="store_true",
                    help="end to end through `streamlit run` and headless Chromium (see browser_run)")
    ap.add_argument("--hogs", type=int, default=0, help="with --browser: busy processes to run beside it")
    args = ap.parse_args(argv)
    if args.browser:
        browser_run(args.detectors, args.seconds, args.hogs, args.input_size)
        return 0
    w, h = (int(v) for v in args.size.lower().split("x"))
    rgb = sample_frames(w, h)
    frames = [to_video_frame(f, i) for i, f in enumerate(rgb)]
    print(f"{os.cpu_count()} CPUs, frames {w}x{h}, {args.seconds:.0f} s per measurement")
    header = (f"{'detector':<32} {'callback fps':>12} {'model ms':>9} {'faces':>6} | "
              f"{'live fps':>8} {'dropped':>8} {'age p50':>8} {'age max':>8}")
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.detectors:
            if name in ("haar", "blazeface"):  # built in
                det, label = load_detector(name, Path(tmp)), name
            else:
                det, label = trained_detector(name, Path(tmp), args.input_size)
            proc = LiveProcessor(det, LiveSettings(threshold=0.5, smoothing=args.smoothing))
            cb = bench_callback(proc, frames, args.seconds)
            live = bench_live(proc, rgb, args.seconds)
            print(f"{label:<32} {cb['fps']:>12.1f} {cb['latency_ms']:>9.1f} {cb['face']:>6.0%} | "
                  f"{live['shown_fps']:>8.1f} {live['dropped']:>8.0%} {live['age_ms_p50']:>6.0f}ms "
                  f"{live['age_ms_max']:>6.0f}ms", flush=True)
    print("callback fps: frames back to back through video_frame_callback (decode, detect, draw, encode).\n"
          "live: a 30 fps camera through streamlit-webrtc's async track; age = how old a frame is when "
          "the model starts on it.\nfaces: share of frames with a box at threshold 0.5 (random weights "
          "for trained backbones, so only Haar's figure means anything).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
