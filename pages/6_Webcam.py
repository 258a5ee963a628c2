"""Webcam: run a detector live on the user's camera over WebRTC.

The video callback runs on a streamlit-webrtc worker thread: it only sees the session's
``LiveProcessor`` (settings go in through ``configure``, stats come out through its queue).
"""

import time

import streamlit as st

from facecore import FaceCoreError
from facecore.live import rtc
from facecore.live.browser import BROWSER, SERVER, default_mode
from facecore.live.processor import LiveProcessor, LiveSettings, overlay_text
from facecore.live.pacing import WINDOW_S
from facecore.live.reconnect import AUTO_RECONNECTS, DROP_WINDOW_S, HISTORY_SECONDS, RERUN, StreamKeeper
from pages.common import dataset_picker, detector_picker, show_error
from pages.common.figures import probability_chart

PROC_KEY = "webcam_processor"
STREAM_KEY = "webcam_stream"  # the session's facecore.live.reconnect.StreamKeeper: starts, drops, retries, stats
REFRESH_S = 1.0

CAMERA_HELP = """
**No picture?** Check, in this order:
1. **Permission**: the browser asks to use the camera when you press *Start*. If you refused, click the
   camera (or lock) icon in the address bar, allow the camera for this site, and press *Start* again.
2. **Device**: a camera must be connected and not in use by another app (video calls, other tabs).
   With several cameras, pick one with *Select device*.
3. **Secure page**: browsers only give the camera to pages on `https://` or `localhost`. Opening the app
   at `http://<another computer>:8501` blocks it: use HTTPS, or run the app on this computer.
4. **Network**: away from localhost, the video needs a TURN server (see the README, *Deploy to
   Streamlit Community Cloud*). Corporate firewalls may block WebRTC altogether. *Run the detector: in the
   browser* needs neither: no video goes to the server.
"""

TRANSLATIONS = {
    "media_api_not_available": "The camera is not available here: open the app on https:// or on localhost.",
    "device_ask_permission": "Allow this page to use your camera (see the browser's prompt).",
    "device_not_available": "No camera found: connect one, close apps that use it, and press Start again.",
    "device_access_denied": "Camera access was denied: allow the camera for this site in the browser's "
                            "address bar, then press Start again.",
}

st.title("Webcam")
st.write("Run a detector live on your camera. Threshold, face blurring, smoothing and even the model "
         "can change while the video plays; the next frame uses them. Frames arriving while the model is "
         "busy are skipped, so a slow model lowers the frame rate instead of building up a delay, and on a "
         "busy server the model runs on every other frame (boxes held in between) to keep the video moving.")
dataset = dataset_picker()


def processor() -> LiveProcessor:
    """This session's frame processor; it outlives reruns so the running stream keeps it."""
    if PROC_KEY not in st.session_state:
        st.session_state[PROC_KEY] = LiveProcessor()
    return st.session_state[PROC_KEY]


def stream() -> StreamKeeper:
    """This session's stream state (what the user wants, drops, retries, the stats); it outlives reruns."""
    if STREAM_KEY not in st.session_state:
        st.session_state[STREAM_KEY] = StreamKeeper()
    return st.session_state[STREAM_KEY]


def why_dropped() -> str:
    """Why the stream dropped, in words, from the processor's and the stats' last figures."""
    proc = processor()
    return stream().explain(connection_config(quiet=True), local=rtc.is_local_host(st.context.headers.get("Host")),
                            frames=proc.frames, last_frame_at=proc.last_frame_at, now=time.time())


def on_stream_change() -> None:
    """The component started or stopped: a start begins a fresh stream in the processor; a stop the user
    did not ask for is a drop, which ``StreamKeeper`` records and retries."""
    state = st.session_state["webcam"].state
    proc = processor()
    change = stream().stream_changed(state.playing or state.signalling, state.playing, time.time(), proc.connections,
                                     why_dropped)
    if change == "start":
        proc.reset_stream()


def set_wanted(on: bool) -> None:
    """Start / Stop buttons."""
    if on:
        stream().start(time.time())
    else:
        stream().stop()


def restart() -> None:
    """Reconnect button: stop the component for this run, start it again a moment later."""
    stream().reconnect(time.time())


def connection_config(quiet: bool = False) -> dict:
    secrets = None
    try:
        section = st.secrets.get("webrtc")
        secrets = dict(section) if section else None
    except Exception:  # noqa: BLE001 - no secrets.toml at all is the normal local case
        secrets = None
    try:
        return rtc.rtc_configuration(secrets=secrets)
    except FaceCoreError as exc:
        if not quiet:
            show_error(exc)
            st.caption("Falling back to direct connections only.")
        return {"iceServers": []}


