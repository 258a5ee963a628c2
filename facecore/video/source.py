"""The input side of video processing: upload checks, opening and probing a file, decoding helpers.

Everything that refuses a file (not a video, no frames, an unsupported codec, too small or too large)
raises VideoError here, before any output is written.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import FaceCoreError
from ..io import check_parents

VIDEO_EXTS = (".mp4", ".mov", ".avi", ".webm", ".mkv")
DEFAULT_MAX_MB = 200
MAX_MB_ENV = "FACETRACK_MAX_VIDEO_MB"
# Smallest and largest frames accepted (README "Limits"): libx264 needs even sides of at least 2 px,
# and a frame past 8K would hold gigabytes in the pipeline buffers.
MIN_VIDEO_SIDE = 16
MAX_VIDEO_PIXELS = 8192 * 4320
# Demuxers that open a still image: a photo renamed .mp4 is not a video.
_IMAGE_FORMATS = {"image2", "gif", "apng", "webp", "ico", "tiff", "mpjpeg"}


class VideoError(FaceCoreError):
    """A video that cannot be used: not a video, no frames, an unsupported codec, truncated."""


def max_upload_mb() -> int:
    """The upload limit in MB: ``$FACETRACK_MAX_VIDEO_MB`` or 200."""
    try:
        return max(1, int(os.environ.get(MAX_MB_ENV, DEFAULT_MAX_MB)))
    except ValueError:
        return DEFAULT_MAX_MB


def check_upload(name: str, size_bytes: int, limit_mb: int | None = None) -> None:
    """Refuse an upload by extension and size before anything is decoded. Raises VideoError."""
    limit_mb = max_upload_mb() if limit_mb is None else limit_mb
    ext = Path(name).suffix.lower()
    if ext not in VIDEO_EXTS:
        raise VideoError(f"{name}: not a supported video file; use one of {', '.join(VIDEO_EXTS)}")
    if size_bytes > limit_mb * 2**20:
        raise VideoError(f"{name} is {size_bytes / 2**20:.0f} MB, over the {limit_mb} MB limit: trim or compress it "
                         f"first (e.g. ffmpeg -i in.mp4 -vf scale=-2:720 -crf 28 out.mp4), or raise ${MAX_MB_ENV}")
    if size_bytes == 0:
        raise VideoError(f"{name} is empty (0 bytes)")


def new_scratch_dir(root: str | os.PathLike, max_age_s: float = 24 * 3600) -> Path:
    """A new private folder under ``root`` for one session's upload and result. Folders under ``root``
    untouched for ``max_age_s`` are removed first: sessions end without telling anyone."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for old in root.iterdir():
        try:
            if time.time() - old.stat().st_mtime > max_age_s:
                shutil.rmtree(old, ignore_errors=True)
        except OSError:
            pass
    return Path(tempfile.mkdtemp(prefix="session-", dir=root))


def store_upload(data, name: str, folder: str | os.PathLike, limit_mb: int | None = None) -> Path:
    """Check an uploaded video (``data``: bytes or a buffer) and write it atomically into ``folder``
    under a safe name keeping its extension. Raises VideoError (wrong type, too big, empty)."""
    view = memoryview(data)
    check_upload(name, view.nbytes, limit_mb)
    from ..io import atomic_write_bytes

    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(name).stem)[:60] or "video"
    return atomic_write_bytes(Path(folder) / f"{safe}{Path(name).suffix.lower()}", view)


def check_output(dst: str | os.PathLike, src: str | os.PathLike | None = None) -> Path:
    """Refuse an output path that is a folder, lies under a file, or is the input itself. Raises VideoError."""
    dst = Path(dst)
    if dst.is_dir():
        raise VideoError(f"{dst}: is a folder; give the .mp4 file to write, e.g. {dst / 'out.mp4'}")
    check_parents(dst)
    if src is not None and Path(src).exists() and dst.exists() and dst.resolve() == Path(src).resolve():
        raise VideoError(f"{dst}: is the input video; write the result to another file")
    return dst


