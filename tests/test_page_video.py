"""AppTest of pages/5_Video.py: upload, settings, processing, result widgets, bad uploads."""

import av
import pytest
from streamlit.testing.v1 import AppTest

from conftest import ROOT
from test_video import make_video

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
    assert at.selectbox(key="video_detector").value == "haar"
    at.radio(key="video_mode").set_value("every few seconds (faster)").run()
    at.number_input(key="video_every").set_value(0.5)
    at.toggle(key="video_blur").set_value(True)
    at.slider(key="video_threshold").set_value(0.4)
    at.button(key="video_start").click().run()
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


def test_bad_upload_shows_a_clear_error(workspace_env):
    at = _upload(_page(), "holiday.mp4", b"definitely not a video" * 100)
    assert "not a readable video" in at.error[0].value
    assert len(at.metric) == 0 and not at.get("plotly_chart") and not at.button


def test_upload_over_the_limit_is_refused(workspace_env, monkeypatch, clip_bytes):
    monkeypatch.setenv("FACETRACK_MAX_VIDEO_MB", "1")
    at = _upload(_page(), "big.mp4", clip_bytes + b"\x00" * 2**20)
    assert "over the 1 MB limit" in at.error[0].value