LIVE_DEFAULTS = LiveSettings()  # every widget starts at facecore's default (tests/test_page_webcam.py checks)
FACES = ["Box", "Blur"]


def current_settings() -> LiveSettings:
    ss = st.session_state
    return LiveSettings(threshold=ss.get("webcam_threshold", LIVE_DEFAULTS.threshold),
                        blur=ss.get("webcam_mode", FACES[LIVE_DEFAULTS.blur]) == "Blur",
                        smoothing=ss.get("webcam_smoothing", LIVE_DEFAULTS.smoothing),
                        overlay=ss.get("webcam_overlay", LIVE_DEFAULTS.overlay))


def push_settings() -> None:
    """Widget callback: hand the new settings to the stream before the page reruns (the next frame
    uses them; under load a rerun can take a second)."""
    processor().configure(settings=current_settings())


proc = processor()
with st.sidebar:
    st.header("Live settings")
    name, det = detector_picker(st.sidebar, key="webcam_detector")
    threshold = st.slider("Threshold", 0.0, 1.0, LIVE_DEFAULTS.threshold, 0.05, key="webcam_threshold",
                          on_change=push_settings,
                          help="Boxes with a lower face probability are not drawn.")
    st.radio("Faces", FACES, index=int(LIVE_DEFAULTS.blur), horizontal=True, key="webcam_mode",
             on_change=push_settings,
             help="Blur hides each detected face instead of boxing it.")
    st.slider("Box smoothing", 0.0, 0.9, LIVE_DEFAULTS.smoothing, 0.1, key="webcam_smoothing", on_change=push_settings,
              help="Weight of the previous box in each new one: higher is steadier but lags "
                   "behind fast moves. 0 shows the raw boxes.")
    st.checkbox("FPS, latency and detector on the video", value=LIVE_DEFAULTS.overlay, key="webcam_overlay",
                on_change=push_settings)
proc.configure(detector=det, settings=current_settings())

# Where the detector runs: in the browser (pages/common/browser_webcam: no video to the server, no WebRTC)
# or on the server through WebRTC (the rest of this page). Away from localhost without TURN, WebRTC rarely
# gets through, so the browser is the default there.
MODES = {BROWSER: "in the browser", SERVER: "on the server (WebRTC)"}
local = rtc.is_local_host(st.context.headers.get("Host"))
default, why = default_mode(local, connection_config(quiet=True))
where = st.radio("Run the detector", [BROWSER, SERVER], index=[BROWSER, SERVER].index(default),
                 format_func=MODES.get, horizontal=True, key="webcam_where",
                 help="In the browser: the detector's file is sent to your browser, which runs it next to the "
                      "camera (LiteRT.js); no video goes to the server. On the server: the video goes to the "
                      "app's server over WebRTC, which detects and sends it back.")
if default == BROWSER and where == BROWSER:
    st.info(why)
elif default == BROWSER:
    st.warning("The app is not on this computer and no TURN server is configured: a WebRTC connection to the "
               "server will probably not get through (see *Camera not working?*). *In the browser* needs none.")
if where == BROWSER:
    from facecore.datasets.workspace import SAMPLE_NAME
    from pages.common import workspace
    from pages.common.browser_webcam import browser_section

    ws = workspace()
    browser_section(name, ws.models_root, current_settings(), dataset,
                    readonly=dataset is None or (dataset.name == SAMPLE_NAME and dataset.root == ws.sample_root))
    st.stop()  # the WebRTC part below is not rendered: no peer connection, no polling of the server

config = connection_config()
left, right = st.columns([3, 2], gap="medium")
ctx = None
keeper = stream()
want, drops, retrying = keeper.want, keeper.drops, keeper.retrying
with left:
    # One container for the controls and messages: whatever shows in it, the component below keeps its
    # place in the page, so Streamlit does not remount it (a remount would drop the running stream).
    with st.container():
        if want or retrying:
            st.button("Stop", key="webcam_stop", on_click=set_wanted, args=(False,))
        else:
            st.button("Reconnect" if drops else "Start", key="webcam_start", type="primary",
                      on_click=set_wanted, args=(True,), help="Starts the camera; allow it when the browser asks.")
        if keeper.auto_reconnecting:
            st.warning(f"The connection dropped: {drops[-1][1]} It reconnects by itself "
                       f"({len(drops)} of {AUTO_RECONNECTS} tries in {DROP_WINDOW_S // 60} minutes).")
        elif drops:
            st.error(f"The connection dropped {len(drops)} times: {drops[-1][1]} Press **Reconnect** to try again.")
    try:
        rtc.preload_srtp()  # before aiortc: TensorFlow may already be loaded by another page
        from streamlit_webrtc import WebRtcMode, webrtc_streamer
        from streamlit_webrtc.relay import get_global_relay

        rtc.newest_video_frames(get_global_relay())  # no queue of stale frames between camera and screen

        ctx = webrtc_streamer(
            key="webcam",
            mode=WebRtcMode.SENDRECV,
            rtc_configuration=config,
            media_stream_constraints={"video": {"width": {"ideal": 640}, "height": {"ideal": 480},
                                                "frameRate": {"ideal": 30}}, "audio": False},
            video_frame_callback=proc,
            # Async mode hands over every frame that queued up while the model was busy: process the
            # newest, drop the stale ones.
            queued_video_frames_callback=proc.process_queued,
            async_processing=True,
            translations=TRANSLATIONS,
            on_change=on_stream_change,
            # The page's Start/Stop drive the component: a connection that drops while this is on is
            # restarted by the component itself (see on_stream_change).
            desired_playing_state=want,
        )
    except Exception as exc:  # noqa: BLE001 - the rest of the page stays usable without the component
        st.error(f"The webcam component could not start here ({type(exc).__name__}: {exc}). The live video "
                 "needs the app served by `streamlit run` and opened in a browser.")
    st.caption(rtc.describe(config))
    with st.expander("Camera not working?", expanded=False):
        st.markdown(CAMERA_HELP)

