"""gc.freeze() around a fork: frozen inside (the child inherits that), unfrozen after (the
supervisor still collects its own garbage), nothing at all when switched off."""

from __future__ import annotations

import gc

from janus_mp.runtime.memory import gc_frozen


def test_frozen_only_inside_and_only_when_enabled():
    assert gc.get_freeze_count() == 0
    with gc_frozen(True):
        assert gc.get_freeze_count() > 0
    assert gc.get_freeze_count() == 0
    with gc_frozen(False):
        assert gc.get_freeze_count() == 0
