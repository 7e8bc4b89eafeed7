"""`janus-mp convert`: supervisord and gunicorn configurations into a janus.toml that `check`
accepts (the same code path `run -c` takes), with a comment on every option janus-mp has no key
for or reads differently. Real runs of converted files: tests/integration/test_convert_run.py."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from janus_mp.app import build
from janus_mp.app.convert import convert_file, convert_gunicorn_command
from janus_mp.errors import ConfigError
from tests.integration.ops_cli import janus_here

SAMPLES = Path(__file__).resolve().parents[1] / "convert_samples"


def _checked(tmp_path: Path, text: str, *, imports: bool = True) -> dict:
    path = tmp_path / "janus.toml"
    path.write_text(text)
    build.check(str(path), imports=imports)
    return tomllib.loads(text)


def _comments(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if line.startswith("#"))


def _supervisord_sample() -> str:
    """supervisord's own sample config (`echo_supervisord_conf`), or skip with the reason."""
    program = shutil.which("echo_supervisord_conf") or str(
        Path(sys.executable).with_name("echo_supervisord_conf"))
    if not Path(program).exists():
        pytest.skip("supervisor is not installed (pip install -e '.[bench]'): no "
                    "echo_supervisord_conf to take its sample config from")
    return subprocess.run([program], capture_output=True, text=True, check=True).stdout


def test_supervisords_own_sample_converts_and_checks(tmp_path):
    sample = _supervisord_sample()
    (tmp_path / "supervisord.conf").write_text(sample)
    text = convert_file(tmp_path / "supervisord.conf")
    data = _checked(tmp_path, text)
    assert data["supervisor"] == {"log_file": "/tmp/supervisord.log", "log_level": "info",
                                  "pid_file": "/tmp/supervisord.pid"}
    comments = _comments(text)
    for option in ("logfile_maxbytes", "minfds", "nodaemon", "[unix_http_server]",
                   "[supervisorctl]", "[rpcinterface:supervisor]"):
        assert f"{option}" in comments, option


def test_supervisords_sample_program_section_uncommented(tmp_path):
    """The sample's full [program:theprogramname] example, every option it shows, enabled."""
    lines = _supervisord_sample().splitlines()
    start = lines.index(";[program:theprogramname]")
    block = []
    for line in lines[start:]:
        if not line.startswith(";") or line.startswith("; "):
            break
        if not line.startswith(";user="):  # the sample's user does not exist here
            block.append(line[1:])
    assert len(block) > 25, block
    (tmp_path / "supervisord.conf").write_text("\n".join(block) + "\n")
    text = convert_file(tmp_path / "supervisord.conf")
    data = _checked(tmp_path, text)
    service = data["services"]["theprogramname"]
    assert service["command"] == "/bin/cat"
    assert service["stop_signal"] == "QUIT" and service["stop_timeout"] == 10
    assert service["success_codes"] == [0]
    # startretries counts start attempts; max_retries every failure in ten minutes: the
    # converter leaves the breaker at its defaults rather than end a service killed 3 times
    assert "backoff" not in service
    assert service["env"] == {"A": "1", "B": "2"} and service["cwd"] == "/tmp"
    comments = _comments(text)
    for option in ("startretries", "startsecs", "exitcodes", "stopwaitsecs", "priority",
                   "stdout_logfile", "stdout_logfile_maxbytes", "redirect_stderr",
                   "stopasgroup", "process_name", "serverurl"):
        assert f"supervisord's {option}" in comments, option
    assert "not exit_codes" in comments
    assert data["supervisor"]["log_dir"] == "/a"  # the directory of the sample's /a/path
    assert "log_stderr" not in data["supervisor"]  # redirect_stderr=true: one file


def test_supervisord_environment_is_every_programs(tmp_path):
    conf = tmp_path / "supervisord.conf"
    conf.write_text('[program:a]\ncommand=/bin/cat\nenvironment=OWN="a",SHARED="mine"\n'
                    '[program:b]\ncommand=/bin/cat\n'
                    '[supervisord]\nenvironment=SHARED="all",TZ=UTC\n')
    data = _checked(tmp_path, convert_file(conf))
    assert data["services"]["a"]["env"] == {"SHARED": "mine", "TZ": "UTC", "OWN": "a"}
    assert data["services"]["b"]["env"] == {"SHARED": "all", "TZ": "UTC"}


def test_a_separate_stderr_logfile_becomes_log_stderr_separate(tmp_path):
    conf = tmp_path / "supervisord.conf"
    conf.write_text("[program:app]\ncommand=/bin/cat\nstdout_logfile=/var/log/app/out.log\n"
                    "stderr_logfile=/var/log/app/err.log\n")
    data = _checked(tmp_path, convert_file(conf))
    assert data["supervisor"] == {"log_dir": "/var/log/app", "log_stderr": "separate"}


