"""The cancellation tree's bookkeeping, on in-process flags; and the kill-safe SharedEvent."""

from __future__ import annotations

import os
import signal
import threading

import multiprocess
import pytest
from hypothesis import given
from hypothesis import strategies as st

from janus_mp.core.cancel import CancellationToken
from janus_mp.runtime.shared_event import SharedEvent, SharedEventFactory
from tests.support import wait_until

pytestmark = pytest.mark.timeout(30)


class LocalFlag:
    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._event.wait(timeout)


def tree() -> CancellationToken:
    return CancellationToken(LocalFlag, name="root")


@given(st.lists(st.integers(min_value=0, max_value=1000), min_size=1, max_size=40),
       st.integers(min_value=0, max_value=1000))
def test_cancel_reaches_exactly_the_subtree(parents, pick):
    root = tree()
    nodes = [root]
    for p in parents:  # a random tree: each new node hangs below an existing one
        nodes.append(nodes[p % len(nodes)].child())
    target = nodes[pick % len(nodes)]
    subtree = {id(target)}
    stack = [target]
    while stack:
        node = stack.pop()
        for child in node.children:
            subtree.add(id(child))
            stack.append(child)
    newly = target.cancel("because")
    assert {id(n) for n in newly} == subtree
    for node in nodes:
        assert node.is_cancelled() == (id(node) in subtree)
    assert target.cancel("again") == []  # idempotent
    assert target.reason == "because"


def test_child_of_cancelled_parent_is_born_cancelled():
    root = tree()
    root.cancel("shutdown")
    child = root.child("late")
    assert child.is_cancelled() and child.reason == "shutdown"


def test_detach_forgets_the_node():
    root = tree()
    node = root.child("w")
    node.detach()
    assert root.children == ()
    root.cancel()
    assert not node.is_cancelled()


def test_is_cancelled_sees_an_ancestor_flag_set_elsewhere():
    root = tree()
    leaf = root.child().child()
    root.flag.set()  # as a remote process would: flag only, no cancel() call here
    assert leaf.is_cancelled()
    assert leaf.wait(0)


def test_on_cancel_callback_runs_once():
    root = tree()
    node = root.child()
    calls = []
    node.on_cancel(lambda n: calls.append(n.name))
    root.cancel()
    root.cancel()
    assert calls == [node.name]


def _sleep_in_wait(event):
    event.wait()  # sleeps inside the event, where a SIGKILL leaves multiprocess.Event wedged


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_shared_event_survives_a_sigkilled_waiter(method):
    ctx = multiprocess.get_context(method)
    event = SharedEvent(ctx)
    waiter = ctx.Process(target=_sleep_in_wait, args=(event,))
    waiter.start()
    wait_until(lambda: waiter.pid is not None)
    os.kill(waiter.pid, signal.SIGKILL)
    waiter.join(10)
    setter = threading.Thread(target=event.set)
    setter.start()
    setter.join(5)
    assert not setter.is_alive(), "set() blocked after a waiter was killed"
    assert event.is_set() and event.wait(0)


def _wait_and_report(token, queue):
    queue.put(token.wait(10))


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_token_crosses_into_a_process(method):
    ctx = multiprocess.get_context(method)
    root = CancellationToken(SharedEventFactory(method))
    service = root.child("svc")
    worker = service.child("svc[0]")
    sibling = root.child("other")
    queue = ctx.Queue()
    proc = ctx.Process(target=_wait_and_report, args=(worker, queue))
    proc.start()
    try:
        service.cancel("stop")
        assert queue.get(timeout=10) is True
        assert not sibling.is_cancelled() and not root.is_cancelled()
    finally:
        proc.join(10)
    assert proc.exitcode == 0
