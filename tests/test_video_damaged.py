"""facecore.video on damaged streams: a clip that starts without a key frame (cut without re-encoding) is
not "truncated", and a frame size that changes part-way is scaled back to the first size with a warning."""

from fractions import Fraction

import av
import numpy as np
import pytest

from facecore.detect import Detection
from facecore.video import VideoConfig, probe, process_video


class OneBox:
    name = "one-box"

    def detect_batch(self, frames):
        return [[Detection(0.9, np.asarray([0.4, 0.4, 0.6, 0.6], np.float32))] for _ in frames]


def _frame(size, i):
    """Left half bright, right half dark (a crop shows up as all bright), brightness stepping with ``i``."""
    w, h = size
    img = np.zeros((h, w, 3), np.uint8)
    img[:, : w // 2] = 150 + (i % 10) * 10
    return img


def _encode(path, codec, n=48, gop=24, size=(160, 120), fps=12, fmt=None, start=0):
    with av.open(str(path), "w", format=fmt) as out:
        v = out.add_stream(codec, rate=fps)
        v.width, v.height, v.pix_fmt = size[0], size[1], "yuv420p"
        v.codec_context.gop_size = gop
        for i in range(n):
            f = av.VideoFrame.from_ndarray(_frame(size, i), format="rgb24")
            f.pts, f.time_base = start + i, Fraction(1, fps)
            out.mux(v.encode(f))
        out.mux(v.encode(None))
    return path


def _without_first_packets(src, dst, k):
    """``src`` remuxed without its first ``k`` packets: it starts on frames that need the key frame dropped."""
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        s = inp.streams.video[0]
        o = out.add_stream_from_template(s)
        for i, p in enumerate(inp.demux(s)):
            if p.dts is None or i < k:
                continue
            p.stream = o
            out.mux(p)
    return dst


@pytest.mark.parametrize("codec,ext", [("libx264", "mp4"), ("libx264", "mkv"), ("libvpx-vp9", "webm")])
def test_clip_starting_without_a_key_frame_is_not_called_truncated(tmp_path, codec, ext):
    src = _without_first_packets(_encode(tmp_path / f"full.{ext}", codec), tmp_path / f"cut.{ext}", 3)
    info = probe(src)
    assert info.lead > 1.0  # the frames before the second key frame (at 2 s) cannot be decoded
    result = process_video(src, tmp_path / "o.mp4", OneBox())  # not refused, without allow_truncated
    assert 20 <= result.frames <= 26  # from the key frame at 2 s on
    assert len(result.warnings) == 1 and "starts without a key frame" in result.warnings[0]
    assert "truncated" not in result.warnings[0] and "ends there" not in result.warnings[0]


def test_intact_clips_have_no_lead(tmp_path):
    for codec, ext in (("libx264", "mp4"), ("libx264", "mkv"), ("libvpx-vp9", "webm")):
        src = _encode(tmp_path / f"full.{ext}", codec, n=12)
        assert probe(src).lead < 0.05
        assert process_video(src, tmp_path / "o.mp4", OneBox()).warnings == []


def test_truncated_end_is_still_truncated_when_the_start_is_missing_too(tmp_path):
    cut = _without_first_packets(_encode(tmp_path / "full.mp4", "libx264", n=96), tmp_path / "cut.mp4", 3)
    data = cut.read_bytes()
    half = tmp_path / "half.mp4"
    half.write_bytes(data[: len(data) // 2])
    with pytest.raises(Exception, match="not a readable video|truncated"):
        process_video(half, tmp_path / "o.mp4", OneBox())


def test_frame_size_change_is_scaled_to_the_first_size_with_a_warning(tmp_path):
    # Two MPEG-TS segments joined (as a camera that switches resolution, or `cat a.ts b.ts`)
    a = _encode(tmp_path / "a.ts", "libx264", n=24, size=(320, 240), fmt="mpegts")
    b = _encode(tmp_path / "b.ts", "libx264", n=24, size=(640, 480), fmt="mpegts", start=24)
    src = tmp_path / "grow.ts"
    src.write_bytes(a.read_bytes() + b.read_bytes())
    result = process_video(src, tmp_path / "o.mp4", OneBox(), VideoConfig(every=0))
    assert result.frames == 48
    assert any("frame size changes from 320x240 to 640x480" in w for w in result.warnings), result.warnings
    with av.open(str(tmp_path / "o.mp4")) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == 48 and {f.shape for f in frames} == {(240, 320, 3)}
    last = frames[-1].astype(int)
    # scaled, not cropped: the left half is bright and the right half dark (away from the drawn box)
    assert last[10:60, 10:100].mean() > 120 and last[10:60, 230:310].mean() < 40
