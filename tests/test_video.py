"""facecore.video: streaming decode -> detect -> draw -> encode, on small videos made from data/sample."""

import dataclasses
import json
import re
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from conftest import SAMPLE
from facecore import FaceCoreError
from facecore.detect import Detection, Detector, HaarDetector
from facecore.images import read_image
from facecore.errors import Cancelled
from facecore.jobs import Cancel
from facecore.video import (VideoConfig, VideoError, check_upload, new_scratch_dir, probe, process_video,
                            store_upload)
from pages.common.figures import timeline_figure


def make_video(path, n=24, size=(320, 240), fps=12, codec="libx264", audio=None, rotation=0, faststart=False):
    """A video of the sample photos (one a frame), optionally with a 440 Hz tone in ``audio`` codec."""
    images = sorted((SAMPLE / "images").glob("*.jpg"))
    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as out:
        v = out.add_stream(codec, rate=fps)
        v.width, v.height = size
        v.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        if rotation:
            v.set_display_rotation(rotation)
        a = None
        if audio:
            sr = 48000 if audio == "libopus" else 22050
            a = out.add_stream(audio, rate=sr)
            a.layout = "mono"
        for i in range(n):
            rgb = cv2.resize(read_image(images[i % len(images)]), size, interpolation=cv2.INTER_AREA)
            out.mux(v.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        out.mux(v.encode(None))
        if a is not None:
            total, pos = int(sr * n / fps), 0
            while pos < total:
                k = min(1024, total - pos)
                t = np.arange(pos, pos + k, dtype=np.float32) / sr
                f = av.AudioFrame.from_ndarray((0.3 * np.sin(2 * np.pi * 440 * t))[None], format="flt", layout="mono")
                f.sample_rate, f.pts = sr, pos
                out.mux(a.encode(f))
                pos += k
            out.mux(a.encode(None))
    return Path(path)


def decode_all(path):
    """(frames RGB list, video codec, pix_fmt, audio codec or None)."""
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        audio = c.streams.audio[0].codec_context.name if c.streams.audio else None
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(v)]
        return frames, v.codec_context.name, v.codec_context.pix_fmt, audio


def leftovers(folder):
    return sorted(p.name for p in Path(folder).iterdir() if p.name.startswith(".") or p.suffix == ".mp4")


class FixedDetector(Detector):
    """One face at a fixed box with a score that rises over the frames; counts its batch calls."""

    name = "fixed"

    def __init__(self, box=(0.25, 0.25, 0.75, 0.75)):
        self.box = np.asarray(box, np.float32)
        self.calls, self.frames = 0, 0

    def detect_batch(self, frames):
        self.calls += 1
        out = []
        for _ in frames:
            out.append([Detection(min(1.0, self.frames / 20), self.box)])
            self.frames += 1
        return out

    def detect(self, frame):  # pragma: no cover - detect_batch must be preferred
        raise AssertionError("detect_batch should have been used")


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_video(tmp_path_factory.mktemp("clip") / "clip.mp4", n=16, fps=8, audio="aac")


def test_probe_reports_size_rate_duration_and_audio(clip):
    info = probe(clip)
    assert (info.width, info.height, info.fps, info.frames, info.codec, info.audio) == (320, 240, 8.0, 16, "h264", "aac")
    assert info.duration == pytest.approx(2.0, abs=0.1)
    assert "320x240" in info.summary()


