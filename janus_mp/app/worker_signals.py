"""`janus-mp signal SIG NAME`: a signal to every worker of the named services, as
supervisorctl's ``signal`` sends one to its programs. A Python worker gets it itself; a command
service's program gets it (its worker is only the program's keeper, and would die of a signal
it does not expect)."""

from __future__ import annotations

import os
import signal

import psutil

from janus_mp.adapters.command import CommandAdapter
from janus_mp.errors import ConfigError
from janus_mp.service import JanusService


def parse_signal(value: object) -> signal.Signals:
    """HUP, SIGHUP, hup or 1; a ConfigError naming ``signal`` otherwise."""
    text = str(value).strip().upper()
    try:
        if text.isdigit():
            return signal.Signals(int(text))
        return signal.Signals[text if text.startswith("SIG") else f"SIG{text}"]
    except (KeyError, ValueError):
        raise ConfigError("signal", f"unknown signal {value!r}") from None


def targets(service: JanusService, worker_pids: list[int]) -> list[int]:
    """The processes a signal to this service's workers goes to."""
    if not isinstance(service, CommandAdapter):
        return list(worker_pids)
    programs: list[int] = []
    for pid in worker_pids:
        try:  # the program is the worker's child; one that is starting has none yet
            programs.extend(child.pid for child in psutil.Process(pid).children())
        except psutil.Error:
            continue
    return programs


def send(pids: list[int], signum: signal.Signals) -> list[int]:
    """Signal each pid; returns those that got it (a worker may exit meanwhile)."""
    sent = []
    for pid in pids:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            continue
        sent.append(pid)
    return sent
