"""`janus-mp profile SERVICE`: py-spy samples every worker of a real service whose CPU goes to a
known function, and the merged flame graph names it, with samples from each worker."""

from __future__ import annotations

import json
import textwrap
import xml.etree.ElementTree as ET

import pytest

from janus_mp.app.profile.sampler import find_py_spy
from janus_mp.errors import JanusError
from tests.integration.ops_cli import QuickCli
from tests.support import wait_until

pytestmark = pytest.mark.timeout(120)

APP = '''
def burn_cpu_hot_spot(n):
    total = 0
    for i in range(n):
        total += i * i
    return total


def crunch(ctx):
    ctx.ready()
    while not ctx.shutdown.wait(0):
        burn_cpu_hot_spot(20000)


def idle(ctx):
    ctx.ready()
    ctx.shutdown.wait()
'''

CONFIG = '''
[supervisor]
shutdown_timeout = 2
kill_timeout = 1

[services.hot]
target = "hotapp:crunch"
workers = 2

[services.quiet]
target = "hotapp:idle"
'''


@pytest.fixture
def cli(tmp_path):
    try:
        find_py_spy()
    except JanusError as exc:
        pytest.skip(str(exc))
    (tmp_path / "hotapp.py").write_text(textwrap.dedent(APP))
    (tmp_path / "janus.toml").write_text(CONFIG)
    c = QuickCli(tmp_path)
    c.start("-c", "janus.toml")
    wait_until(lambda: all(w["pids"] for w in c.service("hot")["workers"]), timeout=30,
               message="both hot workers running")
    yield c
    c.close()


def _profile(cli: QuickCli, *args: str):
    result = cli.ctl("profile", *args)
    if result.returncode != 0 and "ptrace" in result.stderr:
        pytest.skip(f"py-spy cannot attach here: {result.stderr.strip()}")
    assert result.returncode == 0, result.stderr
    return result


def test_profile_merges_every_worker_into_one_flame_graph(cli):
    pids = sorted(pid for w in cli.service("hot")["workers"] for pid in w["pids"])
    assert len(pids) == 2
    result = _profile(cli, "hot", "--duration", "2", "-o", str(cli.tmp / "hot.svg"))
    assert f"from 2 worker(s) ({pids[0]}, {pids[1]})" in result.stdout
    hottest = result.stdout.splitlines()[1]
    assert "burn_cpu_hot_spot (hotapp.py:" in hottest, result.stdout
    root = ET.fromstring((cli.tmp / "hot.svg").read_text())
    titles = [el.text for el in root.iter("{http://www.w3.org/2000/svg}title")]
    hot = [t for t in titles if t.startswith("burn_cpu_hot_spot")]
    assert hot, titles
    share = float(hot[0].rsplit(", ", 1)[1].rstrip("%"))
    assert share > 40, hot  # the workers do little else


def test_profile_speedscope_has_a_profile_per_worker(cli):
    pids = sorted(pid for w in cli.service("hot")["workers"] for pid in w["pids"])
    _profile(cli, "hot", "-d", "1", "-o", str(cli.tmp / "hot.json"))
    data = json.loads((cli.tmp / "hot.json").read_text())
    assert [p["name"] for p in data["profiles"]] == ["all workers",
                                                    *(f"pid {pid}" for pid in pids)]
    names = {frame["name"] for frame in data["shared"]["frames"]}
    assert "burn_cpu_hot_spot" in names
    for per_worker in data["profiles"][1:]:
        assert per_worker["endValue"] > 0, per_worker["name"]


def test_profile_samples_only_the_services_workers(cli):
    quiet = [pid for w in cli.service("quiet")["workers"] for pid in w["pids"]]
    result = _profile(cli, "quiet", "-d", "1", "-o", str(cli.tmp / "quiet.txt"))
    assert f"from 1 worker(s) ({quiet[0]})" in result.stdout
    stacks = (cli.tmp / "quiet.txt").read_text()
    # Only the quiet worker's own threads, waiting: its service, or janus-mp's bridge — py-spy
    # counts a waiting thread in the moment it retries its wait after py-spy's own ptrace stop
    # interrupted it.
    for line in stacks.splitlines():
        assert "idle (hotapp.py:" in line or "_bridge (janus_mp/runtime/worker.py:" in line, line
    assert "burn_cpu_hot_spot" not in stacks


def test_profile_refuses_what_it_cannot_do(cli):
    unknown = cli.ctl("profile", "nosuch", "-d", "1")
    assert unknown.returncode == 2
    assert unknown.stderr == ("janus-mp: error: no service 'nosuch' (services: hot, quiet)\n")
    bad = cli.ctl("profile", "hot", "-o", str(cli.tmp / "out.png"))
    assert bad.returncode == 2 and ".svg, .json (speedscope) or .txt" in bad.stderr
