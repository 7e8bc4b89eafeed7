"""Real frameworks behind the WSGI engine, driven by real clients: a Flask app and a Django
project under one supervisor, exercised with requests, httpx and curl."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import time

import httpx
import pytest
import requests

from tests.harness import SupervisorProcess
from tests.support import wait_until

pytestmark = [pytest.mark.timeout(60), pytest.mark.shares_supervisor]

SCENARIO = """
from janus_mp import *
CONFIG = SupervisorConfig(shutdown_timeout=10.0, kill_timeout=2.0)

def build(sup):
    sup.spawn_service(ApiModuleAdapter("tests.flask_app:app", bind="127.0.0.1:0",
                                       name="flask"), SpawnOptions(workers=2))
    sup.spawn_service(ApiModuleAdapter("tests.djsite.wsgi:application", bind="127.0.0.2:0",
                                       name="django"), SpawnOptions(workers=2))
"""

APPS = ["flask", "django"]


@pytest.fixture(scope="module")
def sup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("apps")
    with SupervisorProcess(tmp, SCENARIO) as process:
        wait_until(lambda: all(process.service(name)["ready"] == 2 for name in APPS),
                   timeout=30)
        yield process


def _url(sup: SupervisorProcess, app: str, path: str) -> str:
    return f"http://{sup.listening(app)[0]}{path}"


def _raw(sup: SupervisorProcess, app: str, request: bytes) -> bytes:
    host, _, port = sup.listening(app)[0].rpartition(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(request)
        conn.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    return data


@pytest.mark.parametrize("app", APPS)
def test_get_and_head(sup, app):
    response = requests.get(_url(sup, app, "/"), timeout=10)
    assert response.status_code == 200 and response.text == f"hello from {app}\n"
    assert response.headers["Connection"] == "close" and "Server" not in response.headers
    head = _raw(sup, app, b"HEAD / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    status_line, _, rest = head.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 200 OK"
    headers, _, body = rest.partition(b"\r\n\r\n")
    assert body == b"" and b"Transfer-Encoding" not in headers
    if "Content-Length" in response.headers:  # Flask's list: a length; Django's object: none
        assert f"Content-Length: {len(response.content)}".encode() in headers


@pytest.mark.parametrize("app", APPS)
def test_streaming_and_a_stream_failing_half_way(sup, app):
    with httpx.Client(timeout=10) as client:
        response = client.get(_url(sup, app, "/stream"))
        assert response.text == "part 0\npart 1\npart 2\n"
        assert response.headers["transfer-encoding"] == "chunked"
        with pytest.raises(httpx.RemoteProtocolError):
            client.get(_url(sup, app, "/stream-fail"))
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        requests.get(_url(sup, app, "/stream-fail"), timeout=10)


def test_a_chunked_upload_reaches_flask(sup):
    """Flask (werkzeug) reads a body without Content-Length thanks to wsgi.input_terminated.
    Django does not: it reads CONTENT_LENGTH bytes only, under every server."""
    payload = os.urandom(300_000)
    parts = (payload[i:i + 65536] for i in range(0, len(payload), 65536))
    response = requests.post(_url(sup, "flask", "/upload"), data=parts, timeout=10)
    assert response.json() == {"length": len(payload),
                               "sha256": hashlib.sha256(payload).hexdigest()}
    response = httpx.post(_url(sup, "flask", "/upload"), content=iter([b"abc", b"def"]),
                          timeout=10)
    assert response.json()["length"] == 6


@pytest.mark.parametrize("app", APPS)
@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_upload_gets_100_continue(sup, app, tmp_path):
    payload = os.urandom(5 * 2**20)
    upload = tmp_path / "upload.bin"
    upload.write_bytes(payload)
    began = time.monotonic()
    # A long --expect100-timeout: without an interim 100, curl would visibly wait 10 s.
    result = subprocess.run(["curl", "-sS", "-v", "--expect100-timeout", "10",
                             "-H", "Expect: 100-continue", "--data-binary", f"@{upload}",
                             _url(sup, app, "/upload")], capture_output=True, text=True,
                            timeout=30)
    elapsed = time.monotonic() - began
    assert result.returncode == 0, result.stderr
    assert "HTTP/1.1 100 Continue" in result.stderr
    assert elapsed < 5, f"curl waited {elapsed:.1f} s"
    assert json.loads(result.stdout) == {"length": len(payload),
                                         "sha256": hashlib.sha256(payload).hexdigest()}


@pytest.mark.parametrize("app", APPS)
def test_an_app_set_connection_header_is_dropped_not_a_500(sup, app):
    response = requests.get(_url(sup, app, "/close"), timeout=10)
    assert response.status_code == 200 and response.text == "closing\n"
    assert response.headers["Connection"] == "close"  # ours, once
    raw = _raw(sup, app, b"GET /close HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert raw.lower().count(b"\r\nconnection:") == 1
