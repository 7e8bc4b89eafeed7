"""The socket-free parts of the WSGI engine: access-log lines and forwarding headers."""

from __future__ import annotations

import json

from janus_mp.adapters.http_access_log import AccessRecord, format_record
from janus_mp.adapters.http_gateway import apply_forwarding
from janus_mp.adapters.http_settings import HttpSettings

RECORD = AccessRecord(remote="10.0.0.7", request_line='GET /a"b\x1b[31m HTTP/1.1',
                      method="GET", path='/a"b\x1b[31m', query="q=1", protocol="HTTP/1.1",
                      status=200, body_bytes=12, referer="http://r/", user_agent="ua/1",
                      started=1_700_000_000.25, duration=0.0123)


def test_common_and_combined_lines_escape_what_the_client_sent():
    common = format_record(RECORD, "common")
    assert common.startswith("10.0.0.7 - - [")
    assert common.endswith('] "GET /a\\x22b\\x1b[31m HTTP/1.1" 200 12')
    combined = format_record(RECORD, "combined")
    assert combined.endswith('200 12 "http://r/" "ua/1"')
    assert "\x1b" not in combined and "\n" not in combined


def test_json_lines():
    record = json.loads(format_record(RECORD, "json"))
    assert record["time"] == "2023-11-14T22:13:20.250Z"
    assert (record["status"], record["bytes"], record["duration_ms"]) == (200, 12, 12.3)
    assert record["path"] == '/a"b\x1b[31m' and record["remote_addr"] == "10.0.0.7"


def _environ(**headers: str) -> dict[str, object]:
    return {"REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": "5000", "wsgi.url_scheme": "http",
            **headers}


def test_forwarding_uses_the_last_hop_of_a_trusted_peer():
    settings = HttpSettings()
    environ = _environ(HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.9",
                       HTTP_X_FORWARDED_PROTO="https")
    apply_forwarding(environ, settings, "127.0.0.1")
    assert (environ["REMOTE_ADDR"], environ["wsgi.url_scheme"]) == ("203.0.113.9", "https")
    assert "REMOTE_PORT" not in environ
    environ = _environ(HTTP_FORWARDED='for=6.6.6.6, for="[2001:db8::1]:4711";proto=HTTPS',
                       HTTP_X_FORWARDED_FOR="9.9.9.9")
    apply_forwarding(environ, settings, "127.0.0.1")
    assert (environ["REMOTE_ADDR"], environ["wsgi.url_scheme"]) == ("2001:db8::1", "https")


def test_forwarding_ignored_from_others_and_garbage_ignored():
    environ = _environ(HTTP_X_FORWARDED_FOR="203.0.113.9", HTTP_X_FORWARDED_PROTO="https")
    apply_forwarding(environ, HttpSettings(), "10.1.1.1")
    assert (environ["REMOTE_ADDR"], environ["wsgi.url_scheme"]) == ("127.0.0.1", "http")
    environ = _environ(HTTP_X_FORWARDED_FOR="unknown", HTTP_X_FORWARDED_PROTO="gopher")
    apply_forwarding(environ, HttpSettings(), "127.0.0.1")
    assert (environ["REMOTE_ADDR"], environ["wsgi.url_scheme"]) == ("127.0.0.1", "http")
