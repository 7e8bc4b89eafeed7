"""Files the supervisor creates at paths a user or config names: never through a symlink,
never removing what is not its own.

The rule: a file the supervisor writes (pid file, log file) is opened with O_NOFOLLOW, so a
symlink planted at that path — in /tmp or any directory others can write — cannot redirect the
write to another file; a file it removes at exit (pid file, control socket, unix listener) is
removed only if it is still the one it created (same inode, checked with lstat). Directories it
creates for itself are 0700, and a run directory someone else owns or can write is refused.
"""

from __future__ import annotations

import os
import socket
import stat

from janus_mp.errors import ConfigError


def open_no_follow(path: str, flags: int, mode: int = 0o644) -> int:
    """os.open that refuses a symlink at ``path`` with a one-line ConfigError."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    except OSError as exc:
        if os.path.islink(path):
            raise ConfigError("", f"{path} is a symbolic link: refusing to write through it") \
                from None
        raise ConfigError("", f"{path}: {exc.strerror or exc}") from None


def identity(path: str) -> tuple[int, int] | None:
    """(device, inode) of the file at ``path`` itself (not a symlink's target), or None."""
    try:
        info = os.lstat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino


def unlink_if_same(path: str, ours: tuple[int, int] | None) -> bool:
    """Remove ``path`` only if it is still the file we created."""
    if ours is None or identity(path) != ours:
        return False
    try:
        os.unlink(path)
        return True
    except OSError:
        return False


def check_private_directory(path: str, key: str) -> None:
    """A directory we keep sockets in must be ours and closed to others: anyone who can write
    it can swap our socket for theirs."""
    try:
        info = os.lstat(path)
    except OSError as exc:
        raise ConfigError(key, f"{path}: {exc.strerror or exc}") from None
    if not stat.S_ISDIR(info.st_mode):
        raise ConfigError(key, f"{path} is not a directory")
    if info.st_uid != os.getuid():
        raise ConfigError(key, f"{path} is owned by uid {info.st_uid}, not by us "
                               f"(uid {os.getuid()}): refusing to use it")
    if info.st_mode & 0o022:
        raise ConfigError(key, f"{path} is writable by others (mode "
                               f"{stat.S_IMODE(info.st_mode):o}): refusing to use it")


def reclaim_socket_path(path: str) -> str:
    """Make ``path`` free for a unix socket's bind, removing only a socket nobody listens on
    (left by a killed process). Returns "free", "reclaimed", "not a socket" (something else
    is there: not ours to delete) or "in use" (a live process listens on it)."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return "free"
    if not stat.S_ISSOCK(info.st_mode):
        return "not a socket"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(path)
        except (ConnectionRefusedError, FileNotFoundError):
            os.unlink(path)
            return "reclaimed"
        except OSError:
            return "free"  # cannot tell: let bind() report what is wrong
    return "in use"
