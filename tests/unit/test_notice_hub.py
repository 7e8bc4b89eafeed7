"""The notice fan-out: bounded per-subscriber buffers, lost counts, history, closing."""

from __future__ import annotations

import threading

import pytest

from janus_mp.core.notices import LifecycleNotice, NoticeKind
from janus_mp.runtime.notice_hub import HISTORY, NoticeHub


def _notice(n: int) -> LifecycleNotice:
    return LifecycleNotice(NoticeKind.SPAWNED, float(n), service="a", pid=n)


def test_a_slow_subscriber_loses_what_does_not_fit_and_is_told_how_many():
    hub = NoticeHub(lambda: 0.0)
    slow, fast = hub.subscribe(buffer=3), hub.subscribe(buffer=100)
    for n in range(10):
        hub.publish(_notice(n))
    batch, lost = slow.get(0)
    assert [x.pid for x in batch] == [0, 1, 2] and lost == 7
    assert slow.get(0) == ([], 0)  # told once
    batch, lost = fast.get(0)
    assert [x.pid for x in batch] == list(range(10)) and lost == 0


def test_history_is_taken_atomically_with_the_subscription():
    hub = NoticeHub(lambda: 0.0)
    for n in range(HISTORY + 5):
        hub.publish(_notice(n))
    sub = hub.subscribe(history=True)
    assert [x.pid for x in sub.history] == list(range(5, HISTORY + 5))
    hub.publish(_notice(-1))
    assert [x.pid for x in sub.get(0)[0]] == [-1]
    assert hub.subscribe().history == []


def test_get_wakes_on_publish_and_on_close():
    hub = NoticeHub(lambda: 0.0)
    sub = hub.subscribe()
    got: list[object] = []
    reader = threading.Thread(target=lambda: got.append(sub.get(30)))
    reader.start()
    hub.publish(_notice(1))
    reader.join(30)
    assert got and [x.pid for x in got[0][0]] == [1]  # type: ignore[index]
    reader = threading.Thread(target=lambda: got.append(sub.get(30)))
    reader.start()
    hub.close()
    reader.join(30)
    assert not reader.is_alive() and sub.closed
    hub.publish(_notice(2))  # nobody listens any more: nothing breaks
    assert sub.get(0) == ([], 0)


def test_a_closed_subscription_stops_receiving():
    hub = NoticeHub(lambda: 0.0)
    with hub.subscribe() as sub:
        hub.publish(_notice(1))
    hub.publish(_notice(2))
    assert [x.pid for x in sub.get(0)[0]] == [1]


@pytest.mark.parametrize("buffer", [0, -1, True, 1.5])
def test_a_bad_buffer_is_refused(buffer):
    with pytest.raises(ValueError):
        NoticeHub(lambda: 0.0).subscribe(buffer)  # type: ignore[arg-type]
