"""The pid file: written whole or not at all (tmp + rename), removed only if still ours.

An upgrade's new supervisor rewrites it once it serves: readers never see an empty or half
written file, and the old supervisor, finding a file that is not the one it wrote, leaves it.
"""

from __future__ import annotations

import os

from janus_mp.errors import ConfigError
from janus_mp.safe_paths import identity, open_no_follow, unlink_if_same


class PidFile:
    def __init__(self, path: str) -> None:
        self.path = path
        self._written: tuple[int, int] | None = None

    def write(self) -> None:
        """Put our pid there atomically; ConfigError (one line) if it cannot be done."""
        if os.path.islink(self.path):  # rename would replace the link: refuse it the same way
            raise ConfigError("", f"{self.path} is a symbolic link: refusing to write through it")
        tmp = f"{self.path}.{os.getpid()}.tmp"
        fd = open_no_follow(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(f"{os.getpid()}\n")
            os.replace(tmp, self.path)
        except OSError as exc:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise ConfigError("", f"{self.path}: {exc.strerror or exc}") from None
        self._written = identity(self.path)

    def remove(self) -> None:
        unlink_if_same(self.path, self._written)  # never a file put there since
