"""Run a detector over a video file: decode -> batched inference -> draw (or blur) -> encode.

Frames stream through PyAV in small chunks, so memory does not grow with the video's length.
The output is a browser-playable H.264 MP4 (libx264, yuv420p, ``faststart``), with the input's
audio kept (copied when it is AAC, transcoded to AAC otherwise). It is written to a temporary
file beside the destination and renamed at the end: a failed or cancelled run leaves nothing
that looks like a finished video.

With ``VideoConfig.every`` > 0 the detector runs once per interval (the FaceVision tutorial
detects every 0.3 s) and the last boxes are held until the next sample, optionally smoothed, so
playback does not flicker. Boxes are the facecore convention: float32 normalized ``[x1, y1, x2, y2]``.
"""

from __future__ import annotations

import csv
import io
import json
import os
import queue
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from . import boxes as B
from .detect import Detection, draw_detections
from .errors import FaceCoreError, StorageError
from .jobs import Cancel, Progress, ProgressFn, ignore
from .io import check_parents, publish, recover_swaps, storage_errors, storage_message

VIDEO_EXTS = (".mp4", ".mov", ".avi", ".webm", ".mkv")
DEFAULT_MAX_MB = 200
MAX_MB_ENV = "FACETRACK_MAX_VIDEO_MB"
# Smallest and largest frames accepted (README "Limits"): libx264 needs even sides of at least 2 px,
# and a frame past 8K would hold gigabytes in the pipeline buffers.
MIN_VIDEO_SIDE = 16
MAX_VIDEO_PIXELS = 8192 * 4320
# Demuxers that open a still image: a photo renamed .mp4 is not a video.
_IMAGE_FORMATS = {"image2", "gif", "apng", "webp", "ico", "tiff", "mpjpeg"}

# Frames waiting in each pipeline stage are capped by bytes, not count, so 4K input stays bounded too.
_BUFFER_BYTES = 64 * 2**20


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


def store_upload(data, name: str, folder: str | os.PathLike, limit_mb: int | None = None) -> Path:
    """Check an uploaded video (``data``: bytes or a buffer) and write it atomically into ``folder``
    under a safe name keeping its extension. Raises VideoError (wrong type, too big, empty)."""
    view = memoryview(data)
    check_upload(name, view.nbytes, limit_mb)
    from .io import atomic_write_bytes

    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(name).stem)[:60] or "video"
    return atomic_write_bytes(Path(folder) / f"{safe}{Path(name).suffix.lower()}", view)


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

    def summary(self) -> str:
        audio = f", audio {self.audio}" if self.audio else ", no audio"
        return (f"{self.width}x{self.height}, {self.fps:.2f} fps, {format_time(self.duration)}, "
                f"~{self.frames} frames, {self.codec}{audio}")


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
    preset: str = "superfast"
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


def format_time(seconds: float) -> str:
    """``75.5`` -> ``"1:15.5"``."""
    m, s = divmod(max(0.0, seconds), 60)
    return f"{int(m)}:{s:04.1f}"


def _open(path: Path):
    import av

    if not path.is_file():
        raise VideoError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise VideoError(f"{path.name} is empty (0 bytes)")
    try:
        return av.open(str(path), metadata_errors="ignore")
    except av.FFmpegError as exc:
        raise VideoError(f"{path.name}: not a readable video (corrupt, truncated or not a video file): "
                         f"{_reason(exc)}") from exc


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc)


def _video_stream(container, name: str):
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


def _rotate(rgb: np.ndarray, rotation: int) -> np.ndarray:
    # rotation is counterclockwise degrees (display matrix); np.rot90 turns counterclockwise too.
    k = round(rotation / 90) % 4
    return np.ascontiguousarray(np.rot90(rgb, k)) if k else rgb


