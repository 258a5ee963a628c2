"""Live video: the per-frame processor behind the Webcam page's WebRTC callback.

The WebRTC callback runs on a worker thread of streamlit-webrtc, not on the Streamlit script
thread. So the page never calls into the model itself: it hands the processor a detector and
``LiveSettings`` (``configure``, lock-protected, takes effect on the next frame) and reads
``LiveStat`` records back from a bounded queue (``drain_stats``). Nothing here touches Streamlit.

Lag: streamlit-webrtc's async mode hands the callback every frame that arrived while the previous
one was being processed; ``process_queued`` runs the model on the newest one only and counts the
rest as dropped, so a slow model lowers the frame rate but never builds up a backlog.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from . import boxes as B
from .detect import Detection, Detector, HaarDetector, Timer, draw_detections, draw_overlay

log = logging.getLogger(__name__)
UNSET = object()


@dataclass(frozen=True)
class LiveSettings:
    """What the page controls while streaming.

    ``threshold``: minimum score for a box to be drawn (or blurred). ``blur``: blur faces instead of
    boxing them. ``smoothing`` in [0, 1): weight of the previous box in the moving average of each
    face's box (0 = raw boxes). ``overlay``: draw the "fps | latency" line on the video.
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
    """One processed frame, as reported to the page.

    ``probability``: the best detection's score (0 when none); ``faces``: detections at or above the
    threshold; ``label``: the best detection's label ("face", or a name from a recognizer);
    ``fps`` / ``latency_ms``: moving averages of processed frames per second and model time;
    ``dropped``: stale frames skipped so far this stream; ``error``: a detector failure, else "".
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


class BoxSmoother:
    """Moving average of each face's box across frames, so boxes do not jitter.

    Detections are matched to the previous frame's smoothed boxes greedily by IoU (best score first);
    a matched box becomes ``alpha * previous + (1 - alpha) * current``; an unmatched one starts fresh,
    so a face that moves far (IoU < ``min_iou``) jumps instead of sliding. Scores and labels stay raw.
    """

    def __init__(self, alpha: float = 0.6, min_iou: float = 0.3):
        self.alpha, self.min_iou = alpha, min_iou
        self._prev = B.EMPTY.copy()

    def reset(self) -> None:
        self._prev = B.EMPTY.copy()

    def update(self, detections: Sequence[Detection]) -> list[Detection]:
        """Smoothed copies of ``detections`` (same order); remembers them for the next frame."""
        if not detections:
            self._prev = B.EMPTY.copy()
            return []
        cur = B.as_boxes([d.box for d in detections])
        out = cur.copy()
        if self.alpha > 0 and len(self._prev):
            ious = B.iou_matrix(cur, self._prev)
            taken: set[int] = set()
            for i in range(len(cur)):
                for j in np.argsort(-ious[i]):
                    if ious[i, j] < self.min_iou:
                        break
                    if j not in taken:
                        taken.add(int(j))
                        out[i] = self.alpha * self._prev[j] + (1 - self.alpha) * cur[i]
                        break
        self._prev = out
        return [Detection(d.score, out[i].astype(np.float32), d.label) for i, d in enumerate(detections)]


# Live frames are scanned at this width at most: the cascade's cost grows with pixels, and webcam
# faces are large, so a quarter of the pixels of 640x480 keeps the same faces at a usable frame rate.
LIVE_HAAR_MAX_WIDTH = 320


def _own_instance(detector: Detector | None) -> Detector | None:
    """OpenCV cascades are not safe to share between threads: the callback gets its own copy."""
    if isinstance(detector, HaarDetector):
        return HaarDetector(detector.scale_factor, detector.min_neighbors, detector.min_size,
                            min(detector.max_width, LIVE_HAAR_MAX_WIDTH))
    return detector


class LiveProcessor:
    """Runs a detector on video frames and draws the result; safe to reconfigure from another thread.

    ``process(rgb)`` works on RGB uint8 arrays (H, W, 3); ``__call__(av.VideoFrame)`` is a
    streamlit-webrtc ``video_frame_callback``; ``process_queued(frames)`` a
    ``queued_video_frames_callback`` that drops stale frames. Stats go to a queue of at most
    ``stats_size`` records; when the page does not read them the oldest are discarded.
    """

    def __init__(self, detector: Detector | None = None, settings: LiveSettings = LiveSettings(),
                 stats_size: int = 300):
        self._lock = threading.Lock()  # guards _detector/_settings/_pending_reset
        self._run_lock = threading.Lock()  # one frame at a time; guards the per-stream state below
        self._detector = _own_instance(detector)
        self._source: Detector | None = detector
        self._settings = settings
        self._pending_reset = 0  # 1: new detector (restart smoothing and timing); 2: new stream (and counters)
        self.stats: queue.Queue[LiveStat] = queue.Queue(maxsize=stats_size)
        self._timer = Timer()
        self._smoother = BoxSmoother(settings.smoothing)
        self.frames = 0
        self.dropped = 0

    # -- called from the page's thread ---------------------------------------------------------
    def configure(self, detector: Detector | None | object = UNSET, settings: LiveSettings | None = None) -> None:
        """Switch detector and/or settings; the next frame uses them. A new detector restarts smoothing;
        ``detector=None`` passes frames through unchanged but for the overlay."""
        with self._lock:
            if detector is not UNSET and detector is not self._source:
                self._source, self._detector = detector, _own_instance(detector)
                self._pending_reset = max(self._pending_reset, 1)
            if settings is not None:
                self._settings = settings

    @property
    def settings(self) -> LiveSettings:
        with self._lock:
            return self._settings

    @property
    def detector_name(self) -> str:
        with self._lock:
            return getattr(self._detector, "name", "")

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
        """Forget timing, smoothing and counters (a new stream starts)."""
        with self._lock:
            self._pending_reset = 2

    # -- called from the WebRTC worker thread --------------------------------------------------
    def process(self, rgb: np.ndarray) -> np.ndarray:
        """Detect faces in RGB uint8 ``rgb`` (H, W, 3) and return an annotated copy.

        A detector that raises does not end the stream: the frame is returned with the error written
        on it, and the error goes out in the stats.
        """
        with self._run_lock:
            detector, settings = self._begin_frame()
            self._smoother.alpha = settings.smoothing
            error = ""
            t0 = time.perf_counter()
            try:
                dets = detector.detect(rgb) if detector is not None else []
            except Exception as exc:  # noqa: BLE001 - the stream must survive a failing model
                log.exception("detector %s failed on a live frame", getattr(detector, "name", detector))
                error, dets = f"{type(exc).__name__}: {exc}", []
            latency = time.perf_counter() - t0
            self._timer.update(latency)
            self.frames += 1
            shown = [d for d in dets if d.score >= settings.threshold]
            smoothed = self._smoother.update(shown)
            out = draw_detections(rgb, smoothed, threshold=settings.threshold, blur=settings.blur)
            if settings.overlay:
                draw_overlay(out, f"{self._timer.text()} | {getattr(detector, 'name', 'no detector')}")
            if error:
                draw_overlay(out[out.shape[0] // 2:], error[:80])
            best = dets[0] if dets else None
            self._push(LiveStat(
                time=time.time(), frame=self.frames, probability=float(best.score) if best else 0.0,
                faces=len(shown), label=best.label if best else "", fps=self._timer.fps,
                latency_ms=self._timer.latency_ms, dropped=self.dropped,
                detector=getattr(detector, "name", ""), error=error))
            return out

    def __call__(self, frame):
        """streamlit-webrtc ``video_frame_callback``: ``av.VideoFrame`` in, annotated ``av.VideoFrame`` out."""
        import av

        out = self.process(frame.to_ndarray(format="rgb24"))
        new = av.VideoFrame.from_ndarray(out, format="rgb24")
        new.pts, new.time_base = frame.pts, frame.time_base
        return new

    async def process_queued(self, frames: list) -> list:
        """streamlit-webrtc ``queued_video_frames_callback``: every frame that arrived since the last
        call; only the newest is processed, the older ones are stale and dropped (counted)."""
        with self._run_lock:
            self._begin_frame()
            self.dropped += len(frames) - 1
        return [self(frames[-1])]

    def _begin_frame(self) -> tuple[Detector | None, LiveSettings]:
        """Current detector and settings; applies a pending reset. Call holding ``_run_lock``."""
        with self._lock:
            detector, settings, reset = self._detector, self._settings, self._pending_reset
            self._pending_reset = 0
        if reset:
            self._timer = Timer()
            self._smoother.reset()
        if reset == 2:
            self.frames = self.dropped = 0
        return detector, settings

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

