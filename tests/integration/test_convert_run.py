"""A converted configuration runs: `janus-mp convert` output of a supervisord.conf, a
gunicorn.conf.py and a gunicorn command line, each passed to `janus-mp run -c` for real and
answering HTTP (one test per kind of source)."""

from __future__ import annotations

import shutil
import socket
import sys
from pathlib import Path

import pytest

from tests.http_client import get
from tests.integration.ops_cli import QuickCli, janus_here
from tests.support import wait_until

pytestmark = pytest.mark.timeout(90)

SAMPLES = Path(__file__).resolve().parents[1] / "convert_samples"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def cli(tmp_path):
    shutil.copy(SAMPLES / "convertapp.py", tmp_path / "convertapp.py")
    c = QuickCli(tmp_path)
    yield c
    c.close()


def _answer(address: str) -> tuple[int, bytes] | None:
    try:
        status, _, body = get(address, "/", timeout=5)
    except OSError:
        return None
    return status, body


def _convert(cli: QuickCli, *args: str) -> Path:
    result = cli.janus("convert", *args)
    assert result.returncode == 0, result.stderr
    path = cli.tmp / "janus.toml"
    path.write_text(result.stdout)
    checked = cli.janus("check", str(path))
    assert checked.returncode == 0, checked.stderr
    return path


def test_converted_supervisord_program_serves(cli, monkeypatch):
    port = _free_port()
    conf = cli.tmp / "supervisord.conf"
    shutil.copy(SAMPLES / "supervisord_http.conf", conf)
    (cli.tmp / "index.html").write_text("served by a converted supervisord program\n")
    cli.env.update(PYTHON=sys.executable, PORT=str(port))
    toml = _convert(cli, str(conf))
    cli.start("-c", str(toml))
    answer = wait_until(lambda: _answer(f"127.0.0.1:{port}"), timeout=30,
                        message="the converted program answering")
    assert answer == (200, b"served by a converted supervisord program\n")
    assert cli.service("static")["workers"][0]["phase"] == "running"


def test_converted_gunicorn_conf_py_serves_with_its_access_log_format(cli):
    port = _free_port()
    shutil.copy(SAMPLES / "gunicorn.conf.py", cli.tmp / "gunicorn.conf.py")
    cli.env.update(BIND=f"127.0.0.1:{port}", WORKERS="2")
    toml = _convert(cli, str(cli.tmp / "gunicorn.conf.py"))
    cli.start("-c", str(toml))
    answer = wait_until(lambda: _answer(f"127.0.0.1:{port}"), timeout=30,
                        message="the converted gunicorn app answering")
    assert answer[0] == 200 and answer[1].startswith(b"hello from gunicorn.conf.py from ")
    assert len(cli.service("web")["workers"]) == 2
    # gunicorn's '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s', on the workers' stderr
    line = wait_until(lambda: next((text for text in cli.log.read_text().splitlines()
                                    if '"GET / HTTP/1.1" 200 ' in text), None), timeout=20,
                      message="the access log line")
    assert "127.0.0.1 - - [" in line, line


def test_converted_gunicorn_command_line_serves(cli):
    port = _free_port()
    toml = _convert(cli, "--gunicorn",
                    f"gunicorn -w 2 -b 127.0.0.1:{port} -t 30 --graceful-timeout 5 "
                    "-e GREETING=hi convertapp:app")
    cli.start("-c", str(toml))
    answer = wait_until(lambda: _answer(f"127.0.0.1:{port}"), timeout=30,
                        message="the converted gunicorn command line answering")
    assert answer[0] == 200 and answer[1].startswith(b"hi from ")
    web = cli.service("web")
    assert len(web["workers"]) == 2


def test_convert_prints_to_stdout_in_process():
    result = janus_here("convert", "--gunicorn", "gunicorn app:app")
    assert result.returncode == 0 and '[services.web]\nwsgi = "app:app"\n' in result.stdout
    assert "\nwatchdog_timeout = 30\n" in result.stdout  # gunicorn's default timeout
