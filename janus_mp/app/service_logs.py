"""Where the workers' captured output goes: per-service log files, recent lines, followers.

    output capture's sink thread ──► ServiceLogs.write(source, lines)
                                        ├─► log_dir/NAME.log (rotated by size), or the
                                        │   supervisor's own log when there is no log_dir
                                        ├─► the last RECENT lines of each service (`logs -n`)
                                        └─► each follower's bounded buffer (`logs -f`): a slow
                                            follower loses lines and is told how many

Everything here runs in the capture's sink thread (or a control connection's thread), never in
the supervision loop. Files are written in batches of whole lines, each batch one record of a
RotatingFileHandler, so a rotation falls between lines and a file never passes
``log_max_bytes`` by more than one batch (``_BATCH`` bytes, or less for small limits).
Followers read from memory, not from the files, so a rotation never interrupts them.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import logging.handlers
import os
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

from janus_mp.errors import ConfigError, JanusError
from janus_mp.runtime.output_capture import OutputSource, decode_line, printable
from janus_mp.safe_paths import open_no_follow

#: Recent lines kept per service for `janus-mp logs` (and for all services together).
RECENT = 500
#: Lines a follower may have waiting; past that it loses lines (and is told).
FOLLOWER_BUFFER = 5000
#: Followers at once (each holds a control connection and a thread).
MAX_FOLLOWERS = 16
#: Bytes of lines written to a file as one record.
_BATCH = 64 * 1024

output_log = logging.getLogger("janus_mp.output")

#: Where the supervisor's own log lines are kept (`logs --supervisor`): no service can have
#: this name (service names are letters, digits, '-', '_' and '.').
SUPERVISOR = ":supervisor"


def format_time(when: float) -> str:
    """The supervisor log's own timestamp layout (logging's asctime)."""
    whole = int(when)
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(whole)) + \
        f",{int((when - whole) * 1000):03d}"


def iso_time(when: float) -> str:
    return datetime.datetime.fromtimestamp(when, datetime.UTC).isoformat(timespec="milliseconds")


class Follower:
    """One `logs -f` client's bounded buffer; filled by the sink thread, drained by its own."""

    def __init__(self, service: str | None, capacity: int = FOLLOWER_BUFFER) -> None:
        self.service = service
        self._capacity = capacity
        self._lines: deque[str] = deque()
        self._lost = 0
        self._closed = False
        self._ready = threading.Condition()

    def push(self, lines: list[str]) -> None:
        with self._ready:
            room = self._capacity - len(self._lines)
            if room < len(lines):
                self._lost += len(lines) - max(room, 0)
                lines = lines[:max(room, 0)]
            self._lines.extend(lines)
            self._ready.notify()

    def close(self) -> None:
        with self._ready:
            self._closed = True
            self._ready.notify()

    def take(self, timeout: float) -> tuple[list[str], int, bool]:
        """Lines waiting (up to ``timeout`` for some), lines lost since the last take, and
        whether the supervisor is stopping."""
        with self._ready:
            if not self._lines and not self._closed and not self._lost:
                self._ready.wait(timeout)
            lines = list(self._lines)
            self._lines.clear()
            lost, self._lost = self._lost, 0
            return lines, lost, self._closed


