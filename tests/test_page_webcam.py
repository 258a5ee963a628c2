"""AppTest for pages/6_Webcam.py. The WebRTC component itself only runs in a browser
(tests/test_browser_webcam.py); here the page around it must work and feed the processor."""

import json
import time

import pytest

from conftest import run_page, texts as _texts, SAMPLE
from facecore.registry import detector_names
from facecore.images import read_image
from facecore.live.processor import overlay_text


def _run():
    return run_page("pages/6_Webcam.py")


def test_page_renders_without_the_component(workspace_env):
    at = _run()
    assert at.title[0].value.endswith("Webcam")
    _, models = workspace_env
    assert at.sidebar.selectbox(key="webcam_detector").value == detector_names(models)[0]  # the default
    assert "Press **Start**" in _texts(at.info)
    assert at.button(key="webcam_start").label == "Start"
    assert "Direct connection only" in _texts(at.caption)
    assert "Camera not working?" in [e.label for e in at.expander]
    assert "Permission" in _texts(at.markdown)


def test_settings_start_at_livesettings_defaults(workspace_env):
    """The page has no defaults of its own: the widgets start at LiveSettings' and so does the processor."""
    from facecore.live.processor import LiveSettings

    at = _run()
    d = LiveSettings()
    assert at.sidebar.slider(key="webcam_threshold").value == d.threshold
    assert (at.sidebar.radio(key="webcam_mode").value == "Blur") == d.blur
    assert at.sidebar.slider(key="webcam_smoothing").value == d.smoothing
    assert at.sidebar.checkbox(key="webcam_overlay").value == d.overlay
    assert at.session_state["webcam_processor"].settings == d


def test_controls_reach_the_processor(workspace_env):
    at = _run()
    proc = at.session_state["webcam_processor"]
    assert proc.detector_name == at.sidebar.selectbox(key="webcam_detector").value
    at.sidebar.slider(key="webcam_threshold").set_value(0.8)
    at.sidebar.radio(key="webcam_mode").set_value("Blur")
    at.sidebar.slider(key="webcam_smoothing").set_value(0.0)
    at.sidebar.checkbox(key="webcam_overlay").uncheck()
    at.run()
    assert not at.exception
    s = at.session_state["webcam_processor"].settings
    assert (s.threshold, s.blur, s.smoothing, s.overlay) == (0.8, True, 0.0, False)
    assert at.session_state["webcam_processor"] is proc  # same object across reruns: the stream keeps it


def test_stats_from_the_callback_are_shown(workspace_env):
    at = _run()
    proc = at.session_state["webcam_processor"]
    face = read_image(sorted(SAMPLE.glob("images/*.jpg"))[0])
    for _ in range(3):  # what the WebRTC thread does for each frame
        proc.process(face)
    at.run()
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert float(metrics["Face probability"]) > 0.5 and int(metrics["Faces shown"]) >= 1
    assert "Face found" in _texts(at.markdown)
    assert "3 frames delivered" in _texts(at.caption)
    # one figure, shown the same beside the video as on it
    last = at.session_state["webcam_stream"].history[-1]
    assert metrics["Delivered FPS"] == f"{last.fps:.1f}" and metrics["Model latency"] == f"{last.latency_ms:.0f} ms"
    assert f"On the video: `{overlay_text(last)}`" in _texts(at.caption)
    assert at.get("plotly_chart"), "the rolling probability chart is missing"


def test_after_stop_the_stats_do_not_read_as_live(workspace_env):
    at = _run()
    proc = at.session_state["webcam_processor"]
    face = read_image(sorted(SAMPLE.glob("images/*.jpg"))[0])
    for _ in range(3):
        proc.process(face)
    at.session_state["webcam_stream"].started = time.time() - 5  # a stream ran (on_stream_change "start"), now stopped
    at.run()
    assert not at.exception
    assert "Stopped. The last stream delivered 3 frames" in _texts(at.info)
    assert "Face found" not in _texts(at.markdown) and not [m for m in at.metric if "FPS" in m.label]
    assert at.get("plotly_chart")  # the last stream's chart stays


def test_bad_turn_setting_is_reported_and_falls_back(workspace_env, monkeypatch):
    monkeypatch.setenv("FACETRACK_TURN_URLS", "turn:turn.example.org:3478")
    at = _run()
    assert "FACETRACK_TURN_USERNAME" in _texts(at.error)
    assert "Falling back to direct connections" in _texts(at.caption)


def test_turn_setting_is_used(workspace_env, monkeypatch):
    monkeypatch.setenv("FACETRACK_TURN_URLS", "turn:turn.example.org:3478")
    monkeypatch.setenv("FACETRACK_TURN_USERNAME", "u")
    monkeypatch.setenv("FACETRACK_TURN_CREDENTIAL", "p")
    at = _run()
    assert "TURN servers: turn:turn.example.org:3478" in _texts(at.caption)


