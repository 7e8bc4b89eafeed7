"""An unknown key that is a gunicorn or supervisord name says what janus-mp calls it, from the
same table `janus-mp convert` reads."""

from __future__ import annotations

from dataclasses import fields

import pytest

from janus_mp.adapters.http_settings import HTTP_KEYS
from janus_mp.app.config_file import KINDS, PROCESS_KEYS, parse_config
from janus_mp.core.backoff import BackoffConfig
from janus_mp.core.config import SpawnOptions, SupervisorConfig
from janus_mp.core.foreign_names import GUNICORN_NAMES, SUPERVISORD_NAMES, foreign_hint
from janus_mp.errors import ConfigError

SERVICE_KEYS = ({f.name for f in fields(SpawnOptions)} | set(KINDS) | set().union(*KINDS.values())
                | PROCESS_KEYS | HTTP_KEYS)


def _error(table: dict[str, object]) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config({"services": {"web": {"wsgi": "app:app", **table}}})
    return str(caught.value)


@pytest.mark.parametrize(("key", "value", "says"), [
    ("timeout", 30, "gunicorn's timeout is janus-mp's watchdog_timeout"),
    ("graceful_timeout", 30, "gunicorn's graceful_timeout is janus-mp's stop_timeout"),
    ("startsecs", 1, "supervisord's startsecs is janus-mp's ready_after"),
    ("exitcodes", [0], "supervisord's exitcodes is janus-mp's success_codes"),
    ("priority", 5, "supervisord's priority is janus-mp's start_order"),
    ("stopwaitsecs", 5, "supervisord's stopwaitsecs is janus-mp's stop_timeout"),
    ("directory", "/tmp", "supervisord's directory is janus-mp's cwd"),
    ("environment", "A=1", "supervisord's environment is janus-mp's env"),
    ("stdout_logfile", "x.log", "is janus-mp's [supervisor] log_dir"),
    ("preload_app", True, "gunicorn's preload_app has no janus-mp key"),
])
def test_foreign_name_points_at_the_janus_concept(key: str, value: object, says: str) -> None:
    message = _error({key: value})
    assert message.startswith(f"services.web.{key}: unknown key (")
    assert says in message
    assert "did you mean" not in message  # not the look-alike (timeout -> stop_timeout)


def test_exitcodes_warns_it_is_not_exit_codes() -> None:
    assert "not exit_codes" in _error({"exitcodes": [0, 2]})


def test_plain_typo_still_gets_did_you_mean() -> None:
    assert "did you mean 'workers'?" in _error({"workerz": 2})


def test_every_named_janus_key_exists() -> None:
    """A row may only point at a key janus-mp accepts: the hint must never send a user to
    another unknown key."""
    supervisor_keys = {f.name for f in fields(SupervisorConfig)}
    backoff_keys = {f.name for f in fields(BackoffConfig)}
    for row in (*GUNICORN_NAMES.values(), *SUPERVISORD_NAMES.values()):
        if row.key is None:
            assert row.note, row
        elif row.key.startswith("supervisor."):
            assert row.key.removeprefix("supervisor.") in supervisor_keys, row
        elif row.key.startswith("backoff."):
            assert row.key.removeprefix("backoff.") in backoff_keys, row
        else:
            assert row.key in SERVICE_KEYS, row


def test_unknown_to_both_tools_has_no_hint() -> None:
    assert foreign_hint("workerz") is None
