"""Recognize offline (issue 23): the ImageNet download fails in seconds without a network, and the page
offers the random-feature fallback as a button."""

import socket
import threading
import time

import numpy as np
import pytest

from conftest import run_page
from facecore.facetracker import backbones as BB
from facecore.identity.data import create_identity_set
from facecore.identity.train import ImageNetWeightsMissing, weights_missing
from facecore.jobs import Job, WorkerError
from identity_synth import person_image


def test_reachable_needs_an_http_answer_and_gives_up_within_its_timeout():
    import http.server
    import threading

    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)  # answers 501
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert BB.reachable(f"http://127.0.0.1:{server.server_address[1]}/w.h5", timeout=3)
    finally:
        server.shutdown()
        server.server_close()
    with socket.socket() as silent:  # accepts connections (as a sandbox's proxy may) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        t0 = time.monotonic()
        assert not BB.reachable(f"http://127.0.0.1:{silent.getsockname()[1]}/w.h5", timeout=0.5)
        assert time.monotonic() - t0 < 3  # gives up at its timeout, not at the socket's
        closed = silent.getsockname()[1]
    assert not BB.reachable(f"http://127.0.0.1:{closed}/w.h5", timeout=1)
    assert not BB.reachable("https://no-such-host.invalid/w.h5", timeout=1)


def test_weights_missing_knows_the_error_also_back_from_a_worker():
    assert weights_missing(ImageNetWeightsMissing("x"))
    assert weights_missing(WorkerError("x", ("ImageNetWeightsMissing", "FaceCoreError")))
    assert not weights_missing(WorkerError("x", ("ValueError",))) and not weights_missing(None)


@pytest.mark.slow  # imports TensorFlow
def test_offline_backbone_fails_fast_with_the_file_to_place(tmp_path, monkeypatch):
    from facecore.identity.train import build_backbone

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setattr(BB, "reachable", lambda url, timeout=2.0: False)
    # "no network" comes from the check before Keras: Keras' own download is never tried
    with pytest.raises(ImageNetWeightsMissing, match="no network.*mobilenet_v2.*weights 'none'"):
        build_backbone("mobilenetv2", 96, "imagenet")


def test_page_offers_training_with_random_features(workspace_env, monkeypatch):
    data, _ = workspace_env
    ids = create_identity_set(data, "me_not_me")
    rng = np.random.default_rng(0)
    for who in ("me", "bob"):
        for i in range(3):
            ids.add_crop(who, person_image(rng, who)[0], f"{who}{i}")
    started, release = [], threading.Event()

    def hold(progress, cancel):  # no short timeout: on a loaded CI machine one page run once outlasted 30 s
        release.wait(600)

    class FakeProcessJob(Job):  # records what the page starts and runs until the test ends, instead of training
        def __init__(self, work, name="job", subject=None):
            started.append(work)
            super().__init__(hold, name, subject)

    import facecore.jobs

    monkeypatch.setattr(facecore.jobs, "ProcessJob", FakeProcessJob)
    at = run_page("pages/7_Recognize.py", 180)
    failed = Job(lambda progress, cancel: (_ for _ in ()).throw(
        WorkerError("could not download the ImageNet weights (no network)", ("ImageNetWeightsMissing",))), "t")
    failed.start().wait(10)
    at.session_state["recognize_train_job"] = failed
    at.run()
    assert "no network" in " ".join(e.value for e in at.error)
    try:
        at.button(key="recognize_train_random").click().run()
        assert not at.exception, at.exception
        assert at.selectbox(key="recognize_train_weights").value == "none"
        assert started and started[-1].args[1].weights is None  # train_identity(ids, cfg, out), weights none
    finally:
        release.set()
