"""Adapters: bring code that was not written for janus-mp under supervision.

- :class:`ModuleAdapter` — an object with ``start()``/``stop()`` or ``run()``/``close()``, a
  module with ``main()``, or a plain callable; its stop is wired to the worker's node of the
  cancellation tree and its exceptions are mapped to exit codes.
- :class:`ApiModuleAdapter` — an HTTP application (WSGI or ASGI) served by every worker of the
  pool from one listening socket the supervisor binds.
- :class:`CommandAdapter` — an external program, like a supervisord ``[program]``.
"""

from __future__ import annotations

from janus_mp.adapters.api import ApiModuleAdapter
from janus_mp.adapters.command import CommandAdapter
from janus_mp.adapters.module import ModuleAdapter

__all__ = ["ApiModuleAdapter", "CommandAdapter", "ModuleAdapter"]
