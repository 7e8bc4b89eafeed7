"""How the commands that run code of the application (run, demo, check) end: the one-line
usage error (exit 2) and an exit that never waits forever for threads the application left."""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import NoReturn

import click

from janus_mp.app.logs import SupervisorLog

USAGE_ERROR = 2


def fail(message: str, log: SupervisorLog | None = None) -> NoReturn:
    click.echo(f"janus-mp: error: {message}", err=True)
    exit_with(USAGE_ERROR, log)


def exit_with(status: int, log: SupervisorLog | None) -> NoReturn:
    """Exit with ``status``. Threads the application started when it was imported (in this
    process: run, check, a reload) and left running would make the interpreter wait for them
    forever: say so, flush the log, and do not wait."""
    others = [t for t in threading.enumerate()  # janus-mp's own threads are named janus-mp-*
              if not t.daemon and t is not threading.main_thread() and t.is_alive()
              and not t.name.startswith("janus-mp")]
    if not others:
        if log is not None:
            log.flush()  # the writer thread is a daemon: the last lines must not die with it
        sys.exit(status)
    notice = (f"not waiting for {len(others)} non-daemon thread{'s' * (len(others) > 1)} the "
              f"application started ({', '.join(sorted(t.name for t in others))}): exiting "
              f"with status {status}")
    if log is None:
        click.echo(f"janus-mp: {notice}", err=True)
    else:
        logging.getLogger("janus_mp.cli").warning("%s", notice)
        log.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
