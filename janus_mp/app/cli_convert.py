"""``janus-mp convert``: print the janus.toml for a supervisord or gunicorn configuration."""

from __future__ import annotations

import sys

import click

from janus_mp.errors import JanusError


@click.command()
@click.argument("config_path", metavar="[FILE]", required=False,
                type=click.Path(dir_okay=False))
@click.option("--gunicorn", "command_line", default=None, metavar="'gunicorn ARGS'",
              help="Convert this gunicorn command line instead of a file.")
def convert(config_path: str | None, command_line: str | None) -> None:
    """Print a janus.toml for FILE — a supervisord.conf, or a gunicorn.conf.py (executed, as
    gunicorn does) — or for a gunicorn command line; comments mark every option janus-mp has
    no key for or reads differently."""
    from janus_mp.app.convert import convert_file, convert_gunicorn_command

    if (config_path is None) == (command_line is None):
        _fail("give a FILE (supervisord.conf or gunicorn.conf.py) or --gunicorn 'COMMAND LINE'")
    try:
        text = (convert_file(config_path) if config_path is not None
                else convert_gunicorn_command(command_line or ""))
    except JanusError as exc:
        _fail(str(exc))
    click.echo(text, nl=False)


def _fail(message: str) -> None:
    click.echo(f"janus-mp: error: {message}", err=True)
    sys.exit(2)
