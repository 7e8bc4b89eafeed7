"""prometheus_client's multiprocess directory, owned by the supervisor, compacted as workers die.

The stock ``MultiProcessCollector`` reads every file of every process that ever lived, so each
scrape slows down with every restart (client_python #204, #367, #443). The supervisor knows
exactly when a worker is dead, because it reaped it, so ``processes_dead`` folds that worker's
files into an in-memory archive (``metrics_fold.Fold``) and empties them. The directory then
holds live workers' data only, and a scrape reads those plus a copy of the archive:

    prepare()        supervisor, before any worker: the directory, empty of stale files
    worker_init()    each worker, before user code: every metric writes to this pid's files
    processes_dead() supervisor loop, a moment after workers were reaped (all of those
                     dead meanwhile at once): read their files, fold, rewrite the
                     archive's files, empty theirs (removed later)
    collector()      HTTP thread, per scrape: archive copy + live files -> metric families
    close()          supervisor, on exit: remove what prepare() made

The archive lives in the supervisor's memory: a scrape of ``/metrics`` reads no archive file.
For the other readers of the directory — an app serving its own ``/metrics`` with the stock
``MultiProcessCollector`` (django-prometheus, prometheus-flask-exporter) — every fold also
rewrites the archive as files of the stock format, ``counter_archive-<supervisor pid>.db`` and
so on, before the dead worker's files are emptied (see ``stock_files``): the stock reader adds
them up with the live files and reads every count of every worker that ever lived. What it
cannot read back: a dead worker's gauges of mode ``all``, one series per pid (one file cannot
say which pid each value was). Those files are written whole into a temporary name, their
blocks allocated before they are mapped (a full disk fails the write, never SIGBUSes the
supervisor), then renamed.

A pid reused after its fold starts from zero, where the stock reader would hand the newcomer
the dead process's file and gauge values; counts add up the same either way.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

from prometheus_client.metrics import Gauge
from prometheus_client.metrics_core import Metric
from prometheus_client.mmap_dict import MmapedDict

from janus_mp import osproc
from janus_mp.errors import ConfigError, JanusError
from janus_mp.metrics import premade, stock_files
from janus_mp.metrics.fold import (
    KINDS,
    Entry,
    FileId,
    Fold,
    KeyParser,
    file_name,
    parse_file_name,
)
from janus_mp.metrics.stock_files import archive_pid, is_archive

log = logging.getLogger("janus_mp.metrics")

ENV = "PROMETHEUS_MULTIPROC_DIR"
_OPTIMISTIC_SCRAPES = 3  # reads without the lock before a scrape holds folds off for one


class MultiprocessMetrics:
    """The multiprocess directory: prepared before workers start, compacted as they die.

    Picklable for the spawn start method: a child gets the path only, none of the
    supervisor's archive, lock or caches.
    """

    def __init__(self, directory: str | None = None) -> None:
        self.directory = directory
        self._path: str | None = None
        self._created = False
        self._owner_pid: int | None = None  # the supervisor: only it may fold or remove
        #: In an upgrade, the other supervisor sharing a configured directory with this one:
        #: its workers' files are live, never removed here (it folds them itself).
        self.other_supervisor: int | None = None
        #: Metrics that existed when the supervisor was about to fork (None: not looked).
        self._made_before: list[Any] | None = None
        #: prometheus_client's multiprocess value class, built once in the supervisor (never
        #: used there) so that each forked worker installs it instead of building it.
        self._value_class: Any = None
        self._clashes_told: set[str] = set()  # metric names whose clash was logged
        #: Set once the supervisor stops for good: close() removes every file then, so dead
        #: workers' files stay where they are (a scrape meanwhile reads them as they were).
        self._closing = False
        self._reset_archive()

    def _reset_archive(self) -> None:
        self._archive = Fold()
        self._retired = stock_files.RetiredFiles()
        self._version = 0  # bumped by every fold; a scrape that saw it change reads again
        self._lock = threading.Lock()
        self._keys = KeyParser()

    @property
    def path(self) -> str | None:
        """The directory in use once prepared, else None."""
        return self._path

    # -- supervisor side --------------------------------------------------------------------
    def prepare(self) -> str:
        """Make the directory ready for workers; returns its path. Idempotent until close()."""
        if self._path is not None:
            return self._path
        if self.directory is None:
            try:
                path = tempfile.mkdtemp(prefix="janus-mp-metrics-")  # mode 0700
            except OSError as exc:
                raise ConfigError("metrics_dir", f"cannot create a private directory in "
                                  f"{tempfile.gettempdir()}: {exc.strerror or exc}") from None
            self._created = True
        else:
            path = os.path.abspath(self.directory)
            _make_directory(path)
            _remove_stale_files(path, self._others)
        self._reset_archive()
        self._path = path
        self._owner_pid = os.getpid()
        from prometheus_client import values

        # It names files by the pid asking (os.getpid at each use) and starts over in a new
        # process: built here, it is a worker's own once the worker writes a value.
        self._value_class = values.MultiProcessValue()
        return path

    def process_dead(self, pid: int) -> None:
        """Fold a reaped worker's files into the archive and delete them; never raises."""
        self.processes_dead([pid])

    def live_gauges_dead(self, pids: list[int]) -> None:
        """Reaped workers' live gauges (``livesum``, ``liveall``...) stop counting now: their
        files go at once (an unlink each); the rest waits for :meth:`processes_dead`. Once
        the supervisor stops for good, close() removes every file instead."""
        path = self._path
        if path is None or self._owner_pid != os.getpid() or self._closing:
            return
        with self._lock:
            now = time.monotonic()
            for source in [source for pid in pids for source in _files_of(str(pid))]:
                if not source.survives_death:
                    self._remove(f"{path}/{file_name(source)}", now)

    def processes_dead(self, pids: list[int]) -> None:
        """Fold reaped workers' files into the archive and delete them; never raises.

        Call it once the pids are reaped (their files are final then); the runtime calls it
        a quarter of a second after a death, with every worker dead meanwhile, so folding
        never competes with a replacement's start and the archive's files are rewritten once
        per batch, not once per worker. Unreadable or corrupt files are logged and what could
        be read is kept: a metrics problem must not stop supervision.
        """
        path = self._path
        if path is None or self._owner_pid != os.getpid() or self._closing:
            return
        batches: list[tuple[FileId, list[Entry]]] = []
        doomed: list[str] = []
        for source in [source for pid in pids for source in _files_of(str(pid))]:
            filename = f"{path}/{file_name(source)}"
            if not source.survives_death:
                doomed.append(filename)
                continue
            try:
                entries = _read_file(filename, self._keys, "could not compact")
            except FileNotFoundError:
                continue
            except OSError as exc:
                log.warning("could not compact metrics file %s: %s", filename, exc)
                continue  # left in place: it may be readable at the next scrape
            batches.append((source, entries))
            doomed.append(filename)
        # Fold and unlink under the lock, so a scrape sees this worker either in its files or
        # in the archive, never both and never neither (see _collect).
        with self._lock:
            self._version += 1
            for source, entries in batches:
                rejected = self._archive.add(source, entries)
                if rejected:
                    log.warning("could not compact metrics file %s: %d malformed samples "
                                "skipped", file_name(source), rejected)
            # The archive's files first, then the dead worker's files are emptied (see
            # stock_files): a stock reader's scrape overlapping this may miscount, not fail.
            self._write_archive_files(path, {(source.kind, source.mode) for source, _ in batches})
            now = time.monotonic()
            for filename in doomed:
                self._remove(filename, now)
            self._retired.sweep(now)
        self._tell_clashes(self._archive.clashes)

    def _remove(self, filename: str, now: float) -> None:
        """A folded file goes; one the stock reader must find meanwhile is retired first."""
        source = parse_file_name(os.path.basename(filename))
        try:
            if source is not None and source.survives_death:
                try:
                    self._retired.retire(filename, now)
                    return
                except FileNotFoundError:
                    return
                except OSError as exc:
                    log.warning("could not empty metrics file %s: %s", filename, exc)
            os.unlink(filename)
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("could not remove metrics file %s: %s", filename, exc)

    def _write_archive_files(self, path: str, shapes: set[tuple[str, str]]) -> None:
        """Rewrite the archive's files of these (kind, gauge mode) shapes; never raises."""
        if not shapes:
            return
        stored = self._archive.stored_samples()
        for kind, mode in sorted(shapes):
            samples = stored.get((kind, mode))
            if not samples:
                continue
            name = file_name(FileId(kind, mode, archive_pid(os.getpid())))
            try:
                stock_files.write_file(path, name, samples)
            except OSError as exc:
                log.warning("could not write metrics file %s/%s: %s (a reader of the directory "
                            "other than janus-mp misses dead workers' %s samples until the "
                            "next worker exit)", path, name, exc.strerror or exc, kind)

    def collector(self) -> ArchiveCollector:
        """A collector of live workers' files plus the archive: the stock collector's output."""
        return ArchiveCollector(self._collect)

    def _others(self, source: FileId) -> bool:
        """A file of the other supervisor of an upgrade: its archive's, or a live worker's."""
        other = self.other_supervisor
        if other is None:
            return False
        return source.pid == archive_pid(other) or (
            source.pid.isdigit() and osproc.parent_pid(int(source.pid)) == other)

    def file_count(self) -> int:
        """Live workers' files in the directory: they are what a scrape reads (with the
        archive, from memory)."""
        if self._path is None:
            return 0
        return sum(1 for name, source in _scan(self._path)
                   if not is_archive(source)
                   and not self._retired.still_empty(f"{self._path}/{name}"))

    def closing(self) -> None:
        """The supervisor stops for good: folding the last workers' files would be thrown
        away by close(), and it would slow the stop (each fold rewrites the archive's files).
        Not while an upgrade's other supervisor shares the directory (it may fold them)."""
        if self.other_supervisor is None:
            self._closing = True

    def close(self) -> None:
        """Remove the directory if prepare() made it, else only the metrics files. Idempotent."""
        path = self._path
        if path is None or self._owner_pid != os.getpid():
            return  # a forked worker holds a copy of this object: it must not clean up
        self._path = None
        if self._created:
            shutil.rmtree(path, ignore_errors=True)
            self._created = False
        else:
            for name, source in _scan(path):
                if self._others(source):
                    continue
                try:
                    os.unlink(os.path.join(path, name))
                except OSError:
                    pass
        self._reset_archive()

    def _collect(self) -> list[Metric]:
        path = self._path
        if path is None:
            return []
        # A fold between copying the archive and reading the files would count its worker
        # twice or not at all, so retry when the version moved; under a storm of deaths, hold
        # folds off for one read instead of starving the scrape.
        for _ in range(_OPTIMISTIC_SCRAPES):
            with self._lock:
                fold, version = self._archive.copy(), self._version
            self._fold_live(fold, path)
            with self._lock:
                if self._version == version:
                    break
        else:
            with self._lock:
                fold = self._archive.copy()
                self._fold_live(fold, path)
        self._tell_clashes(fold.clashes)
        self._retired.sweep(time.monotonic())
        return fold.metrics()

    def _tell_clashes(self, clashes: dict[str, str]) -> None:
        """One log line per metric name used with two types or gauge modes, ever."""
        with self._lock:
            new = {name: why for name, why in clashes.items() if name not in self._clashes_told}
            self._clashes_told.update(new)
        for name, why in sorted(new.items()):
            log.warning("workers' metric %s is %s", name, why)

    def _fold_live(self, fold: Fold, path: str) -> None:
        try:
            live = _scan(path)
        except OSError as exc:
            log.warning("could not list metrics directory %s: %s", path, exc)
            return
        for name, source in live:
            filename = f"{path}/{name}"
            if is_archive(source) or self._retired.still_empty(filename):
                continue  # this supervisor's archive is in memory (another's is not ours)
            try:
                entries = _read_file(filename, self._keys, "could not read")
            except FileNotFoundError:
                continue  # folded since the listing: the version check notices
            except OSError as exc:
                log.warning("could not read metrics file %s: %s", filename, exc)
                continue
            rejected = fold.add(source, entries)
            if rejected:
                log.warning("could not read metrics file %s: %d malformed samples skipped",
                            filename, rejected)

    # -- worker side ------------------------------------------------------------------------
    def worker_init(self) -> None:
        """In a new worker, before user code: make every metric write to this pid's files.

        prometheus_client picks its value class once, at import, from the environment. Under
        fork the worker inherits a parent that may have imported it, and built metrics, before
        the directory existed; under spawn and forkserver, unpickling the target may import
        modules that build metrics before this runs. So switch the value class for this
        process and re-initialise the metrics made already — in the default REGISTRY, in
        another registry or in none (see ``find_metrics_made_before``), labelled children
        included: they restart from zero, in files named by this pid.
        """
        if self._path is None:
            raise JanusError("metrics: worker_init() called before prepare()")
        from prometheus_client import values

        problem = _unusable(self._path)
        if problem is not None:
            # A metrics file written into a full filesystem faults (SIGBUS) on its first page:
            # this worker keeps its metrics in memory instead, and serves on.
            log.error("metrics directory %s %s: this worker's own metrics stay in its memory "
                      "and are not exported", self._path, problem)
            os.environ.pop(ENV, None)
            values.ValueClass = values.MutexValue
            return
        os.environ[ENV] = self._path  # user code that checks it sees multiprocess mode
        values.ValueClass = self._value_class or values.MultiProcessValue()
        # No locks taken: a lock held by another parent thread at fork time stays held in the
        # child forever, and this process is still single-threaded here.
        made_before = self._made_before if self._made_before is not None else \
            premade.every_metric()
        seen: set[int] = set()
        for metric in [*premade.registered_metrics(), *made_before]:
            if id(metric) not in seen:
                seen.add(id(metric))
                metric._metric_init()

    def find_metrics_made_before(self) -> None:
        """In the supervisor, before its first fork: remember every metric that exists.

        A metric made at module level, before the directory existed, holds its value in
        memory; ``worker_init`` moves it to the worker's files whatever registry it is in
        (the default one, a custom one, none). Finding them takes a walk over every object,
        done once here: in a worker, touching every object would copy every page it shares
        with the supervisor. A worker started by spawn or forkserver inherits nothing of
        this list and walks its own (young) heap instead.
        """
        self._made_before = premade.every_metric()

    def __getstate__(self) -> dict[str, Any]:
        return {"directory": self.directory, "path": self._path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["directory"])  # type: ignore[misc]
        self._path = state["path"]


