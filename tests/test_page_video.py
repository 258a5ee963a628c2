"""AppTest of pages/5_Video.py: upload, settings, processing, result widgets, bad uploads."""

import av
import pytest
from streamlit.testing.v1 import AppTest

from conftest import ROOT, chromium_or_skip

from facecore.testing import BROWSER_ARGS, CHROMIUM, serve_app
from test_video import make_video
from facecore.detect import DEFAULT_DETECTOR

PAGE = str(ROOT / "pages" / "5_Video.py")


@pytest.fixture(scope="module")
def clip_bytes(tmp_path_factory):
    return make_video(tmp_path_factory.mktemp("page") / "walk.mp4", n=12, size=(160, 120), fps=6,
                      audio="aac").read_bytes()


def _page():
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    return at


def _upload(at, name, data, mime="video/mp4"):
    at.file_uploader[0].set_value((name, data, mime))
    at.run()
    assert not at.exception, at.exception
    return at


def test_page_without_upload_explains_what_to_do(workspace_env):
    at = _page()
    assert "Upload a video to start" in at.info[0].value
    assert set(at.file_uploader[0].allowed_type) >= {".mp4", ".mov", ".avi", ".webm", ".mkv"}
    assert at.sidebar.selectbox[0].value == "sample"


def test_upload_process_play_chart_and_download(workspace_env, clip_bytes):
    at = _upload(_page(), "walk.mp4", clip_bytes)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Duration"] == "0:02.0" and metrics["Frame rate (fps)"] == "6"
    assert metrics["Resolution"] == "160x120" and metrics["Audio"] == "aac"
    assert at.selectbox(key="video_detector").value == DEFAULT_DETECTOR  # no trained model yet
    at.selectbox(key="video_detector").select("haar").run()
    at.radio(key="video_mode").set_value("every few seconds (faster)").run()
    at.number_input(key="video_every").set_value(0.5)
    at.toggle(key="video_blur").set_value(True)
    at.slider(key="video_threshold").set_value(0.4)
    at.button(key="video_start").click().run()
    assert not at.exception, at.exception
    assert at.session_state["video_job"].wait(120).status == "done"  # processing runs in the background
    at.run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    result = at.session_state["video_result"]
    assert result.frames == 12 and result.config.blur and result.config.every == 0.5
    assert sum(r.sampled for r in result.records) == 4 and result.config.threshold == 0.4
    with av.open(str(result.output)) as c:
        assert sum(1 for _ in c.decode(video=0)) == 12 and c.streams.audio
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Frames"] == "12" and metrics["Audio"] == "kept"
    assert any("every 0.5 s, blurred" in c.value for c in at.caption)
    labels = [b.proto.label for b in at.get("download_button")]
    assert labels == ["Download video (MP4)", "Detections (CSV)", "Detections (JSON)"]
    assert len(at.get("plotly_chart")) == 1 and len(at.get("video")) == 1
    assert [b.label for b in at.button] == ["Process video"]  # Cancel is gone once done
    assert len(at.get("image")) == len(result.gallery) >= 3  # the gallery
    # A rerun (any widget) keeps the result on screen without processing again.
    at.slider(key="video_threshold").set_value(0.7).run()
    assert at.session_state["video_result"] is result and len(at.get("video")) == 1


def test_settings_start_at_videoconfigs_defaults(workspace_env, clip_bytes):
    """The page has no defaults of its own: each setting starts at VideoConfig's (facecore and the CLI's)."""
    from facecore.video import VideoConfig

    at = _upload(_page(), "walk.mp4", clip_bytes)
    d = VideoConfig()
    assert at.slider(key="video_threshold").value == d.threshold and at.toggle(key="video_blur").value == d.blur
    assert at.radio(key="video_mode").value == "on every frame" and d.every == 0
    assert at.slider(key="video_smooth").value == d.smooth
    assert at.number_input(key="video_batch").value == d.batch_size and at.slider(key="video_crf").value == d.crf
    assert at.checkbox(key="video_truncated").value == d.allow_truncated


