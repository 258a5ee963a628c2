"""AppTest: the Collect & Label Gallery shows a damaged photo as damaged (issue 25), not as a blank or a traceback."""

import numpy as np
from streamlit.testing.v1 import AppTest

from conftest import ROOT
from facecore.images import encode_jpeg
from facecore.testing import face_image, make_dataset

PAGE = str(ROOT / "pages" / "1_Collect_and_Label.py")


def test_gallery_shows_a_cut_short_jpeg_as_damaged(workspace_env):
    data, _ = workspace_env
    ds = make_dataset(data / "workspace" / "mine", n_face=2, n_noface=0)
    whole = encode_jpeg(face_image(np.random.default_rng(5), 160, 120)[0])
    (ds.images_dir / "cut.jpg").write_bytes(whole[: len(whole) * 2 // 3])  # an interrupted copy
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    at = at.sidebar.selectbox[0].select("mine").run()
    at = at.button_group(key="lab_view").set_value("Gallery").run()
    assert not at.exception, at.exception
    assert [e.value for e in at.error] == ["damaged image"]
    assert len(at.image) == 2  # the intact photos still show
