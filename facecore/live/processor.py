"""Live video: the per-frame processor behind the Webcam page's WebRTC callback.

The WebRTC callback runs on a worker thread of streamlit-webrtc, not on the Streamlit script
thread. So the page never calls into the model itself: it hands the processor a detector and
``LiveSettings`` (``configure``, lock-protected; the very next frame runs the model with them) and
reads ``LiveStat`` records back from a bounded queue (``drain_stats``). Nothing here touches Streamlit.

Frame rate and model latency (``facecore.live.pacing``: delivered fps, ``RateMeter``, ``SentMark``) are
computed here, once per frame, into the ``LiveStat`` that the overlay (``overlay_text``) and the
page show, so the two always read the same.

Lag: streamlit-webrtc's async mode hands the callback every frame that arrived while the previous
one was being processed; ``process_queued`` works on the newest one only and counts the rest as
skipped, so a slow model lowers the frame rate but never builds up a backlog.

Load: when the stream skips more than half of the camera's frames, the processor takes a lighter path
(``facecore.live.pacing.LoadGovernor``): the model runs on fewer frames, the boxes held in between.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from dataclasses import dataclass

import numpy as np

from ..detect import Detection, Detector, HaarDetector, draw_detections, draw_overlay
from .pacing import LEVELS, LoadGovernor, RateMeter, SentMark
from ..preprocess import shrink
from ..smoothing import BoxSmoother

log = logging.getLogger(__name__)
UNSET = object()


@dataclass(frozen=True)
class LiveSettings:
    """What the page controls while streaming.

    ``threshold``: minimum score for a box to be drawn (or blurred). ``blur``: blur faces instead of
    boxing them. ``smoothing`` in [0, 1): weight of the previous box in the moving average of each
    face's box (0 = raw boxes). ``overlay``: draw the "fps | latency | detector" line on the video.
    """

    threshold: float = 0.5
    blur: bool = False
    smoothing: float = 0.6
    overlay: bool = True

    def __post_init__(self):
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {self.threshold}")
        if not 0.0 <= self.smoothing < 1.0:
            raise ValueError(f"smoothing must be in [0, 1), got {self.smoothing}")


@dataclass(frozen=True)
class LiveStat:
    """One delivered frame, as reported to the page.

    ``probability``: the best detection's score (0 when none); ``faces``: boxes shown; ``label``: the
    best detection's label ("face", or a name from a recognizer); ``fps``: delivered frames per second
    and ``latency_ms``: mean model time, both over the last ``WINDOW_S`` s; ``detect_fps``: model
    calls per second; ``camera_fps``: frames arriving from the browser per second; ``dropped``: stale
    frames skipped so far this stream; ``detector``: the detector that found the boxes on this frame;
    ``held``: the boxes come from an earlier frame (lighter path); ``light``: the lighter path in use
    ("" when every frame runs the model); ``error``: a detector failure, else "".
    """

    time: float
    frame: int
    probability: float
    faces: int
    label: str
    fps: float
    latency_ms: float
    dropped: int
    detector: str
    error: str = ""
    detect_fps: float = 0.0
    camera_fps: float = 0.0
    held: bool = False
    light: str = ""


def overlay_text(stat: LiveStat) -> str:
    """The status line drawn on the video; the page shows the same string beside it."""
    text = f"{stat.fps:.1f} fps | {stat.latency_ms:.0f} ms | {stat.detector or 'no detector'}"
    return text + (" | light" if stat.light else "")



# Live frames are scanned at this width at most: the cascade's cost grows with pixels, and webcam
# faces are large, so a quarter of the pixels of 640x480 keeps the same faces at a usable frame rate.
LIVE_HAAR_MAX_WIDTH = 320


def _own_instance(detector: Detector | None) -> Detector | None:
    """OpenCV cascades are not safe to share between threads: the callback gets its own copy."""
    if isinstance(detector, HaarDetector):
        return HaarDetector(detector.scale_factor, detector.min_neighbors, detector.min_size,
                            min(detector.max_width, LIVE_HAAR_MAX_WIDTH), detector.stretch, detector.shift)
    return detector


def _warm_up(detector: Detector | None) -> None:
    """One call on a blank frame, on the page's thread: a model's first call can take seconds (lazy
    set-up), which the stream would otherwise spend frozen (streamlit-webrtc gives up after 10 s)."""
    if detector is None:
        return
    try:
        detector.detect(np.zeros((120, 160, 3), np.uint8))
    except Exception:  # noqa: BLE001 - a failing model is reported on the frames it fails on
        log.debug("warm-up of %s failed", detector.name, exc_info=True)


class LiveProcessor:
    """Runs a detector on video frames and draws the result; safe to reconfigure from another thread.

    ``process(rgb)`` works on RGB uint8 arrays (H, W, 3); ``__call__(av.VideoFrame)`` is a
    streamlit-webrtc ``video_frame_callback``; ``process_queued(frames)`` a
    ``queued_video_frames_callback`` that drops stale frames. Stats go to a queue of at most
    ``stats_size`` records; when the page does not read them the oldest are discarded.
    ``adaptive=False`` keeps the full path (every frame runs the model) whatever the load.
    """

    def __init__(self, detector: Detector | None = None, settings: LiveSettings = LiveSettings(),
                 stats_size: int = 300, adaptive: bool = True):
        self._lock = threading.Lock()  # guards _detector/_settings/_dirty/_pending_reset
        self._sent_lock = threading.Lock()  # guards _sent/_observed (ticked from the WebRTC event loop)
        self._run_lock = threading.Lock()  # one frame at a time; guards the per-stream state below
        self._detector = _own_instance(detector)
        self._source: Detector | None = detector
        self._settings = settings
        self._dirty = True  # something changed: the next frame runs the model
        self._pending_reset = 0  # 1: new detector (smoothing, latency, load step); 2: new stream (and counters)
        self.adaptive = adaptive
        self.stats: queue.Queue[LiveStat] = queue.Queue(maxsize=stats_size)
        self.frames = 0
        self.dropped = 0
        # peer connections that sent frames: each runs process_queued on an event loop of its own, so a
        # connection the browser re-made by itself is counted even when the page never saw it stop
        self.connections = 0
        self._loop = None
        self.started_at = self.last_frame_at = 0.0  # time.time() of the stream's start / last frame
        self._new_stream_state()
        self._new_detector_state()

    def _new_stream_state(self) -> None:
        self._made, self._arrived = RateMeter(), RateMeter()
        with self._sent_lock:
            self._sent, self._observed = RateMeter(), False

    def _new_detector_state(self) -> None:
        self._smoother = BoxSmoother(self._settings.smoothing)
        self._latency, self._detections = RateMeter(), RateMeter()
        self._governor = LoadGovernor()
        self._held: list[Detection] = []
        self._held_best: Detection | None = None
        self._since_model = 0

    # -- called from the page's thread ---------------------------------------------------------
    def configure(self, detector: Detector | None | object = UNSET, settings: LiveSettings | None = None) -> None:
        """Switch detector and/or settings; the very next frame runs the model with them. A new
        detector restarts smoothing and the latency figure; ``detector=None`` passes frames through
        unchanged but for the overlay."""
        own = UNSET
        if detector is not UNSET and detector is not self._source:
            own = _own_instance(detector)
            _warm_up(own)
        with self._lock:
            if own is not UNSET:
                self._source, self._detector = detector, own
                self._pending_reset = max(self._pending_reset, 1)
                self._dirty = True
            if settings is not None and settings != self._settings:
                self._settings = settings
                self._dirty = True

    @property
    def settings(self) -> LiveSettings:
        with self._lock:
            return self._settings

    @property
    def detector_name(self) -> str:
        with self._lock:
            return self._detector.name if self._detector is not None else ""

    def drain_stats(self, limit: int | None = None) -> list[LiveStat]:
        """The stats produced since the last call, oldest first (at most ``limit``)."""
        out: list[LiveStat] = []
        while limit is None or len(out) < limit:
            try:
                out.append(self.stats.get_nowait())
            except queue.Empty:
                break
        return out

    def reset_stream(self) -> None:
        """Forget timing, smoothing, load step and counters (a new stream starts)."""
        with self._lock:
            self._pending_reset = 2
            self._dirty = True
            self.started_at, self.last_frame_at = time.time(), 0.0

    # -- called from the WebRTC worker thread --------------------------------------------------
    def process(self, rgb: np.ndarray, arrived: int = 1) -> np.ndarray:
        """Detect faces in RGB uint8 ``rgb`` (H, W, 3) and return an annotated copy. ``arrived``: camera
        frames this one stands for (itself and the stale ones skipped before it).

        On the lighter path some frames reuse the previous boxes instead of running the model. A
        detector that raises does not end the stream: the frame is returned with the error written
        on it, and the error goes out in the stats.
        """
        with self._run_lock:
            detector, settings, dirty = self._begin_frame()
            now = time.perf_counter()
            self._arrived.tick(now, arrived)
            self.dropped += arrived - 1
            level = LEVELS[self._governor.level if self.adaptive else 0]
            error, name = "", detector.name if detector is not None else ""
            if dirty or self._since_model + 1 >= level.stride:
                self._smoother.alpha = settings.smoothing
                t0 = time.perf_counter()
                try:
                    dets = detector.detect(shrink(rgb, level.width)) if detector is not None else []
                except Exception as exc:  # noqa: BLE001 - the stream must survive a failing model
                    log.exception("detector %s failed on a live frame", name or detector)
                    error, dets = f"{type(exc).__name__}: {exc}", []
                self._latency.tick(now, (time.perf_counter() - t0) * 1000)
                self._detections.tick(now)
                self._held = self._smoother.update([d for d in dets if d.score >= settings.threshold])
                self._held_best, self._since_model, held = (dets[0] if dets else None), 0, False
                with self._lock:  # a change made while the model ran is drawn on this frame already
                    settings = self._settings
            else:
                self._since_model, held = self._since_model + 1, True
            out = draw_detections(rgb, self._held, threshold=settings.threshold, blur=settings.blur)
            done = time.perf_counter()
            self._made.tick(done)
            self.frames += 1
            self.last_frame_at = time.time()
            fps, camera_fps = self._delivered_fps(done), self._arrived.rate(done)
            best = self._held_best
            stat = LiveStat(
                time=self.last_frame_at, frame=self.frames, probability=float(best.score) if best else 0.0,
                faces=sum(d.score >= settings.threshold for d in self._held), label=best.label if best else "",
                fps=fps, latency_ms=self._latency.mean(done), dropped=self.dropped, detector=name, error=error,
                detect_fps=self._detections.rate(done), camera_fps=camera_fps, held=held, light=level.text)
            if settings.overlay:
                draw_overlay(out, overlay_text(stat))
            if error:
                draw_overlay(out[out.shape[0] // 2:], error[:80])
            if self.adaptive:  # the model's share only: a slow encoder is not helped by a lighter model path
                self._governor.update(done, self._made.rate(done), camera_fps)
            self._push(stat)
            return out

    def __call__(self, frame, arrived: int = 1):
        """streamlit-webrtc ``video_frame_callback``: ``av.VideoFrame`` in, annotated ``av.VideoFrame`` out."""
        import av

        try:
            rgb = frame.to_ndarray(format="rgb24")
        except Exception:  # noqa: BLE001 - a frame that cannot be converted must not end the stream
            log.warning("a camera frame could not be converted; dropped", exc_info=True)
            with self._run_lock:
                self.dropped += arrived
            return frame
        out = self.process(rgb, arrived)
        new = av.VideoFrame.from_ndarray(out, format="rgb24")
        new.pts, new.time_base = frame.pts, frame.time_base
        new.opaque = SentMark(self._note_sent)
        return new

    def _note_sent(self) -> None:
        with self._sent_lock:
            self._sent.tick(time.perf_counter())
            self._observed = True

    def _delivered_fps(self, now: float) -> float:
        """Frames the sender took per second when it is observed, else frames made per second."""
        with self._sent_lock:
            if self._observed:
                return self._sent.rate(now)
        return self._made.rate(now)

    async def process_queued(self, frames: list) -> list:
        """streamlit-webrtc ``queued_video_frames_callback``: every frame that arrived since the last
        call; only the newest is processed, the older ones are stale and dropped (counted)."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # held, so a new loop can never pass for the old one
            self._loop = loop
            self.connections += 1
        return [self(frames[-1], len(frames))]

    def _begin_frame(self) -> tuple[Detector | None, LiveSettings, bool]:
        """Current detector and settings, and whether they changed; applies a pending reset. Call
        holding ``_run_lock``."""
        with self._lock:
            detector, settings, dirty, reset = self._detector, self._settings, self._dirty, self._pending_reset
            self._dirty, self._pending_reset = False, 0
        if reset == 2:
            self.frames = self.dropped = 0
            self._new_stream_state()
        if reset:
            self._new_detector_state()
        return detector, settings, dirty

    def _push(self, stat: LiveStat) -> None:
        while True:
            try:
                self.stats.put_nowait(stat)
                return
            except queue.Full:
                try:  # the page is not reading: the oldest record is the least useful one
                    self.stats.get_nowait()
                except queue.Empty:
                    pass
