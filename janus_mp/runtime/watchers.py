"""What the supervisor runs beside its workers to watch them and tell about them: health
probes, stack dumps, lifecycle notices (subscriptions, hooks) and the helper programs these
start. The supervisor hands it the actions it owns (``perform``) and its lifetime.

    Publish ─────────► NoticeHub ─► subscribe(), `janus-mp events`, HookRunner ─► commands
    RunProbe ────────► ProbeRunner (threads) ─► ProbeFinished via the loop's call pipe
    RequestStackDump ► StackDumps: the dump signal to the worker's pid
    ReadStackDump ───► StackDumps: its file ─► StackDumpRead (answered at once)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from janus_mp.core import events as ev
from janus_mp.core.actions import Action, Publish, ReadStackDump, RequestStackDump, RunProbe
from janus_mp.core.hooks_config import HooksConfig
from janus_mp.private_fds import PrivateFds
from janus_mp.runtime.helper_children import HelperChildren
from janus_mp.runtime.hooks import HookRunner
from janus_mp.runtime.notice_hub import DEFAULT_BUFFER, NoticeHub, NoticeSubscription
from janus_mp.runtime.probes import ProbeRunner
from janus_mp.runtime.processes import WorkerProcess
from janus_mp.runtime.stack_dumps import DUMP_SIGNAL, StackDumps

#: At close, how long running hooks may still take before they are killed.
HOOK_GRACE_AT_CLOSE = 2.0


class Watchers:
    def __init__(self, hooks: HooksConfig, private_fds: PrivateFds, *,
                 wall_offset: Callable[[], float],
                 deliver: Callable[[ev.Event], None]) -> None:
        """``deliver`` hands an event to the loop from any thread without waiting."""
        self.notices = NoticeHub(wall_offset)
        self.helpers = HelperChildren(private_fds)
        self.probes = ProbeRunner(private_fds, self.helpers, deliver)
        self.hooks = HookRunner(hooks, self.notices, self.helpers)
        self.dumps = StackDumps()

    def open(self) -> None:
        self.dumps.open()
        self.hooks.start()

    def close(self) -> None:
        """Hooks for the last notices (the workers' exits at shutdown) still start, and get
        up to ``HOOK_GRACE_AT_CLOSE`` seconds; whatever helper runs after that is killed."""
        self.probes.close()
        self.notices.close()
        self.hooks.close()  # the dispatcher starts what is pending, then ends
        self.hooks.wait_idle(min(HOOK_GRACE_AT_CLOSE, self.hooks.timeout))
        self.helpers.close()
        self.dumps.close()

    def subscribe(self, buffer: int = DEFAULT_BUFFER, *,
                  history: bool = False) -> NoticeSubscription:
        return self.notices.subscribe(buffer, history=history)

    def worker_extras(self, worker: int) -> dict[str, Any]:
        """What a new worker's spec needs from here: its dump file and signal."""
        return {"dump_path": self.dumps.path_for(worker), "dump_signal": int(DUMP_SIGNAL)}

    def worker_gone(self, worker: int) -> None:
        self.dumps.forget(worker)

    def hook_runs(self) -> dict[str, int]:
        hooks = self.hooks
        return {"ran": hooks.ran, "dropped": hooks.dropped, "timed_out": hooks.timed_out}

    def helper_pids(self) -> set[int]:
        return self.helpers.pids()

    def perform(self, action: Action, process: WorkerProcess | None,
                listeners: Callable[[str], tuple[str, ...]]) -> ev.Event | None | bool:
        """Perform one of the actions owned here (``process``: the worker it names, if it
        still runs); returns its immediate answer, None, or False if not ours."""
        match action:
            case Publish(notice=notice):
                self.notices.publish(notice)
            case RunProbe():
                if process is not None:
                    self.probes.run(action, process.service, listeners(process.service))
            case RequestStackDump():
                if process is not None:
                    self.dumps.request(process.pid, process.pidfd)
            case ReadStackDump(worker=worker):
                return ev.StackDumpRead(worker, self.dumps.read(worker))
            case _:
                return False
        return None
