"""What travels between a pool's dispatcher and its workers: frames cut anywhere reassemble,
bodies round-trip through pickle (dill when pickle cannot), exceptions keep their traceback and
an unpicklable one travels as a description, outcomes as JSON."""

from __future__ import annotations

import concurrent.futures
import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from janus_mp.core.task_messages import Outcome, WorkerExit
from janus_mp.errors import PoisonTask, QueueFull, TaskTimeout, WorkerDied
from janus_mp.pools import outcomes, payloads
from janus_mp.pools.frames import (
    HEADER,
    RECV_SIZE,
    RECV_SIZE_MAX,
    FrameError,
    FrameReader,
    Kind,
    frame,
)

FRAMES = st.lists(st.tuples(st.sampled_from(list(Kind)), st.integers(0, 2**64 - 1),
                            st.binary(max_size=300)), max_size=12)


@settings(derandomize=True, database=None, max_examples=200)
@given(frames=FRAMES, cuts=st.lists(st.integers(1, 50), max_size=40))
def test_frames_cut_anywhere_come_out_whole_and_in_order(frames, cuts):
    data = b"".join(frame(kind, task, body) for kind, task, body in frames)
    reader, got, start = FrameReader(), [], 0
    for cut in cuts:
        got += reader.feed(data[start:start + cut])
        start += cut
    got += reader.feed(data[start:])
    assert got == frames and reader.pending == 0


def test_a_reader_asks_for_small_reads_between_frames_and_the_rest_of_a_large_one():
    reader = FrameReader()
    assert reader.wanted() == RECV_SIZE  # nothing yet
    big = frame(Kind.RESULT, 1, bytes(5 * RECV_SIZE))
    assert reader.feed(big[:HEADER.size - 1]) == [] and reader.wanted() == RECV_SIZE
    assert reader.feed(big[HEADER.size - 1:100]) == []
    assert reader.wanted() == len(big) - 100  # the rest of the frame in one call
    assert [body for _, _, body in reader.feed(big[100:])] == [bytes(5 * RECV_SIZE)]
    assert reader.wanted() == RECV_SIZE
    reader.feed(HEADER.pack(Kind.RESULT, 2, 2**32 - 1))
    assert reader.wanted() == RECV_SIZE_MAX  # capped
    reader = FrameReader()
    reader.feed(frame(Kind.RESULT, 3, bytes(10))[:HEADER.size + 2])
    assert reader.wanted() == RECV_SIZE  # a small rest: the usual read


def test_an_unknown_frame_kind_is_an_error():
    with pytest.raises(FrameError, match="unknown frame kind 99"):
        FrameReader().feed(HEADER.pack(99, 0, 0))


def test_calls_use_pickle_and_fall_back_to_dill():
    plain = payloads.call(divmod, (7, 2), {})
    assert plain[:1] == b"p"
    fn, args, kwargs = payloads.loads(plain)
    assert fn(*args, **kwargs) == (3, 1)
    offset = 5
    closure = payloads.call(lambda x: x + offset, (1,), {})
    assert closure[:1] == b"d"
    fn, args, _ = payloads.loads(closure)
    assert fn(*args) == 6
    with pytest.raises(TypeError):
        payloads.call(len, ((x for x in ()),), {})  # a generator: neither can


def test_raised_exceptions_keep_the_worker_traceback():
    try:
        raise KeyError("missing")
    except KeyError as exc:
        body = payloads.raised(exc)
    loaded = payloads.load_raised(body)
    assert isinstance(loaded, KeyError) and loaded.args == ("missing",)
    assert isinstance(loaded.__cause__, payloads.RemoteTraceback)
    assert "raise KeyError" in str(loaded.__cause__)


class Unpicklable(Exception):
    def __reduce__(self):
        raise TypeError("no")


def test_an_exception_that_does_not_pickle_travels_as_a_description():
    loaded = payloads.load_raised(payloads.raised(Unpicklable("bad")))
    assert isinstance(loaded, payloads.UnpicklableResult)
    assert "Unpicklable: bad" in str(loaded)


@pytest.mark.parametrize("outcome, exit_, deaths, expected, text", [
    (Outcome.DIED, WorkerExit(-9), 1, WorkerDied, "died (killed by signal 9)"),
    (Outcome.DIED, WorkerExit(-9, oom_killed=True), 1, WorkerDied, "by the OOM killer"),
    (Outcome.POISON, WorkerExit(-11), 3, PoisonTask, "has killed 3 workers"),
    (Outcome.TIMEOUT, None, 0, TaskTimeout, "past its timeout"),
    (Outcome.BROKEN, WorkerExit(1), 0, WorkerDied, "before they can take a task (exit code 1)"),
    ("queue_full", None, 0, QueueFull, "queue is full"),
    (Outcome.CANCELLED, None, 0, concurrent.futures.CancelledError, ""),
])
def test_outcomes_become_exceptions_the_same_way_on_both_sides_of_json(outcome, exit_, deaths,
                                                                        expected, text):
    for error in (outcomes.error_for(outcome, exit_, deaths),
                  outcomes.decode(outcomes.encode(outcome, exit_, deaths))):
        assert type(error) is expected and text in str(error)
        if isinstance(error, WorkerDied):
            assert error.deaths == deaths
            assert (error.signal, error.exitcode) == (exit_.signal, exit_.code)
            assert error.oom_killed == exit_.oom_killed
            again = pickle.loads(pickle.dumps(error))  # keyword fields survive pickling
            assert (type(again), again.signal, again.deaths) == (expected, error.signal, deaths)