def format_time(seconds: float) -> str:
    """``75.5`` -> ``"1:15.5"``."""
    m, s = divmod(max(0.0, seconds), 60)
    return f"{int(m)}:{s:04.1f}"


@dataclass(frozen=True)
class VideoInfo:
    """What ``probe`` learns from a file. ``width``/``height`` are as displayed (after rotation);
    ``frames`` is the container's count, or duration x fps when it has none."""

    width: int
    height: int
    fps: float
    duration: float
    frames: int
    codec: str
    audio: str | None = None
    rotation: int = 0
    start: float = 0.0  # time stamp of the first frame, s; output times count from it
    # seconds from the stream's start to its first decodable frame: a clip cut without re-encoding can
    # start on frames that need an earlier key frame; they cannot be decoded (``missing_start``)
    lead: float = 0.0

    def summary(self) -> str:
        audio = f", audio {self.audio}" if self.audio else ", no audio"
        return (f"{self.width}x{self.height}, {self.fps:.2f} fps, {format_time(self.duration)}, "
                f"~{self.frames} frames, {self.codec}{audio}")


def open_video(path: Path):
    """The PyAV input container of ``path``. Raises VideoError for a missing, empty or unreadable file."""
    import av

    if not path.is_file():
        raise VideoError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise VideoError(f"{path.name} is empty (0 bytes)")
    try:
        return av.open(str(path), metadata_errors="ignore")
    except av.FFmpegError as exc:
        raise VideoError(f"{path.name}: not a readable video (corrupt, truncated or not a video file): "
                         f"{reason(exc)}") from exc


def reason(exc: BaseException) -> str:
    """The short cause of an FFmpeg (or OS) error, for messages."""
    return getattr(exc, "strerror", None) or str(exc)


def video_stream(container, name: str):
    """The first video stream of ``container``. Raises VideoError for a still image, no tracks,
    audio only, or a codec PyAV cannot decode."""
    fmt = (getattr(container.format, "name", "") or "").split(",")
    if any(f in _IMAGE_FORMATS or f.endswith("_pipe") for f in fmt):
        raise VideoError(f"{name} is a still image ({fmt[0]}), not a video; use mp4, mov, avi, webm or mkv")
    if not len(container.streams):
        raise VideoError(f"{name} has no video frames (the file holds no tracks)")
    if not container.streams.video:
        raise VideoError(f"{name} has no video track" + (" (audio only)" if container.streams.audio else ""))
    stream = container.streams.video[0]
    if stream.codec_context is None:
        raise VideoError(f"{name}: the video codec is not supported; convert it to H.264 MP4 first")
    return stream


def _rate(stream) -> float:
    for r in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if r and 0 < float(r) <= 1000:
            return float(r)
    return 30.0


def rotate(rgb: np.ndarray, rotation: int) -> np.ndarray:
    """``rgb`` turned upright: ``rotation`` is counterclockwise degrees (the display matrix)."""
    k = round(rotation / 90) % 4  # np.rot90 turns counterclockwise too
    return np.ascontiguousarray(np.rot90(rgb, k)) if k else rgb


def probe(path: str | os.PathLike) -> VideoInfo:
    """Open a video and decode its first frame. Raises VideoError for anything that is not a
    playable video: not a video, no video track, unsupported codec, no frames."""
    import av

    path = Path(path)
    with open_video(path) as container:
        stream = video_stream(container, path.name)
        stream.thread_type = "AUTO"
        fps = _rate(stream)
        duration = 0.0
        if stream.duration and stream.time_base:
            duration = float(stream.duration * stream.time_base)
        elif container.duration:
            duration = container.duration / 1e6
        first = None
        try:
            decode = StartDecoder()
            for packet in container.demux(stream):
                frames = decode(packet)
                if frames:
                    first = frames[0]
                    break
        except av.FFmpegError as exc:
            raise VideoError(f"{path.name}: the video track cannot be decoded (unsupported codec or corrupt "
                             f"file): {reason(exc)}") from exc
        if first is None:
            raise VideoError(f"{path.name} has no video frames")
        rotation = int(first.rotation or 0) % 360
        w, h = first.width, first.height
        if rotation in (90, 270):
            w, h = h, w
        _check_size(path.name, w, h)
        frames = int(stream.frames or 0) or max(1, round(duration * fps))
        audio = None
        if container.streams.audio:
            a = container.streams.audio[0]
            audio = a.codec_context.name if a.codec_context is not None else "unsupported"
        start = float(first.time) if first.time is not None else 0.0
        return VideoInfo(w, h, round(fps, 3), round(duration, 3), frames, stream.codec_context.name, audio, rotation,
                         start, round(max(0.0, start - _stream_start(container, stream)), 3))


