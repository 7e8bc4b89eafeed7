"""The control socket's wire format, one request and one reply: a JSON object on one line,
bounded in size, time and nesting; replies are one JSON line each (see control.py).

Parsing is the standard library's ``json``: nothing here interprets bytes by hand except
counting brackets, to refuse a request nested deep enough to make the parser recurse.
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any

from janus_mp.errors import JanusError

MAX_REQUEST = 64 * 1024
#: A request must arrive whole within this (not per read: a client dripping a byte a second
#: would otherwise hold its connection for ever).
READ_DEADLINE = 2.0
#: JSON nested deeper than this is refused before parsing (Python's parser would recurse).
MAX_NESTING = 64


def read_request(conn: socket.socket) -> dict[str, Any]:
    deadline = time.monotonic() + READ_DEADLINE
    data = b""
    while b"\n" not in data:
        remaining = deadline - time.monotonic()
        try:
            if remaining <= 0:
                raise TimeoutError
            conn.settimeout(remaining)
            chunk = conn.recv(4096)
        except TimeoutError:
            raise ValueError("request not received in time") from None
        if not chunk:
            break
        data += chunk
        if len(data) > MAX_REQUEST:
            raise ValueError(f"request larger than {MAX_REQUEST} bytes")
    line = data.split(b"\n", 1)[0]
    if nesting(line) > MAX_NESTING:
        raise ValueError(f"request nests deeper than {MAX_NESTING} levels")
    try:
        request = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise ValueError("request is not a JSON object on one line") from None
    if not isinstance(request, dict) or not isinstance(request.get("command"), str):
        raise ValueError('request must be a JSON object with a "command" string')
    return request


def nesting(line: bytes) -> int:
    """An upper bound of the JSON's nesting (brackets inside strings count too: a request
    that only looks deep is refused as well, which costs nothing real)."""
    depth = deepest = 0
    for byte in line.translate(None, _NOT_BRACKETS):
        depth += 1 if byte in b"[{" else -1
        deepest = max(deepest, depth)
    return deepest


_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def send(conn: socket.socket, obj: Any) -> None:
    conn.sendall(json.dumps(obj, default=str).encode() + b"\n")


def one_line(exc: BaseException) -> str:
    if isinstance(exc, KeyError) and not isinstance(exc, JanusError) and exc.args:
        text = str(exc.args[0])  # KeyError's own str() adds quotes
    else:
        text = str(exc)
    return " ".join(text.split()) or type(exc).__name__
