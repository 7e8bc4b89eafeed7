"""Supervision trees and start dependencies end to end: `janus-mp run -c FILE` with real worker
processes, driven and read through the CLI (status --json) like a user would."""

from __future__ import annotations

import os
import signal
import textwrap
from pathlib import Path

import pytest

from janus_mp.app import control
from tests.integration.test_cli import Cli
from tests.support import wait_until

pytestmark = pytest.mark.timeout(90)

TREEMOD = '''
import os
from pathlib import Path

def member(ctx):
    ctx.ready()
    ctx.shutdown.wait()

def db(ctx):
    # Ready only once the test allows it, and it leaves a mark first.
    while not Path("db-may-be-ready").exists():
        if ctx.shutdown.wait(0.02):
            return
    Path("db-ready").write_text(str(os.getpid()))
    ctx.ready()
    ctx.shutdown.wait()

def api(ctx):
    seen = "saw db ready" if Path("db-ready").exists() else "db was not ready"
    Path(f"api-{os.getpid()}").write_text(seen)
    ctx.ready()
    ctx.shutdown.wait()

def _started(ctx):
    with open(f"starts-{ctx.service}", "a") as f:
        f.write(f"{os.getpid()}\\n")

def counted(ctx):
    _started(ctx)
    ctx.ready()
    ctx.shutdown.wait()

def job(ctx):
    _started(ctx)
    ctx.ready()
    return 0

def crash(ctx):
    _started(ctx)
    return 1

def crash_when_told(ctx):
    _started(ctx)
    while not Path("go").exists():
        if ctx.shutdown.wait(0.02):
            return 0
    return 1

def job_when_told(ctx):
    _started(ctx)
    ctx.ready()
    while not Path("go").exists():
        if ctx.shutdown.wait(0.02):
            return 1
    return 0

def stubborn(ctx):
    # Ignores the cooperative stop; notes when its own cancel and its SIGTERM came.
    import signal, time
    def on_term(signum, frame):
        Path(f"term-{ctx.service}").write_text(repr(time.monotonic()))
        os._exit(0)
    signal.signal(signal.SIGTERM, on_term)
    ctx.ready()
    ctx.shutdown.wait()
    Path(f"cancel-{ctx.service}").write_text(repr(time.monotonic()))
    while True:
        time.sleep(60)
'''

SUPERVISOR = """
[supervisor]
shutdown_timeout = 2
kill_timeout = 1
"""


def _member(name: str, target: str = "member") -> str:
    return f'[services.{name}]\ntarget = "treemod:{target}"\nwait_for_ready = true\n'


@pytest.fixture
def cli(tmp_path: Path):  # type: ignore[no-untyped-def]
    c = Cli(tmp_path)
    (tmp_path / "treemod.py").write_text(textwrap.dedent(TREEMOD))
    yield c
    c.close()


def _status(cli: Cli) -> dict:  # type: ignore[type-arg]
    """What `status --json` prints, asked in-process (a CLI run per poll costs a second)."""
    return control.call(cli.socket, "status", timeout=10)  # type: ignore[no-any-return]


def _pids(cli: Cli) -> dict[str, list[int]]:
    return {s["name"]: s["pids"] for s in _status(cli)["services"]}


def _all_ready(cli: Cli, names: str | list[str]) -> dict[str, list[int]] | None:
    status = _status(cli)
    services = {s["name"]: s for s in status["services"]}
    if all(services[n]["phase"] == "running" and services[n]["ready"] == 1 and
           len(services[n]["pids"]) == 1 for n in names) and \
            all(g["phase"] == "running" for g in status["groups"]):
        return {n: services[n]["pids"] for n in names}
    return None


def test_rest_for_one_restarts_exactly_the_failed_member_and_those_after_it(cli, tmp_path):
    config = tmp_path / "tree.toml"
    config.write_text(SUPERVISOR + "".join(_member(n) for n in "abc") + """
[groups.chain]
members = ["a", "b", "c"]
strategy = "rest_for_one"
max_restarts = 3
within = 60
""")
    cli.start("-c", str(config))
    before = wait_until(lambda: _all_ready(cli, "abc"), timeout=20, message="a, b, c ready")
    os.kill(before["b"][0], signal.SIGKILL)
    after = wait_until(lambda: (now := _all_ready(cli, "abc")) and now["b"] != before["b"]
                       and now, timeout=20, message="b and c restarted")
    assert after["a"] == before["a"]
    assert after["b"] != before["b"] and after["c"] != before["c"]
    status = _status(cli)
    assert [g["restarts"] for g in status["groups"]] == [1]
    assert {s["name"]: s["restarts"] for s in status["services"]}["a"] == 0
    text = cli.ctl("status").stdout
    assert "group chain  rest_for_one  running  restarts 1" in text


