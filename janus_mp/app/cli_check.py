"""``janus-mp check``: validate a config file without starting anything."""

from __future__ import annotations

import click

from janus_mp.app.cli_exit import exit_with, fail
from janus_mp.errors import JanusError


@click.command()
@click.argument("file_argument", metavar="[FILE]", required=False,
                type=click.Path(dir_okay=False))
@click.option("-c", "--config", "config_option", type=click.Path(dir_okay=False), default=None,
              help="The config file, as `run -c FILE` takes it.")
@click.option("--imports/--no-imports", default=True, show_default=True,
              help="Also import every service target.")
def check(file_argument: str | None, config_option: str | None, imports: bool) -> None:
    """Validate a config file (FILE or -c FILE) without starting anything: refuses what
    `run -c FILE` would refuse (ports are not bound)."""
    from janus_mp.app import build

    if (file_argument is None) == (config_option is None):
        fail("check: give the config file once, as FILE or -c FILE")
    config_path = file_argument or config_option or ""

    try:
        names, warnings = build.check(config_path, imports=imports)
    except JanusError as exc:
        fail(str(exc))
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)
    click.echo(f"{config_path}: ok ({', '.join(names) or 'no services'})")
    exit_with(0, None)
