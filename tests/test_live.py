"""facecore.live.processor (the webcam frame processor), facecore.live.pacing (frame rate, load) and facecore.live.rtc (ICE server settings)."""

import asyncio
import fractions
import os
import subprocess
import sys
import time

import av
import numpy as np
import pytest

from conftest import ROOT
from facecore import FaceCoreError
from facecore.live import rtc

from facecore.detect import Detection, Detector, HaarDetector
from facecore.live import processor as live
from facecore.live.processor import LiveProcessor, LiveSettings, overlay_text
from facecore.live.pacing import LEVELS, WINDOW_S, LoadGovernor, RateMeter

rtc.preload_srtp()  # other test modules may have imported TensorFlow already

RED = np.array([255, 0, 0], np.uint8)


class FakeDetector(Detector):
    """Returns ``dets`` for every frame; optionally slow or failing; records the frames it saw."""

    def __init__(self, dets=(), delay=0.0, fail=False, name="fake"):
        self.dets, self.delay, self.fail, self.name = list(dets), delay, fail, name
        self.seen = []

    def detect(self, frame):
        self.seen.append(frame)
        if self.delay:
            time.sleep(self.delay)
        if self.fail:
            raise RuntimeError("model exploded")
        return list(self.dets)


def det(score, box, label="face"):
    return Detection(score, np.asarray(box, np.float32), label)


def gray(h=120, w=160, value=128):
    return np.full((h, w, 3), value, np.uint8)


def red_pixels(img):
    return int(np.all(img == RED, axis=-1).sum())


@pytest.mark.parametrize("kwargs", [{"threshold": -0.1}, {"threshold": 1.5}, {"smoothing": 1.0}, {"smoothing": -0.2}])
def test_settings_reject_out_of_range(kwargs):
    with pytest.raises(ValueError):
        LiveSettings(**kwargs)


def test_process_draws_boxes_and_reports_stats():
    fake = FakeDetector([det(0.9, [0.25, 0.25, 0.75, 0.75], "alice"), det(0.3, [0.0, 0.0, 0.2, 0.2])])
    proc = LiveProcessor(fake, LiveSettings(threshold=0.5, smoothing=0.0, overlay=False))
    frame = gray()
    out = proc.process(frame)
    assert out.shape == frame.shape and out.dtype == np.uint8 and (frame == 128).all()  # input untouched
    assert red_pixels(out) > 100
    assert red_pixels(out[:20, :30]) == 0  # the 0.3 box is under the threshold
    (stat,) = proc.drain_stats()
    assert stat.probability == pytest.approx(0.9) and stat.faces == 1 and stat.label == "alice"
    assert stat.detector == "fake" and stat.frame == 1 and stat.error == "" and stat.latency_ms >= 0
    assert proc.drain_stats() == []


def test_settings_and_detector_change_while_streaming():
    box = [0.25, 0.25, 0.75, 0.75]
    proc = LiveProcessor(FakeDetector([det(0.6, box)]), LiveSettings(threshold=0.5, smoothing=0.0, overlay=False))
    assert red_pixels(proc.process(gray())) > 0
    proc.configure(settings=LiveSettings(threshold=0.7, smoothing=0.0, overlay=False))
    assert red_pixels(proc.process(gray())) == 0
    # blur: the face region is smoothed, nothing drawn
    noisy = np.random.default_rng(1).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    proc.configure(settings=LiveSettings(threshold=0.5, blur=True, smoothing=0.0, overlay=False))
    out = proc.process(noisy)
    assert out[40:80, 50:110].std() < 0.5 * noisy[40:80, 50:110].std()
    np.testing.assert_array_equal(out[:20], noisy[:20])
    other = FakeDetector([], name="other")
    proc.configure(detector=other)
    assert len(other.seen) == 1  # warmed up on the page's thread, so the stream does not wait for it
    proc.process(gray())
    assert len(other.seen) == 2 and other.seen[-1][0, 0, 0] == 128 and proc.drain_stats()[-1].detector == "other"
    proc.configure(detector=None)
    out = proc.process(noisy)
    np.testing.assert_array_equal(out, noisy)
    assert proc.drain_stats()[-1].probability == 0.0