def test_a_top_level_group_past_its_intensity_takes_the_supervisor_down_non_zero(cli, tmp_path):
    config = tmp_path / "tree.toml"
    config.write_text(SUPERVISOR + _member("a") + _member("b") + """
[groups.fragile]
members = ["a", "b"]
strategy = "one_for_all"
max_restarts = 0
""")
    cli.start("-c", str(config))
    pids = wait_until(lambda: _all_ready(cli, "ab"), timeout=20, message="a, b ready")
    os.kill(pids["a"][0], signal.SIGKILL)
    assert cli.proc is not None
    assert cli.proc.wait(timeout=20) == 1
    assert "group fragile is a top-level group: shutting the supervisor down" in \
        cli.log.read_text()


def test_a_dependent_starts_only_after_its_dependency_reported_ready(cli, tmp_path):
    config = tmp_path / "deps.toml"
    config.write_text(SUPERVISOR + _member("db", "db") + _member("api", "api") +
                      'depends_on = ["db"]\n')
    cli.start("-c", str(config))
    wait_until(lambda: _pids(cli)["db"], timeout=20, message="db's worker")
    api = next(s for s in _status(cli)["services"] if s["name"] == "api")
    assert api["pids"] == [] and api["phase"] == "starting"
    assert api["waiting"] == "waiting for db (starting)"
    assert [w["phase"] for w in api["workers"]] == ["starting"]
    assert "waiting for db (starting)" in cli.ctl("status").stdout
    (tmp_path / "db-may-be-ready").write_text("")
    pids = wait_until(lambda: _all_ready(cli, ["db", "api"]), timeout=20, message="api ready")
    assert (tmp_path / f"api-{pids['api'][0]}").read_text() == "saw db ready"


def test_check_spells_out_a_dependency_cycle_in_one_line(cli, tmp_path):
    config = tmp_path / "cycle.toml"
    config.write_text(_member("x") + 'depends_on = ["y"]\n' + _member("y") +
                      'depends_on = ["x"]\n')
    result = cli.janus("check", "--no-imports", str(config))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "janus-mp: error: services.x.depends_on: cycle x -> y -> x"]


def _services(cli: Cli) -> dict[str, dict]:  # type: ignore[type-arg]
    return {s["name"]: s for s in _status(cli)["services"]}


def _up(svc: dict) -> bool:  # type: ignore[type-arg]
    return svc["phase"] == "running" and svc["ready"] == len(svc["pids"]) == 1


def _starts(tmp_path: Path, name: str) -> list[str]:
    path = tmp_path / f"starts-{name}"
    return path.read_text().split() if path.exists() else []


def test_a_group_restart_drops_never_members_and_leaves_completed_on_failure_ones(cli, tmp_path):
    config = tmp_path / "tree.toml"
    config.write_text(SUPERVISOR + _member("once", "counted") + 'restart = "never"\n' +
                      _member("job", "job") + 'restart = "on_failure"\n' +
                      _member("app", "counted") + _member("web", "counted") + """
[groups.g]
members = ["once", "job", "app", "web"]
strategy = "one_for_all"
max_restarts = 3
within = 60
""")
    cli.start("-c", str(config))
    before = wait_until(lambda: (s := _services(cli)) and all(_up(s[n]) for n in
                        ("once", "app", "web")) and s["job"]["phase"] == "terminated" and s,
                        timeout=30, message="once, app, web up; job completed")
    os.kill(before["web"]["pids"][0], signal.SIGKILL)
    after = wait_until(lambda: (s := _services(cli)) and _up(s["app"]) and _up(s["web"]) and
                       s["web"]["pids"] != before["web"]["pids"] and s, timeout=30,
                       message="app and web restarted")
    assert after["app"]["pids"] != before["app"]["pids"]
    assert after["once"]["phase"] == "terminated" and after["once"]["pids"] == []
    assert after["job"]["phase"] == "terminated" and after["job"]["pids"] == []
    assert _starts(tmp_path, "once") == [str(before["once"]["pids"][0])]  # never again
    assert len(_starts(tmp_path, "job")) == 1
    assert len(_starts(tmp_path, "web")) == 2
    assert [g["phase"] for g in _status(cli)["groups"]] == ["running"]
    assert "group g: once is not started again: its restart policy is never" in \
        cli.log.read_text()


