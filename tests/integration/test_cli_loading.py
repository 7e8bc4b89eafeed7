"""Loading user code that misbehaves (issue 12, item 9), through the real `janus-mp` command:
one line naming the target and what it did, exit 2 at start; a JSON error on reload with the
supervisor unchanged (and a log line for SIGHUP); and an exit that does not wait on threads
the application started."""

from __future__ import annotations

import signal
import textwrap

import pytest

from tests.integration.test_cli import CONFIG, Cli
from tests.support import busy_port, wait_until

pytestmark = pytest.mark.timeout(120)

MODULES = {
    "initraise.py": '''
        from janus_mp import JanusService

        class Svc(JanusService):
            def __init__(self):
                raise RuntimeError("boom in init")

            def run(self, ctx):
                ctx.shutdown.wait()
        ''',
    "exits4.py": '''
        import sys
        sys.exit(4)
        ''',
    "interrupts.py": '''
        raise KeyboardInterrupt
        ''',
    "factoryexits.py": '''
        import sys

        def build():
            sys.exit("no config")
        ''',
    "threaded.py": '''
        import threading

        # An app that starts a non-daemon thread at import (a scheduler, a client pool...)
        # and never stops it.
        threading.Thread(target=threading.Event().wait, name="app-poller").start()

        def svc(ctx):
            ctx.ready()
            ctx.shutdown.wait()
        ''',
}

#: (target, what the error says it did)
MISBEHAVING = [
    pytest.param("initraise:Svc", "Svc() raised RuntimeError: boom in init", id="init-raises"),
    pytest.param("exits4:svc", "importing 'exits4' called sys.exit(4)", id="sys-exit"),
    pytest.param("interrupts:svc", "importing 'interrupts' was interrupted (KeyboardInterrupt)",
                 id="keyboard-interrupt"),
    pytest.param("factoryexits:build", "factory called sys.exit('no config')",
                 id="factory-sys-exit"),
]


@pytest.fixture
def cli(tmp_path):
    c = Cli(tmp_path)
    for name, text in MODULES.items():
        (tmp_path / name).write_text(textwrap.dedent(text))
    yield c
    c.close()


@pytest.mark.parametrize("target, did", MISBEHAVING)
def test_start_refuses_in_one_line_naming_the_target(cli, target, did):
    result = cli.janus("run", target, "--metrics-bind", "off", "--socket", "off")
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [f"janus-mp: error: target {target!r}: {did}"]


@pytest.mark.parametrize("target, did", MISBEHAVING)
def test_reload_adding_misbehaving_code_answers_an_error_and_changes_nothing(cli, tmp_path,
                                                                            target, did):
    config = tmp_path / "janus.toml"
    good = CONFIG.format(workers=2)
    config.write_text(good)
    cli.start("-c", str(config))
    wait_until(lambda: cli.service("crunch")["ready"] == 2)
    before = [(s["name"], s["pids"]) for s in cli.status()["services"]]
    config.write_text(good + f"\n[services.bad]\ntarget = '{target}'\n")
    line = f"services.bad.target: target {target!r}: {did}"
    result = cli.ctl("reload")
    assert result.returncode == 2, result.stdout
    assert result.stderr.splitlines() == [f"janus-mp: error: {line}"]
    assert [(s["name"], s["pids"]) for s in cli.status()["services"]] == before

    # The same by SIGHUP: nobody to answer, so the log says it.
    cli.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: f"reload failed, nothing changed: {line}" in cli.log.read_text(),
               timeout=15, message="the reload failure logged")
    assert [(s["name"], s["pids"]) for s in cli.status()["services"]] == before
    cli.proc.send_signal(signal.SIGTERM)
    assert cli.proc.wait(20) == 0


def test_exit_does_not_wait_for_threads_the_app_started(cli):
    cli.start("threaded:svc")
    wait_until(lambda: cli.service("svc")["ready"] == 1)
    cli.proc.send_signal(signal.SIGTERM)
    assert cli.proc.wait(20) == 0
    log = cli.log.read_text()
    assert "supervisor stopped (exit status 0)" in log
    assert "not waiting for 1 non-daemon thread the application started (app-poller): " \
           "exiting with status 0" in log


def test_check_does_not_wait_for_threads_the_app_started(cli, tmp_path):
    config = tmp_path / "janus.toml"
    config.write_text("[services.svc]\ntarget = 'threaded:svc'\n")
    result = cli.janus("check", str(config), timeout=20)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{config}: ok (svc)"
    assert result.stderr.strip() == ("janus-mp: not waiting for 1 non-daemon thread the "
                                     "application started (app-poller): exiting with status 0")


def test_a_refusal_after_the_import_does_not_wait_for_its_threads(cli):
    with busy_port() as port:
        result = cli.janus("run", "--wsgi", "threaded:svc", "--bind", f"127.0.0.1:{port}",
                           "--metrics-bind", "off", "--socket", "off", timeout=20)
    assert result.returncode == 2
    assert result.stderr.splitlines()[0] == (f"janus-mp: error: service 'threaded': cannot "
                                             f"bind 127.0.0.1:{port}: Address already in use")
    assert "not waiting for 1 non-daemon thread the application started (app-poller)" \
        in result.stderr
