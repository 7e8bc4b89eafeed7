"""The access log: one line per answered request, off unless ``access_log`` is set.

Formats: ``common`` and ``combined`` (the NCSA/Apache layouts every log tool reads, with
client-supplied text escaped so a request cannot forge a line) and ``json`` (one object per
line). Each line is a single ``write()`` on a descriptor opened with O_APPEND, so lines of
every worker and thread land whole in one file.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class AccessRecord:
    remote: str
    request_line: str  # "-" when the request line could not be read
    method: str
    path: str
    query: str
    protocol: str
    status: int
    body_bytes: int
    referer: str
    user_agent: str
    started: float  # time.time() at accept
    duration: float  # seconds


def format_record(record: AccessRecord, style: str) -> str:
    if style == "json":
        return json.dumps({
            "time": _iso(record.started), "remote_addr": record.remote,
            "method": record.method, "path": record.path, "query": record.query,
            "protocol": record.protocol, "status": record.status,
            "bytes": record.body_bytes, "duration_ms": round(record.duration * 1000, 3),
            "referer": record.referer, "user_agent": record.user_agent, "pid": os.getpid(),
        }, ensure_ascii=True)
    when = time.strftime("%d/%b/%Y:%H:%M:%S %z", time.localtime(record.started))
    size = str(record.body_bytes) if record.body_bytes else "-"
    line = (f'{_escape(record.remote) or "-"} - - [{when}] "{_escape(record.request_line)}" '
            f"{record.status} {size}")
    if style == "combined":
        line += f' "{_escape(record.referer) or "-"}" "{_escape(record.user_agent) or "-"}"'
    return line


class AccessLog:
    """Appends formatted records to a file, or to stderr for "-"."""

    def __init__(self, target: str, style: str) -> None:
        self._style = style
        self._owned = target != "-"
        self._fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                           0o644) if self._owned else sys.stderr.fileno()

    def write(self, record: AccessRecord) -> None:
        try:
            os.write(self._fd, (format_record(record, self._style) + "\n").encode())
        except OSError:
            pass  # a full disk must not fail the request that was already answered

    def close(self) -> None:
        if self._owned:
            os.close(self._fd)


def _escape(text: str) -> str:
    """Control characters, quotes and backslashes as escapes, so one request is one line."""
    return "".join(ch if " " <= ch <= "~" and ch not in '"\\' else
                   f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else ch.encode("unicode_escape")
                   .decode() for ch in text)


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch)) + f".{int(epoch % 1 * 1000):03d}Z"