def probe(path: str | os.PathLike) -> VideoInfo:
    """Open a video and decode its first frame. Raises VideoError for anything that is not a
    playable video: not a video, no video track, unsupported codec, no frames."""
    import av

    path = Path(path)
    with _open(path) as container:
        stream = _video_stream(container, path.name)
        stream.thread_type = "AUTO"
        fps = _rate(stream)
        duration = 0.0
        if stream.duration and stream.time_base:
            duration = float(stream.duration * stream.time_base)
        elif container.duration:
            duration = container.duration / 1e6
        first = None
        try:
            for frame in container.decode(stream):
                first = frame
                break
        except av.FFmpegError as exc:
            raise VideoError(f"{path.name}: the video track cannot be decoded (unsupported codec or corrupt "
                             f"file): {_reason(exc)}") from exc
        if first is None:
            raise VideoError(f"{path.name} has no video frames")
        rotation = int(first.rotation or 0) % 360
        w, h = first.width, first.height
        if rotation in (90, 270):
            w, h = h, w
        if min(w, h) < MIN_VIDEO_SIDE:
            raise VideoError(f"{path.name}: frames of {w}x{h} pixels are too small to find a face in "
                             f"(at least {MIN_VIDEO_SIDE}x{MIN_VIDEO_SIDE})")
        if w * h > MAX_VIDEO_PIXELS:
            raise VideoError(f"{path.name}: frames of {w}x{h} pixels are over the 8K limit; scale it down first "
                             "(e.g. ffmpeg -i in.mp4 -vf scale=-2:2160 out.mp4)")
        frames = int(stream.frames or 0) or max(1, round(duration * fps))
        audio = None
        if container.streams.audio:
            a = container.streams.audio[0]
            audio = a.codec_context.name if a.codec_context is not None else "unsupported"
        start = float(first.time) if first.time is not None else 0.0
        return VideoInfo(w, h, round(fps, 3), round(duration, 3), frames, stream.codec_context.name, audio, rotation,
                         start)


class _Smoother:
    """Holds the last boxes between samples and blends a face's new box with its previous one."""

    def __init__(self, weight: float):
        self.weight = weight
        self.held: tuple[Detection, ...] = ()

    def update(self, dets: list[Detection]) -> tuple[Detection, ...]:
        if self.weight > 0 and self.held and dets:
            prev = np.stack([d.box for d in self.held])
            new = np.stack([d.box for d in dets])
            ious = B.iou_matrix(new, prev)
            out = []
            for k, d in enumerate(dets):
                j = int(np.argmax(ious[k]))
                if ious[k, j] > 0.3:
                    box = (self.weight * prev[j] + (1 - self.weight) * d.box).astype(np.float32)
                    d = d._replace(box=box)
                out.append(d)
            dets = out
        self.held = tuple(dets)
        return self.held


class _Writer(threading.Thread):
    """Calls ``fn(*item)`` for each item put, in order, through a bounded queue; an exception
    inside it is re-raised in the caller by ``put``/``finish``."""

    def __init__(self, fn, maxsize: int = 2):
        super().__init__(daemon=True, name="facecore-video-writer")
        self.fn, self.q, self.error = fn, queue.Queue(maxsize), None
        self.start()

    def run(self):
        while True:
            item = self.q.get()
            if item is None:
                return
            if self.error is None:
                try:
                    self.fn(*item)
                except BaseException as exc:  # noqa: BLE001 - handed to the caller
                    self.error = exc

    def put(self, item):
        if self.error is not None:
            raise self.error
        self.q.put(item)

    def finish(self):
        self.q.put(None)
        self.join()
        if self.error is not None:
            raise self.error

    def abort(self):
        self.error = self.error or RuntimeError("aborted")
        self.q.put(None)
        self.join()


