"""The access log: one line per answered request, off unless ``access_log`` is set.

Formats: ``common`` and ``combined`` (the NCSA/Apache layouts every log tool reads, with
client-supplied text escaped so a request cannot forge a line), ``json`` (one object per
line), or a format string of gunicorn's atoms (``%(h)s %(r)s %(s)s %(M)s``), every atom escaped
the same way. Each line is a single ``write()`` on a descriptor opened with O_APPEND, so lines of
every worker and thread land whole in one file.
"""

from __future__ import annotations

import json
import os
import re
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


#: gunicorn's access-log atoms janus-mp's engine knows (request and response headers by name,
#: ``%({name}i)s``, and the environ are not kept in a record).
ATOMS = {
    "h": "remote address", "l": "'-'", "u": "user name ('-')", "t": "date of the request",
    "r": "request line", "m": "method", "U": "URL path", "q": "query string",
    "H": "protocol", "s": "status", "B": "response body bytes", "b": "response body bytes or '-'",
    "f": "referer", "a": "user agent", "T": "request seconds", "M": "request milliseconds",
    "D": "request microseconds", "L": "request seconds, decimal", "p": "worker pid",
}
_ATOM = re.compile(r"%\((.*?)\)s")


def check_format(style: str) -> str | None:
    """Why ``style`` is no access-log format (a layout name or a string of gunicorn's atoms),
    or None when it is one."""
    if style in ("common", "combined", "json"):
        return None
    if "%(" not in style:
        return "must be common, combined, json or a format string such as '%(h)s %(r)s %(s)s'"
    unknown = [atom for atom in _ATOM.findall(style) if atom not in ATOMS]
    if unknown:
        return (f"unknown atom %({unknown[0]})s (known: "
                f"{', '.join(f'%({a})s' for a in ATOMS)})")
    try:
        style % dict.fromkeys(ATOMS, "")
    except (ValueError, TypeError, KeyError) as exc:
        return f"is not a format string: {exc} (write %% for a literal %)"
    return None


def format_record(record: AccessRecord, style: str) -> str:
    if style not in ("common", "combined", "json"):
        return style % _atoms(record)
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


def _atoms(record: AccessRecord) -> dict[str, str]:
    """Every atom as text, client-supplied ones escaped: a request cannot forge a line."""
    when = time.strftime("[%d/%b/%Y:%H:%M:%S %z]", time.localtime(record.started))
    return {
        "h": _escape(record.remote) or "-", "l": "-", "u": "-", "t": when,
        "r": _escape(record.request_line), "m": _escape(record.method),
        "U": _escape(record.path), "q": _escape(record.query), "H": _escape(record.protocol),
        "s": str(record.status), "B": str(record.body_bytes),
        "b": str(record.body_bytes) if record.body_bytes else "-",
        "f": _escape(record.referer) or "-", "a": _escape(record.user_agent) or "-",
        "T": str(int(record.duration)), "M": str(int(record.duration * 1000)),
        "D": str(int(record.duration * 1_000_000)), "L": f"{record.duration:.6f}",
        "p": f"<{os.getpid()}>",
    }


def _escape(text: str) -> str:
    """Control characters, quotes and backslashes as escapes, so one request is one line."""
    return "".join(ch if " " <= ch <= "~" and ch not in '"\\' else
                   f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else ch.encode("unicode_escape")
                   .decode() for ch in text)


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch)) + f".{int(epoch % 1 * 1000):03d}Z"
