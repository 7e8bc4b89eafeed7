"""Start a supervisor scenario as a real process, talk to it, and always clean up after it."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

from tests.support import TAG_VAR, kill_pids, stop_process, tagged_pids, wait_until

ROOT = Path(__file__).resolve().parent.parent


class SupervisorProcess:
    """``with SupervisorProcess(tmp_path, SCENARIO) as sup:`` — the scenario's own process.

    Every process of its tree carries a unique tag in its environment, so the test can find
    leftovers in /proc. Exiting the block SIGKILLs whatever is left and reports it.
    """

    def __init__(self, tmp: Path, scenario: str, *, env: dict[str, str] | None = None) -> None:
        self.tmp = tmp
        self.tag = uuid.uuid4().hex
        self.events = tmp / "events.log"
        self.script = tmp / f"scenario_{self.tag[:8]}.py"
        self.script.write_text(textwrap.dedent(scenario))
        self.log = tmp / "supervisor.log"
        self.extra_env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.exit_status: int | None = None
        self._buffer = b""

    # -- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> SupervisorProcess:
        cmd_r, self._cmd_w = os.pipe()
        self._reply_r, reply_w = os.pipe()
        env = dict(os.environ)
        env.update({TAG_VAR: self.tag, "JANUS_TEST_EVENTS": str(self.events),
                    "PYTHONPATH": str(ROOT),
                    # setproctitle would reuse the environ area for long titles, hiding the tag
                    "SPT_NOENV": "1"}, **self.extra_env)
        self._log_file = open(self.log, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.harness_child", str(self.script), str(cmd_r),
             str(reply_w)],
            cwd=ROOT, env=env, pass_fds=(cmd_r, reply_w), stdout=self._log_file,
            stderr=subprocess.STDOUT, start_new_session=True,
        )
        os.close(cmd_r)
        os.close(reply_w)
        wait_until(lambda: self.snapshot()["state"] != "idle", timeout=15,
                   message="the supervisor loop to start")
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is not None:  # pytest shows captured stdout of failed tests
            print(f"--- supervisor log ({self.log}) ---\n{self.log_text()}")
            print(f"--- events ---\n{self.events_list()}")
        leftovers: list[int] = []
        try:
            if self.proc is not None:
                stop_process(self.proc)
            try:
                wait_until(lambda: not tagged_pids(self.tag), timeout=3.0)
            except AssertionError:
                leftovers = tagged_pids(self.tag)
                kill_pids(leftovers)
        finally:
            os.close(self._cmd_w)
            os.close(self._reply_r)
            self._log_file.close()
        if leftovers and exc[0] is None:
            raise AssertionError(f"processes left behind: {leftovers}\n{self.log_text()}")

    # -- talking to it -------------------------------------------------------------------------
    def request(self, op: str, timeout: float = 10.0, **args: Any) -> Any:
        os.write(self._cmd_w, (json.dumps({"op": op, **args}) + "\n").encode())
        while True:
            reply = self._read_line(timeout)
            if "exit" in reply:
                self.exit_status = reply["exit"]
                continue
            if not reply["ok"]:
                raise RuntimeError(reply["error"])
            return reply["result"]

    def _read_line(self, timeout: float) -> dict[str, Any]:
        while b"\n" not in self._buffer:
            ready, _, _ = select.select([self._reply_r], [], [], timeout)
            if not ready:
                raise AssertionError(f"no reply within {timeout}s\n{self.log_text()}")
            chunk = os.read(self._reply_r, 65536)
            if not chunk:
                raise AssertionError(f"supervisor closed its pipe\n{self.log_text()}")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def snapshot(self) -> dict[str, Any]:
        return self.request("snapshot")

    def service(self, name: str) -> dict[str, Any]:
        for svc in self.snapshot()["services"]:
            if svc["name"] == name:
                return svc
        raise KeyError(name)

    def metrics(self) -> dict[str, Any]:
        return self.request("metrics")

    def listening(self, service: str) -> list[str]:
        return self.request("listening", service=service)

    def exits(self, service: str | None = None) -> list[dict[str, Any]]:
        return [e for e in self.request("exits") if service is None or e["service"] == service]

    def wait_exit(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signum)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    # -- what the workers recorded -----------------------------------------------------------
    def events_list(self) -> list[list[str]]:
        try:
            text = self.events.read_text()
        except FileNotFoundError:
            return []
        return [line.split() for line in text.splitlines() if line.strip()]

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-6000:]
        except FileNotFoundError:
            return ""