playing = bool(ctx is not None and ctx.state.playing)
if det is None:
    st.warning(f"The detector '{name}' could not be loaded (see above): the video will show without boxes.")


@st.fragment(run_every=REFRESH_S if keeper.refreshing(playing) else None)
def live_stats() -> None:
    now = time.time()
    if keeper.tick(now, playing, proc.connections, proc.last_frame_at, why_dropped) == RERUN:
        st.rerun()  # the whole page: the component starts again, or a drop shows above the video
    silent_s = keeper.no_video_s(now, playing, proc.last_frame_at)
    if silent_s is not None:  # e.g. a reconnection that did not take: never a silent stop
        st.warning(f"No video for {silent_s:.0f} s and the connection is not back: the network or the "
                   "server may be down (see *Camera not working?*).")
        st.button("Reconnect", key="webcam_reconnect", on_click=restart)
    history = keeper.history
    history.extend(proc.drain_stats())
    st.subheader("Live stats")
    if not history:
        if keeper.no_frames_yet(now, playing):
            st.warning("Connected, but no video has reached the detector yet. Check the camera permission "
                       "and device (see *Camera not working?*); away from localhost a TURN server may be needed.")
        elif playing or keeper.want:
            st.info("Waiting for the first frames...")
        else:
            st.info("Press **Start** above the video and allow the camera. Stats appear here while it plays.")
        return
    last = history[-1]
    if keeper.stopped(playing):
        # a stream ran and was stopped: no live-looking "Face found" or fps figures that are no longer true
        st.info(f"Stopped. The last stream delivered {last.frame} frames with detector `{last.detector or 'none'}`; "
                "press **Start** to run it again.")
        st.plotly_chart(probability_chart(history, threshold, HISTORY_SECONDS), key="webcam_probability_chart",
                        config={"displayModeBar": False})
        st.caption("The chart shows the last stream's face probability.")
        return
    face = last.faces > 0
    named = last.label not in ("", "face")  # a recognizer scores the name, not the face
    st.markdown(f"**{'Face found' if face else 'No face'}**"
                + (f": {last.label}" if face and named else "")
                + f" — detector `{last.detector or 'none'}`")
    c1, c2 = st.columns(2)
    c1.metric("Name probability" if named else "Face probability", f"{last.probability:.2f}")
    c2.metric("Faces shown", last.faces)
    c1.metric("Delivered FPS", f"{last.fps:.1f}",
              help=f"New annotated frames sent back to your browser per second, over the last {WINDOW_S:.0f} s.")
    c2.metric("Model latency", f"{last.latency_ms:.0f} ms",
              help=f"Mean time of one model call over the last {WINDOW_S:.0f} s.")
    st.caption(f"On the video: `{overlay_text(last)}`")
    st.caption(f"{last.frame} frames delivered this stream; the model ran {last.detect_fps:.1f} times a second; "
               f"the camera sends {last.camera_fps:.1f} fps, {last.dropped} stale frames skipped.")
    if last.light:
        st.info(f"Lighter path: {last.light}, because the server could not keep up with the camera. "
                "It tries the full path again when the load drops.")
    stalled_s = keeper.stalled_s(now, playing, last.time)
    if stalled_s is not None:
        st.warning(f"No new frame for {stalled_s:.0f} s: the server is busy or the connection is stalling.")
    if last.error:
        st.error(f"The detector failed on the last frame: {last.error}")
    st.plotly_chart(probability_chart(history, threshold, HISTORY_SECONDS), key="webcam_probability_chart",
                    config={"displayModeBar": False})


with right:
    live_stats()