def _stream_start(container, stream) -> float:
    if stream.start_time is not None and stream.time_base:
        return float(stream.start_time * stream.time_base)
    return container.start_time / 1e6 if container.start_time is not None else 0.0


# Frame threads report a packet's decoding error a few packets late: errors this many packets past
# the first key frame may still belong to the frames before it.
_KEY_SLACK = 32


class StartDecoder:
    """Decodes a video stream's packets (``decoder(packet)`` -> frames). Until the first frame comes out,
    errors of the packets before the first key frame give no frames instead of raising: a clip cut
    without re-encoding starts on frames that need an earlier key frame, and decoding begins at the
    first one (``VideoInfo.lead`` says how much is missing). Raises av.FFmpegError otherwise."""

    def __init__(self):
        self.started, self.after_key = False, -1

    def __call__(self, packet) -> list:
        import av

        if self.after_key >= 0 or packet.is_keyframe:
            self.after_key += 1
        try:
            frames = packet.decode()
        except av.FFmpegError:
            if self.started or self.after_key > _KEY_SLACK:
                raise
            return []
        self.started = self.started or bool(frames)
        return frames


def missing_start(name: str, info: VideoInfo) -> str | None:
    """The warning for a clip whose first ``info.lead`` seconds cannot be decoded (it starts without a key
    frame), or None. This is not a truncated file: its end is intact."""
    if info.lead <= max(0.1, 1.5 / info.fps):
        return None
    return (f"{name} starts without a key frame (it was cut without re-encoding?): the first "
            f"{format_time(info.lead)} (about {round(info.lead * info.fps)} frames) cannot be decoded and are left "
            "out; the output starts at the first key frame")


def upright_rgb(frame, info: VideoInfo, warnings: list[str], t: float = 0.0) -> np.ndarray:
    """A decoded frame as upright RGB uint8 at the size of the video's first frame. A stream whose frame
    size changes part-way (a camera switching resolution, joined clips) is scaled back to the first size,
    which the output is written at, with one warning."""
    w, h = (info.height, info.width) if info.rotation in (90, 270) else (info.width, info.height)
    if (frame.width, frame.height) == (w, h):
        return rotate(frame.to_ndarray(format="rgb24"), info.rotation)
    if not any("frame size changes" in x for x in warnings):
        warnings.append(f"the frame size changes from {w}x{h} to {frame.width}x{frame.height} at {format_time(t)}: "
                        f"later frames are scaled to {w}x{h} (stretched if their shape differs)")
    return rotate(frame.to_ndarray(format="rgb24", width=w, height=h), info.rotation)


def _check_size(name: str, w: int, h: int) -> None:
    if min(w, h) < MIN_VIDEO_SIDE:
        raise VideoError(f"{name}: frames of {w}x{h} pixels are too small to find a face in "
                         f"(at least {MIN_VIDEO_SIDE}x{MIN_VIDEO_SIDE})")
    if w * h > MAX_VIDEO_PIXELS:
        raise VideoError(f"{name}: frames of {w}x{h} pixels are over the 8K limit; scale it down first "
                         "(e.g. ffmpeg -i in.mp4 -vf scale=-2:2160 out.mp4)")
