"""WebRTC connection settings (ICE servers) for the Webcam page.

On localhost (or a LAN) browser and server reach each other directly, so no STUN/TURN server is
needed: the default is an empty server list, which also avoids any lookup of an outside server.
Behind NAT, e.g. on Streamlit Community Cloud, a TURN server relays the video. Configure it with
either environment variables or a ``[webrtc]`` table in ``.streamlit/secrets.toml`` / the Cloud
app's Secrets (same keys, lower case):

- ``FACETRACK_ICE_SERVERS``: a JSON list of RTCIceServer objects,
  e.g. ``[{"urls": ["turn:turn.example.com:3478"], "username": "u", "credential": "p"}]``; or
- ``FACETRACK_STUN_URLS`` (comma-separated ``stun:`` URLs) and/or ``FACETRACK_TURN_URLS``
  (comma-separated ``turn:``/``turns:`` URLs) with ``FACETRACK_TURN_USERNAME`` and
  ``FACETRACK_TURN_CREDENTIAL``.

Alternatively set the credentials streamlit-webrtc knows how to exchange for TURN servers itself
(``CLOUDFLARE_TURN_KEY_ID`` + ``CLOUDFLARE_TURN_KEY_API_TOKEN``, ``TWILIO_ACCOUNT_SID`` +
``TWILIO_AUTH_TOKEN``, or ``HF_TOKEN``); then the server list is left to streamlit-webrtc.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Mapping

from ..errors import FaceCoreError

ENV_PREFIX = "FACETRACK_"
KEYS = ("ice_servers", "stun_urls", "turn_urls", "turn_username", "turn_credential")
# Credentials streamlit-webrtc turns into ICE servers itself when iceServers is left unset.
PROVIDER_ENV = (("CLOUDFLARE_TURN_KEY_ID", "CLOUDFLARE_TURN_KEY_API_TOKEN"),
                ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN"), ("HF_TOKEN",))


def _split(value: Any) -> list[str]:
    if value is None:
        return []
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    return [str(u).strip() for u in items if str(u).strip()]


def _settings(env: Mapping[str, str], secrets: Mapping[str, Any] | None) -> dict[str, Any]:
    """Secrets win over environment variables, key by key."""
    out: dict[str, Any] = {}
    for key in KEYS:
        value = env.get(ENV_PREFIX + key.upper())
        if secrets and secrets.get(key) not in (None, ""):
            value = secrets[key]
        if value not in (None, ""):
            out[key] = value
    return out


def ice_servers(env: Mapping[str, str] | None = None, secrets: Mapping[str, Any] | None = None) -> list[dict]:
    """The configured STUN/TURN servers as RTCIceServer dicts (``urls``, ``username``, ``credential``);
    ``[]`` when none are configured. Raises FaceCoreError on a malformed setting."""
    cfg = _settings(os.environ if env is None else env, secrets)
    if "ice_servers" in cfg:
        raw = cfg["ice_servers"]
        try:
            servers = json.loads(raw) if isinstance(raw, str) else raw
        except json.JSONDecodeError as exc:
            raise FaceCoreError(f"FACETRACK_ICE_SERVERS / webrtc.ice_servers is not valid JSON: {exc}") from None
        if isinstance(servers, Mapping):
            servers = [servers]
        if not isinstance(servers, (list, tuple)) or not all(
                isinstance(s, Mapping) and s.get("urls") for s in servers):
            raise FaceCoreError("FACETRACK_ICE_SERVERS / webrtc.ice_servers must be a list of objects "
                                'with "urls" (and "username"/"credential" for TURN)')
        return [dict(s) for s in servers]
    servers: list[dict] = []
    stun = _split(cfg.get("stun_urls"))
    bad = [u for u in stun if not u.startswith(("stun:", "stuns:"))]
    if bad:
        raise FaceCoreError(f"STUN URLs must start with 'stun:' or 'stuns:', got {bad}")
    if stun:
        servers.append({"urls": stun})
    turn = _split(cfg.get("turn_urls"))
    bad = [u for u in turn if not u.startswith(("turn:", "turns:"))]
    if bad:
        raise FaceCoreError(f"TURN URLs must start with 'turn:' or 'turns:', got {bad}")
    if turn:
        user, cred = cfg.get("turn_username"), cfg.get("turn_credential")
        if not user or not cred:
            raise FaceCoreError("a TURN server needs FACETRACK_TURN_USERNAME and FACETRACK_TURN_CREDENTIAL "
                                "(or webrtc.turn_username / webrtc.turn_credential in the secrets)")
        servers.append({"urls": turn, "username": str(user), "credential": str(cred)})
    return servers


def provider_configured(env: Mapping[str, str] | None = None) -> bool:
    """Whether credentials for a TURN provider streamlit-webrtc supports are set."""
    env = os.environ if env is None else env
    return any(all(env.get(k) for k in group) for group in PROVIDER_ENV)


def rtc_configuration(env: Mapping[str, str] | None = None, secrets: Mapping[str, Any] | None = None) -> dict:
    """The ``rtc_configuration`` for ``webrtc_streamer``, used by both browser and server.

    Explicit servers (env or secrets) win; else, with provider credentials set, ``{}`` lets
    streamlit-webrtc fetch TURN servers; else ``{"iceServers": []}``: direct connections only,
    which is all localhost needs.
    """
    servers = ice_servers(env, secrets)
    if servers:
        return {"iceServers": servers}
    if provider_configured(env):
        return {}
    return {"iceServers": []}


def describe(config: Mapping[str, Any]) -> str:
    """One line for the page: how the connection is set up (credentials left out)."""
    if "iceServers" not in config:
        return "STUN/TURN servers from the TURN provider configured for streamlit-webrtc."
    servers = config["iceServers"]
    if not servers:
        return "Direct connection only (no STUN/TURN server): works on this computer or the local network."
    urls = [u for s in servers for u in _split(s.get("urls"))]
    kinds = sorted({u.split(":", 1)[0].upper() for u in urls})
    return f"{' + '.join(kinds)} servers: {', '.join(urls)}"


def _has_turn(config: Mapping[str, Any]) -> bool:
    servers = config.get("iceServers")
    if servers is None:  # left to streamlit-webrtc's TURN provider
        return True
    return any(u.startswith(("turn:", "turns:")) for s in servers for u in _split(s.get("urls")))


def explain_drop(config: Mapping[str, Any], *, local: bool, frames: int, stall_s: float = 0.0,
                 fps: float = 0.0, camera_fps: float = 0.0, latency_ms: float = 0.0) -> tuple[str, str]:
    """Why a stream that nobody stopped ended, in words a user can act on: ``(kind, message)`` with
    ``kind`` one of ``"connect"`` (no video ever arrived), ``"overloaded"`` (the server fell behind:
    frames stalled or most camera frames were skipped), ``"network"`` (video flowed, then the link went).

    ``config``: the ``rtc_configuration`` in use; ``local``: the page was opened on the server's own
    computer; ``frames``: frames processed before the drop; ``stall_s``: seconds without a processed
    frame before the drop; ``fps`` / ``camera_fps`` / ``latency_ms``: the last figures of the stream.
    """
    if frames == 0:
        if _has_turn(config):
            return "connect", ("No video got through the TURN server: check its URL and credentials "
                               "(FACETRACK_TURN_URLS, FACETRACK_TURN_USERNAME, FACETRACK_TURN_CREDENTIAL) and "
                               "that this network lets the browser reach it (UDP 3478 or TLS 5349).")
        if not local:
            return "connect", ("The browser could not reach the server directly. Opened from another computer, "
                               "the video needs a TURN server: set FACETRACK_TURN_URLS, FACETRACK_TURN_USERNAME "
                               "and FACETRACK_TURN_CREDENTIAL (README, Deploy), or open the app on the computer "
                               "it runs on.")
        return "connect", ("The browser and the server could not connect, even on this computer: a VPN or a "
                           "firewall blocking UDP is the usual cause; turn the VPN off and try again.")
    behind = camera_fps > 0 and fps < 0.3 * camera_fps
    if stall_s >= 2.0 or behind or latency_ms > 500:
        figures = (f"{fps:.1f} of {camera_fps:.0f} camera frames per second processed, "
                   f"{latency_ms:.0f} ms per model call" if camera_fps > 0 else f"no frame for {stall_s:.0f} s")
        return "overloaded", (f"The server is overloaded ({figures}) and the connection timed out. Close other "
                              "heavy programs on the server, or pick a lighter detector (e.g. haar).")
    return "network", ("The network connection dropped while the video was flowing. Check the Wi-Fi or VPN; "
                       "away from localhost a TURN server keeps the video going through strict firewalls.")


def stream_change(was_active: bool, was_playing: bool, active: bool, playing: bool, wanted: bool) -> str | None:
    """What a change of the WebRTC component's state means for a page that keeps the stream on:
    ``"start"`` (a new stream began: fresh stats), ``"drop"`` (the stream ended while the user still
    wanted it) or ``None``. ``active``: signalling or playing.

    Playing that turns into signalling is a drop too: with ``desired_playing_state`` on, the component
    restarts a closed connection at once, and the server may see only the new signalling state.
    """
    if wanted and ((was_playing and not playing) or (was_active and not active)):
        return "drop"
    if active and not was_active:
        return "start"
    return None


def is_local_host(host: str | None) -> bool:
    """Whether a ``Host`` header names the server's own computer (where no STUN/TURN is needed)."""
    if not host:
        return True
    from urllib.parse import urlsplit

    name = urlsplit("//" + host).hostname or ""
    return name in ("localhost", "::1") or name.startswith("127.")