def test_overlay_is_drawn():
    proc = LiveProcessor(FakeDetector(), LiveSettings(overlay=True))
    out = proc.process(gray(240, 320))
    bar = out[:12, :60]
    assert (bar == 0).mean() > 0.5 and (bar > 200).any()  # black bar, white text
    assert (out[40:] == 128).all()


def test_failing_detector_does_not_end_the_stream():
    proc = LiveProcessor(FakeDetector(fail=True), LiveSettings(overlay=False))
    out = proc.process(gray())
    assert out.shape == (120, 160, 3)
    (stat,) = proc.drain_stats()
    assert "model exploded" in stat.error and stat.faces == 0


def test_stats_queue_is_bounded_and_keeps_the_newest():
    proc = LiveProcessor(FakeDetector(), LiveSettings(overlay=False), stats_size=5)
    for _ in range(20):
        proc.process(gray(24, 32))
    assert [s.frame for s in proc.drain_stats()] == [16, 17, 18, 19, 20]


def test_haar_detector_gets_a_private_copy():
    shared = HaarDetector(min_neighbors=3)
    proc = LiveProcessor(shared)
    own = proc._detector
    assert own is not shared and isinstance(own, HaarDetector) and own.min_neighbors == 3


def _video_frame(value, pts):
    f = av.VideoFrame.from_ndarray(gray(48, 64, value), format="rgb24")
    f.pts, f.time_base = pts, fractions.Fraction(1, 90000)
    return f


def test_queued_callback_processes_only_the_newest_frame():
    fake = FakeDetector()
    proc = LiveProcessor(fake, LiveSettings(overlay=False))
    frames = [_video_frame(v, pts) for v, pts in [(10, 0), (20, 3000), (30, 6000)]]
    (out,) = asyncio.run(proc.process_queued(frames))
    assert len(fake.seen) == 1 and fake.seen[0][0, 0, 0] == 30
    assert out.pts == 6000 and out.to_ndarray(format="rgb24").shape == (48, 64, 3)
    assert proc.dropped == 2 and proc.drain_stats()[-1].dropped == 2
    proc.reset_stream()
    asyncio.run(proc.process_queued(frames[:1]))
    assert proc.dropped == 0 and proc.frames == 1


def test_slow_model_drops_stale_frames_instead_of_lagging():
    """The real streamlit-webrtc async track, fed at 30 fps, with a model taking 100 ms per frame:
    each processed frame must be recent (no backlog), and most frames are skipped."""
    from aiortc import MediaStreamTrack
    from streamlit_webrtc.models import CallbackAttachableProcessor
    from streamlit_webrtc.process import AsyncVideoProcessTrack

    created = {}

    class Camera(MediaStreamTrack):
        kind = "video"

        def __init__(self):
            super().__init__()
            self.i = 0

        async def recv(self):
            await asyncio.sleep(1 / 30)
            self.i += 1
            created[self.i % 256] = time.monotonic()
            return _video_frame(self.i % 256, self.i * 3000)

    lags = []

    class Slow(FakeDetector):
        def detect(self, frame):
            lags.append(time.monotonic() - created[int(frame[0, 0, 0])])
            return super().detect(frame)

    proc = LiveProcessor(Slow(delay=0.1), LiveSettings(overlay=False))
    track = AsyncVideoProcessTrack(Camera(), CallbackAttachableProcessor(proc, proc.process_queued, None),
                                   stop_timeout=2)

    async def consume():
        for _ in range(60):  # 2 s of video
            await track.recv()

    asyncio.run(consume())
    track.stop()
    assert 5 <= len(lags) <= 25, len(lags)
    # Without dropping, the 60th frame would wait ~4 s; here no frame waits more than about one model call.
    assert max(lags[3:]) < 0.5, lags
    assert proc.dropped >= 20


class FakeClock:
    """Stands in for time.perf_counter: a simulated camera and model advance it."""

    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


class TimedDetector(FakeDetector):
    """Takes ``cost`` simulated seconds per call and records the width of each frame it gets."""

    def __init__(self, clock, cost, dets=(), name="timed"):
        super().__init__(dets, name=name)
        self.clock, self.cost, self.widths = clock, cost, []

    def detect(self, frame):
        self.widths.append(frame.shape[1])
        self.clock.t += self.cost
        return super().detect(frame)


