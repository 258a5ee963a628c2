"""The output side of video processing: RGB frames -> yuv420p -> H.264 (libx264) in an MP4, the
input's audio copied (AAC) or transcoded to AAC, all muxing done on one writer thread."""

from __future__ import annotations

import queue
import threading
from fractions import Fraction

import cv2
import numpy as np

from .result import VideoConfig
from .source import VideoInfo, reason


class Encoder:
    """The output streams of ``out`` for the input ``inp`` (video stream ``vin``): H.264 at the input's
    time base, even sides (libx264 with yuv420p needs them: a last odd row/column is dropped rather
    than rescaling), and the input's first audio track. ``warnings`` collects problems that do not
    stop the run (audio dropped or partly undecodable)."""

    def __init__(self, out, inp, vin, info: VideoInfo, config: VideoConfig, warnings: list[str]):
        self.out, self.warnings, self.t0 = out, warnings, info.start
        self.width, self.height = info.width - info.width % 2, info.height - info.height % 2
        self.time_base = tb = vin.time_base or Fraction(1, 90000)
        self.vout = vout = out.add_stream("libx264", rate=Fraction(info.fps).limit_denominator(1001))
        vout.width, vout.height, vout.pix_fmt = self.width, self.height, "yuv420p"
        vout.time_base = tb
        vout.codec_context.time_base = tb
        vout.options = {"crf": str(config.crf), "preset": config.preset, "threads": str(config.encoder_threads)}
        self.ain, self.aout, self.copy_audio = None, None, False
        if inp.streams.audio:
            self._add_audio(inp.streams.audio[0])
        self.streams = [vin] + ([self.ain] if self.ain is not None else [])  # what to demux

    def _add_audio(self, a) -> None:
        if a.codec_context is None:
            self.warnings.append("the audio track's codec is not supported: the output has no sound")
        elif a.codec_context.name == "aac":
            self.ain, self.aout, self.copy_audio = a, self.out.add_stream_from_template(a), True
        else:
            self.ain = a
            self.aout = self.out.add_stream("aac", rate=a.codec_context.sample_rate or 44100)
            if a.codec_context.layout is not None:
                self.aout.layout = a.codec_context.layout.name if a.codec_context.layout.nb_channels <= 2 else "stereo"

    @property
    def audio_kept(self) -> bool:
        return self.aout is not None

    def write(self, kind: str, payload) -> None:
        """``("video", [(rgb, pts), ...])`` or ``("audio", packet)``; undecodable audio becomes a warning."""
        import av

        if kind == "video":
            for rgb, pts in payload:
                yuv = cv2.cvtColor(np.ascontiguousarray(rgb[:self.height, :self.width]), cv2.COLOR_RGB2YUV_I420)
                vf = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
                vf.pts, vf.time_base = pts, self.time_base
                self.out.mux(self.vout.encode(vf))
            return
        try:
            self._write_audio(payload)
        except av.FFmpegError as exc:
            if not any("audio" in w for w in self.warnings):
                self.warnings.append(f"part of the audio could not be decoded ({reason(exc)})")

    def _write_audio(self, packet) -> None:
        t0 = self.t0
        if self.copy_audio:
            if packet.pts is None or packet.size == 0:
                return
            shift = int(round(t0 / packet.time_base))
            if packet.pts - shift < 0:
                return  # audio from before the first video frame
            packet.pts -= shift
            if packet.dts is not None:
                packet.dts = max(0, packet.dts - shift)
            packet.stream = self.aout
            self.out.mux(packet)
            return
        for af in packet.decode():
            if af.time is not None and af.time < t0:
                continue
            af.pts = None  # the AAC encoder numbers samples itself, from the first video frame on
            self.out.mux(self.aout.encode(af))

    def close(self) -> None:
        """Flush the encoders (the container itself is closed by its owner)."""
        self.out.mux(self.vout.encode(None))
        if self.aout is not None and not self.copy_audio:
            self.out.mux(self.aout.encode(None))


class Writer(threading.Thread):
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