def newest_video_frames(relay) -> None:
    """Make an aiortc ``MediaRelay`` (streamlit-webrtc's server-wide one) hand each video consumer the
    newest frame instead of a queue of every frame, and tell each frame that carries a mark (an
    ``opaque`` with ``sent()``, see ``facecore.live.pacing.SentMark``) when a consumer takes it: that is how
    the Webcam page counts the frames really sent. A marked frame that was sent before (a repeat) is
    not handed out again. Audio is left buffered. Idempotent.

    Why: streamlit-webrtc relays the camera into the processing track, and the processed track into
    the WebRTC sender, through buffered relays whose queues have no bound. Whenever a consumer falls
    behind (the first frames while the model warms up, an encoder starved by a busy CPU) the frames
    wait in the queue, and since the consumer then runs at the camera's pace the queue never drains:
    the video stays seconds behind the camera for the rest of the stream (4.5 s measured on a loaded
    2-core machine), and a settings change seems to take that long. Taking the newest frame bounds the
    delay to about one frame per stage; the frames skipped are stale anyway.
    """
    if getattr(relay, "_facetrack_newest_video", False):
        return
    subscribe = relay.subscribe

    def newest(track, buffered: bool = True):
        if getattr(track, "kind", None) != "video":
            return subscribe(track, buffered=buffered)
        proxy = subscribe(track, buffered=False)
        recv = proxy.recv

        async def recv_marked():
            while True:
                frame = await recv()
                mark = getattr(frame, "opaque", None)
                if not callable(getattr(mark, "sent", None)):
                    return frame
                if mark.sent():
                    return frame
                # streamlit-webrtc re-sends the last annotated frame for every camera frame that came
                # while the next was being made: encoding those repeats cost a busy CPU most of its
                # time and showed nothing new, so the consumer waits for a new frame instead.

        proxy.recv = recv_marked
        return proxy

    relay.subscribe = newest
    relay._facetrack_newest_video = True


def preload_srtp() -> None:
    """Import pylibsrtp (aiortc's SRTP library) so that it uses its own OpenSSL. Call it before
    importing aiortc or streamlit_webrtc; it does nothing once pylibsrtp is imported.

    pylibsrtp links OpenSSL statically but leaves its symbols open to interposition, and TensorFlow's
    ``libtensorflow_framework`` (BoringSSL inside) is loaded globally: once TensorFlow is imported,
    pylibsrtp's ``srtp_init`` calls BoringSSL's ``HMAC_Init_ex`` and the whole server segfaults.
    ``RTLD_DEEPBIND`` makes pylibsrtp resolve its own symbols first, in either import order.
    """
    if "pylibsrtp" in sys.modules:
        return
    flags = sys.getdlopenflags() if hasattr(sys, "getdlopenflags") else None
    deepbind = getattr(os, "RTLD_DEEPBIND", 0)  # glibc only; other platforms do not interpose this way
    if flags is not None and deepbind:
        sys.setdlopenflags(flags | deepbind)
    try:
        import pylibsrtp  # noqa: F401
    except ImportError:  # no WebRTC stack installed: nothing to protect
        pass
    finally:
        if flags is not None:
            sys.setdlopenflags(flags)