def simulate(proc, clock, seconds, camera_fps=30.0, overhead=0.01, frame=None):
    """The async track: each call gets the newest frame plus the ones that arrived meanwhile."""
    import math

    frame = gray(120, 320) if frame is None else frame
    end, stats = clock.t + seconds, []
    taken = math.floor(clock.t * camera_fps)  # camera frame k arrives at k / camera_fps
    while clock.t < end:
        if math.floor(clock.t * camera_fps) == taken:  # faster than the camera: wait for its next frame
            clock.t = (taken + 1) / camera_fps + 1e-9
        arrived = math.floor(clock.t * camera_fps) - taken
        taken += arrived
        clock.t += overhead  # conversion and drawing
        proc.process(frame, arrived)
        stats += proc.drain_stats()
    return stats


def test_rate_meter_is_frames_per_second_over_the_window():
    m = RateMeter(window_s=2.0)
    assert m.rate(0.0) == 0.0
    for i in range(31):
        m.tick(i * 0.1)  # 10 per second for 3 s
    assert m.rate(3.0) == pytest.approx(10.0)
    assert m.rate(3.0) == pytest.approx(10.0)  # the window keeps only the last 2 s
    for i in range(1, 11):
        m.tick(3.0 + i * 0.2)  # then 5 per second
    assert m.rate(5.0) == pytest.approx(5.0)
    lat = RateMeter(window_s=1.0)
    for t, ms in [(0.0, 100.0), (0.5, 10.0), (1.2, 20.0)]:
        lat.tick(t, ms)
    assert lat.mean(1.2) == pytest.approx(15.0)  # the 100 ms call is out of the window


def test_reported_fps_is_the_delivered_frame_rate_and_the_overlay_shows_it(monkeypatch):
    """What the overlay and the page show: frames handed back per second, not 1/latency."""
    clock = FakeClock()
    monkeypatch.setattr(live.time, "perf_counter", clock)
    fake = TimedDetector(clock, cost=0.04, dets=[det(0.9, [0.3, 0.3, 0.6, 0.6])])
    proc = LiveProcessor(fake, LiveSettings(smoothing=0.0), adaptive=False)
    stats = simulate(proc, clock, seconds=6, camera_fps=30, overhead=0.01)
    last = stats[-1]
    assert last.fps == pytest.approx(1 / 0.05, rel=0.05)  # one frame per 40 ms model + 10 ms drawing
    assert last.latency_ms == pytest.approx(40, rel=0.02) and last.camera_fps == pytest.approx(30, rel=0.1)
    assert last.dropped > 0.2 * last.frame  # the camera's other frames were skipped
    assert overlay_text(last) == f"{last.fps:.1f} fps | 40 ms | timed"
    out = proc.process(gray(240, 320))
    assert (out[:12, :60] == 0).mean() > 0.3  # the line is drawn on the frame itself


def test_lighter_path_under_load_and_back(monkeypatch):
    """A model too slow for the camera: the stream steps to the lighter path (model on every other
    frame, boxes held), delivers more frames than the model runs, says so, and returns to the full path
    once the model is fast again."""
    clock = FakeClock()
    monkeypatch.setattr(live.time, "perf_counter", clock)
    box = [0.3, 0.3, 0.6, 0.6]
    slow = TimedDetector(clock, cost=0.15, dets=[det(0.9, box)])
    proc = LiveProcessor(slow, LiveSettings(smoothing=0.0, overlay=False))
    stats = simulate(proc, clock, seconds=20)
    light = [s for s in stats if s.light]
    assert light and light[-1].light == LEVELS[-1].text, [s.light for s in stats[::10]]
    assert any(s.held for s in light) and all(s.faces == 1 for s in stats)  # held frames keep the boxes
    assert light[-1].fps > 1.8 * light[-1].detect_fps
    assert 240 in slow.widths and max(slow.widths) == 320  # smaller copies for the model on the last steps
    held = proc.process(gray(120, 320))
    assert red_pixels(held) > 0  # boxes drawn on frames the model did not see
    # the load goes away (a fast model): it works its way back to the full path
    slow.cost = 0.005
    stats = simulate(proc, clock, seconds=200)
    assert stats[-1].light == "" and not stats[-1].held


