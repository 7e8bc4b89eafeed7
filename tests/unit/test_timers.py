from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from janus_mp.timers import Timers


@given(st.lists(st.tuples(st.floats(0, 100), st.booleans()), max_size=50), st.floats(0, 100))
def test_pop_due_returns_live_due_timers_in_order(entries, now):
    timers = Timers()
    made = [(timers.at(d, lambda: None), cancel) for d, cancel in entries]
    for timer, cancel in made:
        if cancel:
            timer.cancel()
    due = timers.pop_due(now)
    expected = sorted((t for t, c in made if not c and t.deadline <= now))
    assert due == expected
    rest = [t for t, c in made if not c and t.deadline > now]
    assert timers.next_deadline() == (min(t.deadline for t in rest) if rest else None)
