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