def test_rest_for_one_skips_a_member_stopped_by_hand_instead_of_waiting_for_it(cli, tmp_path):
    config = tmp_path / "tree.toml"
    config.write_text(SUPERVISOR + "".join(_member(n, "counted") for n in "abc") + """
[groups.chain]
members = ["a", "b", "c"]
strategy = "rest_for_one"
max_restarts = 3
within = 60
""")
    cli.start("-c", str(config))
    before = wait_until(lambda: _all_ready(cli, "abc"), timeout=30, message="a, b, c ready")
    assert cli.ctl("stop", "b").returncode == 0
    wait_until(lambda: _services(cli)["b"]["phase"] == "terminated", timeout=30,
               message="b stopped")
    os.kill(before["a"][0], signal.SIGKILL)
    after = wait_until(lambda: (s := _services(cli)) and _up(s["a"]) and _up(s["c"]) and
                       s["c"]["pids"] != before["c"] and s, timeout=30,
                       message="a and c restarted, c not waiting for b")
    assert after["a"]["pids"] != before["a"]
    assert after["c"]["waiting"] is None
    assert after["b"]["pids"] == [] and len(_starts(tmp_path, "b")) == 1
    assert [g["phase"] for g in _status(cli)["groups"]] == ["running"]


def test_a_never_member_whose_start_failed_does_not_hold_the_members_after_it(cli, tmp_path):
    config = tmp_path / "tree.toml"
    config.write_text(SUPERVISOR + _member("migrate", "crash") + 'restart = "never"\n' +
                      _member("app", "counted") + """
[groups.g]
members = ["migrate", "app"]
""")
    cli.start("-c", str(config))
    services = wait_until(lambda: (s := _services(cli)) and _up(s["app"]) and s, timeout=30,
                          message="app up although migrate failed")
    assert services["migrate"]["phase"] == "terminated"
    assert len(_starts(tmp_path, "migrate")) == 1
    assert services["app"]["waiting"] is None


def test_each_member_gets_its_whole_stop_timeout_from_when_its_own_stop_begins(cli, tmp_path):
    config = tmp_path / "tree.toml"
    config.write_text("[supervisor]\nkill_timeout = 5\n" +
                      _member("db", "stubborn") + "stop_timeout = 3\n" +
                      _member("app", "stubborn") + "stop_timeout = 1\n" + """
[groups.g]
members = ["db", "app"]
""")
    cli.start("-c", str(config))
    wait_until(lambda: _all_ready(cli, ["db", "app"]), timeout=30, message="db, app ready")
    assert cli.proc is not None
    cli.proc.send_signal(signal.SIGTERM)
    assert cli.proc.wait(timeout=30) == 0
    app_term = float((tmp_path / "term-app").read_text())
    db_cancel = float((tmp_path / "cancel-db").read_text())
    db_term = float((tmp_path / "term-db").read_text())
    assert db_cancel >= app_term  # stopped after its client, as the group orders
    # db's 3 s count from its own stop (once app was gone), not from the start of the
    # shutdown (which would have left it 2 s after app's SIGTERM)
    assert db_term - app_term >= 2.9, (app_term, db_cancel, db_term)


def test_a_member_that_keeps_tripping_its_breaker_makes_its_group_escalate(cli, tmp_path):
    config = tmp_path / "tree.toml"
    config.write_text(SUPERVISOR + _member("db", "counted") + _member("flaky", "crash_when_told") + """
[services.flaky.backoff]
initial_delay = 0.05
max_delay = 0.1
max_retries = 2
window = 120
half_open_after = "never"     # the breaker ends it for good (no half-open trial)

[groups.g]
members = ["db", "flaky"]
max_restarts = 3
within = 120
""")
    cli.start("-c", str(config))
    assert cli.proc is not None
    (tmp_path / "go").write_text("")  # from now on every flaky worker crashes at once
    assert cli.proc.wait(timeout=60) == 1
    log = cli.log.read_text()
    assert "flaky: circuit breaker open (2/2 failures)" in log
    assert "group g: more than 3 restarts within 120s: terminating it" in log
    # two starts until the breaker ended it (2 restarts of the group), the breaker's end (the
    # 3rd) and a fresh start by the group, whose crash is one restart too many
    assert len(_starts(tmp_path, "flaky")) == 3


def test_a_batch_pipeline_ends_the_supervisor_when_its_significant_members_complete(
        cli, tmp_path):
    config = tmp_path / "batch.toml"
    config.write_text(SUPERVISOR + 'auto_shutdown = "all_significant"\n' +
                      _member("extract", "job") + 'restart = "never"\nsignificant = true\n' +
                      _member("load", "job_when_told") +
                      'restart = "never"\nsignificant = true\n' +
                      _member("cache", "counted") + _member("metrics", "counted") + """
[groups.pipeline]
members = ["extract", "load", "cache"]
restart = "on_failure"
significant = true
auto_shutdown = "all_significant"
""")
    cli.start("-c", str(config))
    services = wait_until(lambda: (s := _services(cli)) and _up(s["cache"]) and
                          _up(s["metrics"]) and s, timeout=30, message="cache and metrics up")
    assert services["extract"]["phase"] == "terminated"  # completed; load still runs
    assert _status(cli)["groups"][0]["phase"] == "running"
    (tmp_path / "go").write_text("")  # load completes: the last significant member
    assert cli.proc is not None
    assert cli.proc.wait(timeout=30) == 0
    log = cli.log.read_text()
    assert "group pipeline: load ended (all_significant): shutting the group down" in log
    assert "auto_shutdown: pipeline ended (all_significant): shutting the supervisor down" in log
    assert len(_starts(tmp_path, "extract")) == 1 and len(_starts(tmp_path, "load")) == 1