def test_supervisord_reference_config_every_option(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", "/home/someone")
    text = convert_file(SAMPLES / "supervisord_reference.conf")
    data = _checked(tmp_path, text)
    queue = data["services"]["queue-worker"]
    assert queue["workers"] == 3 and queue["restart"] == "always"
    assert queue["success_codes"] == [0, 2] and queue["ready_after"] == 0.5
    assert queue["start_order"] == 20 and queue["umask"] == "027"
    assert queue["cwd"] == str(SAMPLES)  # %(here)s
    assert queue["command"].endswith("--queue queue-worker")  # %(program_name)s
    assert queue["env"] == {"QUEUE_NAME": "orders, priority", "HOME_COPY": "/home/someone",
                            "DEBUG": "0"}
    assert data["supervisor"] == {"name": "shop", "log_dir": f"{SAMPLES}/logs",
                                  "log_max_bytes": "5MB", "log_backups": 3,
                                  "log_file": "/var/log/supervisord.log",
                                  "log_level": "warning", "pid_file": "/run/supervisord.pid"}
    assert data["groups"]["backend"]["members"] == ["queue-worker", "mailer"]
    assert data["services"]["mailer"]["restart"] == "on_failure"
    assert data["services"]["mailer"]["autostart"] is False
    assert "autostart" not in queue  # true: the default
    comments = _comments(text)
    for option in ("supervisord's autostart", "numprocs_start", "killasgroup", "stderr_syslog",
                   "[eventlistener:crashmail]", "[include]", "group priority",
                   "logfile_maxbytes", "minprocs", "[inet_http_server]"):
        assert option in comments, option


def test_gunicorn_conf_py_is_executed_like_gunicorn_does(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(SAMPLES))
    monkeypatch.setenv("WORKERS", "3")
    text = convert_file(SAMPLES / "gunicorn.conf.py")
    data = _checked(tmp_path, text)
    web = data["services"]["web"]
    assert web["wsgi"] == "convertapp:app" and web["workers"] == 3 and web["threads"] == 2
    assert web["watchdog_timeout"] == 45 and web["stop_timeout"] == 20
    assert web["env"] == {"GREETING": "hello from gunicorn.conf.py"}
    assert web["access_log_format"] == '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s'
    assert data["supervisor"] == {"name": "shop-web", "log_level": "warning"}
    comments = _comments(text)
    assert web["keepalive"] == 5
    for setting in ("keepalive", "preload_app", "post_fork", "when_ready",
                    "timeout", "graceful_timeout"):
        assert f"gunicorn's {setting}" in comments, setting
    assert "_private_helper" not in text and "multiprocessing" not in text


@pytest.mark.parametrize(("command", "expect"), [
    ("gunicorn -w 4 -b :8000 app:app",
     {"wsgi": "app:app", "workers": 4, "bind": ["0.0.0.0:8000"], "watchdog_timeout": 30}),
    ("python -m gunicorn --workers=2 --bind 127.0.0.1:9000 --bind unix:/tmp/g.sock "
     "-t 20 --graceful-timeout 7 -e A=1 -e 'B=two words' --threads 4 pkg.wsgi",
     {"wsgi": "pkg.wsgi:application", "workers": 2, "threads": 4,
      "bind": ["127.0.0.1:9000", "unix:/tmp/g.sock"], "watchdog_timeout": 20,
      "stop_timeout": 7, "env": {"A": "1", "B": "two words"}}),
    ("gunicorn -k uvicorn.workers.UvicornWorker -w 2 --max-requests 100 api:app",
     {"asgi": "api:app", "workers": 2, "max_requests": 100, "watchdog_timeout": 30}),
    ("gunicorn -t 0 -m 0o27 app:app", {"wsgi": "app:app", "umask": 0o27}),  # 0: none
])
def test_gunicorn_command_lines(tmp_path, command, expect):
    text = convert_gunicorn_command(command)
    data = _checked(tmp_path, text, imports=False)
    assert data["services"]["web"] == expect


def test_gunicorn_command_line_comments_what_does_not_carry_over(tmp_path):
    text = convert_gunicorn_command(
        "gunicorn --keep-alive 5 --preload -D --certfile c.pem -k gevent --frobnicate app:app")
    _checked(tmp_path, text, imports=False)
    comments = _comments(text)
    assert tomllib.loads(text)["services"]["web"]["keepalive"] == 5
    for setting in ("gunicorn's keepalive", "preload_app = True", "daemon = True", "certfile",
                    "worker_class = 'gevent'", "'--frobnicate'"):
        assert setting in comments, setting


def test_gunicorn_command_line_with_config_file_flags_win(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(SAMPLES))
    text = convert_gunicorn_command(f"gunicorn -c {SAMPLES / 'gunicorn.conf.py'} -w 5")
    data = _checked(tmp_path, text)
    assert data["services"]["web"]["workers"] == 5
    assert data["services"]["web"]["threads"] == 2


def test_newline_in_a_source_value_cannot_escape_its_comment(tmp_path):
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text('wsgi_app = "a:b"\nkeepalive = "2\\n[services.evil]\\ncommand = \'x\'"\n')
    text = convert_file(conf)
    assert "evil" not in tomllib.loads(text).get("services", {})


@pytest.mark.parametrize(("args", "message"), [
    ([], "give a FILE"),
    (["--gunicorn", "gunicorn -w 2"], "names no application"),
    (["--gunicorn", "gunicorn -w two app:app"], "invalid integer value: 'two'"),
    (["--gunicorn", "gunicorn 'unclosed"], "cannot split the command line"),
    (["/nonexistent/supervisord.conf"], "cannot read /nonexistent/supervisord.conf"),
])
def test_bad_input_is_one_line_and_exit_2(args, message):
    result = janus_here("convert", *args)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr


def test_conf_py_that_raises_is_one_line(tmp_path):
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text("workers = undefined_name\n")
    with pytest.raises(ConfigError, match="NameError: name 'undefined_name'"):
        convert_file(conf)


def test_not_ini_is_one_line(tmp_path):
    conf = tmp_path / "supervisord.conf"
    conf.write_text("command=/bin/cat\n")
    result = janus_here("convert", str(conf))
    assert result.returncode == 2 and "is not a supervisord config file" in result.stderr