def test_unloadable_model_is_reported(workspace_env):
    pytest.importorskip("facecore.facetracker.inference", reason="trained-model loading (facecore.facetracker.inference) not present")
    _, models = workspace_env
    (models / "broken").mkdir()
    (models / "broken" / "meta.json").write_text(json.dumps({"name": "broken", "kind": "facetracker"}))
    at = _run()
    at.sidebar.selectbox(key="webcam_detector").select("broken").run()
    assert not at.exception, at.exception
    assert at.error and "could not be loaded" in _texts(at.warning)


@pytest.mark.slow
def test_trained_model_can_be_picked_while_streaming(workspace_env):
    """Switching to a trained model hands it to the running processor (the next frame uses it)."""
    from facecore.facetracker.model import build_model
    from facecore.train import save_model

    _, models = workspace_env
    net = build_model("mobilenetv2", input_size=32, weights=None, head_units=8)
    save_model(net, models / "tiny", {"name": "tiny", "kind": "facetracker", "created": "2026-11-24T20:00:00",
                                      "config": {"backbone": "mobilenetv2", "input_size": 32}},
               export_tflite=False)
    at = _run()
    proc = at.session_state["webcam_processor"]
    face = read_image(sorted(SAMPLE.glob("images/*.jpg"))[0])
    proc.process(face)
    at.sidebar.selectbox(key="webcam_detector").select("tiny").run()
    assert not at.exception, at.exception
    assert at.session_state["webcam_processor"] is proc and proc.detector_name == "tiny"
    from facecore.registry import default_detector

    default = default_detector(models)  # every page starts on the detector saved last (here: tiny)
    assert at.session_state["webcam_stream"].history[-1].detector == default  # the page took the earlier stats
    proc.process(face)
    (stat,) = proc.drain_stats()
    assert stat.detector == "tiny" and 0.0 <= stat.probability <= 1.0 and not stat.error


def test_start_and_stop_drive_the_stream(workspace_env):
    at = _run()
    at.button(key="webcam_start").click().run()
    assert not at.exception and at.session_state["webcam_stream"].want is True
    assert "Waiting for the first frames" in _texts(at.info)
    at.button(key="webcam_stop").click().run()
    assert at.session_state["webcam_stream"].want is False and at.button(key="webcam_start").label == "Start"


def test_dropped_connection_says_why_and_offers_one_click(workspace_env):
    at = _run()
    why = "The server is overloaded (2.0 of 30 camera frames per second processed, 400 ms per model call)."
    at.session_state["webcam_stream"].want = True
    at.session_state["webcam_stream"].drops = [(time.time(), why)]
    at.run()
    assert "It reconnects by itself (1 of 3" in _texts(at.warning) and why in _texts(at.warning)
    at.session_state["webcam_stream"].want = False  # after too many drops the page stops retrying
    at.run()
    assert why in _texts(at.error) and "Press **Reconnect**" in _texts(at.error)
    at.button(key="webcam_start").click().run()
    assert at.session_state["webcam_stream"].want is True and at.session_state["webcam_stream"].drops == []
    assert "dropped" not in _texts(at.error) + _texts(at.warning)


def test_connection_remade_unseen_is_reported(workspace_env):
    """The browser re-made a dropped connection before the page saw it stop: frames from a connection the
    page did not start are reported as a drop, once."""
    import asyncio
    import fractions

    import av

    at = _run()
    at.button(key="webcam_start").click().run()
    proc = at.session_state["webcam_processor"]
    at.session_state["webcam_stream"].expected = proc.connections + 1  # what starting the stream sets
    frame = av.VideoFrame.from_ndarray(read_image(sorted(SAMPLE.glob("images/*.jpg"))[0]), format="rgb24")
    frame.pts, frame.time_base = 0, fractions.Fraction(1, 30)
    asyncio.run(proc.process_queued([frame]))  # the started connection's frames
    at.run()
    assert "dropped" not in _texts(at.warning)
    asyncio.run(proc.process_queued([frame]))  # frames from a connection the page never started
    at.run()
    assert not at.exception, at.exception
    assert "The connection dropped" in _texts(at.warning) and "(1 of 3" in _texts(at.warning)
    at.run()
    assert "(1 of 3" in _texts(at.warning)  # counted once


def test_lighter_path_is_announced(workspace_env):
    at = _run()
    proc = at.session_state["webcam_processor"]
    face = read_image(sorted(SAMPLE.glob("images/*.jpg"))[0])
    proc.process(face)  # takes the page's detector (a fresh load step)
    proc._governor.level = 2  # what a loaded machine leads to (tests/test_live.py simulates it)
    for _ in range(4):
        proc.process(face)
    at.run()
    assert "Lighter path: model on every 2nd frame at 240 px wide" in _texts(at.info)
    assert "| light" in _texts(at.caption)


def test_no_video_for_long_offers_reconnect(workspace_env):
    at = _run()
    at.session_state["webcam_stream"].want = True
    at.session_state["webcam_stream"].want_since = time.time() - 60  # asked a minute ago, nothing came
    at.run()
    assert "No video for 60 s" in _texts(at.warning)
    at.button(key="webcam_reconnect").click().run()
    assert at.session_state["webcam_stream"].want is False and at.session_state["webcam_stream"].retry_at > time.time() - 1
