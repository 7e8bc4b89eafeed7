"""A worker's output shown as the app wrote it: each line once, after one prefix
(``name[i] err|``), with no second timestamp and no level of janus-mp's in front of the
app's own; an app's ``logging.basicConfig(format=...)`` in a worker takes effect. Real
``janus-mp run`` processes and a real Python API supervisor."""

from __future__ import annotations

import re
import signal
import textwrap

import pytest

from tests.harness import SupervisorProcess
from tests.integration.test_cli import Cli
from tests.support import wait_until

pytestmark = pytest.mark.timeout(120)

APP = '''
import logging
import sys

def work(ctx):
    logging.basicConfig(level=logging.INFO, format="APP %(levelname)s %(name)s: %(message)s")
    logging.getLogger("app").info("hello from the app")
    logging.getLogger("app").error("trouble in the app")
    sys.stderr.write("plain complaint\\n")
    sys.stderr.flush()
    print("to stdout", flush=True)
    ctx.shutdown.wait()
'''


def occurrences(pattern: str, text: str) -> int:
    return len(re.findall(pattern, text, re.M))


def test_cli_shows_app_lines_as_written_with_the_apps_own_logging_format(tmp_path):
    cli = Cli(tmp_path)
    (tmp_path / "applog.py").write_text(textwrap.dedent(APP))
    try:
        cli.start("applog:work")
        wait_until(lambda: "to stdout" in cli.log.read_text(), timeout=30,
                   message="the worker's output")
        wait_until(lambda: "plain complaint" in cli.log.read_text(), timeout=10)
        log = cli.log.read_text()
        prefix = r"^\w+\[0\] "
        # The app's basicConfig took effect in the worker, its levels are its own, and each
        # line is there once, whole, after one prefix: no timestamp or level of ours.
        assert occurrences(prefix + r"err\| APP INFO app: hello from the app$", log) == 1, log
        assert occurrences(prefix + r"err\| APP ERROR app: trouble in the app$", log) == 1, log
        assert occurrences(prefix + r"err\| plain complaint$", log) == 1, log
        assert occurrences(prefix + r"out\| to stdout$", log) == 1, log
        assert log.count("hello from the app") == 1, log
        assert "janus_mp.output" not in log, log
    finally:
        cli.close()


SCENARIO = '''
import logging
import sys
from janus_mp import *
from tests.scenario_lib import started
CONFIG = SupervisorConfig(shutdown_timeout=5.0, kill_timeout=1.0)

def talk(ctx):
    logging.getLogger("app").info("hello from the app")  # the parent's logging, inherited
    sys.stderr.write("plain complaint\\n")
    sys.stderr.flush()
    print("to stdout", flush=True)
    started(ctx)
    ctx.shutdown.wait()

def build(sup):
    sup.spawn_service(talk, SpawnOptions(workers=1))
'''


def test_python_api_shows_app_lines_once_after_one_prefix(tmp_path):
    # The harness's parent configures logging ("%(asctime)s %(process)d %(name)s
    # %(levelname)s %(message)s" at INFO) before it builds the supervisor, as apps do.
    with SupervisorProcess(tmp_path, SCENARIO) as sup:
        wait_until(lambda: "to stdout" in sup.log_text() and "plain complaint" in sup.log_text(),
                   timeout=30, message="the worker's output")
        log = sup.log_text()
        assert occurrences(r"^talk\[0\] err\| plain complaint$", log) == 1, log
        assert occurrences(r"^talk\[0\] out\| to stdout$", log) == 1, log
        # The worker's record, formatted once by the logging it inherited: one timestamp, and
        # the app's level (INFO), not a WARNING of ours.
        assert occurrences(r"^talk\[0\] err\| \d{4}-\d\d-\d\d [\d:,]+ \d+ app INFO "
                           r"hello from the app$", log) == 1, log
        assert "janus_mp.output" not in log, log
        sup.signal(signal.SIGTERM)
        assert sup.wait_exit() == 0
