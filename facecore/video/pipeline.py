"""The processing loop: decode -> batched inference -> draw (or blur) -> encode, three overlapping
stages (PyAV, OpenCV and the TFLite/TF runtimes release the GIL): a reader thread decodes, the
caller's thread detects and draws, a writer thread converts, encodes and muxes.

The output is written to a temporary file beside the destination and renamed at the end: a failed
or cancelled run leaves nothing that looks like a finished video.
"""

from __future__ import annotations

import os
import queue
import tempfile
import threading
import time
from pathlib import Path
import numpy as np

from ..detect import Detection, draw_detections
from ..errors import StorageError
from ..jobs import Cancel, Progress, ProgressFn, ignore
from ..io import publish, recover_swaps, storage_errors, storage_message
from ..preprocess import shrink
from ..smoothing import BoxSmoother
from .encode import Encoder, Writer
from .result import FrameRecord, VideoConfig, VideoResult
from .source import VideoError, VideoInfo, check_output, format_time, missing_start, open_video, probe, reason, StartDecoder, upright_rgb, video_stream

GALLERY_WIDTH = 480  # gallery thumbnails: small enough to keep dozens in the session
# Frames waiting in each pipeline stage are capped by bytes, not count, so 4K input stays bounded too.
_BUFFER_BYTES = 64 * 2**20
_STORAGE_ERRNOS = {28, 30, 13, 1, 122, 36}  # ENOSPC, EROFS, EACCES, EPERM, EDQUOT, ENAMETOOLONG
_TRUNCATED_HINT = (" (an interrupted upload or copy?). Upload the complete file, or allow truncated files to "
                   "process the readable part.")

# One decoded frame in flight: (index, time s from the first frame, output pts, sampled, RGB uint8)
Frame = tuple[int, float, int, bool, np.ndarray]


def process_video(src: str | os.PathLike, dst: str | os.PathLike, detector, config: VideoConfig = VideoConfig(),
                  progress: ProgressFn | None = None, cancel: Cancel | None = None,
                  info: VideoInfo | None = None) -> VideoResult:
    """Detect faces in every frame (or every ``config.every`` seconds) of ``src`` and write the
    annotated H.264 MP4 to ``dst``.

    ``detector``: a ``facecore.detect.Detector`` (its ``detect_batch`` gets ``config.batch_size`` frames at a time).
    ``progress`` gets frames done of those expected after each chunk (``eta_s``; ``extra``: ``elapsed_s``
    and ``fps``). ``cancel`` stops it at the next chunk with ``Cancelled``. Whatever stops processing,
    ``dst`` is left untouched and the temporary file removed. Raises VideoError for unusable input.
    ``info``: what ``probe(src)`` returned, when the caller already probed it (the Video page does on
    upload): a short clip then does not pay for opening and decoding its start twice.
    """
    import av

    src, dst = Path(src), Path(dst)
    info = info if info is not None else probe(src)
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
        raise VideoError(f"{src.name}: processing failed ({reason(exc)}); the file may be corrupt or in an "
                         f"unsupported format; convert it to H.264 MP4 and retry") from exc
    finally:
        tmp.unlink(missing_ok=True)
    result.output = dst
    return result


