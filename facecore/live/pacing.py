"""Pacing a live stream: how fast frames are delivered, and a lighter path when the machine falls behind.

Frame rate, one definition: **delivered fps** is the number of new annotated frames the WebRTC sender
takes for the browser per second, over the last ``WINDOW_S`` seconds (``RateMeter``). Each annotated
frame carries a ``SentMark``; the hook ``facecore.live.rtc.newest_video_frames`` installs on the sender's
side calls it. Without that hook (tests, benchmarks) a frame counts when the callback returns it.
streamlit-webrtc repeats the last annotated frame while the next one is being made; a repeat is not a
new frame and is not counted. **Model latency** is the mean time of the detector calls in the same window.

Load: when the stream skips more than half of the camera's frames, ``LoadGovernor`` moves to a
lighter path (``LEVELS``): the model runs on every 2nd (then 3rd) frame and the frames in between are
delivered with the last boxes held; then the model also gets a smaller copy of the frame. It tries
the full path again later, waiting longer after each failed try.
"""

from __future__ import annotations

from collections import deque
from typing import NamedTuple

WINDOW_S = 3.0  # frame rate and latency are measured over this many seconds


class Level(NamedTuple):
    """One step of the lighter path: the model runs on every ``stride``-th frame, on a copy at most
    ``width`` pixels wide (None: the frame as it comes)."""

    stride: int
    width: int | None
    text: str


LEVELS = (
    Level(1, None, ""),
    Level(2, None, "model on every 2nd frame, boxes held in between"),
    Level(2, 240, "model on every 2nd frame at 240 px wide, boxes held in between"),
    Level(3, 240, "model on every 3rd frame at 240 px wide, boxes held in between"),
)



class RateMeter:
    """Events per second over the last ``window_s`` seconds: ``(count - first) / span`` of the events
    inside the window, so a steady stream reads its true rate from the second event on."""

    def __init__(self, window_s: float = WINDOW_S):
        self.window_s = window_s
        self._events: deque[tuple[float, float]] = deque()  # (time, weight)

    def tick(self, now: float, weight: float = 1.0) -> None:
        self._events.append((now, weight))
        self._prune(now)

    def _prune(self, now: float) -> None:
        while self._events and self._events[0][0] < now - self.window_s:
            self._events.popleft()

    def rate(self, now: float) -> float:
        self._prune(now)
        if len(self._events) < 2:
            return 0.0
        span = self._events[-1][0] - self._events[0][0]
        return sum(w for _, w in list(self._events)[1:]) / span if span > 0 else 0.0

    def mean(self, now: float) -> float:
        """Mean weight of the events in the window (e.g. latencies), 0 when none."""
        self._prune(now)
        return sum(w for _, w in self._events) / len(self._events) if self._events else 0.0


class LoadGovernor:
    """Chooses the ``LEVELS`` step from how many camera frames the stream keeps up with.

    More than half the camera's frames skipped over a full window: one step lighter. All of them kept
    (90 %+) at a lighter step: after ``probe_s`` seconds try one step heavier; a try that has to be
    undone within ``2 * WINDOW_S`` doubles the wait (up to ``max_probe_s``), so a machine that cannot
    take the full path is not made to stutter every few seconds.
    """

    def __init__(self, probe_s: float = 10.0, max_probe_s: float = 80.0, levels: int = len(LEVELS)):
        self.level, self.top = 0, levels - 1
        self.base_probe_s, self.max_probe_s = probe_s, max_probe_s
        self.probe_s = probe_s
        self._changed_at: float | None = None
        self._probed_at: float | None = None

    def update(self, now: float, delivered_fps: float, camera_fps: float) -> int:
        if self._changed_at is None:
            self._changed_at = now
        since = now - self._changed_at
        if camera_fps <= 0 or since < WINDOW_S:
            return self.level  # the window still holds frames of the previous step
        kept = delivered_fps / camera_fps
        if kept < 0.5 and self.level < self.top:
            if self._probed_at is not None and now - self._probed_at < 2 * WINDOW_S:
                self.probe_s = min(2 * self.probe_s, self.max_probe_s)
            self.level, self._changed_at, self._probed_at = self.level + 1, now, None
        elif kept >= 0.9 and self.level > 0 and since >= self.probe_s:
            self.level, self._changed_at, self._probed_at = self.level - 1, now, now
        return self.level


class SentMark:
    """Tag on an annotated ``av.VideoFrame`` (its ``opaque``): ``sent()`` is called when the WebRTC
    sender takes the frame and says whether this is the first time (streamlit-webrtc re-sends the
    last frame); only the first call counts."""

    __slots__ = ("_note", "_done")

    def __init__(self, note):
        self._note, self._done = note, False

    def sent(self) -> bool:
        if self._done:
            return False
        self._done = True
        self._note()
        return True
