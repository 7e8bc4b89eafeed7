"""An application imported by the supervisor must not take it over (issue 13, item 4): its
logging set-up neither silences nor reformats janus-mp's own lines, and the default service
name of ``pkg.module:app`` is the package users know (``djsite``), with --name / the config
table naming it otherwise. Real `janus-mp run` processes throughout."""

from __future__ import annotations

import os
import re
import signal
import textwrap

import pytest

from tests.http_client import get
from tests.integration.test_cli import Cli
from tests.support import wait_until

pytestmark = pytest.mark.timeout(120)

WSGI_APP = '''
        def app(environ, start_response):
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"hello\\n"]
        '''

MODULES = {
    # dictConfig as Django applies LOGGING: existing loggers disabled, root handlers replaced.
    "appdict.py": '''
        import logging
        import logging.config

        logging.config.dictConfig({
            "version": 1,
            "disable_existing_loggers": True,
            "formatters": {"app": {"format": "APP %(message)s"}},
            "handlers": {"out": {"class": "logging.StreamHandler", "formatter": "app"}},
            "root": {"handlers": ["out"], "level": "INFO"},
        })
        logging.basicConfig(format="APP %(message)s")
        logging.getLogger("appdict").warning("app logging configured")
    ''' + WSGI_APP,
    # basicConfig(force=True): the root's handlers replaced with the app's format.
    "appbasic.py": '''
        import logging

        logging.basicConfig(force=True, level=logging.DEBUG, format="APP %(message)s")
        logging.getLogger("appbasic").warning("app logging configured")
    ''' + WSGI_APP,
    "shopsite/__init__.py": "",
    "shopsite/wsgi.py": WSGI_APP.replace("def app(", "def application("),
    # A minimal Django project whose LOGGING disables existing loggers.
    "djsite/__init__.py": "",
    "djsite/settings.py": '''
        SECRET_KEY = "test-only-not-secret"
        DEBUG = False
        ALLOWED_HOSTS = ["*"]
        ROOT_URLCONF = "djsite.urls"
        INSTALLED_APPS = []
        MIDDLEWARE = []
        DATABASES = {}
        USE_TZ = True
        LOGGING = {
            "version": 1,
            "disable_existing_loggers": True,
            "formatters": {"site": {"format": "DJANGO %(levelname)s %(message)s"}},
            "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "site"}},
            "root": {"handlers": ["console"], "level": "INFO"},
        }
    ''',
    "djsite/urls.py": '''
        from django.http import HttpResponse
        from django.urls import path

        def hello(request):
            return HttpResponse(b"hello from django\\n", content_type="text/plain")

        urlpatterns = [path("", hello)]
    ''',
    "djsite/wsgi.py": '''
        import os

        from django.core.wsgi import get_wsgi_application

        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djsite.settings")
        application = get_wsgi_application()
    ''',
}

#: janus-mp's own log format: "2026-01-02 03:04:05,678 [pid] LEVEL logger: message".
STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} \[\d+\]"


@pytest.fixture
def cli(tmp_path):
    c = Cli(tmp_path)
    for name, text in MODULES.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(textwrap.dedent(text))
    yield c
    c.close()


def _listening(cli: Cli, service: str) -> str:
    """The address from the supervisor's own "listening on" line, in its normal format."""
    pattern = rf"^{STAMP} INFO janus_mp\.supervisor: {service}: listening on (127\.0\.0\.1:\d+)$"
    found = _wait_for_line(cli, pattern, f"a normal 'listening on' line for {service}")
    return found.group(1)


def _worker_exit_logged(cli: Cli, service: str, pid: int) -> None:
    pattern = (rf"^{STAMP} WARNING janus_mp\.supervisor: {service}\[\d\] \(pid {pid}, gen \d+\) "
               rf"exited: ")
    _wait_for_line(cli, pattern, f"a normal line for the exit of worker {pid}")