class ArchiveCollector:
    """A prometheus_client collector over a ``MultiprocessMetrics`` directory and archive."""

    def __init__(self, collect: Callable[[], list[Metric]]) -> None:
        self._collect = collect

    def describe(self) -> list[Metric]:
        return []  # registering must not trigger a scrape

    def collect(self) -> list[Metric]:
        return self._collect()


# Every (kind, gauge mode) a process can have a file for. A death probes these names: a dozen
# failed opens cost less than listing a directory of more than a few dozen live workers' files.
_SHAPES = [(kind, "") for kind in sorted(KINDS - {"gauge"})] + [
    ("gauge", mode) for mode in sorted(Gauge._MULTIPROC_MODES)]


def _files_of(pid: str) -> list[FileId]:
    return [FileId(kind, mode, pid) for kind, mode in _SHAPES]


def _scan(path: str) -> list[tuple[str, FileId]]:
    """The multiprocess files in ``path``; none once it is gone (closed under a scrape)."""
    try:
        names = os.listdir(path)
    except FileNotFoundError:
        return []
    found = []
    for name in names:
        source = parse_file_name(name)
        if source is not None:
            found.append((name, source))
    return found


def _read_file(filename: str, parse: KeyParser, context: str) -> list[Entry]:
    """A file's entries. A corrupt tail or key is logged and skipped, never raised: what was
    readable before it is kept. FileNotFoundError and other OSErrors are the caller's."""
    entries: list[Entry] = []
    bad_keys = 0
    try:
        for raw, value, timestamp, _ in MmapedDict.read_all_values_from_file(filename):
            try:
                entries.append((parse(raw), value, timestamp))
            except ValueError:
                bad_keys += 1
    except OSError:
        raise
    except Exception as exc:  # struct.error, RuntimeError("... corrupted"), UnicodeDecodeError
        if os.path.getsize(filename) > 0:  # empty: a worker died before sizing it; no data
            log.warning("%s metrics file %s: %s (kept %d samples)", context, filename, exc,
                        len(entries))
    if bad_keys:
        log.warning("%s metrics file %s: %d malformed keys skipped", context, filename, bad_keys)
    return entries