def test_brutal_kill_sigkills_a_stopped_member_at_once(cli, tmp_path):
    config = tmp_path / "brutal.toml"
    config.write_text("[supervisor]\nshutdown_timeout = 60\n" + _member("x", "stubborn") +
                      'stop_timeout = "brutal_kill"\n' + _member("keeper", "counted"))
    cli.start("-c", str(config))
    pid = wait_until(lambda: _all_ready(cli, ["x", "keeper"]), timeout=30,
                     message="x ready")["x"][0]
    assert cli.ctl("stop", "x").returncode == 0
    # 60 s of grace otherwise; and x would note a SIGTERM
    wait_until(lambda: _services(cli)["x"]["phase"] == "terminated", timeout=15,
               message="x killed at once")
    assert not (tmp_path / "term-x").exists()
    (exit_,) = [e for e in _status(cli)["recent_exits"] if e["service"] == "x"]
    assert (exit_["pid"], exit_["exit_code"], exit_["reason"]) == (pid, -9, "stopped")
    assert f"x[0] (pid {pid}, gen 1) exited: stopped" in cli.log.read_text()


def test_infinity_waits_for_a_stopping_member_for_ever(cli, tmp_path):
    config = tmp_path / "infinity.toml"
    config.write_text("[supervisor]\nshutdown_timeout = 0.2\nkill_timeout = 0.2\n" +
                      _member("x", "stubborn") + 'stop_timeout = "infinity"\n' +
                      _member("z", "stubborn") + "stop_timeout = 1\n")
    cli.start("-c", str(config))
    pids = wait_until(lambda: _all_ready(cli, ["x", "z"]), timeout=30, message="x, z ready")
    assert cli.proc is not None
    cli.proc.send_signal(signal.SIGTERM)
    # z, in the same stage, got its SIGTERM 1 s in; x, with any finite stop_timeout of this
    # supervisor, would have had its own long before
    wait_until(lambda: (tmp_path / "term-z").exists(), timeout=30, message="z's SIGTERM")
    wait_until(lambda: (tmp_path / "cancel-x").exists(), timeout=30, message="x's cancel")
    assert cli.proc.poll() is None and not (tmp_path / "term-x").exists()
    assert os.path.exists(f"/proc/{pids['x'][0]}")
    cli.proc.send_signal(signal.SIGTERM)  # a second one: now
    assert cli.proc.wait(timeout=30) == 0
    assert not (tmp_path / "term-x").exists()  # SIGKILLed, no SIGTERM ever


def test_check_refuses_a_significant_member_of_a_group_that_never_shuts_down(cli, tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text(_member("job", "job") + 'restart = "never"\nsignificant = true\n' +
                      _member("web") + '[groups.g]\nmembers = ["job", "web"]\n')
    result = cli.janus("check", "--no-imports", str(config))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "janus-mp: error: groups.g.auto_shutdown: is \"never\" but member 'job' is "
        "significant (use any_significant or all_significant)"]


def test_a_transient_group_that_completed_stays_down_and_its_parent_runs_on(cli, tmp_path):
    config = tmp_path / "nested.toml"
    config.write_text(SUPERVISOR + _member("job", "job_when_told") +
                      'restart = "never"\nsignificant = true\n' +
                      _member("helper", "counted") + _member("web", "counted") + """
[groups.batch]
members = ["helper", "job"]
restart = "on_failure"
auto_shutdown = "any_significant"

[groups.top]
members = ["batch", "web"]
strategy = "one_for_all"
""")
    cli.start("-c", str(config))
    before = wait_until(lambda: _all_ready(cli, ["helper", "job", "web"]), timeout=30,
                        message="every member up")
    (tmp_path / "go").write_text("")  # job completes: batch shuts itself down
    groups = wait_until(lambda: (g := {x["name"]: x["phase"] for x in _status(cli)["groups"]})
                        and g["batch"] == "completed" and g, timeout=30,
                        message="batch completed")
    assert groups["top"] == "running"
    services = _services(cli)
    assert services["helper"]["phase"] == "terminated" and services["helper"]["pids"] == []
    assert services["web"]["pids"] == before["web"]  # the parent restarted nothing
    assert [g["restarts"] for g in _status(cli)["groups"]] == [0, 0]
    assert len(_starts(tmp_path, "helper")) == 1 and len(_starts(tmp_path, "job")) == 1
