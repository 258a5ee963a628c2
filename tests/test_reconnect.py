"""facecore.live.reconnect.StreamKeeper: the Webcam page's start / drop / automatic-reconnect policy, driven
with a fake clock (the page only renders what it says: tests/test_page_webcam.py)."""

import pytest

from facecore.live.processor import LiveStat
from facecore.live.reconnect import (AUTO_RECONNECTS, DROP_WINDOW_S, NO_FRAMES_AFTER_S, NO_VIDEO_S, RERUN, RETRY_AFTER_S,
                                     RETRY_STALLED_S, STALL_S, StreamKeeper)

T0 = 1_000_000.0
WHY = "the network dropped"


def why() -> str:
    return WHY


def playing_keeper(now: float = T0, connections: int = 0) -> StreamKeeper:
    """Video asked for at ``now`` and playing (the component reported signalling, then playing)."""
    k = StreamKeeper()
    k.start(now)
    assert k.stream_changed(True, False, now, connections, why) == "start"
    assert k.stream_changed(True, True, now + 1, connections, why) is None
    return k


def stat(time: float, frame: int = 10) -> LiveStat:
    return LiveStat(time=time, frame=frame, probability=0.9, faces=1, label="face", fps=20.0, latency_ms=30.0,
                    dropped=0, detect_fps=20.0, camera_fps=30.0, detector="blazeface", held=False, light="",
                    error="")


def test_buttons():
    k = StreamKeeper(drops=[(T0 - 5, WHY)], retry_at=T0 + 1)
    k.start(T0)
    assert (k.want, k.drops, k.retry_at, k.want_since) == (True, [], None, T0)
    k.retry_at = T0 + 1
    k.stop()
    assert (k.want, k.retry_at) == (False, None) and not k.retrying
    k.reconnect(T0)
    assert (k.want, k.retry_at) == (False, T0 + RETRY_AFTER_S) and k.retrying


@pytest.mark.parametrize("want,before,after,expected", [
    (True, (False, False), (True, False), "start"),  # signalling began: a new stream
    (False, (False, False), (True, True), "start"),
    (True, (True, True), (False, False), "drop"),  # nobody pressed Stop
    (True, (True, True), (True, False), "drop"),  # playing -> signalling: the component restarted it at once
    (False, (True, True), (False, False), None),  # Stop: not a drop
    (True, (True, False), (True, True), None),  # signalling -> playing: the same stream
])
def test_stream_changes(want, before, after, expected):
    k = StreamKeeper(want=want, active=before[0], playing=before[1])
    assert k.stream_changed(*after, T0, 4, why) == expected
    assert (k.active, k.playing) == after
    if expected == "start":
        assert (k.started, k.expected, len(k.history)) == (T0, 5, 0)  # fresh stats; the next connection is ours
    if expected == "drop":
        assert k.drops == [(T0, WHY)] and not k.want and k.retry_at == T0 + RETRY_AFTER_S


def test_drops_retry_by_themselves_then_wait_for_a_click():
    k = playing_keeper()
    now = T0 + 10
    for n in range(1, AUTO_RECONNECTS + 2):
        assert k.stream_changed(False, False, now, 1, why) == "drop"
        assert len(k.drops) == n and not k.want
        if n > AUTO_RECONNECTS:  # too many in the window: no retry, Reconnect is offered
            assert not k.retrying and not k.auto_reconnecting
            break
        assert k.retry_at == now + RETRY_AFTER_S and k.auto_reconnecting
        assert k.tick(now + RETRY_AFTER_S - 0.1, False, 1, 0.0, why) is None  # not yet
        now += RETRY_AFTER_S
        assert k.tick(now, False, 1, 0.0, why) == RERUN  # due: the component starts again
        assert (k.want, k.want_since, k.retry_at) == (True, now, None)
        k.stream_changed(True, True, now + 1, 1, why)
        now += 5
    k.start(now)  # Reconnect
    assert k.want and k.drops == []


