"""Turn a ``module:attr`` target into services (or a ready supervisor), with one-line errors.

Importing user code runs user code: whatever it does — raise, ``sys.exit(4)``, a
KeyboardInterrupt — becomes one :class:`ServiceLoadError` line naming the target and what it did,
never a traceback, a silent exit or a dead control thread.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

from janus_mp.errors import ServiceLoadError


def import_target(target: str) -> Any:
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise ServiceLoadError(f"target {target!r} must look like module:attribute")
    module = _import(module_name, target)
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ServiceLoadError(
                f"target {target!r}: module {module_name!r} has no attribute {attr!r}") from None
    return obj


def import_module_target(module_name: str) -> Any:
    """Import a module named on the command line or in a config file, with one-line errors."""
    return _import(module_name, module_name)


def _import(module_name: str, target: str) -> Any:
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise ServiceLoadError(f"target {target!r}: no module named {exc.name!r}") from None
        raise ServiceLoadError(f"target {target!r}: importing {module_name!r} "
                               f"{what_it_did(exc)}") from None
    except BaseException as exc:  # SystemExit and KeyboardInterrupt too: user code did it
        raise ServiceLoadError(f"target {target!r}: importing {module_name!r} "
                               f"{what_it_did(exc)}") from None


def what_it_did(exc: BaseException) -> str:
    """How user code failed, for the end of a one-line error: ``raised ValueError: bad``,
    ``called sys.exit(4)``, ``was interrupted (KeyboardInterrupt)``."""
    if isinstance(exc, SystemExit):
        return f"called sys.exit({'' if exc.code is None else repr(exc.code)})"
    if isinstance(exc, KeyboardInterrupt):
        return "was interrupted (KeyboardInterrupt)"
    text = " ".join(str(exc).split())
    return f"raised {type(exc).__name__}" + (f": {text}" if text else "")