def _run(src: Path, tmp: Path, info: VideoInfo, detector, config: VideoConfig, progress: ProgressFn,
         cancel: Cancel) -> VideoResult:
    """Process ``src`` into the MP4 ``tmp``: the reader thread, this thread's ``_Annotator`` and the
    writer thread, joined whatever happens."""
    import av

    t_start = time.perf_counter()
    name = detector.name
    max_buffer = max(1, min(4 * config.batch_size, _BUFFER_BYTES // max(1, info.width * info.height * 3)))
    warnings: list[str] = []
    with open_video(src) as inp, av.open(str(tmp), "w", format="mp4", options={"movflags": "+faststart"}) as out:
        vin = video_stream(inp, src.name)
        vin.thread_type = "AUTO"
        encoder = Encoder(out, inp, vin, info, config, warnings)
        frames_q: queue.Queue = queue.Queue(maxsize=2 * max_buffer)
        stop = threading.Event()
        writer = Writer(encoder.write)
        annotator = _Annotator(detector, config, info, writer, progress, cancel, t_start)
        reader = threading.Thread(target=_read, args=(inp, encoder, info, config, frames_q, stop), daemon=True,
                                  name="facecore-video-reader")
        reader.start()
        try:
            decode_error = annotator.consume(frames_q, max_buffer)
            writer.finish()
        except BaseException:
            stop.set()
            writer.abort()
            reader.join()
            raise
        reader.join()
        _check_complete(src.name, info, config, annotator.records, decode_error, warnings)
        encoder.close()
    return VideoResult(tmp, info, config, name, annotator.records, annotator.gallery,
                       time.perf_counter() - t_start, audio_kept=encoder.audio_kept, warnings=warnings)


def _read(inp, encoder: Encoder, info: VideoInfo, config: VideoConfig, frames_q: queue.Queue,
          stop: threading.Event) -> None:
    """The reader thread: demux, decode to upright RGB, decide which frames the detector sees; puts
    ``("frame", Frame)``, ``("audio", packet)``, ``("error", exception)`` and finally ``("end", None)``."""
    decoded, last_pts, next_sample = 0, -1, 0.0
    t0, tb = info.start, encoder.time_base
    decode = StartDecoder()
    try:
        for packet in inp.demux(*encoder.streams):
            if stop.is_set():
                return
            if packet.stream.type != "video":
                if encoder.audio_kept and not _put(frames_q, ("audio", packet), stop):
                    return
                continue
            for frame in decode(packet):
                t = (frame.time - t0) if frame.time is not None else decoded / info.fps
                # Keep the input's timing (variable frame rates too), strictly increasing.
                pts = max(int(round(t / tb)), last_pts + 1)
                last_pts = pts
                sample = config.every <= 0 or t >= next_sample - 1e-6
                if sample and config.every > 0:
                    while next_sample <= t + 1e-6:
                        next_sample += config.every
                rgb = upright_rgb(frame, info, encoder.warnings, t)
                if not _put(frames_q, ("frame", (decoded, t, pts, sample, rgb)), stop):
                    return
                decoded += 1
    except BaseException as exc:  # noqa: BLE001 - handed to the main thread
        _put(frames_q, ("error", exc), stop)
    _put(frames_q, ("end", None), stop)


def _put(q: queue.Queue, item, stop: threading.Event) -> bool:
    """Put unless ``stop`` is set (the consumer is gone); False when stopped."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


class _Annotator:
    """The middle stage: collects decoded frames into chunks, runs the detector on a chunk's sampled
    frames in one batch, holds (and smooths) boxes in between, draws, records, and hands the drawn
    frames to the writer; reports progress after each chunk."""

    def __init__(self, detector, config: VideoConfig, info: VideoInfo, writer: Writer, progress: ProgressFn,
                 cancel: Cancel, t_start: float):
        self.detector, self.config, self.info, self.writer = detector, config, info, writer
        self.progress, self.cancel, self.t_start = progress, cancel, t_start
        self.smoother = BoxSmoother(config.smooth)
        self.records: list[FrameRecord] = []
        self.gallery: list[tuple[float, np.ndarray]] = []
        self.want_gallery = set(np.linspace(0, max(0, info.frames - 1), config.gallery_size).round().astype(int)
                                .tolist()) if config.gallery_size > 0 else set()
        self.buffer: list[Frame] = []

    def consume(self, frames_q: queue.Queue, max_buffer: int) -> BaseException | None:
        """Process what the reader puts until its end; returns the error that stopped decoding, if any."""
        decode_error, n_sampled = None, 0
        while True:
            kind, item = frames_q.get()
            if kind == "frame":
                self.buffer.append(item)
                n_sampled += item[3]
                if n_sampled >= self.config.batch_size or len(self.buffer) >= max_buffer:
                    self.flush()
                    n_sampled = 0
            elif kind == "audio":
                self.writer.put(("audio", item))
            elif kind == "error":
                decode_error = item
            else:
                break
        if self.buffer:
            self.flush()
        return decode_error

    def flush(self) -> None:
        """Detect, draw and hand over the buffered chunk, report progress. Raises Cancelled when cancelled."""
        config, buffer = self.config, self.buffer
        sampled = [k for k, item in enumerate(buffer) if item[3]]
        found: dict[int, list[Detection]] = {}
        if sampled:
            results = self.detector.detect_batch([buffer[k][4] for k in sampled])
            found = dict(zip(sampled, results))
        drawn = []
        for k, (index, t, pts, is_sample, rgb) in enumerate(buffer):
            dets = tuple(self.smoother.update(list(found[k]))) if is_sample else self.smoother.held
            img = draw_detections(rgb, list(dets), config.threshold, blur=config.blur)
            self.records.append(FrameRecord(index, t, is_sample, dets))
            if index in self.want_gallery:
                self.gallery.append((t, shrink(img, GALLERY_WIDTH).copy()))
            drawn.append((img, pts))
        self.writer.put(("video", drawn))
        buffer.clear()
        n = len(self.records)
        self.progress(_frames_progress(n, max(self.info.frames, n), time.perf_counter() - self.t_start))
        self.cancel.check("processing cancelled: no video was written")


def _frames_progress(done: int, total: int, elapsed: float) -> Progress:
    fps = done / elapsed if elapsed > 0 else 0.0
    eta = (total - done) / fps if fps > 0 else None
    # past the last frame the encoder and the audio still finish the file
    message = (f"{done}/{total} frames · writing the video file..." if done >= total else
               f"{done}/{total} frames · {fps:.1f} fps · ETA {format_time(eta or 0.0)}")
    return Progress(done, total, message, "frames", eta, {"elapsed_s": elapsed, "fps": fps})


def _check_complete(name: str, info: VideoInfo, config: VideoConfig, records: list[FrameRecord],
                    decode_error: BaseException | None, warnings: list[str]) -> None:
    """Refuse (VideoError) or, with ``config.allow_truncated``, warn about a file that stopped
    decoding or ended before the duration its header declares; re-raise a non-FFmpeg reader error."""
    import av

    n = len(records)
    start_note = missing_start(name, info)
    if start_note:
        warnings.append(start_note)
    if decode_error is not None:
        if not isinstance(decode_error, av.FFmpegError):
            raise decode_error
        if n == 0:
            raise VideoError(f"{name}: no frame could be decoded ({reason(decode_error)})") from decode_error
        problem = (f"{name} stops decoding after {n} frames ({format_time(records[-1].time)}; "
                   f"{reason(decode_error)}): it is truncated or damaged")
        if not config.allow_truncated:
            raise VideoError(problem + _TRUNCATED_HINT) from decode_error
        warnings.append(problem + "; the output ends there")
    if n == 0:
        raise VideoError(f"{name} has no video frames that could be decoded")
    # A file cut short (interrupted upload or copy) usually just ends early without a decoding
    # error: compare the time reached with the duration its header declares (robust to variable fps).
    reached = info.lead + records[-1].time + 1.0 / info.fps  # frames missing at the start are not an early end
    if info.duration > 0 and reached < 0.95 * info.duration - 0.5 and not warnings_truncated(warnings):
        problem = (f"{name} ends at {format_time(reached)} although it declares {format_time(info.duration)}: "
                   "it is truncated")
        if not config.allow_truncated:
            raise VideoError(problem + _TRUNCATED_HINT)
        warnings.append(problem + "; the output ends there")


def warnings_truncated(warnings: list[str]) -> bool:
    """Whether one of ``warnings`` already says the input is truncated."""
    return any("truncated" in w for w in warnings)
