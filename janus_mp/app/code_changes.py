"""Which services' code changed on disk since their workers started: what `reload` acts on.

A service's code is the package its target lives in: every module loaded under the top-level
name of the service's class, app, function or target (``myapp`` for ``myapp.web:app``), found
in ``sys.modules``, plus the target module's own file. Each file is fingerprinted by
(mtime_ns, size) when the workers start from it; a reload that finds a fingerprint changed
rolling-restarts that service — under spawn and forkserver, where a new worker imports the code
again. Under fork a worker is a copy of the supervisor, old modules and all: new code needs
`janus-mp upgrade`, and the reload says so.

Limits: code the service imports from another top-level package is not followed; a file
changed and changed back within one mtime tick and at the same size looks unchanged.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
from collections.abc import Iterable
from typing import Any

from janus_mp.runtime.supervisor import JanusSupervisor

log = logging.getLogger("janus_mp.reload")

Fingerprint = dict[str, tuple[int, int]]  # file → (mtime_ns, size); (-1, -1) when gone


class CodeFingerprints:
    def __init__(self, start_method: str) -> None:
        #: Whether a rolling restart picks new code up (a new worker imports it again).
        self.reimports = start_method in ("spawn", "forkserver")
        self._seen: dict[str, Fingerprint] = {}

    def record(self, name: str, service: object) -> None:
        """Fingerprint the files ``name``'s workers start from now."""
        self._seen[name] = _fingerprint(service_files(service))

    def changed(self, name: str, service: object) -> list[str]:
        """Files of ``name`` that changed since recorded (or appeared, or vanished)."""
        before = self._seen.get(name, {})
        now = _fingerprint(set(before) | service_files(service))
        return sorted(path for path in now if before.get(path) != now[path])

    def apply(self, sup: JanusSupervisor, services: Iterable[tuple[str, Any]]) -> str:
        """After a reload: rolling-restart the services whose code changed (spawn,
        forkserver), or say that fork needs an upgrade; the summary's tail."""
        services = list(services)
        for name, service in services:
            if name not in self._seen:  # new in this reload: its workers start on this code
                self.record(name, service)
        changed = {name: files for name, service in services
                   if (files := self.changed(name, service))}
        if not changed:
            return ""
        names = ", ".join(sorted(changed))
        for name, files in sorted(changed.items()):
            log.info("%s: code changed (%s)", name, ", ".join(os.path.basename(f) for f in files))
        if not self.reimports:
            return (f"; code changed in {names}: under the fork start method new code needs "
                    "`janus-mp upgrade`")
        for name, service in services:
            if name in changed:
                sup.restart_service(name)
                self.record(name, service)
        return f"; code changed, rolling restart of {names}"


def service_files(service: object) -> set[str]:
    """The source files of the package a service's code lives in (see the module doc)."""
    modules = set()
    for part in (service, getattr(service, "app", None), getattr(service, "fn", None),
                 getattr(service, "target", None)):
        if isinstance(part, str):
            modules.add(part.partition(":")[0])
        elif part is not None:
            name = getattr(part, "__module__", None) or type(part).__module__
            modules.add(name)
    modules = {m for m in modules if m and not m.startswith(("janus_mp", "builtins"))}
    tops = {m.split(".")[0] for m in modules}
    files = set()
    for name, module in list(sys.modules.items()):
        if name.split(".")[0] in tops:
            path = getattr(module, "__file__", None)
            if isinstance(path, str):
                files.add(path)
    for name in modules - set(sys.modules):
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            continue
        if spec is not None and spec.origin and os.path.isfile(spec.origin):
            files.add(spec.origin)
    return files


def _fingerprint(files: Iterable[str]) -> Fingerprint:
    prints: Fingerprint = {}
    for path in files:
        try:
            info = os.stat(path)
            prints[path] = (info.st_mtime_ns, info.st_size)
        except OSError:
            prints[path] = (-1, -1)
    return prints