def _put(q: queue.Queue, item, stop: threading.Event) -> bool:
    """Put unless ``stop`` is set (the consumer is gone); False when stopped."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def process_video(src: str | os.PathLike, dst: str | os.PathLike, detector, config: VideoConfig = VideoConfig(),
                  progress: ProgressFn | None = None, cancel: Cancel | None = None) -> VideoResult:
    """Detect faces in every frame (or every ``config.every`` seconds) of ``src`` and write the
    annotated H.264 MP4 to ``dst``.

    ``detector``: a ``facecore.detect.Detector`` (its ``detect_batch`` gets ``config.batch_size`` frames at a time).
    ``progress`` gets frames done of those expected after each chunk (``eta_s``; ``extra``: ``elapsed_s``
    and ``fps``). ``cancel`` stops it at the next chunk with ``Cancelled``. Whatever stops processing,
    ``dst`` is left untouched and the temporary file removed. Raises VideoError for unusable input.
    """
    import av

    src, dst = Path(src), Path(dst)
    info = probe(src)
    check_output(dst, src)
    with storage_errors(f"write the video {dst}"):
        dst.parent.mkdir(parents=True, exist_ok=True)
        recover_swaps(dst.parent)  # .part.mp4 files of killed runs
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dst.stem[:80]}.{os.getpid()}-", suffix=".part.mp4", dir=dst.parent)
        os.close(fd)
    tmp = Path(tmp_name)
    try:
        result = _run(src, tmp, info, detector, config, progress or ignore, cancel or Cancel())
        with storage_errors(f"write the video {dst}"):
            publish(tmp)
            os.replace(tmp, dst)
    except av.FFmpegError as exc:
        if exc.errno in _STORAGE_ERRNOS:  # the output side failed, not the input file
            raise StorageError(storage_message(exc, f"write the video {dst}")) from exc
        raise VideoError(f"{src.name}: processing failed ({_reason(exc)}); the file may be corrupt or in an "
                         f"unsupported format; convert it to H.264 MP4 and retry") from exc
    finally:
        tmp.unlink(missing_ok=True)
    result.output = dst
    return result


_STORAGE_ERRNOS = {28, 30, 13, 1, 122, 36}  # ENOSPC, EROFS, EACCES, EPERM, EDQUOT, ENAMETOOLONG


def check_output(dst: str | os.PathLike, src: str | os.PathLike | None = None) -> Path:
    """Refuse an output path that is a folder, lies under a file, or is the input itself. Raises VideoError."""
    dst = Path(dst)
    if dst.is_dir():
        raise VideoError(f"{dst}: is a folder; give the .mp4 file to write, e.g. {dst / 'out.mp4'}")
    check_parents(dst)
    if src is not None and Path(src).exists() and dst.exists() and dst.resolve() == Path(src).resolve():
        raise VideoError(f"{dst}: is the input video; write the result to another file")
    return dst


def _run(src: Path, tmp: Path, info: VideoInfo, detector, config: VideoConfig, progress: ProgressFn,
         cancel: Cancel) -> VideoResult:
    """Three stages overlap (PyAV, OpenCV and the TFLite/TF runtimes release the GIL): a reader
    thread decodes, this thread detects and draws, a writer thread converts, encodes and muxes."""
    import av

    t_start = time.perf_counter()
    name = detector.name
    # libx264 with yuv420p needs even sides: drop a last odd row/column rather than rescale.
    out_w, out_h = info.width - info.width % 2, info.height - info.height % 2
    max_buffer = max(1, min(4 * config.batch_size, _BUFFER_BYTES // max(1, info.width * info.height * 3)))
    want_gallery = set(np.linspace(0, max(0, info.frames - 1), config.gallery_size).round().astype(int).tolist()) \
        if config.gallery_size > 0 else set()
    warnings: list[str] = []
    records: list[FrameRecord] = []
    gallery: list[tuple[float, np.ndarray]] = []
    smoother = _Smoother(config.smooth)

    with _open(src) as inp, av.open(str(tmp), "w", format="mp4", options={"movflags": "+faststart"}) as out:
        vin = _video_stream(inp, src.name)
        vin.thread_type = "AUTO"
        tb = vin.time_base or Fraction(1, 90000)
        vout = out.add_stream("libx264", rate=Fraction(info.fps).limit_denominator(1001))
        vout.width, vout.height, vout.pix_fmt = out_w, out_h, "yuv420p"
        vout.time_base = tb
        vout.codec_context.time_base = tb
        vout.options = {"crf": str(config.crf), "preset": config.preset, "threads": str(config.encoder_threads)}
        ain, aout, copy_audio = None, None, False
        if inp.streams.audio:
            a = inp.streams.audio[0]
            if a.codec_context is None:
                warnings.append("the audio track's codec is not supported: the output has no sound")
            elif a.codec_context.name == "aac":
                ain, aout, copy_audio = a, out.add_stream_from_template(a), True
            else:
                ain = a
                aout = out.add_stream("aac", rate=a.codec_context.sample_rate or 44100)
                if a.codec_context.layout is not None:
                    aout.layout = a.codec_context.layout.name if a.codec_context.layout.nb_channels <= 2 else "stereo"
        streams = [vin] + ([ain] if ain is not None else [])
        t0 = info.start

        # ---- reader thread: demux, decode to RGB, decide which frames the detector sees
        frames_q: queue.Queue = queue.Queue(maxsize=2 * max_buffer)
        stop = threading.Event()

        def read():
            decoded, last_pts, next_sample = 0, -1, 0.0
            try:
                for packet in inp.demux(*streams):
                    if stop.is_set():
                        return
                    if packet.stream.type != "video":
                        if aout is not None and not _put(frames_q, ("audio", packet), stop):
                            return
                        continue
                    for frame in packet.decode():
                        t = (frame.time - t0) if frame.time is not None else decoded / info.fps
                        # Keep the input's timing (variable frame rates too), strictly increasing.
                        pts = max(int(round(t / tb)), last_pts + 1)
                        last_pts = pts
                        sample = config.every <= 0 or t >= next_sample - 1e-6
                        if sample and config.every > 0:
                            while next_sample <= t + 1e-6:
                                next_sample += config.every
                        rgb = _rotate(frame.to_ndarray(format="rgb24"), info.rotation)
                        if not _put(frames_q, ("frame", (decoded, t, pts, sample, rgb)), stop):
                            return
                        decoded += 1
            except BaseException as exc:  # noqa: BLE001 - handed to the main thread
                _put(frames_q, ("error", exc), stop)
            _put(frames_q, ("end", None), stop)

        # ---- writer thread: RGB -> yuv420p -> H.264, audio copied or transcoded, all muxing
        def write(kind, payload):
            if kind == "video":
                for rgb, pts in payload:
                    yuv = cv2.cvtColor(np.ascontiguousarray(rgb[:out_h, :out_w]), cv2.COLOR_RGB2YUV_I420)
                    vf = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
                    vf.pts, vf.time_base = pts, tb
                    out.mux(vout.encode(vf))
                return
            try:
                write_audio(payload)
            except av.FFmpegError as exc:
                if not any("audio" in w for w in warnings):
                    warnings.append(f"part of the audio could not be decoded ({_reason(exc)})")

        def write_audio(packet):
            if copy_audio:
                if packet.pts is None or packet.size == 0:
                    return
                shift = int(round(t0 / packet.time_base))
                if packet.pts - shift < 0:
                    return  # audio from before the first video frame
                packet.pts -= shift
                if packet.dts is not None:
                    packet.dts = max(0, packet.dts - shift)
                packet.stream = aout
                out.mux(packet)
                return
            for af in packet.decode():
                if af.time is not None and af.time < t0:
                    continue
                af.pts = None  # the AAC encoder numbers samples itself, from the first video frame on
                out.mux(aout.encode(af))

        buffer: list[tuple[int, float, int, bool, np.ndarray]] = []

        def flush():
            sampled = [k for k, item in enumerate(buffer) if item[3]]
            found: dict[int, list[Detection]] = {}
            if sampled:
                frames = [buffer[k][4] for k in sampled]
                results = detector.detect_batch(frames)
                found = dict(zip(sampled, results))
            drawn = []
            for k, (index, t, pts, is_sample, rgb) in enumerate(buffer):
                dets = smoother.update(list(found[k])) if is_sample else smoother.held
                img = draw_detections(rgb, list(dets), config.threshold, blur=config.blur)
                records.append(FrameRecord(index, t, is_sample, dets))
                if index in want_gallery:
                    gallery.append((t, _thumbnail(img)))
                drawn.append((img, pts))
            writer.put(("video", drawn))
            buffer.clear()
            progress(_frames_progress(len(records), max(info.frames, len(records)), time.perf_counter() - t_start))
            cancel.check("processing cancelled: no video was written")

        writer = _Writer(write)
        reader = threading.Thread(target=read, daemon=True, name="facecore-video-reader")
        reader.start()
        decode_error = None
        try:
            n_sampled = 0
            while True:
                kind, item = frames_q.get()
                if kind == "frame":
                    buffer.append(item)
                    n_sampled += item[3]
                    if n_sampled >= config.batch_size or len(buffer) >= max_buffer:
                        flush()
                        n_sampled = 0
                elif kind == "audio":
                    writer.put(("audio", item))
                elif kind == "error":
                    decode_error = item
                else:
                    break
            if buffer:
                flush()
            writer.finish()
        except BaseException:
            stop.set()
            writer.abort()
            reader.join()
            raise
        reader.join()

        n = len(records)
        if decode_error is not None:
            if not isinstance(decode_error, av.FFmpegError):
                raise decode_error
            if n == 0:
                raise VideoError(f"{src.name}: no frame could be decoded ({_reason(decode_error)})") from decode_error
            problem = (f"{src.name} stops decoding after {n} frames ({format_time(records[-1].time)}; "
                       f"{_reason(decode_error)}): it is truncated or damaged")
            if not config.allow_truncated:
                raise VideoError(problem + _TRUNCATED_HINT) from decode_error
            warnings.append(problem + "; the output ends there")
        if n == 0:
            raise VideoError(f"{src.name} has no video frames that could be decoded")
        # A file cut short (interrupted upload or copy) usually just ends early without a decoding
        # error: compare the time reached with the duration its header declares (robust to variable fps).
        reached = records[-1].time + 1.0 / info.fps
        if info.duration > 0 and reached < 0.95 * info.duration - 0.5 and not warnings_truncated(warnings):
            problem = (f"{src.name} ends at {format_time(reached)} although it declares {format_time(info.duration)}: "
                       "it is truncated")
            if not config.allow_truncated:
                raise VideoError(problem + _TRUNCATED_HINT)
            warnings.append(problem + "; the output ends there")
        out.mux(vout.encode(None))
        if aout is not None and not copy_audio:
            out.mux(aout.encode(None))

    return VideoResult(tmp, info, config, name, records, gallery, time.perf_counter() - t_start,
                       audio_kept=aout is not None, warnings=warnings)


def _frames_progress(done: int, total: int, elapsed: float) -> Progress:
    fps = done / elapsed if elapsed > 0 else 0.0
    eta = (total - done) / fps if fps > 0 else None
    # past the last frame the encoder and the audio still finish the file
    message = (f"{done}/{total} frames · writing the video file..." if done >= total else
               f"{done}/{total} frames · {fps:.1f} fps · ETA {format_time(eta or 0.0)}")
    return Progress(done, total, message, "frames", eta, {"elapsed_s": elapsed, "fps": fps})


_TRUNCATED_HINT = (" (an interrupted upload or copy?). Upload the complete file, or allow truncated files to "
                   "process the readable part.")


def warnings_truncated(warnings: list[str]) -> bool:
    return any("truncated" in w for w in warnings)


def _thumbnail(rgb: np.ndarray, width: int = 480) -> np.ndarray:
    import cv2

    h, w = rgb.shape[:2]
    if w <= width:
        return rgb.copy()
    return cv2.resize(rgb, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_AREA)


def timeline_figure(result: VideoResult):
    """Plotly figure: face probability over time (the frames the detector ran on) and the threshold."""
    import plotly.graph_objects as go

    t, s = result.timeline()
    fig = go.Figure(go.Scatter(x=t, y=s, mode="lines+markers" if len(t) <= 300 else "lines",
                               name="face probability", line={"width": 2}))
    fig.add_hline(y=result.config.threshold, line_dash="dash", line_color="red",
                  annotation_text=f"threshold {result.config.threshold:.2f}", annotation_position="top left")
    fig.update_layout(xaxis_title="time (s)", yaxis_title="face probability", yaxis_range=[0, 1.05],
                      height=300, margin={"l": 40, "r": 20, "t": 30, "b": 40}, showlegend=False)
    return fig
