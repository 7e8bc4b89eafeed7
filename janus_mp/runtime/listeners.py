"""Listening sockets the supervisor binds once and every worker of a pool accepts on.

Binding in the supervisor (before any worker starts) is what lets one port spread over all
cores: the kernel hands each new connection to whichever worker is waiting in ``accept``.
The sockets outlive worker restarts, rolling restarts and a reload that keeps the address, so
a restart never refuses a connection; they close when their service is removed or the
supervisor exits.

Addresses: ``HOST:PORT`` (``[::1]:8000`` for IPv6; a bare ``:PORT`` or ``PORT`` means
127.0.0.1 — loopback unless told otherwise), ``unix:/path/to.sock`` and ``fd://N`` (a socket
inherited from whoever started us, e.g. systemd socket activation).

Upgrades (:mod:`janus_mp.app.upgrade`): the old supervisor passes its listening sockets to the
new one as inherited fds; the new one *adopts* them under the address text the service asks for
(``adopt``), so the port is never closed and nothing is bound twice. A set whose sockets were
handed over never unlinks a unix socket's file: the next supervisor listens on it.
"""

from __future__ import annotations

import socket

from janus_mp.addresses import DEFAULT_BACKLOG, BindAddress, host_port, parse_bind
from janus_mp.errors import JanusError
from janus_mp.safe_paths import identity, reclaim_socket_path, unlink_if_same


def bind_socket(address: BindAddress, backlog: int = DEFAULT_BACKLOG) -> socket.socket:
    """Bind and listen; raise JanusError with a one-line reason if the address is refused."""
    try:
        if address.kind == "fd":
            sock = socket.socket(fileno=address.fd)
            if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 0:
                sock.detach()
                raise JanusError(f"cannot bind {address.text}: fd {address.fd} is not a "
                                 "listening socket")
        elif address.kind == "unix":
            refusal = _UNIX_REFUSALS.get(reclaim_socket_path(address.path))
            if refusal:
                raise JanusError(f"cannot bind {address.text}: {refusal}")
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.bind(address.path)
                sock.listen(backlog)
            except OSError:
                sock.close()
                raise
        else:
            sock = _bind_tcp(address, backlog)
    except JanusError:
        raise
    except OSError as exc:
        raise JanusError(f"cannot bind {address.text}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)  # workers started by spawn/forkserver get it passed explicitly
    return sock


def close_socket(address: BindAddress, sock: socket.socket,
                 ours: tuple[int, int] | None = None) -> None:
    """Close a listener; a unix socket's file goes too, if it is still the one we bound."""
    sock.close()
    if address.kind == "unix":
        unlink_if_same(address.path, ours)


def bound_address(sock: socket.socket) -> str:
    """What a socket is actually bound to (the real port when 0 was asked)."""
    name = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        return f"unix:{name}"
    return host_port(name[0], name[1])


_UNIX_REFUSALS = {"not a socket": "the path exists and is not a socket",
                  "in use": "another process is listening on it"}


def _bind_tcp(address: BindAddress, backlog: int) -> socket.socket:
    infos = socket.getaddrinfo(address.host, address.port, type=socket.SOCK_STREAM,
                               flags=socket.AI_PASSIVE)
    last: OSError | None = None
    for family, kind, proto, _name, sockaddr in infos:
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(sockaddr)
            sock.listen(backlog)
            return sock
        except OSError as exc:
            sock.close()
            last = exc
    raise last or OSError(f"no address found for {address.host!r}")


_Bound = tuple[BindAddress, socket.socket, "tuple[int, int] | None"]


class ListenerSet:
    """The supervisor's listening sockets, by service; used from the loop thread only.

    Binding the same address again for the same service (a reload that kept it) returns the
    socket already bound, so no connection is refused across a reload.
    """

    def __init__(self) -> None:
        #: service → address text → (address, socket, identity of a unix socket's file)
        self._by_service: dict[str, dict[str, _Bound]] = {}
        #: address text → inherited listening fd, taken by the first bind of that address
        self._inherited: dict[str, int] = {}
        self._handed_over = False

    def adopt(self, inherited: dict[str, int]) -> None:
        """Use these inherited listening fds instead of binding their addresses."""
        self._inherited.update(inherited)

    def close_unadopted(self) -> list[str]:
        """Close inherited sockets no service asked for (the new config dropped them): a port
        nobody accepts on must not stay open. Returns their addresses."""
        dropped = sorted(self._inherited)
        for fd in self._inherited.values():
            socket.socket(fileno=fd).close()
        self._inherited.clear()
        return dropped

    def by_address(self) -> dict[str, int]:
        """Every listening socket's fd by the address text it was asked for (for a handover)."""
        return {text: entry[1].fileno() for bound in self._by_service.values()
                for text, entry in bound.items()}

    def hand_over(self) -> None:
        """The sockets now belong to the next supervisor too: closing ours later must not
        remove a unix socket's file."""
        self._handed_over = True

    def bind(self, service: str, addresses: tuple[str, ...],
             backlog: int = DEFAULT_BACKLOG) -> tuple[socket.socket, ...]:
        """Bind what ``service`` asks for (all or nothing); close what it no longer asks for."""
        parsed = [parse_bind(text, f"{service}.bind") for text in addresses]
        current = self._by_service.get(service, {})
        for address in parsed:
            owner = self._owner(address.text)
            if owner is not None and owner != service:
                raise JanusError(f"service {service!r}: {address.text} is already bound by "
                                 f"service {owner!r}")
        fresh: dict[str, _Bound] = {}
        try:
            for address in parsed:
                if address.text in current or address.text in fresh:
                    continue
                inherited = self._inherited.pop(address.text, None)
                if inherited is not None:
                    sock = bind_socket(BindAddress("fd", fd=inherited), backlog)
                else:
                    sock = bind_socket(address, backlog)
                ours = identity(address.path) if address.kind == "unix" else None
                fresh[address.text] = (address, sock, ours)
        except JanusError as exc:
            for bound in fresh.values():
                close_socket(*bound)
            raise JanusError(f"service {service!r}: {exc}") from None
        kept = {text: current[text] for text in (a.text for a in parsed) if text in current}
        for text, bound in current.items():
            if text not in kept:
                self._close(bound)
        result = {**kept, **fresh}
        ordered = {a.text: result[a.text] for a in parsed}
        if ordered:
            self._by_service[service] = ordered
        else:
            self._by_service.pop(service, None)
        return tuple(bound[1] for bound in ordered.values())

    def sockets(self, service: str) -> tuple[socket.socket, ...]:
        return tuple(bound[1] for bound in self._by_service.get(service, {}).values())

    def addresses(self, service: str) -> tuple[str, ...]:
        return tuple(bound_address(sock) for sock in self.sockets(service))

    def fds_except(self, service: str) -> list[int]:
        """Other services' listeners: a worker must not keep them (it would hold their port)."""
        return [entry[1].fileno() for name, bound in self._by_service.items() if name != service
                for entry in bound.values()]

    def release(self, service: str) -> None:
        for bound in self._by_service.pop(service, {}).values():
            self._close(bound)

    def close(self) -> None:
        for service in list(self._by_service):
            self.release(service)
        self.close_unadopted()

    def _close(self, bound: _Bound) -> None:
        address, sock, ours = bound
        close_socket(address, sock, None if self._handed_over else ours)

    def _owner(self, text: str) -> str | None:
        for name, bound in self._by_service.items():
            if text in bound:
                return name
        return None
