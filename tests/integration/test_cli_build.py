"""One builder for `run`, `check` and `reload` (janus_mp/app/build.py), driven through the real
command: each refuses a bad config file with the same one line and exit 2."""

from __future__ import annotations

import textwrap

import pytest

from tests.integration.test_cli import CONFIG, Cli
from tests.support import wait_until

pytestmark = pytest.mark.timeout(120)

#: Modules the bad configs name, next to the Cli's svcmod.
EXTRA_MODULES = {
    "badinit.py": '''
        from janus_mp import JanusService

        class Broken(JanusService):
            def __init__(self):
                raise RuntimeError("no database configured")

            def run(self, ctx):
                ctx.shutdown.wait()
        ''',
    "unpicklable.py": '''
        from janus_mp import JanusService

        class Holder(JanusService):
            name = "holder"

            def __init__(self):
                self.pending = (n for n in range(3))  # a generator: no pickle can carry it

            def run(self, ctx):
                ctx.shutdown.wait()
        ''',
    "plainmod.py": '''
        def main():
            import time
            time.sleep(3600)
        ''',
}

WATCHDOG = "CommandAdapter workers cannot call ctx.heartbeat(): a watchdog would kill them " \
           "while they work"

#: (config text, the one line both `check` and `run` must print)
REFUSED = [
    pytest.param("[services.x]\ncommand = 'sleep 100'\nwatchdog_timeout = 5\n",
                 f"services.x.watchdog_timeout: {WATCHDOG}", id="watchdog-on-command"),
    pytest.param("[services.x]\nmodule = 'plainmod'\nwatchdog_timeout = 5\n",
                 "services.x.watchdog_timeout: ModuleAdapter workers cannot call "
                 "ctx.heartbeat(): a watchdog would kill them while they work",
                 id="watchdog-on-module"),
    pytest.param("[services.x]\ncommand = 'sleep 100'\nworkers = 5000\n",
                 "services.x.workers: 5000 is more than max_workers (1024)",
                 id="workers-above-max_workers"),
    pytest.param("[supervisor]\nmax_workers = 2\n[services.x]\ntarget = 'svcmod:helper'\n"
                 "workers = 3\n", "services.x.workers: 3 is more than max_workers (2)",
                 id="workers-above-own-max_workers"),
    pytest.param("[services.x]\ntarget = 'badinit:Broken'\n",
                 "services.x.target: target 'badinit:Broken': Broken() raised RuntimeError: "
                 "no database configured", id="class-init-raises"),
    pytest.param("[supervisor]\nstart_method = 'spawn'\n[services.x]\n"
                 "target = 'unpicklable:Holder'\n",
                 "service 'x' cannot be sent to a spawn worker: TypeError: cannot pickle "
                 "'generator' object; use the fork start method or make it picklable",
                 id="unpicklable-under-spawn"),
    pytest.param("[services.x]\ntarget = 'svcmod:helper'\nworkerz = 3\n",
                 "services.x.workerz: unknown key (did you mean 'workers'?)", id="unknown-key"),
]


@pytest.fixture
def cli(tmp_path):
    c = Cli(tmp_path)
    for name, text in EXTRA_MODULES.items():
        (tmp_path / name).write_text(textwrap.dedent(text))
    yield c
    c.close()


@pytest.mark.parametrize("text, line", REFUSED)
def test_check_and_run_refuse_a_bad_config_with_the_same_line(cli, tmp_path, text, line):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    checked = cli.janus("check", str(path))
    ran = cli.janus("run", "-c", str(path), "--metrics-bind", "off", "--socket", "off")
    for result in (checked, ran):
        assert result.returncode == 2, (result.stdout, result.stderr)
        assert result.stderr.splitlines() == [f"janus-mp: error: {line}"]


@pytest.mark.parametrize("text, line", REFUSED[:4])
def test_check_without_imports_still_refuses_what_needs_no_import(cli, tmp_path, text, line):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    result = cli.janus("check", "--no-imports", str(path))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"janus-mp: error: {line}"]


def test_reload_refuses_what_run_refuses_and_changes_nothing(cli, tmp_path):
    config = tmp_path / "janus.toml"
    good = CONFIG.format(workers=2)
    config.write_text(good)
    cli.start("-c", str(config))
    wait_until(lambda: cli.service("crunch")["ready"] == 2)
    before = cli.status()["services"]
    for param in REFUSED:
        text, line = param.values
        if "[supervisor]" in text:
            continue  # [supervisor] settings apply at the next start, not on reload
        config.write_text(good + "\n" + text)
        result = cli.ctl("reload")
        assert result.returncode == 2, (param.id, result.stdout)
        assert result.stderr.splitlines() == [f"janus-mp: error: {line}"], param.id
    after = cli.status()["services"]
    assert [(s["name"], s["pids"]) for s in after] == [(s["name"], s["pids"]) for s in before]


def test_cli_flags_that_run_refuses_name_the_flag(cli):
    result = cli.janus("run", "svcmod:helper", "-w", "5000", "--metrics-bind", "off",
                       "--socket", "off")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "janus-mp: error: --workers: 5000 is more than max_workers (1024)"]


@pytest.mark.parametrize("flag", [[], ["--no-imports"]])
def test_check_warns_on_a_start_count_that_would_end_a_service_for_good(cli, tmp_path, flag):
    path = tmp_path / "startretries.toml"
    path.write_text("[services.x]\ntarget = 'svcmod:helper'\n"
                    "backoff = { max_retries = 3, half_open_after = 'never' }\n"
                    "[services.y]\ntarget = 'svcmod:helper'\nbackoff = { max_retries = 3 }\n")
    result = cli.janus("check", *flag, str(path))
    assert result.returncode == 0, result.stderr
    warnings = result.stderr.splitlines()
    assert len(warnings) == 1, warnings  # y half-opens (the default): it comes back
    assert warnings[0].startswith("warning: services.x.backoff: max_retries = 3 with "
                                  'half_open_after = "never" ends the service for good')
    assert "startretries" in warnings[0]


@pytest.mark.parametrize("setting, line", [
    ("env_file = 'bad.env'", "services.x.env_file: env_file bad.env, line 2: not UTF-8 text"),
    ("rlimits = { nofile = 100000000 }",
     "services.x.rlimits.nofile: 100000000 is above the kernel's most open files per process "
     "(fs.nr_open = {nr_open})"),
])
def test_check_and_run_refuse_settings_no_worker_could_apply(cli, tmp_path, setting, line):
    (tmp_path / "bad.env").write_bytes(b"GOOD=1\nBAD=\xff\xfe\n")
    with open("/proc/sys/fs/nr_open") as f:
        line = line.format(nr_open=int(f.read()))
    path = tmp_path / "settings.toml"
    path.write_text(f"[services.x]\ntarget = 'svcmod:helper'\n{setting}\n")
    checked = cli.janus("check", str(path))
    ran = cli.janus("run", "-c", str(path), "--metrics-bind", "off", "--socket", "off")
    for result in (checked, ran):
        assert result.returncode == 2, (result.stdout, result.stderr)
        assert result.stderr.splitlines() == [f"janus-mp: error: {line}"]
