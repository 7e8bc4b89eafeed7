"""Security defaults: paths are never written through a symlink nor removed when no longer
ours, private directories must be private, HTTP binds loopback by default, and nothing read
from a socket is unpickled."""

from __future__ import annotations

import ast
import os
import signal
from pathlib import Path

import pytest

from janus_mp import ApiModuleAdapter, SupervisorConfig
from janus_mp.addresses import parse_bind
from tests.integration.test_cli import Cli
from tests.support import wait_until

pytestmark = pytest.mark.timeout(60)
PACKAGE = Path(__file__).resolve().parents[2] / "janus_mp"


@pytest.fixture
def cli(tmp_path):
    c = Cli(tmp_path)
    yield c
    c.close()


def _victim(tmp_path: Path) -> Path:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    return victim


@pytest.mark.parametrize("flag", ["--pid-file", "--log-file"])
def test_a_symlink_at_a_written_path_is_refused(cli, tmp_path, flag):
    victim = _victim(tmp_path)
    link = tmp_path / "planted"
    link.symlink_to(victim)
    result = cli.janus("run", "svcmod:helper", "--metrics-bind", "off", "--socket", "off",
                       flag, str(link))
    assert result.returncode == 2
    assert result.stderr.strip() == (f"janus-mp: error: {flag} {link}: {link} is a symbolic "
                                     "link: refusing to write through it")
    assert victim.read_text() == "precious\n"


def test_files_replaced_while_running_are_not_removed_at_exit(cli, tmp_path):
    pid_file = tmp_path / "janus.pid"
    cli.start("svcmod:helper", "--pid-file", str(pid_file))
    assert pid_file.read_text().strip() == str(cli.proc.pid)
    socket_path = Path(cli.socket)
    assert (socket_path.stat().st_mode & 0o777) == 0o600
    # Someone swaps both for files of their own while the supervisor runs.
    for path in (pid_file, socket_path):
        path.rename(path.with_suffix(".moved"))
        path.write_text("not yours\n")
    cli.proc.send_signal(signal.SIGTERM)
    assert cli.proc.wait(30) == 0
    assert pid_file.read_text() == "not yours\n"
    assert socket_path.read_text() == "not yours\n"


def test_a_run_directory_others_can_write_is_refused(cli, tmp_path):
    run = tmp_path / "xdg"
    (run / "janus-mp").mkdir(parents=True)
    os.chmod(run / "janus-mp", 0o777)
    env = dict(cli.env, XDG_RUNTIME_DIR=str(run))
    result = cli.janus("run", "svcmod:helper", "--metrics-bind", "off", env=env)
    assert result.returncode == 2
    assert result.stderr.strip() == (f"janus-mp: error: control_socket: {run}/janus-mp is "
                                     "writable by others (mode 777): refusing to use it")


def test_a_symlink_in_the_metrics_dir_is_removed_not_followed(cli, tmp_path):
    victim = _victim(tmp_path)
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    planted = metrics / "counter_999999.db"  # named like a stale prometheus_client file
    planted.symlink_to(victim)
    config = tmp_path / "janus.toml"
    config.write_text(f'[supervisor]\nmetrics_dir = "{metrics}"\n\n[services.helper]\n'
                      'target = "svcmod:helper"\n')
    cli.start("--config", str(config))
    wait_until(lambda: cli.service("helper")["ready"] == 1)
    assert not planted.is_symlink()  # the stale link went...
    cli.proc.send_signal(signal.SIGTERM)
    assert cli.proc.wait(30) == 0
    assert victim.read_text() == "precious\n"  # ...and what it pointed at was left alone


def test_unix_listener_file_is_removed_only_if_still_ours(tmp_path):
    from janus_mp.runtime.listeners import ListenerSet

    path = tmp_path / "web.sock"
    listeners = ListenerSet()
    listeners.bind("web", (f"unix:{path}",))
    path.rename(tmp_path / "moved.sock")
    path.write_text("not yours\n")
    listeners.close()
    assert path.read_text() == "not yours\n"


def test_http_endpoints_bind_loopback_by_default():
    assert SupervisorConfig().metrics_host == "127.0.0.1"
    assert parse_bind(":8000").host == "127.0.0.1" and parse_bind("8000").host == "127.0.0.1"
    assert ApiModuleAdapter(lambda environ, start_response: [], name="x").binds == \
        ("127.0.0.1:8000",)


SOCKET_READERS = ("app/control.py", "metrics/http.py", "adapters/wsgi_sync.py", "adapters/api.py",
                  "adapters/http_request.py", "adapters/http_gateway.py",
                  "adapters/http_response.py", "adapters/http_head.py",
                  "adapters/wsgi_keepalive.py", "app/deploy.py", "app/systemd.py")
UNSAFE = {"pickle", "dill", "marshal", "shelve", "cloudpickle", "multiprocess.reduction"}


@pytest.mark.parametrize("module", SOCKET_READERS)
def test_modules_that_read_sockets_import_no_deserialiser_of_objects(module):
    tree = ast.parse((PACKAGE / module).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
    assert not imported & UNSAFE, f"{module} imports {imported & UNSAFE}"
