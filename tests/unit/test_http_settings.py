"""HttpSettings: gunicorn's names and defaults, validation with the key's name, forwarding
trust, and the config-file keys of a wsgi service."""

from __future__ import annotations

import pytest

from janus_mp.adapters.http_settings import HTTP_KEYS, HttpSettings
from janus_mp.app.config_file import parse_config
from janus_mp.errors import ConfigError


def test_defaults_are_gunicorns_and_none_means_default():
    settings = HttpSettings.from_options(limit_request_line=None, header_timeout=None)
    assert (settings.limit_request_line, settings.limit_request_fields,
            settings.limit_request_field_size) == (4094, 100, 8190)
    assert settings.limit_request_body == 0 and settings.access_log is None
    assert settings.header_timeout == 10.0 and settings.forwarded_allow_ips == "127.0.0.1"
    assert settings.keepalive == 2.0  # gunicorn's default


@pytest.mark.parametrize("key, value", [
    ("limit_request_line", 0), ("limit_request_fields", "100"), ("limit_request_body", -1),
    ("header_timeout", 0), ("body_timeout", True), ("access_log_format", "apache"),
    ("access_log", ""), ("forwarded_allow_ips", "not-an-ip"), ("keepalive", -1),
    ("keepalive", "2")])
def test_invalid_values_name_their_key(key, value):
    with pytest.raises(ConfigError) as info:
        HttpSettings(**{key: value})
    assert info.value.key == key


def test_forwarding_trust():
    default = HttpSettings()
    assert default.trusts("127.0.0.1") and not default.trusts("10.0.0.1")
    assert default.trusts("")  # a unix-socket peer
    networks = HttpSettings(forwarded_allow_ips=["10.0.0.0/8", " 192.168.1.1 "])
    assert networks.trusts("10.2.3.4") and networks.trusts("192.168.1.1")
    assert not networks.trusts("127.0.0.1") and not networks.trusts("garbage")
    assert HttpSettings(forwarded_allow_ips="*").trusts("203.0.113.5")


def test_config_file_keys_of_a_wsgi_service():
    table = {"wsgi": "tests.http_apps:wsgi_app", "limit_request_body": 1024,
             "header_timeout": 5, "access_log": "-", "forwarded_allow_ips": ["10.0.0.1"],
             "keepalive": 5}
    entry = parse_config({"services": {"web": table}}).services[0]
    assert dict(entry.settings) == {k: v for k, v in table.items() if k != "wsgi"}
    assert set(entry.settings) <= HTTP_KEYS
    with pytest.raises(ConfigError) as info:
        parse_config({"services": {"api": {"asgi": "m:app", "access_log": "-"}}})
    assert "access_log" in str(info.value)


def test_http_settings_are_refused_for_asgi_apps():
    from janus_mp import ApiModuleAdapter
    from tests.http_apps import asgi_app, wsgi_app

    with pytest.raises(ConfigError) as info:
        ApiModuleAdapter(asgi_app, access_log="-")
    assert info.value.key == "access_log"
    adapter = ApiModuleAdapter(wsgi_app, forwarded_allow_ips=["10.0.0.1"], limit_request_body=5)
    assert adapter.http.forwarded_allow_ips == ("10.0.0.1",)
    assert adapter.http.limit_request_body == 5 and hash(adapter.http)
