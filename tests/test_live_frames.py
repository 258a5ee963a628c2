"""facecore.live.processor: a camera frame that cannot be converted is a dropped frame, never the end of the stream."""

import asyncio
import fractions

import av
import numpy as np

from facecore.live.processor import LiveProcessor, LiveSettings


def _frame(value, pts):
    f = av.VideoFrame.from_ndarray(np.full((48, 64, 3), value, np.uint8), format="rgb24")
    f.pts, f.time_base = pts, fractions.Fraction(1, 90000)
    return f


class Unconvertible:
    """An ``av.VideoFrame`` stand-in whose conversion fails, as a frame of an odd format or size would."""

    pts, time_base = 3000, fractions.Fraction(1, 90000)

    def __init__(self, exc):
        self.exc = exc

    def to_ndarray(self, **kwargs):
        raise self.exc


def test_frame_that_cannot_be_converted_is_dropped_and_the_stream_goes_on():
    proc = LiveProcessor(None, LiveSettings(overlay=False))
    for exc in (ValueError("Conversion to numpy array with format yuv420p10le is not supported"),
                av.InvalidDataError(22, "Invalid argument"), MemoryError()):
        bad = Unconvertible(exc)
        assert proc(bad) is bad  # passed on untouched
    assert proc.dropped == 3 and proc.frames == 0
    out = proc(_frame(40, 6000))
    assert out.pts == 6000 and out.to_ndarray(format="rgb24").shape == (48, 64, 3) and proc.frames == 1


def test_queued_callback_counts_every_frame_of_an_unconvertible_batch_as_dropped():
    proc = LiveProcessor(None, LiveSettings(overlay=False))
    frames = [_frame(10, 0), _frame(20, 3000), Unconvertible(ValueError("odd frame"))]
    (out,) = asyncio.run(proc.process_queued(frames))
    assert out is frames[-1] and proc.dropped == 3 and proc.frames == 0
    (out,) = asyncio.run(proc.process_queued([_frame(30, 9000)]))
    assert out.pts == 9000 and proc.frames == 1 and proc.drain_stats()[-1].dropped == 3