def test_every_frame_output_decodes_same_frames_size_and_keeps_audio(clip, tmp_path):
    out = tmp_path / "out.mp4"
    result = process_video(clip, out, FixedDetector(), VideoConfig(gallery_size=4))
    frames, codec, pix_fmt, audio = decode_all(out)
    assert (len(frames), frames[0].shape) == (16, (240, 320, 3))
    assert (codec, pix_fmt, audio) == ("h264", "yuv420p", "aac") and result.audio_kept
    data = out.read_bytes()
    assert 0 <= data.find(b"moov") < data.find(b"mdat")  # faststart: the index comes before the media data
    assert result.frames == 16 and all(r.sampled for r in result.records) and not result.warnings
    assert [r.index for r in result.records] == list(range(16))
    assert result.records[-1].time == pytest.approx(15 / 8, abs=1e-3)
    with av.open(str(out)) as c:
        assert float(c.streams.audio[0].duration * c.streams.audio[0].time_base) == pytest.approx(2.0, abs=0.1)
    assert len(result.gallery) == 4 and result.gallery[0][1].shape == (240, 320, 3)
    assert leftovers(tmp_path) == ["out.mp4"]


@pytest.mark.slow
def test_cli_detections_json_matches_haar_on_the_input(clip, tmp_path):
    from facecore.__main__ import main

    out, js, cs = tmp_path / "o.mp4", tmp_path / "d.json", tmp_path / "d.csv"
    assert main(["video", str(clip), str(out), "--model", "haar", "--json", str(js), "--csv", str(cs)]) == 0
    data = json.loads(js.read_text())
    assert data["video"]["width"] == 320 and data["detector"] == "haar" and len(data["frames"]) == 16
    haar = HaarDetector()
    for rec, rgb in zip(data["frames"], decode_all(clip)[0]):
        expect = haar.detect(rgb)
        assert [d["score"] for d in rec["detections"]] == pytest.approx([d.score for d in expect], abs=1e-4)
        for got, want in zip(rec["detections"], expect):
            np.testing.assert_allclose(got["box"], want.box, atol=1e-4)
    lines = cs.read_text().splitlines()
    assert lines[0].startswith("frame,time,sampled,face,label,score,shown,x1,y1,x2,y2,px1")
    assert len(lines) - 1 == sum(max(1, len(f["detections"])) for f in data["frames"])
    assert len(decode_all(out)[0]) == 16
    assert sum(bool(f["detections"]) for f in data["frames"]) >= 8  # the sample photos are faces


def test_sampling_holds_the_last_boxes_and_batches(clip, tmp_path):
    det = FixedDetector()
    result = process_video(clip, tmp_path / "o.mp4", det, VideoConfig(every=0.25, batch_size=2))
    sampled = [r.index for r in result.records if r.sampled]
    assert sampled == [0, 2, 4, 6, 8, 10, 12, 14]  # 8 fps, one detection each 0.25 s
    assert det.frames == 8 and det.calls == 4
    for r in result.records:
        last = max(i for i in sampled if i <= r.index)
        assert r.detections[0].score == pytest.approx(min(1.0, sampled.index(last) / 20))
    t, s = result.timeline()
    assert len(t) == 8 and s[0] == 0.0
    assert result.face_frames == 0  # every score stays below the 0.5 threshold
    low = dataclasses.replace(result, config=dataclasses.replace(result.config, threshold=0.09))
    assert low.face_frames == 12  # frames 4-15 hold a box scoring 0.1 or more
    fig = timeline_figure(result)
    assert len(fig.data[0].x) == 8 and fig.layout.shapes[0].y0 == 0.5  # the threshold line


@pytest.mark.parametrize("blur", [False, True])
def test_boxes_or_blur_are_drawn_where_the_face_is(clip, tmp_path, blur):
    out = tmp_path / "o.mp4"
    process_video(clip, out, FixedDetector(), VideoConfig(threshold=0.0, blur=blur, crf=16))
    src, dst = decode_all(clip)[0][10].astype(float), decode_all(out)[0][10].astype(float)
    inside, outside = (slice(80, 160), slice(100, 220)), (slice(0, 50), slice(0, 60))
    assert np.abs(src[outside] - dst[outside]).mean() < 3  # untouched away from the face
    if blur:
        lap = lambda a: cv2.Laplacian(a.mean(axis=2), cv2.CV_64F).var()  # noqa: E731
        assert lap(dst[inside]) < 0.5 * lap(src[inside])
    else:
        red = lambda a: ((a[..., 0] > 150) & (a[..., 1] < 90) & (a[..., 2] < 90)).sum()  # noqa: E731
        assert red(dst[40:70, 90:230]) > red(src[40:70, 90:230]) + 300  # box edge and label bar


