"""One exchange on one connection: read the request, build the WSGI environ (PEP 3333), call
the app, send its response, then keep the connection for the next request or close it
cleanly, log it.

    RequestReader.read_head ─► (a chunked body: preread_chunked) ─► build_environ
        ─► app(environ, Response.start_response) ─► Response.send_result
        ─► keep (the next request) or close ─► access log

Who answers what:
  * a request refused while reading its head, or its chunked body's framing while that is
    read before the app runs → that status (HttpError), the app is not called; a HEAD gets
    the head of that answer only
  * a framing error met while the app reads a longer body → that status, whatever the app
    answered, as long as nothing was sent yet (the app may have turned it into its own 500)
  * an app error, or a status/header that cannot be sent → 500, logged with the worker's name
  * an app error after the head was sent → the connection closes without ending the body
    (no last chunk, or short of Content-Length): the client sees a broken response
Keeping: only when ``persist(pipelined)`` (the engine offers it; ``pipelined``: the next
request has begun arriving already), the client accepts it, the request
was read to its end without a refusal and the response went out whole; after anything else
the connection closes, so no byte of one request is ever read as the start of another.
Closing: after a refusal or with request bytes unread, the write side is shut first and what
the client still sends is drained briefly, so the kernel never answers it with a reset that
would destroy the response in flight.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_to_bytes

from janus_mp.adapters.http_access_log import AccessLog, AccessRecord
from janus_mp.adapters.http_request import (
    ClientGone,
    HttpError,
    RequestBody,
    RequestHead,
    RequestReader,
)
from janus_mp.adapters.http_response import InvalidResponse, Response, error_response
from janus_mp.adapters.http_settings import HttpSettings
from janus_mp.version import __version__

log = logging.getLogger("janus_mp.http")

#: How long, and how much, a closing connection reads of what the client still sends.
_DRAIN_SECONDS = 0.5
_DRAIN_BYTES = 4 * 2**20
SERVER_SOFTWARE = f"janus-mp/{__version__}"


@dataclass
class Connection:
    """An accepted connection and the reader its requests are read with, one after another."""

    sock: socket.socket
    peer: str  # "" for a unix socket
    peer_port: str
    reader: RequestReader


class Gateway:
    """Serves exchanges for ``app``; one instance per listening socket of a worker."""

    def __init__(self, app: Callable[..., Any], settings: HttpSettings, *, io_timeout: float,
                 server: tuple[str, str], multithread: bool, worker: str,
                 access_log: AccessLog | None, heartbeat: Callable[[], None],
                 heartbeat_interval: float | None) -> None:
        self._app = app
        self._settings = settings
        self._io_timeout = io_timeout
        self._server = server
        self._multithread = multithread
        self._worker = worker
        self._access_log = access_log
        self._heartbeat = heartbeat
        self._heartbeat_interval = heartbeat_interval

    def connection(self, sock: socket.socket, peer: str, peer_port: str) -> Connection:
        reader = RequestReader(sock, self._settings, io_timeout=self._io_timeout,
                               heartbeat=self._heartbeat,
                               heartbeat_interval=self._heartbeat_interval)
        return Connection(sock, peer, peer_port, reader)

    def serve(self, connection: Connection, began: float,
              persist: Callable[[bool], bool] = lambda pipelined: False
              ) -> tuple[int | None, bool]:
        """Answer the next request on ``connection`` (its head deadline counts from
        ``began``); (the status answered or None, whether the connection was kept open for
        the next request). A connection not kept is closed."""
        started = time.time()
        conn, reader, peer = connection.sock, connection.reader, connection.peer
        head: RequestHead | None = None
        environ: dict[str, Any] = {}
        body_bytes = 0
        keep = False
        try:
            head = reader.read_head(began)
            reader.preread_chunked()  # a malformed chunked body is refused before the app
            environ = build_environ(head, reader, peer, connection.peer_port, self._server,
                                    self._multithread)
            apply_forwarding(environ, self._settings, peer)
            client_keeps = head.keep_alive
            response = Response(conn, head.method, head.version,
                                persist=lambda: client_keeps and reader.reusable and
                                persist(reader.pipelined))
            status = self._exchange(environ, response, reader, head)
            body_bytes = response.body_bytes
            keep = response.keep_alive and response.complete and reader.reusable
        except ClientGone as exc:
            log.debug("%s: connection from %s closed: %s", self._worker, peer or "unix", exc)
            status = None
        except HttpError as exc:
            status = exc.status
            log.debug("%s: refused a request from %s: %d %s", self._worker, peer or "unix",
                      exc.status, exc.detail)
            _send_quietly(conn, error_response(exc.status, head_request=reader.method == "HEAD"),
                          self._io_timeout)
        finally:
            if keep:
                reader.next_request()
            else:
                # Unread request bytes would make close() send a reset: drain them first.
                _close(conn, lingering=reader.unread, io_timeout=self._io_timeout)
        if self._access_log is not None and status is not None:
            self._access_log.write(_record(head, environ, peer, status, body_bytes, started))
        return status, keep

    def _exchange(self, environ: dict[str, Any], response: Response, reader: RequestReader,
                  head: RequestHead) -> int:
        result: Any = None
        try:
            result = self._app(environ, response.start_response)
            if reader.error is not None:  # the app swallowed a refusal of its request body
                raise reader.error
            response.send_result(result)
            if not response.complete:
                log.error("%s: %s: the app's body was shorter than its Content-Length",
                          self._worker, head.request_line())
            return response.status or 500
        except ClientGone:
            raise
        except HttpError as exc:
            return self._fail(response, exc.status)
        except InvalidResponse as exc:
            log.error("%s: %s: response not sent: %s", self._worker, head.request_line(), exc)
            return self._fail(response, 500)
        except Exception:
            if reader.error is not None:
                return self._fail(response, reader.error.status)
            log.exception("%s: %s: error in the application", self._worker,
                          head.request_line())
            return self._fail(response, 500)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:
                    log.exception("%s: error closing the response iterable", self._worker)

    def _fail(self, response: Response, status: int) -> int:
        response.keep_alive = False  # whatever was promised, the connection ends here
        if response.head_sent:  # too late for a status: the client sees a broken body
            return response.status or status
        response.head_sent = True
        response.body_bytes = 0
        _send_quietly(response.sock, error_response(status,
                                                    head_request=response.method == "HEAD"),
                      self._io_timeout)
        return status


def build_environ(head: RequestHead, reader: RequestReader, peer: str, peer_port: str,
                  server: tuple[str, str], multithread: bool) -> dict[str, Any]:
    """The environ PEP 3333 describes: nothing invented (no CONTENT_TYPE the client did not
    send), PATH_INFO percent-decoded as latin-1 text, header names with "_" dropped (else
    ``X_Y`` would pass as ``X-Y``), repeated fields joined with ","."""
    environ: dict[str, Any] = {
        "REQUEST_METHOD": head.method,
        "SCRIPT_NAME": "",
        "PATH_INFO": unquote_to_bytes(head.path).decode("latin-1"),
        "QUERY_STRING": head.query.decode("latin-1"),
        "SERVER_NAME": server[0],
        "SERVER_PORT": server[1],
        "SERVER_PROTOCOL": f"HTTP/{head.version}",
        "SERVER_SOFTWARE": SERVER_SOFTWARE,
        "REMOTE_ADDR": peer,
        "REMOTE_PORT": peer_port,
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": RequestBody(reader),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": multithread,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "wsgi.input_terminated": True,
    }
    for raw_name, raw_value in head.headers:
        if b"_" in raw_name:
            continue
        name = raw_name.decode("latin-1").upper().replace("-", "_")
        value = raw_value.strip(b" \t").decode("latin-1")  # OWS is not part of the value
        if name in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            key = name
        elif name == "TRANSFER_ENCODING":
            continue  # decoded here: the app reads a plain body
        else:
            key = "HTTP_" + name
        environ[key] = f"{environ[key]},{value}" if key in environ else value
    return environ


def apply_forwarding(environ: dict[str, Any], settings: HttpSettings, peer: str) -> None:
    """From a trusted peer, ``Forwarded`` (else ``X-Forwarded-For``/``-Proto``) sets
    REMOTE_ADDR and wsgi.url_scheme. The last entry is used: it is the one the trusted proxy
    wrote, the ones before it came from further away, and anyone could have forged them."""
    if not settings.trusts(peer):
        return
    address: str | None = None
    scheme: str | None = None
    forwarded = environ.get("HTTP_FORWARDED")
    if forwarded:
        params: dict[str, str] = {}
        for pair in forwarded.rsplit(",", 1)[-1].split(";"):
            key, _, value = pair.strip().partition("=")
            params[key.strip().lower()] = value.strip().strip('"')
        address, scheme = params.get("for"), params.get("proto")
    else:
        if "HTTP_X_FORWARDED_FOR" in environ:
            address = environ["HTTP_X_FORWARDED_FOR"].rsplit(",", 1)[-1].strip()
        if "HTTP_X_FORWARDED_PROTO" in environ:
            scheme = environ["HTTP_X_FORWARDED_PROTO"].rsplit(",", 1)[-1].strip()
    if address:
        host = _address_only(address)
        if host is not None:
            environ["REMOTE_ADDR"] = host
            environ.pop("REMOTE_PORT", None)
    if scheme and scheme.lower() in ("http", "https"):
        environ["wsgi.url_scheme"] = scheme.lower()


def _address_only(text: str) -> str | None:
    """The IP in ``1.2.3.4``, ``1.2.3.4:80``, ``[::1]`` or ``[::1]:80``; None otherwise."""
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def _record(head: RequestHead | None, environ: dict[str, Any], peer: str, status: int,
            body_bytes: int, started: float) -> AccessRecord:
    return AccessRecord(
        remote=environ.get("REMOTE_ADDR", peer),
        request_line=head.request_line() if head else "-",
        method=head.method if head else "", path=environ.get("PATH_INFO", ""),
        query=environ.get("QUERY_STRING", ""),
        protocol=f"HTTP/{head.version}" if head else "",
        status=status, body_bytes=body_bytes, referer=environ.get("HTTP_REFERER", ""),
        user_agent=environ.get("HTTP_USER_AGENT", ""), started=started,
        duration=time.time() - started)


def _send_quietly(conn: socket.socket, data: bytes, io_timeout: float) -> None:
    try:
        conn.settimeout(io_timeout)
        conn.sendall(data)
    except OSError:
        pass


def _close(conn: socket.socket, *, lingering: bool, io_timeout: float) -> None:
    if lingering:
        try:
            conn.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + min(_DRAIN_SECONDS, io_timeout)
            drained = 0
            while drained < _DRAIN_BYTES:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                conn.settimeout(remaining)
                data = conn.recv(65536)
                if not data:
                    break
                drained += len(data)
        except OSError:
            pass
    conn.close()
