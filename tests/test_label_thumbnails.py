"""Gallery thumbnails: a proposal is an orange outline, with no score tag covering the face (issue 23)."""

import numpy as np
import pytest

from facecore.datasets import labeling as L
from facecore.datasets import prelabel as P
from facecore.testing import make_dataset


@pytest.mark.parametrize("box", [[0.2, 0.02, 0.6, 0.5], [0.3, 0.4, 0.7, 0.95]])  # at the top (tag inside), lower
def test_thumbnail_proposals_leave_the_inside_of_the_box_alone(tmp_path, box):
    ds = make_dataset(tmp_path / "d", n_face=0, n_noface=1, size=(160, 120))
    e = L.entry(ds.items()[0])
    plain = L.thumbnail(e, size=160).astype(int)
    prop = P.Proposal([box], [0.93], "blazeface")
    th = L.thumbnail(e, size=160, proposal=prop).astype(int)
    h, w = th.shape[:2]
    x1, y1, x2, y2 = (np.array(box) * [w, h, w, h]).round().astype(int)
    inside = (slice(y1 + 3, y2 - 2), slice(x1 + 3, x2 - 2))
    assert np.array_equal(th[inside], plain[inside])  # no "proposal 0.93" bar on the face
    assert np.abs(th - plain).sum() > 0  # the outline is drawn
    if box[1] < 0.1:  # with no room above, a score tag lands inside the box: this check sees it
        tagged = L.draw_label(plain.astype(np.uint8), None, prop).astype(int)
        assert not np.array_equal(tagged[inside], plain[inside])
