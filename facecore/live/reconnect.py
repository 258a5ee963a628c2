"""Keeping the Webcam page's WebRTC stream on: starts, dropped connections and automatic reconnections.

``StreamKeeper`` is the policy the page used to hold in a dozen session keys: the user asks for video
(``start``) or stops it (``stop``); when the connection drops while video is wanted, it records why, lets
the component go for ``RETRY_AFTER_S`` (it would restart at once, before the server has let go of the old
connection) and then asks again, ``AUTO_RECONNECTS`` times per ``DROP_WINDOW_S``, after which the user
clicks Reconnect. Pure logic: every method takes the time (``now``, ``time.time()`` seconds), so tests
drive it with a fake clock; the page keeps one object in its session and renders what it says.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Mapping

from . import rtc

RETRY_AFTER_S = 2.0  # a drop: the component is let go this long before it is asked to start again
NO_VIDEO_S = 15.0  # wanted but no video (and not playing) for this long: offer Reconnect
RETRY_STALLED_S = 10.0  # an automatic reconnection not playing after this long: try once more (within the limit)
NO_FRAMES_AFTER_S = 10.0  # playing this long without a frame reaching the detector: say so
STALL_S = 3.0  # no new frame for this long while playing: say so
AUTO_RECONNECTS, DROP_WINDOW_S = 3, 120  # reconnect by itself this often per window, then ask for a click
HISTORY_SECONDS = 15  # the stats kept for the page's chart (at up to 30 frames a second)

RERUN = "rerun"  # what ``tick`` returns when the page must rerun whole (the component starts or a drop shows)


def _history() -> deque:
    return deque(maxlen=HISTORY_SECONDS * 30)


@dataclass
class StreamKeeper:
    """One session's stream: what the user wants, what the component did, the drops of the last
    ``DROP_WINDOW_S`` and the pending automatic retry.

    ``want``: the component should play (its ``desired_playing_state``); ``drops``: ``(time, why)`` of the
    unplanned stops in the window; ``retry_at``: when an automatic (or Reconnect's) start is due;
    ``want_since``: when video was last asked for; ``started``: when the last stream began (None before
    any); ``expected``: the processor's connection count once the stream the page started sends frames;
    ``history``: the ``LiveStat`` of the last ``HISTORY_SECONDS``.
    """

    want: bool = False
    drops: list = field(default_factory=list)
    retry_at: float | None = None
    want_since: float | None = None
    started: float | None = None
    expected: int | None = None
    active: bool = False
    playing: bool = False
    history: deque = field(default_factory=_history)

    # -- the user's buttons ----------------------------------------------------------------------------
    def start(self, now: float) -> None:
        """Start (or Reconnect after the automatic tries ran out): want video, forget earlier drops."""
        self.want, self.retry_at, self.drops, self.want_since = True, None, [], now

    def stop(self) -> None:
        """Stop: no video, no pending retry."""
        self.want, self.retry_at = False, None

    def reconnect(self, now: float) -> None:
        """Let the component go for this run and start it again ``RETRY_AFTER_S`` later."""
        self.want, self.retry_at = False, now + RETRY_AFTER_S

    # -- what the component and the processor report ---------------------------------------------------
    def stream_changed(self, active: bool, playing: bool, now: float, connections: int,
                       why: Callable[[], str]) -> str | None:
        """The component's state changed (``active``: signalling or playing). Returns ``rtc.stream_change``'s
        verdict: a ``"start"`` begins fresh stats; a ``"drop"`` is recorded with ``why()`` and, within the
        limit, retried ``RETRY_AFTER_S`` later."""
        change = rtc.stream_change(self.active, self.playing, active, playing, self.want)
        self.active, self.playing = active, playing
        if change == "start":
            self.history = _history()
            self.started, self.expected = now, connections + 1
        elif change == "drop":
            self.record_drop(now, why())
            self.want = False
            if len(self.drops) <= AUTO_RECONNECTS:
                self.retry_at = now + RETRY_AFTER_S
        return change

    def record_drop(self, now: float, why: str) -> list:
        """Add a dropped connection to those of the last ``DROP_WINDOW_S``; returns them."""
        self.drops = [d for d in self.drops if now - d[0] < DROP_WINDOW_S] + [(now, why)]
        return self.drops

    def tick(self, now: float, playing: bool, connections: int, last_frame_at: float,
             why: Callable[[], str]) -> str | None:
        """The page's periodic check; returns ``RERUN`` when the whole page must run again: a retry is
        due (the component starts), an automatic reconnection did not take within ``RETRY_STALLED_S``
        (streamlit-webrtc can pick up the dropped connection's answer: stop and start again, one more
        try), or frames come from a connection the page did not start (the browser re-made a dropped
        one at once and the page never saw it stop: a drop, recorded with ``why()``)."""
        if self.retry_at is not None and now >= self.retry_at:
            self.retry_at, self.want, self.want_since = None, True, now
            return RERUN
        asked = self.want_since if self.want_since is not None else now
        if (self.want and not playing and self.drops and now - asked > RETRY_STALLED_S
                and len(self.drops) < AUTO_RECONNECTS):
            self.drops = [*self.drops, (now, self.drops[-1][1])]
            self.reconnect(now)
            return RERUN
        if (self.want and self.expected is not None and connections > self.expected
                and now - last_frame_at < STALL_S):
            self.record_drop(now, why())
            self.expected = connections
            return RERUN
        return None

    # -- what the page shows ---------------------------------------------------------------------------
    @property
    def retrying(self) -> bool:
        """A start is pending (an automatic retry or Reconnect's)."""
        return self.retry_at is not None

    @property
    def auto_reconnecting(self) -> bool:
        """The connection dropped and it reconnects by itself (else, with drops, it waits for a click)."""
        return bool(self.drops) and (self.want or self.retrying)

    def refreshing(self, playing: bool) -> bool:
        """The stats need polling: video plays, is wanted, or a start is pending."""
        return playing or self.want or self.retrying

    def no_video_s(self, now: float, playing: bool, last_frame_at: float) -> float | None:
        """Seconds without video while it is wanted and not playing, once over ``NO_VIDEO_S`` (the page
        offers Reconnect: never a silent stop), else None."""
        asked = self.want_since if self.want_since is not None else now
        since = max(last_frame_at, asked)
        if self.want and not playing and since and now - since > NO_VIDEO_S:
            return now - since
        return None

    def no_frames_yet(self, now: float, playing: bool) -> bool:
        """Playing for over ``NO_FRAMES_AFTER_S`` and no frame has reached the detector (call it while
        ``history`` is empty)."""
        return playing and now - (self.started if self.started is not None else now) > NO_FRAMES_AFTER_S

    def stopped(self, playing: bool) -> bool:
        """A stream ran and was stopped (no retry pending): its figures are no longer live."""
        return self.started is not None and not playing and not self.want and not self.retrying

    @staticmethod
    def stalled_s(now: float, playing: bool, last_stat_time: float) -> float | None:
        """Seconds since the last frame while playing, once over ``STALL_S``, else None."""
        return now - last_stat_time if playing and now - last_stat_time > STALL_S else None

    def explain(self, config: Mapping, *, local: bool, frames: int, last_frame_at: float, now: float) -> str:
        """Why the stream dropped, in words (``rtc.explain_drop``), from the last stats of the stream."""
        last = self.history[-1] if self.history else None
        _, message = rtc.explain_drop(
            config, local=local, frames=max(frames, last.frame if last else 0),
            stall_s=now - last_frame_at if last_frame_at else 0.0, fps=last.fps if last else 0.0,
            camera_fps=last.camera_fps if last else 0.0, latency_ms=last.latency_ms if last else 0.0)
        return message
