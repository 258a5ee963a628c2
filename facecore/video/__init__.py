"""Run a detector over a video file: decode -> batched inference -> draw (or blur) -> encode.

Frames stream through PyAV in small chunks, so memory does not grow with the video's length.
The output is a browser-playable H.264 MP4 (libx264, yuv420p, ``faststart``), with the input's
audio kept (copied when it is AAC, transcoded to AAC otherwise). It is written to a temporary
file beside the destination and renamed at the end: a failed or cancelled run leaves nothing
that looks like a finished video.

With ``VideoConfig.every`` > 0 the detector runs once per interval (the FaceVision tutorial
detects every 0.3 s) and the last boxes are held until the next sample, optionally smoothed
(``facecore.smoothing.BoxSmoother``), so playback does not flicker. Boxes are the facecore
convention: float32 normalized ``[x1, y1, x2, y2]``.

Modules: ``source`` (upload checks, opening and probing the input), ``pipeline`` (the processing
loop, ``process_video``), ``encode`` (H.264/AAC output on a writer thread), ``result`` (config,
per-frame records, exports, the timeline). The names below are the public interface.
"""

from .pipeline import process_video
from .result import FrameRecord, VideoConfig, VideoResult
from .source import DEFAULT_MAX_MB, MAX_MB_ENV, MAX_VIDEO_PIXELS, MIN_VIDEO_SIDE, VIDEO_EXTS, VideoError, VideoInfo, check_output, check_upload, format_time, max_upload_mb, new_scratch_dir, probe, store_upload

__all__ = ["DEFAULT_MAX_MB", "MAX_MB_ENV", "MAX_VIDEO_PIXELS", "MIN_VIDEO_SIDE", "VIDEO_EXTS", "FrameRecord",
           "VideoConfig", "VideoError", "VideoInfo", "VideoResult", "check_output", "check_upload", "format_time",
           "max_upload_mb", "new_scratch_dir", "probe", "process_video", "store_upload"]