def _wait_for_line(cli: Cli, pattern: str, what: str) -> re.Match[str]:
    try:
        return wait_until(lambda: re.search(pattern, cli.log.read_text(), re.M), timeout=15,
                          message=what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; the log:\n{cli.log.read_text()}") from None


def _kill_one_worker(cli: Cli, service: str) -> None:
    pid = cli.service(service)["pids"][0]
    os.kill(pid, signal.SIGKILL)
    _worker_exit_logged(cli, service, pid)
    wait_until(lambda: (s := cli.service(service))["ready"] == 2 and pid not in s["pids"],
               timeout=20, message="the killed worker replaced")


@pytest.mark.parametrize("module", ["appdict", "appbasic"])
def test_app_logging_config_leaves_the_supervisor_log_alone(cli, module):
    cli.start("--wsgi", f"{module}:app", "-w", "2", "--bind", "127.0.0.1:0")
    address = _listening(cli, module)
    wait_until(lambda: cli.service(module)["ready"] == 2)
    assert get(address)[0] == 200
    _kill_one_worker(cli, module)
    cli.proc.send_signal(signal.SIGTERM)
    assert cli.proc.wait(20) == 0
    log = cli.log.read_text()
    assert re.search(rf"^{STAMP} INFO janus_mp\.supervisor: janus-mp: supervisor stopped "
                     r"\(exit status 0\)", log, re.M), log
    # The app's own loggers keep the app's format; janus-mp's lines never take it.
    assert "APP app logging configured" in log
    assert not re.search(r"^APP .*(listening on|exited|supervisor)", log, re.M), log


def test_django_logging_leaves_the_supervisor_log_alone(cli):
    pytest.importorskip("django", reason="the test extra installs django")
    cli.start("--wsgi", "djsite.wsgi:application", "-w", "2", "--bind", "127.0.0.1:0")
    address = _listening(cli, "djsite")
    wait_until(lambda: cli.service("djsite")["ready"] == 2)
    assert get(address)[::2] == (200, b"hello from django\n")
    _kill_one_worker(cli, "djsite")
    before = set(cli.service("djsite")["pids"])
    restarted = cli.ctl("restart", "djsite")  # the name users know the project by
    assert restarted.returncode == 0, restarted.stderr
    assert restarted.stdout.strip() == "rolling restart of djsite started"
    wait_until(lambda: (s := cli.service("djsite"))["ready"] == 2
               and not set(s["pids"]) & before, timeout=30)
    # The log is written by its own thread: wait for the line rather than race it.
    _wait_for_line(cli, rf"^{STAMP} INFO janus_mp\.supervisor: djsite: rolling restart of 2 "
                        "workers$", "the rolling restart line")
    log = cli.log.read_text()
    assert not re.search(r"^DJANGO .*(listening on|exited|rolling restart)", log, re.M), log


@pytest.mark.parametrize("args, name", [
    pytest.param([], "shopsite", id="default-top-package"),
    pytest.param(["--name", "shop"], "shop", id="--name"),
])
def test_a_wsgi_service_is_named_after_its_package_or_name(cli, args, name):
    cli.start("--wsgi", "shopsite.wsgi:application", "--bind", "127.0.0.1:0", *args)
    wait_until(lambda: [s["name"] for s in cli.status()["services"]] == [name])
    restarted = cli.ctl("restart", name)
    assert restarted.returncode == 0, restarted.stderr
    assert restarted.stdout.strip() == f"rolling restart of {name} started"


def test_a_config_table_names_its_wsgi_service(cli, tmp_path):
    config = tmp_path / "janus.toml"
    config.write_text('[services.storefront]\nwsgi = "shopsite.wsgi:application"\n'
                      'bind = "127.0.0.1:0"\n')
    cli.start("-c", str(config))
    wait_until(lambda: [s["name"] for s in cli.status()["services"]] == ["storefront"])
    assert cli.ctl("restart", "storefront").returncode == 0