class ServiceLogs:
    """The output capture's sink for a deployed supervisor (see the module docstring)."""

    def __init__(self, log_dir: str | None = None, *, max_bytes: int = 10 * 1024 * 1024,
                 backups: int = 5, log_format: str = "text",
                 separate_stderr: bool = False) -> None:
        self.log_dir = log_dir
        #: stderr lines to NAME.stderr.log instead of NAME.log (in memory they stay merged)
        self.separate_stderr = separate_stderr
        self.max_bytes = max_bytes
        self.backups = backups
        self.json = log_format == "json"
        self._files: dict[str, RotatingLog] = {}
        self._recent: dict[str | None, deque[str]] = {None: deque(maxlen=RECENT)}
        self._followers: tuple[Follower, ...] = ()
        self._lock = threading.Lock()  # recent lines and the followers' list
        self._batch = max(1, min(_BATCH, max_bytes // 4))
        self._reopen = False

    def open(self) -> None:
        """Create the log directory (a bad one refuses to start, in one line)."""
        if self.log_dir is None:
            return
        try:
            os.makedirs(self.log_dir, mode=0o750, exist_ok=True)
        except OSError as exc:
            raise ConfigError("supervisor.log_dir",
                              f"cannot create {self.log_dir}: {exc.strerror or exc}") from None
        if not os.access(self.log_dir, os.W_OK | os.X_OK):
            raise ConfigError("supervisor.log_dir", f"{self.log_dir} is not writable")

    # -- the sink (the capture's sink thread) --------------------------------------------------
    def write(self, source: OutputSource, lines: list[bytes], when: float) -> None:
        if self.log_dir is None:
            texts = [decode_line(line) for line in lines]
            self._remember(source.service, self._format(source, texts, when))
            self._to_supervisor_log(source, texts)
            return
        if self.json:
            formatted = self._format(source, [line.decode("utf-8", "replace")
                                              for line in lines], when)
            self._remember(source.service, formatted)
            self._to_file(self._file_of(source), formatted)
            return
        # Text to a file, the bulk of a flood: one join and one decode for the whole batch;
        # lines one by one only for what is kept in memory (the last RECENT, and followers).
        head = self._head(source, when).encode()
        block = printable((head + (b"\n" + head).join(lines)).decode("utf-8", "replace"))
        self._remember(source.service, lines, head.decode())
        self._write_batches(self._file_of(source), _cut(block, self._batch))

    def supervisor_lines(self, lines: list[str]) -> None:
        """The supervisor's own log lines (any thread that logs): kept apart from the services'
        (not in the all-services view), for `logs --supervisor` — supervisorctl's maintail."""
        with self._lock:
            followers = [f for f in self._followers if f.service == SUPERVISOR]
            recent = self._recent.get(SUPERVISOR)
            if recent is None:
                recent = self._recent[SUPERVISOR] = deque(maxlen=RECENT)
            recent.extend(lines)
        for follower in followers:
            follower.push(lines)

    def dropped(self, service: str, lines: int, when: float) -> None:
        notice = f"[janus-mp] {lines} lines of output dropped: written faster than logged"
        self.write(OutputSource(service, -1, os.getpid(), "err"), [notice.encode()], when)

    # -- `janus-mp logs` (control connection threads) ------------------------------------------
    def recent(self, service: str | None, count: int) -> list[str]:
        with self._lock:
            lines = list(self._recent.get(service, ()))
        return lines[-count:] if count > 0 else []

    def follow(self, service: str | None, count: int) -> tuple[list[str], Follower]:
        """The last ``count`` lines, and a follower that gets every line after them (taken
        together: no line is missed or shown twice)."""
        follower = Follower(service)
        with self._lock:
            if len(self._followers) >= MAX_FOLLOWERS:
                raise JanusError(f"already {MAX_FOLLOWERS} `logs -f` clients: try again later")
            lines = list(self._recent.get(service, ()))
            self._followers = (*self._followers, follower)
        return (lines[-count:] if count > 0 else []), follower

    def unfollow(self, follower: Follower) -> None:
        with self._lock:
            self._followers = tuple(f for f in self._followers if f is not follower)

    # -- files -----------------------------------------------------------------------------------
    def reopen(self) -> None:
        """SIGUSR1 (in the loop thread): each file is reopened before its next batch, by the
        sink thread — the loop must not wait for a handler a stalled disk holds."""
        self._reopen = True

    def _reopen_files(self) -> None:
        self._reopen = False
        for handler in list(self._files.values()):
            handler.close()  # a delayed FileHandler opens its path again on the next emit

    def close(self) -> None:
        with self._lock:
            followers, self._followers = self._followers, ()
        for follower in followers:
            follower.close()
        for handler in list(self._files.values()):
            handler.close()

    # -- helpers ---------------------------------------------------------------------------------
    def _format(self, source: OutputSource, texts: list[str], when: float) -> list[str]:
        worker = None if source.slot < 0 else source.slot
        if self.json:
            stamp = iso_time(when)
            return [json.dumps({"time": stamp, "service": source.service, "worker": worker,
                                "pid": source.pid, "stream": source.stream, "message": text})
                    for text in texts]
        head = self._head(source, when)
        return [head + text for text in texts]

    def _head(self, source: OutputSource, when: float) -> str:
        if source.slot < 0:
            return f"{format_time(when)} {source.service} {source.stream}| "
        return f"{format_time(when)} {source.prefix} "

    def _remember(self, service: str, lines: list[str] | list[bytes], head: str = "") -> None:
        """Keep the last RECENT lines and hand every line to the followers; bytes lines are
        formatted here (``head`` + text), only as many as needed."""
        def formatted(some: list[str] | list[bytes]) -> list[str]:
            return [line if isinstance(line, str) else head + decode_line(line)
                    for line in some]

        with self._lock:
            followers = [f for f in self._followers
                         if f.service is None or f.service == service]
            everything = formatted(lines) if followers else None
            tail = everything[-RECENT:] if everything is not None else formatted(lines[-RECENT:])
            recent = self._recent.get(service)
            if recent is None:
                recent = self._recent[service] = deque(maxlen=RECENT)
            recent.extend(tail)
            self._recent[None].extend(tail)
        for follower in followers:
            assert everything is not None
            follower.push(everything)

    def _to_supervisor_log(self, source: OutputSource, texts: list[str]) -> None:
        level = logging.INFO if source.stream == "out" else logging.WARNING
        if not output_log.isEnabledFor(level):
            return
        prefix = source.prefix if source.slot >= 0 else f"{source.service} {source.stream}|"
        for text in texts:
            output_log.log(level, "%s %s", prefix, text,
                           extra={"janus_source": source, "janus_text": text})

    def _file_of(self, source: OutputSource) -> str:
        """The log file's name, less ``.log``, that this source's lines go to."""
        if self.separate_stderr and source.stream == "err":
            return f"{source.service}.stderr"
        return source.service

    def _to_file(self, service: str, formatted: list[str]) -> None:
        self._write_batches(service, _batches(formatted, self._batch))

    def _write_batches(self, file: str, batches: Iterable[str]) -> None:
        handler = self._files.get(file)
        if handler is None:
            assert self.log_dir is not None
            handler = self._files[file] = RotatingLog(
                os.path.join(self.log_dir, f"{file}.log"), self.max_bytes, self.backups)
        if self._reopen:
            self._reopen_files()
        for batch in batches:
            handler.handle(logging.makeLogRecord({"msg": batch, "levelno": logging.INFO}))


class SupervisorTail(logging.Handler):
    """Hands each line janus-mp's loggers write to :meth:`ServiceLogs.supervisor_lines`, as the
    supervisor's log shows it (the same formatter). Cheap and non-blocking: it runs in the
    thread that logs, the supervision loop's included."""

    def __init__(self, logs: ServiceLogs, formatter: logging.Formatter | None) -> None:
        super().__init__()
        self._logs = logs
        self.setFormatter(formatter)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
        except Exception:
            self.handleError(record)
            return
        self._logs.supervisor_lines(text.splitlines() or [""])


def _batches(lines: Iterable[str], size: int) -> Iterable[str]:
    """Lines joined into texts of about ``size`` characters (a longer line goes alone)."""
    batch: list[str] = []
    length = 0
    for line in lines:
        if batch and length + len(line) + 1 > size:
            yield "\n".join(batch)
            batch, length = [], 0
        batch.append(line)
        length += len(line) + 1
    if batch:
        yield "\n".join(batch)


def _cut(block: str, size: int) -> Iterable[str]:
    """``block`` (lines joined by newlines) in pieces of about ``size`` characters, each cut
    at a newline (a longer line goes alone)."""
    start = 0
    while len(block) - start > size:
        end = block.rfind("\n", start, start + size)
        if end < 0:
            end = block.find("\n", start + size)
            if end < 0:
                break
        yield block[start:end]
        start = end + 1
    yield block[start:]


class RotatingLog(logging.handlers.RotatingFileHandler):
    """A service's log file: rotated at ``max_bytes`` keeping ``backups`` old files, opened
    (and reopened) without following a symlink at its path."""

    def __init__(self, path: str, max_bytes: int, backups: int) -> None:
        super().__init__(path, maxBytes=max_bytes, backupCount=backups, delay=True,
                         encoding="utf-8", errors="backslashreplace")
        self.setFormatter(logging.Formatter("%(message)s"))

    def _open(self) -> Any:
        fd = open_no_follow(self.baseFilename, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        return os.fdopen(fd, "a", encoding=self.encoding, errors=self.errors)

    def handleError(self, record: logging.LogRecord) -> None:
        # A full disk must not print a traceback per batch: one line in the supervisor's log.
        with contextlib.suppress(Exception):
            logging.getLogger("janus_mp.output").error("cannot write %s", self.baseFilename)


def follower_items(follower: Follower, wake: float = 1.0) -> Iterator[dict[str, Any] | None]:
    """A follower's lines as a stream's items until the supervisor stops; None after each
    wait, so the server looks whether the client is still there (see control.StreamReply)."""
    while True:
        lines, lost, closed = follower.take(wake)
        if lost:
            yield {"lost": lost}
        if lines:
            yield {"lines": lines}
        if closed:
            yield {"end": "the supervisor is stopping"}
            return
        yield None
