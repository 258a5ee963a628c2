"""What a video run is asked (``VideoConfig``) and what it gives back (``VideoResult``: per-frame
records, a preview gallery, CSV/JSON exports, the face-probability timeline that the Video page plots).

Boxes are the facecore convention: float32 normalized ``[x1, y1, x2, y2]``.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .. import boxes as B
from ..detect import Detection
from ..errors import FaceCoreError
from .source import VideoInfo


@dataclass(frozen=True)
class VideoConfig:
    """How a video is processed.

    threshold: boxes at or above it are drawn (or blurred).
    every: seconds between detector runs; 0 runs it on every frame. Frames in between hold the last boxes.
    smooth: 0..0.95, the weight of the previous box when a face is seen again (exponential smoothing).
    blur: blur faces instead of boxing them.
    batch_size: frames per inference call (``detect_batch``).
    crf, preset: libx264 quality (lower crf = better, bigger) and speed.
    encoder_threads: libx264 threads (0: its default, about 1.5 per core).
    gallery_size: annotated frames kept, evenly spaced, for a preview gallery.
    allow_truncated: keep the readable start of a truncated or damaged file (with a warning)
        instead of refusing it.
    """

    threshold: float = 0.5
    every: float = 0.0
    smooth: float = 0.0
    blur: bool = False
    batch_size: int = 16
    crf: int = 23
    # ultrafast: about 3.5 CPU ms a 640x480 frame against superfast's 6 (a third of the whole pipeline's work
    # with a detector), for files about 1.5-2x larger at the same crf (benchmarks/video.py)
    preset: str = "ultrafast"
    gallery_size: int = 12
    allow_truncated: bool = False
    encoder_threads: int = 0

    def __post_init__(self):
        if not 0.0 <= self.threshold <= 1.0:
            raise FaceCoreError(f"threshold must be between 0 and 1, not {self.threshold}")
        if not (0 <= self.every < float("inf")):  # NaN fails every comparison
            raise FaceCoreError(f"the sampling interval must be 0 (every frame) or positive, not {self.every}")
        if not 0.0 <= self.smooth <= 0.95:
            raise FaceCoreError(f"smoothing must be between 0 and 0.95, not {self.smooth}")
        if self.batch_size < 1:
            raise FaceCoreError("batch_size must be at least 1")


@dataclass(frozen=True)
class FrameRecord:
    """One output frame: its index, time in seconds from the first frame, whether the detector ran
    on it (``sampled``; otherwise ``detections`` are the held ones) and what was drawn from."""

    index: int
    time: float
    sampled: bool
    detections: tuple[Detection, ...]

    @property
    def score(self) -> float:
        """The best face probability in this frame (0 when the detector found nothing)."""
        return max((d.score for d in self.detections), default=0.0)


@dataclass
class VideoResult:
    """A processed video: the output file, per-frame records and a few annotated frames.

    ``gallery`` holds ``(time s, RGB uint8 thumbnail)`` pairs; ``warnings`` are problems that did not
    stop processing (audio dropped, the file ended before its declared length).
    """

    output: Path
    info: VideoInfo
    config: VideoConfig
    detector: str
    records: list[FrameRecord]
    gallery: list[tuple[float, np.ndarray]] = field(default_factory=list)
    seconds: float = 0.0
    audio_kept: bool = False
    warnings: list[str] = field(default_factory=list)

    @property
    def frames(self) -> int:
        return len(self.records)

    @property
    def face_frames(self) -> int:
        """Frames whose best face probability reaches the threshold (a face is boxed or blurred there)."""
        return sum(1 for r in self.records if r.score >= self.config.threshold)

    @property
    def most_faces(self) -> int:
        """The most faces boxed (or blurred) in one frame: detections at or above the threshold."""
        return max((sum(d.score >= self.config.threshold for d in r.detections) for r in self.records), default=0)

    @property
    def fps(self) -> float:
        """End-to-end processing speed, frames per second."""
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def rows(self) -> list[dict]:
        """One row per (frame, detection); a frame without detections gets one row with empty fields.
        Boxes are normalized ``x1, y1, x2, y2`` and pixels of the output frame."""
        w, h = self.info.width, self.info.height
        out = []
        for r in self.records:
            base = {"frame": r.index, "time": round(r.time, 4), "sampled": int(r.sampled)}
            if not r.detections:
                out.append({**base, "face": "", "label": "", "score": "", "shown": 0, "x1": "", "y1": "", "x2": "",
                            "y2": "", "px1": "", "py1": "", "px2": "", "py2": ""})
                continue
            px = B.to_pixels_int(np.stack([d.box for d in r.detections]), w, h)
            for k, d in enumerate(r.detections):
                x1, y1, x2, y2 = (round(float(v), 5) for v in d.box)
                out.append({**base, "face": k, "label": d.label, "score": round(float(d.score), 5),
                            "shown": int(d.score >= self.config.threshold), "x1": x1, "y1": y1, "x2": x2, "y2": y2,
                            "px1": int(px[k, 0]), "py1": int(px[k, 1]), "px2": int(px[k, 2]), "py2": int(px[k, 3])})
        return out

    def to_csv(self) -> str:
        """Per-frame detections as CSV (see ``rows``)."""
        buf = io.StringIO()
        rows = self.rows()
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else ["frame"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return buf.getvalue()

    def to_dict(self) -> dict:
        """Video info, settings and per-frame detections (normalized boxes), JSON-ready."""
        return {
            "video": asdict(self.info), "detector": self.detector, "config": asdict(self.config),
            "frames": [{"frame": r.index, "time": round(r.time, 4), "sampled": r.sampled,
                        "detections": [{"label": d.label, "score": round(float(d.score), 5),
                                        "box": [round(float(v), 5) for v in d.box]} for d in r.detections]}
                       for r in self.records],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    def timeline(self) -> tuple[np.ndarray, np.ndarray]:
        """``(times, scores)`` of the frames the detector ran on: face probability over time."""
        pts = [(r.time, r.score) for r in self.records if r.sampled]
        if not pts:
            return np.zeros(0), np.zeros(0)
        t, s = zip(*pts)
        return np.asarray(t, np.float64), np.asarray(s, np.float64)


