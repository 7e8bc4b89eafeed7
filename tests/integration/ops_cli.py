"""The `Cli` harness, polled in-process: on a busy machine one `janus-mp status` subprocess
per poll costs a second; asking the control socket directly costs a millisecond."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from janus_mp.app import control
from janus_mp.errors import JanusError
from tests.integration.test_cli import Cli
from tests.support import wait_until


class QuickCli(Cli):
    def start(self, *args: str, env: dict[str, str] | None = None) -> None:
        self._log = open(self.log, "w")  # noqa: SIM115 - closed by Cli.close
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "janus_mp", "run", "--socket", self.socket,
             "--metrics-bind", "off", *args], cwd=self.tmp, env=env or self.env,
            stdout=self._log, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        wait_until(lambda: self.proc.poll() is not None or self.answers(), timeout=20,
                   message="the control socket")
        assert self.proc.poll() is None, self.log.read_text()

    def answers(self) -> bool:
        """The supervisor runs (its socket opens a moment before its services start)."""
        try:
            return bool(control.call(self.socket, "status", timeout=5)["state"] == "running")
        except JanusError:
            return False

    def service(self, name: str) -> Any:
        status = control.call(self.socket, "status", timeout=10)
        return next(s for s in status["services"] if s["name"] == name)


def janus_here(*args: str) -> subprocess.CompletedProcess[str]:
    """Run a `janus-mp` client command in this process (click's runner): the same code as the
    command line without a second of interpreter start-up per call."""
    from click.testing import CliRunner

    from janus_mp.app.cli import cli

    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return subprocess.CompletedProcess(list(args), result.exit_code, result.stdout,
                                       result.stderr)
