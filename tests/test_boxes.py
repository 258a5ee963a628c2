import numpy as np
import pytest

from facecore import boxes as B


@pytest.mark.parametrize("corners", [
    [10, 20, 110, 220],   # top-left first
    [110, 220, 10, 20],   # bottom-right first (labelme drag from the other corner)
    [110, 20, 10, 220],   # top-right first
    [10, 220, 110, 20],   # bottom-left first
])
def test_from_pixels_any_corner_order(corners):
    out = B.from_pixels(corners, 200, 400)
    np.testing.assert_allclose(out, [[0.05, 0.05, 0.55, 0.55]], atol=1e-6)
    assert out.dtype == np.float32


@pytest.mark.parametrize("w,h", [(640, 480), (1280, 720), (480, 640), (1, 1)])
def test_pixels_round_trip(w, h):
    rng = np.random.default_rng(0)
    norm = B.order_corners(rng.random((5, 4)).astype(np.float32))
    np.testing.assert_allclose(B.from_pixels(B.to_pixels(norm, w, h), w, h), norm, atol=1e-6)


def test_to_pixels_int_clips_into_image():
    px = B.to_pixels_int([[-0.1, 0.5, 1.2, 1.0]], 100, 50)
    assert px.tolist() == [[0, 25, 99, 49]]


@pytest.mark.parametrize("box,expected", [
    ([-0.2, 0.1, 0.5, 1.3], [0.0, 0.1, 0.5, 1.0]),
    ([0.1, 0.1, 0.2, 0.2], [0.1, 0.1, 0.2, 0.2]),
])
def test_clip(box, expected):
    np.testing.assert_allclose(B.clip(box), [expected], atol=1e-7)


@pytest.mark.parametrize("a,b,expected", [
    ([0, 0, 1, 1], [0, 0, 1, 1], 1.0),
    ([0, 0, 0.5, 1], [0.5, 0, 1, 1], 0.0),               # touching, no overlap
    ([0, 0, 0.5, 0.5], [0.25, 0.25, 0.75, 0.75], 1 / 7),  # 0.0625 / (0.25 + 0.25 - 0.0625)
    ([0, 0, 0.5, 0.5], [0.6, 0.6, 0.9, 0.9], 0.0),
    ([0.2, 0.2, 0.2, 0.4], [0.2, 0.2, 0.2, 0.4], 0.0),    # degenerate: no area
])
def test_iou_hand_computed(a, b, expected):
    assert B.iou(a, b)[0] == pytest.approx(expected, abs=1e-6)


def test_iou_vectorized_and_matrix_agree():
    rng = np.random.default_rng(1)
    a = np.concatenate([B.order_corners(rng.random((6, 4))), [[0.2, 0.2, 0.2, 0.5]]])  # and one of no area
    b = np.concatenate([B.order_corners(rng.random((3, 4))), [[0.2, 0.2, 0.2, 0.5], [2.0, 2.0, 3.0, 3.0]]])
    m = B.iou_matrix(a, b)
    assert m.shape == (7, 5) and m.dtype == np.float32
    for i in range(7):
        for j in range(5):
            assert m[i, j] == B.iou(a[i], b[j])[0]  # the very same float32 figure
    assert m[6, 3] == 0.0 and (m[:, 4] == 0.0).all()
    assert B.iou_matrix(a, B.EMPTY).shape == (7, 0)


def test_as_boxes_rejects_bad_shape():
    with pytest.raises(ValueError):
        B.as_boxes([[1, 2, 3]])


def test_outside_and_valid():
    b = [[0.1, 0.1, 0.2, 0.2], [-0.1, 0.1, 0.2, 0.2], [0.3, 0.3, 0.3, 0.5]]
    assert B.outside_image(b).tolist() == [False, True, False]
    assert B.is_valid(b).tolist() == [True, True, False]


@pytest.mark.parametrize("box,k,expected", [
    ([0.4, 0.4, 0.6, 0.6], 0.5, [0.3, 0.3, 0.7, 0.7]),
    ([0.0, 0.0, 0.2, 0.2], 0.5, [0.0, 0.0, 0.3, 0.3]),  # clipped at the top-left border
    ([0.9, 0.8, 1.0, 1.0], 1.0, [0.8, 0.6, 1.0, 1.0]),
])
def test_expand(box, k, expected):
    np.testing.assert_allclose(B.expand(box, k), [expected], atol=1e-6)