@pytest.mark.slow
def test_detector_defaults_to_the_newest_trained_model(workspace_env, clip_bytes):
    import json

    from test_inference import save_model_dir

    _, models = workspace_env
    for name, created in (("older", "2026-01-01T00:00:00"), ("newer", "2026-02-01T00:00:00")):
        folder = save_model_dir(models / name, name=name)
        meta = json.loads((folder / "meta.json").read_text())
        (folder / "meta.json").write_text(json.dumps({**meta, "created": created}))
    at = _upload(_page(), "walk.mp4", clip_bytes)
    assert at.selectbox(key="video_detector").value == "newer"


def test_bad_upload_shows_a_clear_error(workspace_env):
    at = _upload(_page(), "holiday.mp4", b"definitely not a video" * 100)
    assert "not a readable video" in at.error[0].value
    assert len(at.metric) == 0 and not at.get("plotly_chart") and not at.button


def test_upload_over_the_limit_is_refused(workspace_env, monkeypatch, clip_bytes):
    monkeypatch.setenv("FACETRACK_MAX_VIDEO_MB", "1")
    at = _upload(_page(), "big.mp4", clip_bytes + b"\x00" * 2**20)
    assert "over the 1 MB limit" in at.error[0].value


# ---------------------------------------------------------------- real browser

@pytest.fixture
def app_url(workspace_env, tmp_path):
    """``streamlit run`` on a free port with the temporary data/models folders."""
    data, models = workspace_env
    with serve_app(data, models, tmp_path) as url:
        yield url


@pytest.mark.browser
def test_browser_cancel_then_process_and_play(app_url, tmp_path):
    """Cancel stops the background job; the finished H.264 plays in Chromium with the boxes drawn in it."""
    chromium_or_skip()
    from playwright.sync_api import sync_playwright

    long_clip = make_video(tmp_path / "long.mp4", n=400, size=(320, 240), fps=20)
    short_clip = make_video(tmp_path / "short.mp4", n=16, size=(320, 240), fps=8, audio="aac")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=BROWSER_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1600})
            page.goto(app_url + "/Video", wait_until="domcontentloaded")
            page.get_by_text("Upload a video to start").wait_for(timeout=60_000)

            page.set_input_files("input[type=file]", str(long_clip))
            page.get_by_text("Resolution").wait_for(timeout=60_000)
            page.get_by_role("button", name="Process video").click()
            page.get_by_text("frames ·").first.wait_for(timeout=60_000)  # the progress bar's text
            page.get_by_role("button", name="Cancel").click()
            page.get_by_text("Processing stopped before the end").wait_for(timeout=60_000)
            assert page.locator("video").count() == 0

            page.set_input_files("input[type=file]", str(short_clip))
            page.get_by_text("~16").wait_for(timeout=60_000)
            page.get_by_role("button", name="Process video").click()
            page.locator("video").wait_for(timeout=120_000)
            state = page.locator("video").evaluate("""async v => {
                for (let i = 0; i < 100 && v.readyState < 2; i++) await new Promise(r => setTimeout(r, 100));
                v.currentTime = 1.0;
                // a loaded machine can take seconds to seek and decode the frame
                for (let i = 0; i < 300 && (v.seeking || v.readyState < 2); i++) await new Promise(r => setTimeout(r, 100));
                const c = document.createElement('canvas');
                c.width = v.videoWidth; c.height = v.videoHeight;
                const g = c.getContext('2d'); g.drawImage(v, 0, 0);
                const d = g.getImageData(0, 0, c.width, c.height).data; let red = 0;
                for (let i = 0; i < d.length; i += 4) if (d[i] > 170 && d[i + 1] < 70 && d[i + 2] < 70) red++;
                return {ready: v.readyState, w: v.videoWidth, h: v.videoHeight, duration: v.duration,
                        error: v.error && v.error.code, red};
            }""")
            assert state["error"] is None and state["ready"] >= 2, state
            assert (state["w"], state["h"]) == (320, 240) and abs(state["duration"] - 2.0) < 0.2, state
            assert state["red"] > 200, state  # a face box and its label bar (the photo alone has < 40 such pixels)
            assert page.get_by_role("button", name="Download video (MP4)").is_visible()
            page.screenshot(path=str(tmp_path / "video_result.png"), full_page=True)
        finally:
            browser.close()
