"""Pools hosted by `janus-mp run -c`: a WSGI app's workers offload work to `[pools.NAME]`
with janus_mp.pool(NAME); a crash in the pool fails one request's task only; status and
/metrics show the pool."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
from pathlib import Path

import pytest

from janus_mp.pools import payloads
from janus_mp.pools.frames import SUBMIT_HEAD, Kind, frame
from tests.http_client import get
from tests.integration.test_cli import Cli
from tests.support import wait_until

pytestmark = pytest.mark.timeout(120)

APP = '''
import os
import signal

import janus_mp


_state = {}


def setup(value):
    _state["value"] = value


def state():
    return _state.get("value")


def square(x):
    return x * x


def flip(data):
    return data[::-1]


def crash():
    os.kill(os.getpid(), signal.SIGKILL)


def app(environ, start_response):
    path = environ["PATH_INFO"].strip("/")
    crunch = janus_mp.pool("crunch")
    try:
        if path == "crash":
            body = repr(crunch.submit(crash).result(60))
        elif path == "pid":
            body = str(crunch.submit(os.getpid).result(60))
        elif path == "map":
            body = repr(list(crunch.map(square, range(10), chunksize=3, timeout=60)))
        elif path == "big":
            data = os.urandom(5 << 20)  # larger than one read, both ways
            body = str(crunch.submit(flip, data).result(60) == data[::-1])
        elif path == "state":
            body = crunch.submit(state).result(60)
        elif path == "where":
            body = os.environ["JANUS_MP_POOLS"]
        elif path == "missing":
            body = repr(janus_mp.pool("nope").submit(square, 1).exception(60))
        else:
            body = str(crunch.submit(square, int(path)).result(60))
    except janus_mp.WorkerDied as exc:
        body = f"died signal={exc.signal}"
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body.encode()]
'''


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def cli(tmp_path):
    c = Cli(tmp_path)
    yield c
    c.close()


def test_a_wsgi_app_offloads_to_a_hosted_pool(cli, tmp_path):
    (tmp_path / "poolapp.py").write_text(APP)
    port, metrics = _port(), _port()
    config = tmp_path / "janus.toml"
    config.write_text(f"""
[supervisor]
shutdown_timeout = 5

[services.web]
wsgi = "poolapp:app"
bind = "127.0.0.1:{port}"
workers = 2

