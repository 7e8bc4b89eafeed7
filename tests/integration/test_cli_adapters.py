"""`janus-mp run --wsgi/--command` and adapter services in the config file, for real."""

from __future__ import annotations

import signal
import socket

import pytest

from tests.http_client import Load, get
from tests.integration.test_cli import Cli
from tests.support import busy_port, wait_until

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def cli(tmp_path):
    c = Cli(tmp_path)
    yield c
    c.close()


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_run_wsgi_serves_one_port_from_the_whole_pool(cli):
    port = _port()
    cli.start("--wsgi", "tests.http_apps:wsgi_app", "-w", "2", "--bind", f"127.0.0.1:{port}",
              "--max-requests", "500")
    wait_until(lambda: cli.service("tests")["ready"] == 2)
    pids = {str(p) for p in cli.service("tests")["pids"]}
    with Load(f"127.0.0.1:{port}", clients=4) as load:
        wait_until(lambda: set(load.pids) == pids, timeout=20)
    assert not load.failures
    assert f"tests: listening on 127.0.0.1:{port}" in cli.log.read_text()
    assert cli.service("tests")["listening"] == [f"127.0.0.1:{port}"]
    shown = cli.ctl("status").stdout
    assert f"127.0.0.1:{port}" in next(line for line in shown.splitlines()
                                       if line.startswith("tests"))
    cli.proc.send_signal(signal.SIGTERM)
    assert cli.proc.wait(30) == 0


def test_config_file_adapters_and_a_reload_that_moves_the_port(cli, tmp_path):
    first, second = _port(), _port()
    config = tmp_path / "janus.toml"
    template = """
[supervisor]
shutdown_timeout = 5

[services.web]
wsgi = "tests.http_apps:wsgi_app"
bind = "127.0.0.1:{port}"
workers = 2

[services.ticker]
command = ["sh", "-c", "echo tick; exec sleep 300"]
stop_signal = "TERM"
"""
    config.write_text(template.format(port=first))
    checked = cli.janus("check", str(config))
    assert checked.returncode == 0 and "ok (web, ticker)" in checked.stdout, checked.stderr
    cli.start("--config", str(config))
    wait_until(lambda: cli.service("web")["ready"] == 2 and cli.service("ticker")["ready"] == 1)
    assert get(f"127.0.0.1:{first}")[0] == 200
    wait_until(lambda: "ticker[0] out| tick" in cli.log.read_text())
    ticker_pid = cli.service("ticker")["pids"]

    config.write_text(template.format(port=second))
    with Load(f"127.0.0.1:{first}", clients=2) as old_port_load:
        assert cli.ctl("reload").returncode == 0
        wait_until(lambda: _answers(f"127.0.0.1:{second}"), timeout=20)
        wait_until(lambda: not _answers(f"127.0.0.1:{first}"), timeout=30,
                   message="the old port to close once its workers drained")
    assert old_port_load.ok > 0
    assert cli.service("ticker")["pids"] == ticker_pid  # unchanged service: untouched
    assert cli.service("web")["ready"] == 2
    cli.proc.send_signal(signal.SIGTERM)
    assert cli.proc.wait(30) == 0


def _answers(address: str) -> bool:
    try:
        return get(address, timeout=2)[0] == 200
    except OSError:
        return False


@pytest.mark.parametrize("args, message", [
    (["--wsgi", "no_such_mod_q:app"], "--wsgi no_such_mod_q:app: target 'no_such_mod_q:app': "
                                      "no module named 'no_such_mod_q'"),
    (["--wsgi", "tests.http_apps:wsgi_app", "--bind", "127.0.0.1:99999"],
     "--bind: '127.0.0.1:99999': the port must be a number from 0 to 65535"),
    (["--command", "sleep 5", "--bind", "127.0.0.1:9"],
     "--bind applies to --wsgi/--asgi services only"),
    (["--command", "sleep 5", "--keep-alive", "3"],
     "--keep-alive applies to --wsgi/--asgi services only"),
    (["--command", "no-such-program-q"], "--command no-such-program-q: command "
                                         "'no-such-program-q': not found or not executable"),
    (["--wsgi", "tests.http_apps:wsgi_app", "--command", "sleep 1"],
     "give one of TARGET, --wsgi, --asgi, --command, --module (got wsgi and command)"),
    (["--command", "sleep 5", "--max-rss", "12XB"],
     "--max-rss: must be a size in bytes or like 512MiB"),
])
def test_bad_adapter_input_exits_2_in_one_line(cli, args, message):
    result = cli.janus("run", "--metrics-bind", "off", "--socket", "off", *args)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == f"janus-mp: error: {message}"


def test_a_busy_bind_port_exits_2_and_starts_nothing(cli):
    with busy_port() as port:
        result = cli.janus("run", "--metrics-bind", "off", "--socket", "off", "--wsgi",
                           "tests.http_apps:wsgi_app", "--bind", f"127.0.0.1:{port}")
    assert result.returncode == 2
    assert result.stderr.strip() == (f"janus-mp: error: service 'tests': cannot bind "
                                     f"127.0.0.1:{port}: Address already in use")


def test_run_wsgi_http_limits_and_access_log_flags(cli, tmp_path):
    port = _port()
    access = tmp_path / "access.jsonl"
    cli.start("--wsgi", "tests.http_apps:wsgi_app", "--bind", f"127.0.0.1:{port}",
              "--limit-request-line", "64", "--access-log", str(access),
              "--access-log-format", "json")
    wait_until(lambda: cli.service("tests")["ready"] == 1)
    address = f"127.0.0.1:{port}"
    assert get(address, "/" + "a" * 100)[0] == 414
    assert get(address, "/short")[0] == 200
    wait_until(lambda: access.exists() and '"path": "/short"' in access.read_text())
    assert '"status": 414' in access.read_text()
    cli.proc.send_signal(signal.SIGTERM)
    assert cli.proc.wait(30) == 0


def test_run_wsgi_keep_alive_flag(cli):
    """--threads 2 --keep-alive 30: one connection serves request after request (and says
    nothing of closing); --keep-alive 0 closes after each response."""
    import http.client

    port = _port()
    cli.start("--wsgi", "tests.http_apps:wsgi_app", "--bind", f"127.0.0.1:{port}",
              "--threads", "2", "--keep-alive", "30")
    wait_until(lambda: cli.service("tests")["ready"] == 1)
    client = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        client.request("GET", "/")
        first = client.getresponse()
        assert (first.status, first.read(), first.getheader("Connection")) == (200, b"ok\n", None)
        sock = client.sock
        client.request("GET", "/")
        assert client.getresponse().read() == b"ok\n" and client.sock is sock  # not reopened
    finally:
        client.close()
    cli.proc.send_signal(signal.SIGTERM)
    assert cli.proc.wait(30) == 0
    result = cli.janus("run", "--metrics-bind", "off", "--socket", "off", "--wsgi",
                       "tests.http_apps:wsgi_app", "--threads", "2", "--keep-alive", "-1")
    assert result.returncode == 2 and "'--keep-alive': -1.0 is not in the range" in result.stderr
