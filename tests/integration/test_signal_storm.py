"""1,000 mixed HUP/TTIN/TTOU/USR1 in about a second leave a consistent supervisor."""

from __future__ import annotations

import os
import random
import signal
import time

import pytest

from tests.integration.test_cli import CONFIG, Cli
from tests.support import children_of, proc_state, wait_until

pytestmark = pytest.mark.timeout(120)


def test_signal_storm_leaves_a_consistent_state(tmp_path):
    cli = Cli(tmp_path)
    config = tmp_path / "janus.toml"
    config.write_text(CONFIG.format(workers=2))
    log = tmp_path / "janus.log"
    try:
        cli.start("-c", str(config), "--log-file", str(log))
        wait_until(lambda: cli.service("crunch")["ready"] == 2)
        rng = random.Random(42)
        storm = [signal.SIGHUP, signal.SIGTTIN, signal.SIGTTIN, signal.SIGTTOU, signal.SIGUSR1]
        for _ in range(1000):
            os.kill(cli.proc.pid, rng.choice(storm))
            time.sleep(0.0005)
        assert cli.proc.poll() is None  # survived

        def settled():
            status = cli.status()
            for svc in status["services"]:
                slots = [w["worker"] for w in svc["workers"]]
                pids = [p for w in svc["workers"] for p in w["pids"]]
                if svc["phase"] != "running" or svc["ready"] != svc["desired"]:
                    return None
                if sorted(slots) != list(range(svc["desired"])) or len(set(pids)) != len(pids):
                    return None
                if len(pids) != svc["desired"]:
                    return None
            return status

        status = wait_until(settled, timeout=60, interval=0.2)
        # No lost children: every child of the supervisor is a known worker or the guard.
        known = {p for svc in status["services"] for p in svc["pids"]}
        children = [p for p in children_of(cli.proc.pid) if proc_state(p) != "Z"]
        unknown = [p for p in children if p not in known and "worker" in _title(p)]
        assert unknown == []
        assert cli.ctl("status").returncode == 0
    finally:
        cli.close()


def _title(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().decode(errors="replace")
    except OSError:
        return ""