def test_old_drops_leave_the_window():
    k = StreamKeeper(want=True, drops=[(T0, WHY)] * AUTO_RECONNECTS, active=True, playing=True)
    later = T0 + DROP_WINDOW_S + 1
    k.stream_changed(False, False, later, 1, why)
    assert k.drops == [(later, WHY)] and k.retry_at == later + RETRY_AFTER_S


@pytest.mark.parametrize("asked_ago,drops,playing,expected", [
    (RETRY_STALLED_S + 1, 1, False, RERUN),  # an automatic reconnection that did not take: once more
    (RETRY_STALLED_S - 1, 1, False, None),  # give it time
    (RETRY_STALLED_S + 1, 1, True, None),  # it took
    (RETRY_STALLED_S + 1, 0, False, None),  # no drop: the first start (no-video warning instead)
    (RETRY_STALLED_S + 1, AUTO_RECONNECTS, False, None),  # tries used up
])
def test_stalled_reconnection_is_tried_again(asked_ago, drops, playing, expected):
    k = StreamKeeper(want=True, want_since=T0 - asked_ago, drops=[(T0 - 20, WHY)] * drops)
    assert k.tick(T0, playing, 0, 0.0, why) == expected
    if expected == RERUN:
        assert len(k.drops) == drops + 1 and k.drops[-1] == (T0, WHY)  # counted as one more try
        assert not k.want and k.retry_at == T0 + RETRY_AFTER_S


@pytest.mark.parametrize("connections,frame_ago,expected", [
    (2, 1.0, RERUN),  # frames from a connection the page did not start: a drop it never saw
    (1, 1.0, None),  # the page's own connection
    (2, STALL_S + 1, None),  # no fresh frames from it
])
def test_connection_remade_unseen(connections, frame_ago, expected):
    k = playing_keeper(connections=0)  # expects connection 1
    assert k.tick(T0 + 5, True, connections, T0 + 5 - frame_ago, why) == expected
    if expected == RERUN:
        assert k.drops == [(T0 + 5, WHY)] and k.expected == connections and k.want
        assert k.tick(T0 + 6, True, connections, T0 + 5.5, why) is None  # counted once


@pytest.mark.parametrize("want,playing,silent_s,expected", [
    (True, False, NO_VIDEO_S + 5, NO_VIDEO_S + 5), (True, False, NO_VIDEO_S - 1, None),
    (True, True, NO_VIDEO_S + 5, None), (False, False, NO_VIDEO_S + 5, None),
])
def test_no_video_for_long(want, playing, silent_s, expected):
    k = StreamKeeper(want=want, want_since=T0 - silent_s)
    assert k.no_video_s(T0, playing, 0.0) == expected
    assert k.no_video_s(T0, playing, T0 - 1) is None  # a frame a second ago


def test_what_the_page_shows():
    k = playing_keeper()
    assert k.refreshing(True) and not k.stopped(True)
    assert k.no_frames_yet(T0 + NO_FRAMES_AFTER_S + 1, True) and not k.no_frames_yet(T0 + 2, True)
    assert k.stalled_s(T0 + 10, True, T0 + 10 - STALL_S - 1) == STALL_S + 1
    assert k.stalled_s(T0 + 10, True, T0 + 9) is None and k.stalled_s(T0 + 10, False, T0) is None
    k.stop()
    assert k.stopped(False) and not k.refreshing(False)
    assert not StreamKeeper().stopped(False)  # nothing ran yet


def test_explain_uses_the_last_stats():
    k = playing_keeper()
    assert "could not connect" in k.explain({"iceServers": []}, local=True, frames=0, last_frame_at=0.0, now=T0)
    k.history.append(stat(T0 + 5))
    overloaded = k.explain({"iceServers": []}, local=True, frames=0, last_frame_at=T0 + 5, now=T0 + 9)
    assert "overloaded" in overloaded  # 4 s without a frame after 10 frames
