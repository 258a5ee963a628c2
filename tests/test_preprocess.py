"""facecore.preprocess.area_resize: INTER_AREA's averaging at a fraction of its cost, any shape."""

import cv2
import numpy as np
import pytest

from facecore.preprocess import area_resize, resize_for_model


def photo(h, w, seed=0):
    """A smooth photo-like image with some edges (noise alone would exaggerate resampling differences)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (max(2, h // 16), max(2, w // 16), 3), np.uint8)
    img = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    cv2.circle(img, (w // 2, h // 2), max(1, min(h, w) // 5), (255, 255, 255), -1)
    return img


@pytest.mark.parametrize("src,dst", [
    ((480, 640), (144, 192)), ((480, 640), (192, 192)), ((720, 1280), (108, 192)), ((1080, 1920), (144, 256)),
    ((481, 641), (144, 192)), ((479, 637), (100, 150)), ((3000, 4000), (96, 128)), ((240, 320), (144, 192)),
])
def test_area_resize_is_nearer_inter_area_than_bilinear(src, dst):
    img = photo(*src)
    out = area_resize(img, dst[1], dst[0])
    ref = cv2.resize(img, (dst[1], dst[0]), interpolation=cv2.INTER_AREA)
    bilinear = cv2.resize(img, (dst[1], dst[0]), interpolation=cv2.INTER_LINEAR)
    assert out.shape == ref.shape and out.dtype == np.uint8
    diff, base = np.abs(out.astype(float) - ref).mean(), np.abs(bilinear.astype(float) - ref).mean()
    assert diff <= max(0.9 * base, 0.5), (diff, base)


@pytest.mark.parametrize("dst", [(144, 192), (192, 192), (96, 128), (120, 160)])
def test_area_resize_on_the_sample_photos(dst):
    from pathlib import Path

    from facecore.images import read_image

    paths = sorted((Path(__file__).resolve().parents[1] / "data" / "sample" / "images").glob("*.jpg"))[:6]
    assert paths
    for p in paths:
        img = read_image(p)
        ref = cv2.resize(img, (dst[1], dst[0]), interpolation=cv2.INTER_AREA)
        assert np.abs(area_resize(img, dst[1], dst[0]).astype(float) - ref).mean() < 2.0


@pytest.mark.parametrize("src,dst", [((100, 120), (192, 192)), ((128, 128), (128, 128))])
def test_area_resize_enlarges_bilinearly(src, dst):
    img = photo(*src)
    ref = cv2.resize(img, (dst[1], dst[0]), interpolation=cv2.INTER_LINEAR)
    assert np.array_equal(area_resize(img, dst[1], dst[0]), ref)


def test_resize_for_model_is_float_0_255_square():
    x = resize_for_model(photo(480, 640), 128)
    assert x.shape == (128, 128, 3) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 255