def test_load_governor_backs_off_after_failed_tries():
    g = LoadGovernor(probe_s=10, max_probe_s=40, levels=3)
    t = 0.0
    for _ in range(3):
        t += WINDOW_S
        g.update(t, delivered_fps=5, camera_fps=30)
    assert g.level == 2  # one step per window, no further than the last
    t += 10
    assert g.update(t, 30, 30) == 1  # keeping up: try one step heavier after probe_s
    t += WINDOW_S
    assert g.update(t, 10, 30) == 2 and g.probe_s == 20  # failed try: wait twice as long next time
    assert g.update(t + 15, 30, 30) == 2 and g.update(t + 20, 30, 30) == 1


def test_settings_reach_the_very_next_frame_even_with_held_boxes():
    box = [0.25, 0.25, 0.75, 0.75]
    first = FakeDetector([det(0.6, box)], name="first")
    proc = LiveProcessor(first, LiveSettings(threshold=0.5, smoothing=0.0, overlay=False))
    proc._governor.level = 2  # the lighter path: the model on every 2nd frame
    proc.process(gray())
    proc.process(gray())
    assert len(first.seen) == 1 and proc.drain_stats()[-1].held  # the second frame held the boxes
    noisy = np.random.default_rng(2).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    proc.configure(settings=LiveSettings(threshold=0.5, blur=True, smoothing=0.0, overlay=False))
    out = proc.process(noisy)
    assert len(first.seen) == 2 and not proc.drain_stats()[-1].held  # a change runs the model at once
    assert out[40:80, 50:110].std() < 0.5 * noisy[40:80, 50:110].std() and red_pixels(out) == 0
    second = FakeDetector([], name="second")
    proc.configure(detector=second)
    proc.process(gray())
    (stat,) = proc.drain_stats()
    assert stat.detector == "second" and stat.faces == 0 and not stat.held  # no box of the old model


# -- rtc ---------------------------------------------------------------------------------------

def test_rtc_defaults_to_direct_connections_without_lookups():
    cfg = rtc.rtc_configuration(env={})
    assert cfg == {"iceServers": []}
    assert "Direct connection" in rtc.describe(cfg)


def test_rtc_from_env_stun_and_turn():
    env = {"FACETRACK_STUN_URLS": "stun:stun.example.org:3478",
           "FACETRACK_TURN_URLS": "turn:turn.example.org:3478?transport=udp, turns:turn.example.org:5349",
           "FACETRACK_TURN_USERNAME": "u", "FACETRACK_TURN_CREDENTIAL": "secret"}
    cfg = rtc.rtc_configuration(env=env)
    assert cfg == {"iceServers": [
        {"urls": ["stun:stun.example.org:3478"]},
        {"urls": ["turn:turn.example.org:3478?transport=udp", "turns:turn.example.org:5349"],
         "username": "u", "credential": "secret"}]}
    text = rtc.describe(cfg)
    assert "STUN + TURN" in text and "secret" not in text


def test_rtc_json_list_and_secrets_override_env():
    env = {"FACETRACK_ICE_SERVERS": '[{"urls": "stun:a.example:3478"}]'}
    assert rtc.rtc_configuration(env=env) == {"iceServers": [{"urls": "stun:a.example:3478"}]}
    secrets = {"ice_servers": [{"urls": ["turn:b.example:3478"], "username": "x", "credential": "y"}]}
    assert rtc.rtc_configuration(env=env, secrets=secrets)["iceServers"][0]["username"] == "x"
    secrets = {"turn_urls": ["turn:c.example"], "turn_username": "x", "turn_credential": "y"}
    assert rtc.rtc_configuration(env={}, secrets=secrets)["iceServers"][0]["urls"] == ["turn:c.example"]


def test_rtc_leaves_servers_to_streamlit_webrtc_when_a_provider_is_configured():
    assert rtc.rtc_configuration(env={"HF_TOKEN": "hf_x"}) == {}
    assert rtc.rtc_configuration(env={"TWILIO_ACCOUNT_SID": "only half"}) == {"iceServers": []}


