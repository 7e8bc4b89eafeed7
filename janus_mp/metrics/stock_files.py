"""The multiprocess directory as the stock ``MultiProcessCollector`` must find it, folds and all.

janus-mp's ``/metrics`` reads the archive from memory. An app that serves its own
``/metrics`` with the stock collector over the same directory (django-prometheus and
prometheus-flask-exporter do, under gunicorn) reads files only, so each fold leaves two things
behind for it:

- the archive, as files of the stock format named with ``archive_pid`` in place of a pid
  (``counter_archive-812.db``): written whole under a temporary name, blocks allocated before
  the map (a full disk is an OSError here, never a SIGBUS), then renamed over the old one;
- each folded worker file, *retired*: replaced at once by an empty file of the same name (the
  stock reader lists the directory, then opens each name, and a name gone in between fails
  its whole scrape: it forgives that for live gauges only). Retired files are removed later,
  in batches: a removal can still meet a reader between its listing and its open, so there
  are as few removal moments as the file count allows — when ``SWEEP_BATCH`` are due, or
  when the oldest has waited ``SWEEP_AFTER`` seconds.

The stock reader opens files one by one, so a scrape that overlaps a fold may still see the
dead worker's counts twice (its file, then the new archive) or not at all (the emptied file,
then the old archive), for that one scrape.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import deque
from typing import Any

from prometheus_client.mmap_dict import MmapedDict, mmap_key

from janus_mp.metrics.fold import FileId, StoredSample

#: Seconds a retired file stays (empty) after its fold at least: longer than a reader takes
#: between listing the directory and opening the file.
GRACE = 5.0
#: Retired files removed together, at least (unless the oldest is SWEEP_AFTER seconds old).
SWEEP_BATCH = 64
SWEEP_AFTER = 60.0
#: An empty multiprocess file: its header says no byte past the header is used.
_EMPTY = bytes(8)


def archive_pid(supervisor: int) -> str:
    """What stands for the pid in the names of a supervisor's archive files: never a number,
    so never a worker's."""
    return f"archive-{supervisor}"


def is_archive(source: FileId) -> bool:
    return source.pid.startswith("archive-")


def write_file(path: str, name: str, samples: list[StoredSample]) -> None:
    """A multiprocess file of ``samples`` at ``path/name``, replaced at once (a reader opens
    the old file or the new one, whole)."""
    keys = [mmap_key(s.metric, s.sample, [k for k, _ in s.labels], [v for _, v in s.labels],
                     s.help) for s in samples]
    # At most: 8 bytes of header; per sample the key's length (4), the key padded to 8 bytes
    # (+7), its value and timestamp (16). A file this size never grows while it is written.
    size = 8 + sum(len(key.encode()) + 28 for key in keys)
    temporary = f"{path}/.{name}.new"  # no .db suffix: no reader of the directory lists it
    fd = _create(temporary)
    try:
        try:
            os.posix_fallocate(fd, 0, size)
        finally:
            os.close(fd)
        values: Any = MmapedDict(temporary)
        try:
            for key, sample in zip(keys, samples, strict=True):
                values.write_value(key, sample.value, sample.timestamp)
        finally:
            values.close()
        os.rename(temporary, f"{path}/{name}")
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


class RetiredFiles:
    """Folded workers' files, emptied in place, until ``GRACE`` seconds after their fold.

    The loop retires and sweeps at each fold; a scrape sweeps too (when no worker dies for a
    while, scrapes are what clears the last ones).
    """

    def __init__(self) -> None:
        self._queue: deque[tuple[float, str, int]] = deque()  # (retired at, path, inode)
        self._names: set[str] = set()
        self._lock = threading.Lock()

    def __contains__(self, filename: str) -> bool:
        return filename in self._names

    def still_empty(self, filename: str) -> bool:
        """Retired here and not taken over since by a new worker with the same pid."""
        if filename not in self._names:
            return False
        try:
            return os.stat(filename).st_size <= len(_EMPTY)
        except OSError:
            return True

    def retire(self, filename: str, now: float) -> None:
        """Empty ``filename`` at once (OSError if it cannot be done: then unlink it)."""
        temporary = f"{os.path.dirname(filename)}/.{os.path.basename(filename)}.empty"
        fd = _create(temporary)
        try:
            os.write(fd, _EMPTY)
            inode = os.fstat(fd).st_ino
        finally:
            os.close(fd)
        try:
            os.rename(temporary, filename)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
        with self._lock:
            self._names.add(filename)
            self._queue.append((now, filename, inode))

    def sweep(self, now: float) -> None:
        """Remove the files retired ``GRACE`` seconds ago or more, in a batch (see the module
        docstring), unless a new worker with the same pid has taken one over (it is not empty
        any more, or not the same file)."""
        due = []
        with self._lock:
            ripe = sum(1 for retired_at, _, _ in self._queue if now - retired_at >= GRACE) \
                if self._queue and now - self._queue[0][0] >= GRACE else 0
            if ripe >= SWEEP_BATCH or (ripe and now - self._queue[0][0] >= SWEEP_AFTER):
                due = [self._queue.popleft() for _ in range(ripe)]
        for _, filename, inode in due:
            try:
                stat = os.stat(filename)
                if stat.st_ino == inode and stat.st_size <= len(_EMPTY):
                    os.unlink(filename)
            except OSError:
                pass  # gone already (close(), or an operator)
            with self._lock:
                self._names.discard(filename)

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()
            self._names.clear()


def _create(filename: str) -> int:
    # The umask applies, as for the workers' own files; a symlink planted there is refused.
    return os.open(filename, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                   0o666)
