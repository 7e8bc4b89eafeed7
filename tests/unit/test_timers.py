from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from janus_mp.core.timers import Deadlines, TimerKey, TimerKind

keys = st.builds(TimerKey, st.sampled_from(list(TimerKind)), st.sampled_from(["a", "b"]),
                 st.integers(-1, 3), st.integers(-1, 3))
ops = st.lists(st.tuples(st.sampled_from(["schedule", "cancel"]), keys, st.floats(0, 100)),
               max_size=60)


@given(ops, st.floats(0, 100))
def test_pop_due_matches_a_plain_dict_model(operations, now):
    deadlines = Deadlines()
    model: dict[TimerKey, float] = {}
    for op, key, at in operations:
        if op == "schedule":
            deadlines.schedule(key, at)
            model[key] = at
        else:
            deadlines.cancel(key)
            model.pop(key, None)
    assert len(deadlines) == len(model)
    due = deadlines.pop_due(now)
    expected = sorted((at, k) for k, at in model.items() if at <= now)
    assert [model[k] for k in due] == [at for at, _ in expected]
    assert set(due) == {k for _, k in expected}
    rest = [at for k, at in model.items() if at > now]
    assert deadlines.next_deadline() == (min(rest) if rest else None)
    assert len(deadlines) == len(rest)


def test_rescheduling_a_key_moves_it():
    deadlines = Deadlines()
    key = TimerKey(TimerKind.TERM, worker=1)
    deadlines.schedule(key, 5.0)
    deadlines.schedule(key, 9.0)
    assert deadlines.pop_due(6.0) == []
    assert deadlines.next_deadline() == 9.0
    assert deadlines.pop_due(9.0) == [key]
    assert deadlines.next_deadline() is None
