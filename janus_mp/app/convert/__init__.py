"""``janus-mp convert``: a supervisord.conf, a gunicorn.conf.py or a gunicorn command line into
a janus.toml, with a comment on every option that has no equivalent or means something else.
The names travel through one table, :mod:`janus_mp.core.foreign_names`, which also gives the
config file's hints for those names."""

from __future__ import annotations

from pathlib import Path

from janus_mp.app.convert import gunicorn, supervisord


def convert_file(path: str | Path) -> str:
    """The janus.toml for a supervisord config (INI) or a gunicorn config (a .py file)."""
    if str(path).endswith(".py"):
        return gunicorn.to_document(gunicorn.read_conf_py(path), str(path)).render()
    return supervisord.read(path).render()


def convert_gunicorn_command(command_line: str) -> str:
    """The janus.toml for a gunicorn command line (``gunicorn -w 4 -b :8000 app:app``)."""
    settings, unknown = gunicorn.parse_command_line(command_line)
    return gunicorn.to_document(settings, "a gunicorn command line", unknown).render()