@pytest.mark.slow
def test_webrtc_stack_works_after_tensorflow():
    """aiortc's SRTP crashed the process when imported after TensorFlow (clashing OpenSSL symbols)."""
    code = ("import tensorflow\n"
            "from facecore.live.rtc import preload_srtp\n"
            "preload_srtp()\n"
            "import streamlit_webrtc\n"
            "from pylibsrtp import Policy, Session\n"
            "key = bytes(range(30))\n"
            "tx = Session(policy=Policy(key=key, ssrc_type=Policy.SSRC_ANY_OUTBOUND))\n"
            "rx = Session(policy=Policy(key=key, ssrc_type=Policy.SSRC_ANY_INBOUND))\n"
            "rtp = bytes.fromhex('8008000100000001deadbeef') + bytes(50)\n"
            "assert rx.unprotect(tx.protect(rtp)) == rtp\n")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert res.returncode == 0, f"exit {res.returncode}: {res.stderr[-2000:]}"


@pytest.mark.parametrize("env, message", [
    ({"FACETRACK_ICE_SERVERS": "[{"}, "not valid JSON"),
    ({"FACETRACK_ICE_SERVERS": '[{"username": "u"}]'}, "urls"),
    ({"FACETRACK_STUN_URLS": "turn:x"}, "stun:"),
    ({"FACETRACK_TURN_URLS": "stun:x", "FACETRACK_TURN_USERNAME": "u", "FACETRACK_TURN_CREDENTIAL": "p"}, "turn:"),
    ({"FACETRACK_TURN_URLS": "turn:x"}, "FACETRACK_TURN_USERNAME"),
])
def test_rtc_rejects_malformed_settings(env, message):
    with pytest.raises(FaceCoreError, match=message):
        rtc.rtc_configuration(env=env)


@pytest.mark.parametrize("config, local, kwargs, kind, words", [
    ({"iceServers": []}, False, {"frames": 0}, "connect", "needs a TURN server"),
    ({"iceServers": []}, True, {"frames": 0}, "connect", "VPN"),
    ({"iceServers": [{"urls": ["turn:t.example"], "username": "u", "credential": "p"}]}, False, {"frames": 0},
     "connect", "TURN server: check its URL and credentials"),
    ({"iceServers": []}, True, {"frames": 500, "fps": 2.0, "camera_fps": 30.0, "latency_ms": 300.0},
     "overloaded", "2.0 of 30 camera frames"),
    ({"iceServers": []}, True, {"frames": 500, "stall_s": 8.0, "fps": 12.0, "camera_fps": 15.0},
     "overloaded", "lighter detector"),
    ({"iceServers": []}, False, {"frames": 500, "stall_s": 0.3, "fps": 14.0, "camera_fps": 15.0},
     "network", "Wi-Fi or VPN"),
])
def test_explain_drop_says_what_to_do(config, local, kwargs, kind, words):
    got_kind, message = rtc.explain_drop(config, local=local, **kwargs)
    assert got_kind == kind and words in message


@pytest.mark.parametrize("before, after, wanted, expected", [
    ((False, False), (True, False), True, "start"),       # Start pressed: signalling
    ((True, False), (True, True), True, None),            # connected
    ((True, True), (False, False), True, "drop"),         # the connection closed
    ((True, True), (True, False), True, "drop"),          # closed and restarted at once by the component
    ((True, False), (False, False), True, "drop"),        # signalling that failed
    ((True, True), (False, False), False, None),          # the user pressed Stop
    ((True, True), (True, False), False, None),
    ((False, False), (False, False), True, None),
])
def test_stream_change_tells_drops_from_starts_and_stops(before, after, wanted, expected):
    assert rtc.stream_change(*before, *after, wanted) == expected


def test_local_hosts():
    assert rtc.is_local_host("localhost:8501") and rtc.is_local_host("127.0.0.1:8501") and rtc.is_local_host("[::1]:8501")
    assert not rtc.is_local_host("facetrack.streamlit.app") and not rtc.is_local_host("192.168.1.5:8501")


def test_each_peer_connection_is_counted_once():
    """Every peer connection runs the queued-frames callback on an event loop of its own: a connection the
    browser re-made by itself shows as one more, however many frames each sends."""
    proc = LiveProcessor(FakeDetector(), LiveSettings(overlay=False))
    frame = av.VideoFrame.from_ndarray(gray(), format="rgb24")
    frame.pts, frame.time_base = 0, fractions.Fraction(1, 30)

    async def frames_of_one_connection():
        await proc.process_queued([frame])
        await proc.process_queued([frame, frame])

    asyncio.run(frames_of_one_connection())
    assert proc.connections == 1 and proc.frames == 2
    asyncio.run(frames_of_one_connection())
    assert proc.connections == 2
