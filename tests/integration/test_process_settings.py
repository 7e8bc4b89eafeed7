"""Process settings for every kind of service, read back from /proc: env, env_file, cwd,
user/group, umask, rlimits, nice and CPU affinity."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from janus_mp.app import build
from janus_mp.errors import JanusError
from tests.integration.ops_cli import QuickCli
from tests.support import children_of, wait_until

pytestmark = pytest.mark.timeout(60)

APP = '''
import json, os

def show(ctx):
    with open("env.json", "w") as f:  # relative: lands in the configured cwd
        json.dump({k: os.environ.get(k) for k in ("FROM_TOML", "FROM_FILE", "QUOTED", "USER")}, f)
    ctx.shutdown.wait()
'''

SETTINGS = '''
env = {{ FROM_TOML = "toml" }}
env_file = "{base}/app.env"
cwd = "{base}/{cwd}"
umask = {umask}
rlimits = {{ nofile = [512, 1024], core = 0 }}
nice = 7
cpus = [0]
'''


@pytest.fixture
def base():
    # outside pytest's 0700 tmp dirs: the workers run as nobody and must reach their cwd
    path = Path(tempfile.mkdtemp(prefix="janus-settings-"))
    path.chmod(0o755)
    for cwd in ("show", "prog"):
        (path / cwd).mkdir()
        (path / cwd).chmod(0o777)
    (path / "app.env").write_text('# settings\nFROM_FILE=file\nQUOTED="a b"\n')
    (path / "setapp.py").write_text(textwrap.dedent(APP))
    yield path
    shutil.rmtree(path)


@pytest.fixture
def cli(tmp_path):
    c = QuickCli(tmp_path)
    yield c
    c.close()



def _proc(pid: int) -> dict[str, str]:
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text()
                  .splitlines())
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    limits = {line[:26].strip(): line[26:].split()[:2]
              for line in Path(f"/proc/{pid}/limits").read_text().splitlines()[1:]}
    return {"umask": status["Umask"].strip(), "uid": status["Uid"].split()[0],
            "gid": status["Gid"].split()[0], "cpus": status["Cpus_allowed_list"].strip(),
            "nice": stat[16], "nofile": " ".join(limits["Max open files"]),
            "core": " ".join(limits["Max core file size"]),
            "cwd": os.readlink(f"/proc/{pid}/cwd")}


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs a supervisor run as root")
def test_settings_reach_a_python_worker_and_a_commands_program(cli, base):
    config = base / "janus.toml"
    config.write_text(
        "[supervisor]\nshutdown_timeout = 2\nkill_timeout = 1\n"
        '[services.show]\ntarget = "setapp:show"\nuser = "nobody"\n'
        + SETTINGS.format(base=base, cwd="show", umask="0o027")
        + '[services.prog]\ncommand = ["sh", "-c", "exec sleep 60"]\n'
        + SETTINGS.format(base=base, cwd="prog", umask='"0077"'))
    cli.env["PYTHONPATH"] = f"{base}:{cli.env['PYTHONPATH']}"
    cli.start("-c", str(config))
    wait_until(lambda: (base / "show" / "env.json").exists(), timeout=20)
    show_pid = cli.service("show")["workers"][0]["pids"][0]
    nobody = str(__import__("pwd").getpwnam("nobody").pw_uid)
    assert _proc(show_pid) == {"umask": "0027", "uid": nobody, "gid": _nobody_gid(),
                               "cpus": "0", "nice": "7", "nofile": "512 1024", "core": "0 0",
                               "cwd": str(base / "show")}
    assert json.loads((base / "show" / "env.json").read_text()) == {
        "FROM_TOML": "toml", "FROM_FILE": "file", "QUOTED": "a b", "USER": "nobody"}

    prog_worker = cli.service("prog")["workers"][0]["pids"][0]
    program = wait_until(lambda: children_of(prog_worker))[0]
    seen = _proc(program)
    assert seen["umask"] == "0077" and seen["uid"] == "0" and seen["cwd"] == str(base / "prog")
    assert (seen["cpus"], seen["nice"], seen["nofile"]) == ("0", "7", "512 1024")
    environ = dict(item.split("=", 1) for item in Path(f"/proc/{program}/environ").read_text()
                   .split("\0") if "=" in item)
    assert (environ["FROM_TOML"], environ["FROM_FILE"], environ["QUOTED"]) == (
        "toml", "file", "a b")


def _nobody_gid() -> str:
    return str(__import__("pwd").getpwnam("nobody").pw_gid)


def test_bad_settings_are_refused_in_one_line_naming_the_key(cli, base):
    config = base / "bad.toml"
    cases = (('umask = "089"', "services.s.umask: '089' is not octal"),
             ("rlimits = { files = 10 }", "services.s.rlimits.files: unknown"),
             ('cwd = "/nonexistent/dir"', "services.s.cwd: '/nonexistent/dir' is not a "
                                          "directory"),
             ('user = "no-such-user-here"', "services.s.user: no user 'no-such-user-here'"))
    sys.path.insert(0, str(base))
    try:
        for table, expected in cases:  # what `check` and `run` both go through
            config.write_text(f'[services.s]\ntarget = "setapp:show"\n{table}\n')
            with pytest.raises(JanusError) as refused:
                build.check(str(config))
            assert str(refused.value).startswith(expected)
    finally:
        sys.path.remove(str(base))
    env = dict(cli.env, PYTHONPATH=f"{base}:{cli.env['PYTHONPATH']}")
    done = cli.janus("check", str(config), env=env)  # the last case, from the command line
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and lines == [f"janus-mp: error: {cases[-1][1]}"], lines


@pytest.mark.skipif(os.geteuid() != 0, reason="switching groups needs a supervisor run as root")
def test_gunicorn_named_run_flags_reach_the_worker_and_group_alone_keeps_the_user(cli, base):
    """-u/-g/-m/--chdir/-e as gunicorn spells them, over a config file's own env; --group
    without --user changes the group only (the worker stays root here)."""
    config = base / "janus.toml"
    config.write_text('[supervisor]\nshutdown_timeout = 2\nkill_timeout = 1\n'
                      '[services.show]\ntarget = "setapp:show"\nenv = { FROM_TOML = "toml" }\n')
    cli.env["PYTHONPATH"] = f"{base}:{cli.env['PYTHONPATH']}"
    nogroup = __import__("grp").getgrgid(int(_nobody_gid())).gr_name
    cli.start("-c", str(config), "-g", nogroup, "-m", "027", "--chdir", str(base / "show"),
              "-e", "QUOTED=from flag", "-e", "FROM_FILE=x=y", "-t", "30",
              "--graceful-timeout", "3")
    wait_until(lambda: (base / "show" / "env.json").exists(), timeout=20)
    pid = cli.service("show")["workers"][0]["pids"][0]
    seen = _proc(pid)
    assert (seen["uid"], seen["gid"], seen["umask"], seen["cwd"]) == (
        "0", _nobody_gid(), "0027", str(base / "show"))
    groups = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text()
                  .splitlines())["Groups"].split()
    assert groups == [_nobody_gid()]  # root's supplementary groups are not kept
    assert json.loads((base / "show" / "env.json").read_text()) == {
        "FROM_TOML": "toml", "FROM_FILE": "x=y", "QUOTED": "from flag", "USER": os.environ.get(
            "USER")}


def test_process_flags_refused_in_one_line(cli, base):
    env = dict(cli.env, PYTHONPATH=f"{base}:{cli.env['PYTHONPATH']}")
    for args, expected in ((("-e", "NOEQUALS"), "'NOEQUALS' is not KEY=VALUE"),
                           (("-m", "089"), "--umask: '089' is not octal"),
                           (("-g", "no-such-group-here"),
                            "--group: no group 'no-such-group-here'"),
                           (("-t", "0"), "Invalid value for '-t' / '--timeout'")):
        done = cli.janus("run", "setapp:show", "--metrics-bind", "off", "--socket", "off",
                         *args, env=env)
        assert done.returncode == 2, done.stderr
        assert expected in done.stderr, done.stderr
        assert "Traceback" not in done.stderr


def test_check_refuses_an_rlimit_above_the_hard_limit_without_root(monkeypatch):
    from janus_mp.core.process_settings import ProcessSettings
    from janus_mp.errors import ConfigError
    from janus_mp.runtime import process_settings

    # A supervisor not running as root, with a hard limit of 4096 (as seen by the check).
    monkeypatch.setattr(process_settings.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(process_settings.resource, "getrlimit", lambda _which: (1024, 4096))
    with pytest.raises(ConfigError) as refused:
        process_settings.check(ProcessSettings(rlimits={"core": 4097}))
    assert str(refused.value) == ("rlimits.core: 4097 is above the hard limit (4096); only "
                                  "root may raise it")
    process_settings.check(ProcessSettings(rlimits={"core": 4096}))  # at the limit: fine
