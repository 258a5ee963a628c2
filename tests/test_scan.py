"""Small faces (facecore.scan): tiles cover the frame, levels stop where they should, merging keeps one box
per face, and a group photo's small faces are found by the scan that the whole frame misses."""

import numpy as np
import pytest

from facecore import boxes as B
from facecore.detect import Detection
from facecore.scan import STILLS, VIDEO, WHOLE_FRAME, ScanConfig, ScanningDetector, merge, tile_origins, tiles


@pytest.mark.parametrize("length, side, overlap", [(400, 200, 0.3), (4000, 500, 0.3), (640, 320, 0.3), (300, 400, 0.3),
                                                   (1001, 250, 0.5)])
def test_tiles_cover_the_frame_with_the_overlap_asked_for(length, side, overlap):
    starts = tile_origins(length, side, overlap)
    assert starts[0] == 0 and min(starts[-1] + side, length) == length
    for a, b in zip(starts, starts[1:]):
        assert b - a <= side * (1 - overlap) + 1  # neighbours share at least the overlap


@pytest.mark.parametrize("config, hw, sides", [
    (STILLS, (300, 400), [200, 100]),            # a crowd photo: down to 2 network px per photo px
    (STILLS, (3000, 4000), [2000, 1000, 500]),   # 12 MP: three levels
    (STILLS, (120, 160), []),                    # smaller than the network needs
    (VIDEO, (480, 640), []),                     # a webcam-sized clip: whole frames only
    (VIDEO, (1080, 1920), [960, 480, 240]),
    (WHOLE_FRAME, (3000, 4000), []),
])
def test_levels(config, hw, sides):
    assert config.levels(*hw) == sides


def det(score, box):
    return Detection(score, np.asarray(box, np.float32))


def test_merge_keeps_one_box_per_face_and_the_coarse_box_of_a_large_face():
    whole = det(0.8, [0.10, 0.10, 0.50, 0.60])            # a large face seen whole (zoom 0.3)
    tile_view = det(0.9, [0.12, 0.11, 0.49, 0.58])        # the same face, seen in a tile (zoom 0.6)
    inner = det(0.7, [0.20, 0.20, 0.30, 0.35])            # a part of it, inside
    small = det(0.6, [0.80, 0.80, 0.82, 0.83])            # a small face elsewhere, only in a tile
    out = merge([whole, tile_view, inner, small], [0.3, 0.6, 0.6, 0.6], width=640)
    assert len(out) == 2
    assert out[0].score == 0.9 and np.allclose(out[0].box, whole.box)  # best score, coarse box
    assert np.allclose(out[1].box, small.box)


class Fixed:
    name, backend = "fixed", "test"

    def __init__(self):
        self.calls = []

    def detect(self, frame):
        self.calls.append(frame.shape[:2])
        return []


def test_scanning_detector_looks_at_every_tile_and_keeps_the_name():
    base = Fixed()
    d = ScanningDetector(base, ScanConfig(max_levels=1, overlap=0.3))
    assert d.name == "fixed" and d.detect(np.zeros((300, 400, 3), np.uint8)) == []
    assert base.calls[0] == (300, 400) and len(base.calls) == 1 + len(tiles(300, 400, 200, 0.3))


def found(detector, photo, truth, iou=0.3) -> int:
    """Labeled faces of ``photo`` boxed (score >= 0.5) at IoU >= ``iou``."""
    boxes = [d.box for d in detector.detect(photo) if d.score >= 0.5]
    return int((B.iou_matrix(truth, np.asarray(boxes)).max(axis=1) >= iou).sum()) if boxes else 0


def test_small_faces_of_a_large_group_photo_are_found_by_the_scan():
    """Eight sample faces about 110 px wide on a 4000 x 3000 photo (3 % of its width, 5 px in the 192 px
    input): the whole frame finds almost none of them, the scan finds them all at IoU 0.3."""
    from facecore.blazeface.builtin import BlazeFaceDetector
    from facecore.testing import group_photo

    photo, truth = group_photo(4000, 3000, 8, 110)
    built_in = BlazeFaceDetector()
    assert found(built_in, photo, truth) <= 2
    assert found(ScanningDetector(built_in, STILLS), photo, truth) == len(truth)


@pytest.mark.slow
def test_video_of_large_frames_has_its_small_faces_boxed(tmp_path):
    """The Video page's scan (frames over 1280 px): a 2560 x 1920 clip of eight 70 px faces."""
    import av

    from facecore.blazeface.builtin import BlazeFaceDetector
    from facecore.testing import group_photo
    from facecore.video import VideoConfig, process_video

    photo, truth = group_photo(2560, 1920, 8, 70)
    src = tmp_path / "group.mp4"
    with av.open(str(src), "w") as c:
        v = c.add_stream("libx264", rate=2)
        v.width, v.height, v.pix_fmt = 2560, 1920, "yuv420p"
        for _ in range(2):
            c.mux(v.encode(av.VideoFrame.from_ndarray(photo, format="rgb24")))
        c.mux(v.encode(None))
    whole = process_video(src, tmp_path / "whole.mp4", BlazeFaceDetector(), VideoConfig(threshold=0.5))
    scanned = process_video(src, tmp_path / "scan.mp4", ScanningDetector(BlazeFaceDetector(), VIDEO),
                            VideoConfig(threshold=0.5))
    assert whole.most_faces <= 2
    assert scanned.most_faces >= 7
