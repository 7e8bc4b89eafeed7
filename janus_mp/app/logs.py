"""The supervisor's own log, kept whatever the application does to logging.

An application is imported in the supervisor (a bad target must fail before anything starts),
and importing it may configure logging for the whole process: Django applies ``LOGGING`` with
``disable_existing_loggers``, apps call ``logging.basicConfig(force=True)`` or ``dictConfig``
replacing the root handlers. The supervisor's lines ("listening on", restarts, worker exits)
must survive that, so they never depend on the root logger:

- the ``janus_mp`` logger has its own handler and does not propagate: whatever the root logger
  becomes, janus-mp's lines keep their format and destination;
- :meth:`SupervisorLog.reclaim`, called after every import of user code (start and reload),
  re-enables the ``janus_mp.*`` loggers an app's ``dictConfig`` disabled and puts the handler,
  level and ``propagate=False`` back.

The root logger gets the same handler at start (if it has none), so an app that configures
nothing logs as before; an app that configures its own logging keeps it for its own loggers.
That handler is a :class:`~janus_mp.app.log_writer.LogWriter`: records go through a bounded
queue to a writer thread, so a stalled stderr never blocks the supervisor's loop.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any

from janus_mp.app.log_writer import LogWriter
from janus_mp.app.service_logs import ServiceLogs, SupervisorTail, iso_time
from janus_mp.errors import JanusError
from janus_mp.safe_paths import open_no_follow

LOG_FORMAT = "%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s"
LOGGER = "janus_mp"


class SupervisorLog:
    """The handler janus-mp's own loggers write to (stderr, or a file SIGUSR1 reopens)."""

    def __init__(self, level: str, log_file: str | None = None,
                 log_format: str = "text") -> None:
        self.level = getattr(logging, level.upper())
        self.log_file = log_file
        handler: logging.Handler
        if log_file is None:
            handler = logging.StreamHandler(sys.stderr)
        else:
            try:
                handler = _NoFollowFileHandler(log_file)
            except OSError as exc:
                raise JanusError(f"--log-file {log_file}: {exc.strerror or exc}") from None
            except JanusError as exc:
                raise JanusError(f"--log-file {log_file}: "
                                 f"{getattr(exc, 'rule', None) or exc}") from None
        handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
        self.target = handler
        self.writer = LogWriter(handler)
        self.handler: logging.Handler = self.writer

    def set_format(self, log_format: str) -> None:
        """The config file's ``log_format``, known only once the file is read."""
        if log_format == "json" and not isinstance(self.target.formatter, JsonFormatter):
            self.target.setFormatter(JsonFormatter())

    def install(self) -> None:
        self.writer.start()
        root = logging.getLogger()
        if not root.handlers:
            root.addHandler(self.handler)
        root.setLevel(self.level)
        self.reclaim()

    def reclaim(self) -> None:
        """Undo what user code did to janus-mp's loggers (call after importing it)."""
        manager = logging.Logger.manager
        for name, logger in list(manager.loggerDict.items()):
            if isinstance(logger, logging.Logger) and (name == LOGGER or
                                                       name.startswith(LOGGER + ".")):
                logger.disabled = False
        own = logging.getLogger(LOGGER)
        own.propagate = False
        own.setLevel(self.level)
        if self.handler not in own.handlers:
            own.addHandler(self.handler)

    def tail_into(self, outputs: ServiceLogs) -> None:
        """Keep janus-mp's own lines for `janus-mp logs --supervisor` too."""
        logging.getLogger(LOGGER).addHandler(SupervisorTail(outputs, self.target.formatter))

    def reopen(self) -> None:
        """SIGUSR1: reopen the log file (logrotate moved it)."""
        target = self.target
        if not isinstance(target, _NoFollowFileHandler):
            return
        target.acquire()
        try:
            target.close()
            target.stream = target._open()
        finally:
            target.release()

    def flush(self) -> None:
        """Everything logged so far is written (before an ``os._exit``), unless the stream
        stays stalled past the writer's grace."""
        self.writer.stop()
        self.target.flush()
        logging.shutdown()


class TextFormatter(logging.Formatter):
    """``LOG_FORMAT`` for the supervisor's own records; a worker's captured line is written as
    the app wrote it, after one prefix (``name[i] err| ...``): no second timestamp, and no
    level of ours in front of the app's own."""

    def __init__(self) -> None:
        super().__init__(LOG_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        source = getattr(record, "janus_source", None)
        text = getattr(record, "janus_text", None)
        if source is not None and text is not None:
            prefix = source.prefix if source.slot >= 0 else f"{source.service} {source.stream}|"
            return f"{prefix} {text}"
        return super().format(record)


class JsonFormatter(logging.Formatter):
    """``--log-format json``: one object a line. Captured output keeps its source (service,
    worker, pid, stream out/err); the supervisor's own records have stream "log"."""

    def format(self, record: logging.LogRecord) -> str:
        source = getattr(record, "janus_source", None)
        text = getattr(record, "janus_text", None)
        if source is not None and text is not None:  # (the queue handler has merged args)
            fields: dict[str, Any] = {
                "service": source.service, "worker": source.slot if source.slot >= 0 else None,
                "pid": source.pid, "stream": source.stream, "message": text}
        else:
            message = record.getMessage()
            if record.exc_info:
                message = f"{message}\n{self.formatException(record.exc_info)}"
            fields = {"service": None, "worker": None, "pid": record.process, "stream": "log",
                      "level": record.levelname, "logger": record.name, "message": message}
        return json.dumps({"time": iso_time(record.created), **fields})


class _NoFollowFileHandler(logging.FileHandler):
    """A log file opened (and reopened by SIGUSR1) without following a symlink at its path."""

    def _open(self) -> Any:
        fd = open_no_follow(self.baseFilename, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        return os.fdopen(fd, "a", encoding=self.encoding, errors=self.errors)