[pools.crunch]
workers = 2
task_timeout = 30
max_queued = 100
prefetch = 0
initializer = "poolapp:setup"
initargs = ["set up"]
""")
    cli.start("--config", str(config), "--metrics-bind", f"127.0.0.1:{metrics}")
    web = f"127.0.0.1:{port}"
    wait_until(lambda: cli.service("web")["ready"] == 2 and cli.service("crunch")["ready"] == 2,
               timeout=60)
    assert get(web, "/7")[2] == b"49"
    assert get(web, "/state")[2] == b"set up"  # the initializer ran in the pool's worker
    pool_pids = set(cli.service("crunch")["pids"])
    assert int(get(web, "/pid")[2]) in pool_pids
    assert get(web, "/map")[2] == repr([x * x for x in range(10)]).encode()
    assert get(web, "/big")[2] == b"True"
    assert get(web, "/crash")[2] == b"died signal=9"
    assert get(web, "/5")[2] == b"25"  # the pool goes on
    assert b"no pool named 'nope'" in get(web, "/missing")[2]

    status = cli.status()
    crunch = status["pools"]["crunch"]
    assert crunch["outcomes"]["died"] == 1 and crunch["outcomes"]["done"] == 9  # map: 4 chunks
    assert crunch["queued"] == 0 and crunch["running"] == 0
    shown = cli.ctl("status").stdout
    assert any(line.startswith("pool crunch") and "died 1" in line
               for line in shown.splitlines()), shown
    top = cli.ctl("top", "--once").stdout
    assert "task pools" in top and "crunch" in top and "died 1" in top, top

    told = [json.loads(line) for line in cli.ctl("events", "--json").stdout.splitlines()
            if line.strip()]
    assert [(e["service"], e["reason"], e["exit_code"]) for e in told
            if e["event"] == "task_failed"] == [("crunch", "died", -9)]

    text = get(f"127.0.0.1:{metrics}", "/metrics")[2].decode()
    assert 'janus_pool_tasks_total{outcome="died",pool="crunch"} 1.0' in text
    assert 'janus_pool_tasks_total{outcome="done",pool="crunch"} 9.0' in text
    assert 'janus_pool_queue_depth{pool="crunch"} 0.0' in text
    assert 'janus_pool_busy_workers{pool="crunch"} 0.0' in text
    assert 'janus_pool_task_duration_seconds_count{pool="crunch"} 10.0' in text

    # Only the supervisor's own workers may submit: another process is refused.
    directory = get(web, "/where")[2].decode()
    assert oct(Path(directory).stat().st_mode & 0o777) == "0o700"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as intruder:
        intruder.connect(f"{directory}/submit.sock")
        name = b"crunch"
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # closed already
            intruder.sendall(frame(Kind.SUBMIT, 1, SUBMIT_HEAD.pack(-1.0, 0, len(name)) +
                                   name + payloads.call(print, ("intruder",), {})))
        intruder.settimeout(30)
        assert closed_by_peer(intruder)
    assert cli.status()["pools"]["crunch"]["outcomes"]["done"] == 9

    # A reload leaves the pool as it is (its workers, its counts) and the app keeps using it.
    pool_pids = cli.service("crunch")["pids"]
    reloaded = cli.ctl("reload")
    assert reloaded.returncode == 0, reloaded.stderr
    assert get(web, "/6")[2] == b"36"
    assert cli.service("crunch")["pids"] == pool_pids
    assert cli.status()["pools"]["crunch"]["outcomes"]["done"] == 10

    cli.proc.send_signal(signal.SIGTERM)
    assert cli.proc.wait(30) == 0


@pytest.mark.parametrize("table, message", [
    ("[pools.crunch]\nworkers = -1\n", "pools.crunch.workers: must be an integer >= 0"),
    ("[pools.crunch]\nretry = 1\n", "pools.crunch.retry: unknown key (did you mean 'retries'?)"),
    ("[pools.crunch]\nprefetch = -1\n", "pools.crunch.prefetch: must be an integer >= 0"),
    ("[pools.crunch]\ntask_timeout = 0\n",
     "pools.crunch.task_timeout: must be a number of seconds > 0 or unset"),
    ("[pools.crunch]\nmax_memory = \"lots\"\n",
     "pools.crunch.max_memory: must be a size in bytes or like 512MiB"),
    ("[pools.crunch]\nstart_method = \"spawn\"\n",
     "pools.crunch.start_method: set it in [supervisor]: a hosted pool's workers start like "
     "every service's"),
    ("[services.crunch]\ntarget = \"svcmod:Crunch\"\n[pools.crunch]\n",
     "pools.crunch: a service has this name: a pool's workers are a service of that name"),
])
def test_bad_pool_tables_exit_2_in_one_line(cli, tmp_path, table, message):
    config = tmp_path / "janus.toml"
    config.write_text(table)
    result = cli.janus("run", "--config", str(config), "--socket", "off")
    assert result.returncode == 2
    assert result.stderr.strip() == f"janus-mp: error: {message}", result.stderr


def test_status_json_of_a_supervisor_without_pools_has_none(cli, tmp_path):
    config = tmp_path / "janus.toml"
    config.write_text("[services.ok]\ntarget = \"svcmod:Crunch\"\n")
    cli.start("--config", str(config))
    assert "pools" not in cli.status()
    assert json.loads(cli.ctl("status", "--json").stdout)["services"]


def closed_by_peer(sock) -> bool:
    """The peer closed the connection (with our bytes unread, the close is a reset)."""
    try:
        return sock.recv(100) == b""
    except ConnectionResetError:
        return True
