"""Task pools: functions run in supervised worker processes (see README "Task pools").

Their decisions live in ``janus_mp/core/tasks.py``; here are the executor API
(``executor``), the supervisor-side dispatcher (``dispatcher``), the workers' task loop
(``task_loop``) and what travels between them (``frames``, ``payloads``).
"""

from __future__ import annotations

from janus_mp.pools.client import PoolHandle, pool
from janus_mp.pools.executor import TaskFuture, TaskPool
from janus_mp.pools.task_loop import TaskInterrupted

__all__ = ["PoolHandle", "TaskFuture", "TaskInterrupted", "TaskPool", "pool"]