@pytest.mark.parametrize("name,codec,audio,size", [
    ("c.mov", "libx264", "aac", (320, 240)),
    ("c.avi", "mpeg4", "mp3", (320, 240)),
    ("c.webm", "libvpx-vp9", "libopus", (320, 240)),
    ("c.mkv", "mjpeg", None, (161, 121)),  # odd sides: cropped to even for yuv420p
])
def test_other_containers_and_codecs(tmp_path, name, codec, audio, size):
    src = make_video(tmp_path / name, n=12, size=size, codec=codec, audio=audio)
    result = process_video(src, tmp_path / "o.mp4", HaarDetector(), VideoConfig(every=0.5))
    frames, vcodec, _, acodec = decode_all(tmp_path / "o.mp4")
    assert len(frames) == 12 == result.frames and vcodec == "h264"
    assert frames[0].shape == (size[1] - size[1] % 2, size[0] - size[0] % 2, 3)
    assert acodec == ("aac" if audio else None)


def test_rotated_phone_video_is_turned_upright(tmp_path):
    src = tmp_path / "rot.mp4"
    with av.open(str(src), "w") as out:
        v = out.add_stream("libx264", rate=10)
        v.width, v.height, v.pix_fmt = 64, 32, "yuv420p"
        v.set_display_rotation(90)
        img = np.zeros((32, 64, 3), np.uint8)
        img[:, :32] = 255  # left half white
        for _ in range(3):
            out.mux(v.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        out.mux(v.encode(None))
    info = probe(src)
    assert (info.width, info.height, info.rotation) == (32, 64, 90)
    process_video(src, tmp_path / "o.mp4", HaarDetector())
    frame = decode_all(tmp_path / "o.mp4")[0][0]
    assert frame.shape == (64, 32, 3)
    assert frame[:20].mean() < 30 and frame[-20:].mean() > 220  # turned counterclockwise: left went down


def _text_file(tmp):
    p = tmp / "notes.mp4"
    p.write_text("this is not a video\n" * 50)
    return p


def _no_frames(tmp):
    p = tmp / "empty.mp4"
    with av.open(str(p), "w") as out:
        v = out.add_stream("libx264", rate=10)
        v.width, v.height, v.pix_fmt = 64, 64, "yuv420p"
        out.start_encoding()
    return p


def _audio_only(tmp):
    p = tmp / "sound.mp4"
    with av.open(str(p), "w") as out:
        a = out.add_stream("aac", rate=22050)
        f = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="flt", layout="mono")
        f.sample_rate, f.pts = 22050, 0
        out.mux(a.encode(f))
        out.mux(a.encode(None))
    return p


def _truncated(tmp, faststart=False):
    full = make_video(tmp / "full.mp4", n=48, faststart=faststart)
    p = tmp / ("cut_fs.mp4" if faststart else "cut.mp4")
    p.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    full.unlink()
    return p


def _unknown_codec(tmp):
    good = make_video(tmp / "good.mkv", n=4)
    p = tmp / "odd.mkv"
    p.write_bytes(good.read_bytes().replace(b"V_MPEG4/ISO/AVC", b"V_QQQQQ/ISO/QQQ"))
    good.unlink()
    return p


@pytest.mark.parametrize("make,message", [
    (_text_file, "not a readable video"),
    (_no_frames, "no video frames"),
    (_audio_only, "no video track (audio only)"),
    (_truncated, "not a readable video (corrupt, truncated"),  # index at the end: cut off
    (lambda t: _truncated(t, faststart=True), "it is truncated"),  # index first: decodes, ends early
    (_unknown_codec, "codec is not supported"),
])
def test_bad_inputs_give_a_clear_error_and_leave_nothing(tmp_path, make, message):
    src = make(tmp_path)
    out = tmp_path / "out" / "o.mp4"
    with pytest.raises(VideoError, match=re.escape(message)):
        process_video(src, out, FixedDetector())
    assert not out.parent.exists() or list(out.parent.iterdir()) == []


