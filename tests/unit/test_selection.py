"""Which services a name stands for: itself, a group's members (nested groups too), or all."""

from __future__ import annotations

import pytest

from janus_mp.core.selection import select_services
from janus_mp.errors import UnknownServiceError

SERVICES = ["db", "api", "worker", "cron"]
GROUPS = {"backend": ["db", "inner"], "inner": ["worker", "api", "db"], "solo": ["cron"]}


@pytest.mark.parametrize(("name", "chosen"), [
    ("api", ("api",)),
    ("all", ("db", "api", "worker", "cron")),
    ("backend", ("db", "worker", "api")),  # member order, nested group expanded, no repeats
    ("solo", ("cron",)),
])
def test_names(name, chosen):
    assert select_services(name, SERVICES, GROUPS) == chosen


def test_a_service_named_like_a_group_or_all_is_that_service():
    assert select_services("all", ["all", "x"], {}) == ("all",)
    assert select_services("solo", ["solo", "cron"], GROUPS) == ("solo",)


def test_unknown_lists_services_groups_and_all():
    with pytest.raises(UnknownServiceError) as caught:
        select_services("nope", SERVICES, GROUPS)
    assert "backend" in str(caught.value) and "all" in str(caught.value)
