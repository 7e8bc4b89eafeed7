"""systemd's notify protocol (sd_notify), spoken directly: one datagram per message.

With ``NOTIFY_SOCKET`` set (Type=notify units), the supervisor sends READY=1 once every service
is ready, STATUS= lines when the summary changes, WATCHDOG=1 at half of WATCHDOG_USEC from its
own loop (so a wedged loop misses it and systemd acts), and STOPPING=1 on shutdown.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger("janus_mp.systemd")


class SystemdNotifier:
    def __init__(self, address: str) -> None:
        self.address = "\0" + address[1:] if address.startswith("@") else address
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @classmethod
    def from_env(cls) -> SystemdNotifier | None:
        address = os.environ.get("NOTIFY_SOCKET")
        return cls(address) if address else None

    def notify(self, **fields: object) -> bool:
        message = "\n".join(f"{key.upper()}={value}" for key, value in fields.items())
        try:
            self._sock.sendto(message.encode(), self.address)
            return True
        except OSError as exc:
            log.warning("sd_notify to %s failed: %s", self.address, exc)
            return False

    @staticmethod
    def watchdog_interval() -> float | None:
        """Half of WATCHDOG_USEC, if the watchdog is on and meant for this process."""
        usec = os.environ.get("WATCHDOG_USEC")
        pid = os.environ.get("WATCHDOG_PID")
        if not usec or (pid and pid != str(os.getpid())):
            return None
        try:
            return int(usec) / 1e6 / 2
        except ValueError:
            return None

    def close(self) -> None:
        self._sock.close()
