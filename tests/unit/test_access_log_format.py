"""Access-log format strings with gunicorn's atoms: every atom a client controls is escaped, so
nothing sent can add a line or a terminal escape; unknown atoms are refused when configured."""

from __future__ import annotations

import dataclasses
import os

import pytest

from janus_mp.adapters.http_access_log import ATOMS, AccessRecord, check_format, format_record
from janus_mp.adapters.http_settings import HttpSettings
from janus_mp.errors import ConfigError

RECORD = AccessRecord(remote="10.0.0.7", request_line="GET /x?q=1 HTTP/1.1", method="GET",
                      path="/x", query="q=1", protocol="HTTP/1.1", status=404, body_bytes=0,
                      referer="", user_agent="curl/8", started=1_700_000_000.25,
                      duration=0.0123)


def test_gunicorn_atoms():
    line = format_record(RECORD, '%(h)s %(l)s %(u)s "%(r)s" %(s)s %(b)s %(B)s %(M)s %(D)s '
                                 '%(m)s %(U)s %(q)s %(H)s "%(f)s" "%(a)s" %(p)s %(T)s %(L)s')
    assert line == (f'10.0.0.7 - - "GET /x?q=1 HTTP/1.1" 404 - 0 12 12300 GET /x q=1 HTTP/1.1 '
                    f'"-" "curl/8" <{os.getpid()}> 0 0.012300')
    assert format_record(RECORD, "%(t)s").startswith("[14/Nov/2023:")


@pytest.mark.parametrize("field", ["request_line", "path", "query", "user_agent", "referer",
                                   "method", "protocol", "remote"])
def test_nothing_a_client_sends_injects_bytes(field):
    evil = 'x"\n127.0.0.1 - - [forged] "GET / HTTP/1.1" 200\r\x1b[2J\\\x00é'
    record = dataclasses.replace(RECORD, **{field: evil})
    line = format_record(record, " ".join(f"%({atom})s" for atom in ATOMS))
    assert not any(ch in line for ch in '\n\r\x1b\x00"'), line
    assert "\\x0a" in line and "\\x22" in line


@pytest.mark.parametrize(("style", "message"), [
    ("%(h)s %({x-request-id}i)s", "unknown atom %({x-request-id}i)s"),
    ("%(zz)s", "unknown atom %(zz)s"),
    ("%(h)s 100%", "is not a format string"),
    ("fancy", "must be common, combined, json or a format string"),
])
def test_bad_formats_are_refused_with_the_reason(style, message):
    assert message in (check_format(style) or "")
    with pytest.raises(ConfigError, match="access_log_format"):
        HttpSettings(access_log_format=style)


def test_layout_names_and_atom_strings_are_accepted():
    for style in ("common", "combined", "json", "%(h)s %(r)s %(s)s", "100%% %(s)s"):
        assert check_format(style) is None, style
        HttpSettings(access_log_format=style)
