"""The cancellation tree's top: the supervisor's root node and one node per service.

A stopped service's node stays cancelled; starting the service again gives it a fresh node
(``open``). Workers' nodes hang under their service's node, so cancelling a service (or the
root) reaches every worker below it, and each worker's node tells its process (see
``Processes``).
"""

from __future__ import annotations

from janus_mp.core.cancel import CancellationToken, FlagFactory


class ServiceTokens:
    def __init__(self, flags: FlagFactory) -> None:
        self._flags = flags
        self.root: CancellationToken | None = None
        self._services: dict[str, CancellationToken] = {}

    def open_root(self) -> None:
        self.root = CancellationToken(self._flags, name="supervisor")

    def open(self, service: str) -> CancellationToken:
        assert self.root is not None, "open_root() first"
        old = self._services.get(service)
        if old is not None:
            old.detach()
        token = self._services[service] = self.root.child(service)
        return token

    def of(self, service: str) -> CancellationToken:
        token = self._services.get(service)
        return token if token is not None else self.open(service)

    def cancel(self, service: str, reason: str) -> None:
        token = self._services.get(service)
        if token is not None:
            token.cancel(reason)

    def cancel_root(self, reason: str) -> None:
        if self.root is not None:
            self.root.cancel(reason)

    def forget(self, service: str) -> None:
        token = self._services.pop(service, None)
        if token is not None:
            token.detach()
