"""[groups.NAME] tables and depends_on in the config file: parsed into ServiceGroup and
SpawnOptions, or refused in one line naming the key path (cycles spelled out)."""

from __future__ import annotations

import tomllib

import pytest

from janus_mp.app.config_file import parse_config
from janus_mp.core.ordering import creation_order
from janus_mp.core.tree import GroupStrategy
from janus_mp.errors import ConfigError

SERVICES = """
[services.db]
target = "m:db"
[services.api]
target = "m:api"
depends_on = ["db"]
[services.web]
target = "m:web"
"""


def _parse(text: str):  # type: ignore[no-untyped-def]
    return parse_config(tomllib.loads(SERVICES + text))


def test_groups_and_dependencies_parse_into_the_api_objects():
    parsed = _parse("""
[groups.top]
members = ["back", "web"]
[groups.back]
members = ["db", "api"]
strategy = "rest_for_one"
max_restarts = 5
within = 30
""")
    back = next(g for g in parsed.groups if g.name == "back")
    assert back.members == ("db", "api") and back.strategy is GroupStrategy.REST_FOR_ONE
    assert (back.max_restarts, back.within) == (5, 30)
    assert next(s for s in parsed.services if s.name == "api").options.depends_on == ("db",)
    assert [g.name for g in creation_order(parsed.groups)] == ["back", "top"]


@pytest.mark.parametrize(("text", "line"), [
    ('[groups.g]\nmembers = ["db", "nope"]',
     "groups.g.members: unknown member 'nope' (no service or group of that name)"),
    ('[groups.g]\nmembers = ["db"]\n[groups.h]\nmembers = ["db", "web"]',
     "groups.h.members: 'db' is already a member of group 'g'"),
    ('[groups.g]\nmembers = ["db", "h"]\n[groups.h]\nmembers = ["web", "g"]',
     "groups.g.members: cycle g -> h -> g"),
    ('[groups.g]\nmembers = ["db"]\nstrategy = "one_for_some"',
     "groups.g.strategy: must be one of one_for_one, one_for_all, rest_for_one"),
    ('[groups.g]\nmembers = "db"', "groups.g.members: must be a list of service or group names"),
    ('[groups.g]\nstrategy = "one_for_all"', "groups.g.members: is required"),
    ('[groups.g]\nmembers = ["db"]\nmax_restart = 1',
     "groups.g.max_restart: unknown key (did you mean 'max_restarts'?)"),
    ('[groups.db]\nmembers = ["web"]', "groups.db: a service is named 'db' too"),
    ('[groups.g]\nmembers = ["api", "db"]',
     "groups.g.members: start order cycle db -> api -> db (depends_on against a group's "
     "member order)"),
])
def test_bad_groups_are_refused_in_one_line(text, line):
    with pytest.raises(ConfigError) as caught:
        _parse(text)
    assert line in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(("text", "line"), [
    ('[services.x]\ntarget = "m:x"\ndepends_on = ["ghost"]',
     "services.x.depends_on: unknown service 'ghost'"),
    ('[services.x]\ntarget = "m:x"\ndepends_on = ["y"]\n'
     '[services.y]\ntarget = "m:y"\ndepends_on = ["z"]\n'
     '[services.z]\ntarget = "m:z"\ndepends_on = ["x"]',
     "services.x.depends_on: cycle x -> y -> z -> x"),
    ('[services.x]\ntarget = "m:x"\ndepends_on = "db"',
     "services.x.depends_on: must be a list of service names"),
    ('[services.x]\ntarget = "m:x"\ndepends_on = ["x"]',
     "services.x.depends_on: a service cannot depend on itself ('x')"),
])
def test_bad_dependencies_are_refused_in_one_line(text, line):
    with pytest.raises(ConfigError) as caught:
        _parse(text)
    assert str(caught.value) == line


def test_a_reload_that_changes_the_groups_is_refused_before_anything_is_applied(tmp_path):
    from janus_mp.app.build import RunFlags, reloader

    path = tmp_path / "tree.toml"
    path.write_text(SERVICES + '[groups.g]\nmembers = ["db", "api"]\n')
    original = parse_config(tomllib.loads(path.read_text())).groups
    reload = reloader(RunFlags(config_path=str(path)), None, {"db", "api", "web"}, original)
    path.write_text(SERVICES + '[groups.g]\nmembers = ["db", "api"]\nstrategy = "one_for_all"\n')
    with pytest.raises(ConfigError, match="groups: cannot change while the supervisor runs"):
        reload(None)  # type: ignore[arg-type]  # refused before the supervisor is touched


JOB = '[services.job]\ntarget = "m:job"\nrestart = "never"\nsignificant = true\n'


def test_otp_keys_parse_into_the_api_objects():
    parsed = parse_config(tomllib.loads(SERVICES + JOB + """
[supervisor]
auto_shutdown = "all_significant"

[groups.batch]
members = ["job", "web"]
auto_shutdown = "any_significant"
restart = "on_failure"
significant = true
""" + '[services.slow]\ntarget = "m:s"\nstop_timeout = "infinity"\n'
    '[services.fast]\ntarget = "m:f"\nstop_timeout = "brutal_kill"\n'))
    batch = next(g for g in parsed.groups if g.name == "batch")
    assert (batch.auto_shutdown.value, batch.restart.value, batch.significant) == \
        ("any_significant", "on_failure", True)
    assert parsed.supervisor.auto_shutdown.value == "all_significant"
    options = {s.name: s.options for s in parsed.services}
    assert options["job"].significant is True
    assert (options["slow"].stop_timeout, options["fast"].stop_timeout) == \
        ("infinity", "brutal_kill")


@pytest.mark.parametrize(("text", "line"), [
    (JOB + '[groups.g]\nmembers = ["job", "web"]',
     "groups.g.auto_shutdown: is \"never\" but member 'job' is significant (use "
     "any_significant or all_significant)"),
    (JOB, "supervisor.auto_shutdown: is \"never\" but 'job' (in no group) is significant"),
    ('[groups.g]\nmembers = ["web"]\nsignificant = true\nrestart = "never"\n'
     '[supervisor]\nauto_shutdown = "any_significant"\n'
     '[groups.top]\nmembers = ["g", "db"]',
     "groups.top.auto_shutdown: is \"never\" but member 'g' is significant"),
    ('[services.x]\ntarget = "m:x"\nsignificant = true\nrestart = "always"',
     "services.x.significant: needs restart = \"on_failure\" or \"never\""),
    ('[groups.g]\nmembers = ["web"]\nsignificant = true',
     "groups.g.significant: needs restart = \"on_failure\" or \"never\""),
    ('[groups.g]\nmembers = ["web"]\nauto_shutdown = "sometimes"',
     "groups.g.auto_shutdown: must be one of never, any_significant, all_significant"),
    ('[groups.g]\nmembers = ["web"]\nrestart = "sometimes"',
     "groups.g.restart: must be one of always, on_failure, never"),
    ('[supervisor]\nauto_shutdown = 1', "supervisor.auto_shutdown: must be one of never"),
    ('[services.x]\ntarget = "m:x"\nstop_timeout = "forever"',
     "services.x.stop_timeout: must be seconds >= 0, \"brutal_kill\" or \"infinity\""),
])
def test_bad_otp_keys_are_refused_in_one_line(text, line):
    with pytest.raises(ConfigError) as caught:
        _parse(text)
    assert line in str(caught.value)
    assert "\n" not in str(caught.value)