#: Free space a worker wants before it maps metrics files (prometheus_client sizes each file
#: at 1 MiB and grows it by doubling).
MIN_FREE_BYTES = 4 * 2**20


def _unusable(path: str) -> str | None:
    """Why a worker should not map metrics files in ``path`` now, or None (a statvfs call)."""
    try:
        fs = os.statvfs(path)
    except OSError as exc:
        return f"cannot be read: {exc.strerror or exc}"
    if fs.f_flag & os.ST_RDONLY:
        return "is on a read-only filesystem"
    if not os.access(path, os.W_OK | os.X_OK):
        return "is not writable"
    free = fs.f_bavail * fs.f_frsize
    if free < MIN_FREE_BYTES:
        return f"has {free // 1024} KiB free (under {MIN_FREE_BYTES // 2**20} MiB)"
    return None


def _make_directory(path: str) -> None:
    if os.path.lexists(path) and not os.path.isdir(path):
        raise ConfigError("metrics_dir", f"{path} is not a directory")
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
    except OSError as exc:
        raise ConfigError("metrics_dir", f"cannot create {path}: {exc.strerror or exc}") from None
    try:  # os.access() is wrong for root, ACLs and read-only mounts: try it
        fd, probe = tempfile.mkstemp(dir=path, prefix=".janus-mp-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ConfigError("metrics_dir", f"{path} is not writable: {exc.strerror or exc}") \
            from None


def _remove_stale_files(path: str, keep: Callable[[FileId], bool]) -> None:
    """An earlier run's files would count as live workers forever: remove them, nothing else
    (and not those ``keep`` names: the previous supervisor's, in an upgrade)."""
    stale = [(name, source) for name, source in _scan(path) if not keep(source)]
    for name, _ in stale:
        try:
            os.unlink(os.path.join(path, name))
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise ConfigError("metrics_dir", f"cannot remove stale file {name} in {path}: "
                              f"{exc.strerror or exc}") from None
    if stale:
        log.info("removed %d stale metrics files from %s", len(stale), path)