def test_truncated_file_can_be_processed_up_to_where_it_ends(tmp_path):
    src = _truncated(tmp_path, faststart=True)
    result = process_video(src, tmp_path / "o.mp4", FixedDetector(), VideoConfig(allow_truncated=True))
    assert 0 < result.frames < 48 and "truncated" in result.warnings[0]
    assert len(decode_all(tmp_path / "o.mp4")[0]) == result.frames


def test_cancel_and_failures_keep_the_previous_output(clip, tmp_path):
    out = tmp_path / "o.mp4"
    out.write_bytes(b"previous result")
    cancel = Cancel()

    def stop_at_4(p):
        if p.done >= 4:
            cancel.cancel()

    with pytest.raises(Cancelled):
        process_video(clip, out, FixedDetector(), VideoConfig(batch_size=4), progress=stop_at_4, cancel=cancel)

    def boom(p):  # Ctrl-C on the command line: an exception from a callback
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        process_video(clip, out, FixedDetector(), VideoConfig(batch_size=4), progress=boom)
    assert out.read_bytes() == b"previous result" and leftovers(tmp_path) == ["o.mp4"]


def test_progress_reports_frames_and_total(clip, tmp_path):
    seen = []
    process_video(clip, tmp_path / "o.mp4", FixedDetector(), VideoConfig(batch_size=5),
                  progress=lambda p: seen.append((p.done, p.total)))
    assert seen[-1] == (16, 16) and [d for d, _ in seen] == sorted(d for d, _ in seen) and len(seen) >= 4


def test_upload_checks(tmp_path):
    with pytest.raises(VideoError, match="over the 5 MB limit"):
        check_upload("big.mp4", 6 * 2**20, limit_mb=5)
    with pytest.raises(VideoError, match="not a supported video file"):
        check_upload("photo.jpg", 100, limit_mb=5)
    with pytest.raises(VideoError, match="empty"):
        check_upload("a.webm", 0, limit_mb=5)
    p = store_upload(b"\x00" * 10, "../my clip?.MOV", tmp_path, limit_mb=5)
    assert p.parent == tmp_path and p.name == "my_clip_.mov" and p.read_bytes() == b"\x00" * 10
    with pytest.raises(FaceCoreError, match="threshold"):
        VideoConfig(threshold=2)


@pytest.mark.slow
def test_trained_mobilenetv2_detector_runs_batched(clip, tmp_path):
    from facecore.facetracker.inference import FaceTrackerDetector
    from facecore.facetracker.model import build_model

    det = FaceTrackerDetector.from_keras(build_model("mobilenetv2", input_size=64, weights=None, head_units=16,
                                                     alpha=0.35),
                                         name="tiny")
    result = process_video(clip, tmp_path / "o.mp4", det, VideoConfig(batch_size=8))
    assert result.frames == 16 and all(len(r.detections) == 1 for r in result.records)
    assert all(0.0 <= r.score <= 1.0 for r in result.records) and result.detector == "tiny"
    assert len(decode_all(tmp_path / "o.mp4")[0]) == 16


def test_new_scratch_dir_removes_folders_of_sessions_idle_for_a_day(tmp_path):
    import os
    import time

    old, recent = tmp_path / "session-old", tmp_path / "session-recent"
    old.mkdir()
    recent.mkdir()
    day_ago = time.time() - 25 * 3600
    os.utime(old, (day_ago, day_ago))
    d = new_scratch_dir(tmp_path, 24 * 3600)
    assert d.is_dir() and d.parent == tmp_path and d.name.startswith("session-")
    assert not old.exists() and recent.is_dir()
