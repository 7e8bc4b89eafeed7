"""janus_mp.TaskPool with real worker processes: results, remote tracebacks, pickling failures,
worker deaths (SIGKILL, os._exit, segfault), retries, poison tasks, timeouts, cancellation,
backpressure, recycling, initializers, asyncio. Deadlines are generous; nothing sleeps."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import signal

import pytest

import janus_mp
from janus_mp import PoisonTask, QueueFull, TaskTimeout, WorkerDied
from janus_mp.osproc import process_state
from tests import pool_tasks as t
from tests.support import wait_until

DEADLINE = 60.0


def alive(pid: int) -> bool:
    return process_state(pid) not in (None, "Z")


def worker_pids(pool: janus_mp.TaskPool) -> set[int]:
    service = pool.supervisor.snapshot().service(pool.name)
    return {pid for w in service.workers for pid in w.pids}


@pytest.fixture
def pool():
    with janus_mp.TaskPool(2, name="tp") as pool:
        yield pool


def test_results_map_and_remote_tracebacks(pool):
    assert pool.submit(t.square, 7).result(DEADLINE) == 49
    assert pool.submit(t.add, 1, y=2).result(DEADLINE) == 3
    assert list(pool.map(t.square, range(20), timeout=DEADLINE)) == [x * x for x in range(20)]
    assert list(pool.map(t.add, range(25), range(25), chunksize=7, timeout=DEADLINE)) == \
        [2 * x for x in range(25)]
    assert pool.submit(lambda x: x + 1, 1).result(DEADLINE) == 2  # dill for what pickle can't
    failed = pool.submit(t.boom, "bad input")
    exc = failed.exception(DEADLINE)
    assert isinstance(exc, ValueError) and str(exc) == "bad input"
    assert "in boom" in str(exc.__cause__) and "raise ValueError(message)" in str(exc.__cause__)


def test_unpicklable_argument_and_result_fail_only_their_future(pool):
    bad_argument = pool.submit(t.square, (x for x in range(3)))
    bad_result = pool.submit(t.unpicklable_result)
    good = pool.submit(t.square, 3)
    assert isinstance(bad_argument.exception(DEADLINE), TypeError)
    assert "could not be pickled" in str(bad_result.exception(DEADLINE))
    assert good.result(DEADLINE) == 9
    assert pool.submit(t.square, 4).result(DEADLINE) == 16


def test_large_arguments_and_results_cross_whole(pool):
    data = os.urandom(24 << 20)  # frames far larger than one read, both ways
    small = pool.submit(t.square, 5)
    flipped = pool.submit(t.flip, data).result(DEADLINE)
    assert len(flipped) == len(data) and flipped == data[::-1], "not the same bytes back"
    assert small.result(DEADLINE) == 25
    assert [len(r) for r in pool.map(t.flip, [data[:1 << 20]] * 4, timeout=DEADLINE)] == \
        [1 << 20] * 4


@pytest.mark.parametrize("task, args, exitcode, sig", [
    (t.kill_self, (), None, signal.SIGKILL),
    (t.exit_now, (7,), 7, None),
    (t.exit_now, (3,), 3, None),    # a halt code for services: not for a pool's tasks
    (t.exit_now, (78,), 78, None),  # nor the no-restart code
    (t.segfault, (), None, signal.SIGSEGV),
])
def test_a_dying_worker_fails_only_its_task(pool, task, args, exitcode, sig):
    others = [pool.submit(t.square, x) for x in range(10)]
    failed = pool.submit(task, *args)
    more = [pool.submit(t.square, x) for x in range(10)]
    exc = failed.exception(DEADLINE)
    assert isinstance(exc, WorkerDied) and not isinstance(exc, PoisonTask)
    assert (exc.exitcode, exc.signal, exc.oom_killed, exc.deaths) == (exitcode, sig, False, 1)
    assert [f.result(DEADLINE) for f in others + more] == [x * x for x in range(10)] * 2
    assert pool.stats()["outcomes"]["died"] == 1


def test_kill_9_mid_map_fails_exactly_one_task_and_the_map_goes_on(tmp_path):
    with janus_mp.TaskPool(2, name="tp") as pool:
        gate = tmp_path / "go"
        blocker = pool.submit(t.mark_and_wait, str(tmp_path / "m"), str(gate))
        wait_until(lambda: (tmp_path / "m").exists(), DEADLINE)
        victim = int((tmp_path / "m").read_text())
        futures = [pool.submit(t.square, x) for x in range(500)]
        os.kill(victim, signal.SIGKILL)
        assert isinstance(blocker.exception(DEADLINE), WorkerDied)
        assert [f.result(DEADLINE) for f in futures] == [x * x for x in range(500)]
        stats = pool.stats()
        assert stats["outcomes"]["died"] == 1 and stats["outcomes"]["done"] == 500
        wait_until(lambda: victim not in worker_pids(pool) and len(worker_pids(pool)) == 2,
                   DEADLINE)


def test_retries_run_a_task_again_on_another_worker(tmp_path):
    with janus_mp.TaskPool(2, name="tp", retries=1) as pool:
        assert pool.submit(t.die_first_time, str(tmp_path / "once")).result(DEADLINE) == \
            "survived"
        assert pool.stats()["outcomes"] == {"done": 1, "raised": 0, "died": 0, "timeout": 0,
                                            "poison": 0, "cancelled": 0, "broken": 0}
        # options() overrides per task: no retry for this one
        exc = pool.options(retries=0).submit(t.die_first_time,
                                             str(tmp_path / "twice")).exception(DEADLINE)
        assert isinstance(exc, WorkerDied)


def test_a_task_that_kills_every_worker_is_poison_after_max_worker_deaths(tmp_path):
    with janus_mp.TaskPool(2, name="tp", retries=10, max_worker_deaths=3) as pool:
        poison = pool.submit(t.kill_self)
        exc = poison.exception(DEADLINE)
        assert isinstance(exc, PoisonTask) and exc.deaths == 3 and exc.signal == signal.SIGKILL
        assert pool.submit(t.square, 5).result(DEADLINE) == 25
        assert pool.stats()["outcomes"]["poison"] == 1


def test_a_task_past_its_timeout_fails_and_its_worker_is_replaced(tmp_path):
    with janus_mp.TaskPool(1, name="tp", task_timeout=1.0) as pool:
        before = pool.submit(t.pid).result(DEADLINE)
        hung = pool.submit(t.hang)
        after = pool.submit(t.pid)
        assert isinstance(hung.exception(DEADLINE), TaskTimeout)
        replacement = after.result(DEADLINE)
        assert replacement != before
        wait_until(lambda: not alive(before), DEADLINE)
        assert pool.options(timeout=30).submit(t.square, 6).result(DEADLINE) == 36


@pytest.mark.parametrize("prefetch", [0, 1])
def test_prefetch_0_keeps_a_task_queued_until_a_worker_is_free(tmp_path, prefetch):
    with janus_mp.TaskPool(2, name="tp", prefetch=prefetch) as pool:
        wait_until(lambda: pool.stats()["workers"] == 2, DEADLINE)  # else one may take both
        slow = pool.submit(t.mark_and_wait, str(tmp_path / "m1"), str(tmp_path / "go1"))
        other = pool.submit(t.mark_and_wait, str(tmp_path / "m2"), str(tmp_path / "go2"))
        wait_until(lambda: (tmp_path / "m1").exists() and (tmp_path / "m2").exists(), DEADLINE)
        short = pool.submit(t.pid)  # a submission reaches the policy before submit returns
        assert pool.stats()["queued"] == (1 if prefetch == 0 else 0)  # else sent ahead
        if prefetch == 0:
            (tmp_path / "go2").touch()  # the other worker is free: the short task runs there
            assert short.result(DEADLINE) == other.result(DEADLINE)
            assert not slow.done()
        (tmp_path / "go1").touch()
        (tmp_path / "go2").touch()
        assert short.result(DEADLINE) in {slow.result(DEADLINE), other.result(DEADLINE)}


def test_cancel_a_queued_task_removes_it(tmp_path):
    with janus_mp.TaskPool(1, name="tp") as pool:
        gate = tmp_path / "go"
        blocker = pool.submit(t.mark_and_wait, str(tmp_path / "m"), str(gate))
        wait_until(lambda: (tmp_path / "m").exists(), DEADLINE)
        queued = pool.submit(t.mark, str(tmp_path / "never"))
        assert queued.cancel() and queued.cancelled()
        gate.touch()
        blocker.result(DEADLINE)
        assert pool.submit(t.square, 2).result(DEADLINE) == 4
        assert not (tmp_path / "never").exists()
        assert pool.stats()["outcomes"]["cancelled"] == 1


def test_cancel_a_running_task_cooperatively_keeps_its_worker(tmp_path):
    with janus_mp.TaskPool(1, name="tp") as pool:
        running = pool.submit(t.mark_and_wait, str(tmp_path / "m"), str(tmp_path / "never"))
        wait_until(lambda: (tmp_path / "m").exists(), DEADLINE)
        worker = int((tmp_path / "m").read_text())
        assert pool.cancel(running)
        with pytest.raises(concurrent.futures.CancelledError):
            running.result(DEADLINE)
        assert pool.submit(t.pid).result(DEADLINE) == worker  # stopped, not killed
        wait_until(lambda: pool.stats()["outcomes"]["cancelled"] == 1, DEADLINE)


def test_cancel_a_stubborn_running_task_kills_its_worker(tmp_path):
    with janus_mp.TaskPool(1, name="tp", cancel_grace=0.5) as pool:
        running = pool.submit(t.hang_stubbornly, str(tmp_path / "m"))
        wait_until(lambda: (tmp_path / "m").exists(), DEADLINE)
        worker = int((tmp_path / "m").read_text())
        running.cancel()
        wait_until(lambda: not alive(worker), DEADLINE)
        assert pool.submit(t.pid).result(DEADLINE) != worker
        assert pool.stats()["outcomes"]["cancelled"] == 1


def test_max_queued_blocks_or_raises_queue_full(tmp_path):
    with janus_mp.TaskPool(1, name="tp", max_queued=2) as pool:
        gate = tmp_path / "go"
        blocker = pool.submit(t.mark_and_wait, str(tmp_path / "m"), str(gate))
        wait_until(lambda: (tmp_path / "m").exists(), DEADLINE)
        # One more waits in the busy worker itself (prefetch), then two in the queue.
        queued = [pool.submit(t.square, x, block=False) for x in range(3)]
        assert pool.stats()["queued"] == 2
        try:
            with pytest.raises(QueueFull):
                pool.submit(t.square, 9, block=False)
        finally:
            gate.touch()
        blocker.result(DEADLINE)
        assert [f.result(DEADLINE) for f in queued] == [0, 1, 4]
        # blocking submissions wait for room instead: all of them get through
        assert list(pool.map(t.square, range(30), timeout=DEADLINE)) == \
            [x * x for x in range(30)]


def test_max_tasks_per_worker_recycles_workers(tmp_path):
    with janus_mp.TaskPool(1, name="tp", max_tasks_per_worker=3) as pool:
        pids = [pool.submit(t.pid).result(DEADLINE) for _ in range(7)]
        assert len(set(pids[:3])) == 1 and len(set(pids[3:6])) == 1
        assert pids[0] != pids[3] != pids[6]
        assert pool.stats()["outcomes"]["done"] == 7


def test_initializer_runs_in_each_worker(tmp_path):
    with janus_mp.TaskPool(2, name="tp", initializer=t.init_worker,
                           initargs=(str(tmp_path),)) as pool:
        pids = {f.result(DEADLINE) for f in [pool.submit(t.pid) for _ in range(20)]}
        wait_until(lambda: len(os.listdir(tmp_path)) == 2, DEADLINE)
        assert pids <= {int(name) for name in os.listdir(tmp_path)}


def test_process_settings_reach_the_workers():
    settings = janus_mp.ProcessSettings(env={"POOL_TEST_VAR": "set"})
    with janus_mp.TaskPool(1, name="tp", process=settings) as pool:
        assert pool.submit(t.read_env, "POOL_TEST_VAR").result(DEADLINE) == "set"


def test_await_pool_run():
    async def main(pool):
        return await asyncio.gather(*(pool.run(t.square, x) for x in range(5)))

    with janus_mp.TaskPool(2, name="tp") as pool:
        assert asyncio.run(main(pool)) == [0, 1, 4, 9, 16]


def test_every_task_runs_once_and_shutdown_stops_the_workers(tmp_path):
    pool = janus_mp.TaskPool(2, name="tp")
    futures = [pool.submit(t.count_run, str(tmp_path), x) for x in range(200)]
    pids = worker_pids(pool)
    pool.shutdown(wait=True)
    assert [f.result(0) for f in futures] == list(range(200))
    runs = sorted(int(name.split("-")[0]) for name in os.listdir(tmp_path))
    assert runs == list(range(200))
    assert not any(alive(pid) for pid in pids)
    with pytest.raises(RuntimeError):
        pool.submit(t.square, 1)


def test_shutdown_cancel_futures_cancels_what_waits(tmp_path):
    pool = janus_mp.TaskPool(1, name="tp")
    gate = tmp_path / "go"
    blocker = pool.submit(t.mark_and_wait, str(tmp_path / "m"), str(gate))
    wait_until(lambda: (tmp_path / "m").exists(), DEADLINE)
    queued = [pool.submit(t.square, x) for x in range(5)]
    pool.shutdown(wait=False, cancel_futures=True)
    wait_until(lambda: all(f.done() for f in queued), DEADLINE)
    assert all(f.cancelled() for f in queued)
    gate.touch()
    assert blocker.result(DEADLINE) > 0
    pool.shutdown(wait=True)


def test_a_standby_takes_over_from_a_dead_worker():
    with janus_mp.TaskPool(1, name="tp", standby=1) as pool:
        parked = wait_until(lambda: pool.supervisor.snapshot().service("tp").standby_parked,
                            DEADLINE)
        assert isinstance(pool.submit(t.kill_self).exception(DEADLINE), WorkerDied)
        assert pool.submit(t.pid).result(DEADLINE) in parked


def test_max_memory_recycles_a_worker_between_tasks():
    with janus_mp.TaskPool(1, name="tp", max_memory="120MiB", memory_measure="rss") as pool:
        big = pool.submit(t.allocate, 200).result(DEADLINE)  # the task itself completes
        assert pool.stats()["outcomes"]["done"] == 1
        wait_until(lambda: pool.submit(t.pid).result(DEADLINE) != big, DEADLINE)
        wait_until(lambda: not alive(big), DEADLINE)
        assert pool.stats()["outcomes"]["died"] == 0


def test_a_pool_whose_workers_cannot_start_fails_its_tasks_instead_of_hanging():
    with janus_mp.TaskPool(2, name="tp", initializer=t.failing_initializer) as pool:
        exc = pool.submit(t.square, 2).exception(DEADLINE)
        assert isinstance(exc, WorkerDied) and exc.exitcode == 1 and exc.deaths == 0
        assert "die before they can take a task" in str(exc)
        assert isinstance(pool.submit(t.square, 3).exception(DEADLINE), WorkerDied)
        assert pool.stats()["outcomes"]["broken"] == 2


def test_a_process_that_is_not_a_pool_worker_is_refused(pool):
    import socket as sockets

    from janus_mp.pools.frames import Kind, frame

    assert oct(os.stat(os.path.dirname(pool._dispatcher.address)).st_mode & 0o777) == "0o700"
    with sockets.socket(sockets.AF_UNIX, sockets.SOCK_STREAM) as intruder:
        intruder.connect(pool._dispatcher.address)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # closed already
            intruder.sendall(frame(Kind.HELLO))
        intruder.settimeout(DEADLINE)
        assert closed_by_peer(intruder)  # at once: its pid is no worker of the pool
    assert pool.submit(t.square, 8).result(DEADLINE) == 64
    wait_until(lambda: pool.stats()["workers"] == 2, DEADLINE)  # the intruder is not a third


def closed_by_peer(sock) -> bool:
    """The peer closed the connection (with our bytes unread, the close is a reset)."""
    try:
        return sock.recv(100) == b""
    except ConnectionResetError:
        return True


@pytest.mark.parametrize("start_method", ["spawn", "forkserver"])
def test_start_methods_that_never_fork_the_caller(start_method):
    with janus_mp.TaskPool(1, name="tp", start_method=start_method) as pool:
        assert pool.supervisor.config.start_method == start_method
        assert pool.submit(t.square, 12).result(DEADLINE) == 144
        assert isinstance(pool.submit(t.exit_now, 3).exception(DEADLINE), WorkerDied)
        assert pool.submit(t.pid).result(DEADLINE) != os.getpid()
        if start_method == "forkserver":  # workers come with janus-mp's modules loaded
            from multiprocess import forkserver

            preload = forkserver._forkserver._preload_modules
            assert preload[0] == "__main__" and "janus_mp.runtime.worker" in preload


def test_a_task_that_took_sigint_does_not_keep_it_from_the_next(tmp_path):
    with janus_mp.TaskPool(1, name="tp") as pool:
        first = pool.submit(t.ignore_sigint_then, 5)
        assert first.result(DEADLINE) == 5
        running = pool.submit(t.mark_and_wait, str(tmp_path / "m"), str(tmp_path / "never"))
        wait_until(lambda: (tmp_path / "m").exists(), DEADLINE)
        worker = int((tmp_path / "m").read_text())
        running.cancel()
        assert pool.submit(t.pid).result(DEADLINE) == worker  # stopped cooperatively again


def test_a_task_waiting_in_a_busy_worker_is_cancelled_at_once_and_never_runs(tmp_path):
    with janus_mp.TaskPool(1, name="tp") as pool:
        gate = tmp_path / "go"
        blocker = pool.submit(t.mark_and_wait, str(tmp_path / "m"), str(gate))
        wait_until(lambda: (tmp_path / "m").exists(), DEADLINE)
        behind = pool.submit(t.mark, str(tmp_path / "never"))  # sent to the busy worker
        wait_until(lambda: pool.stats()["queued"] == 0, DEADLINE)
        assert behind.cancel() and behind.cancelled()
        gate.touch()
        worker = blocker.result(DEADLINE)
        assert pool.submit(t.pid).result(DEADLINE) == worker
        assert not (tmp_path / "never").exists()


def test_interrupting_a_running_task_leaves_the_one_behind_it_alone(tmp_path):
    with janus_mp.TaskPool(1, name="tp") as pool:
        running = pool.submit(t.mark_and_wait, str(tmp_path / "m"), str(tmp_path / "never"))
        wait_until(lambda: (tmp_path / "m").exists(), DEADLINE)
        behind = pool.submit(t.square, 4)
        wait_until(lambda: pool.stats()["queued"] == 0, DEADLINE)  # it waits in the worker
        assert running.cancel()
        assert behind.result(DEADLINE) == 16
        wait_until(lambda: pool.stats()["outcomes"]["cancelled"] == 1, DEADLINE)
        assert pool.stats()["outcomes"]["done"] == 1


def test_threads_submitting_at_once_with_a_map_and_a_kill_lose_nothing(tmp_path):
    import threading

    with janus_mp.TaskPool(2, name="tp") as pool:
        victim = pool.submit(t.mark_and_wait, str(tmp_path / "m"), str(tmp_path / "never"))
        wait_until(lambda: (tmp_path / "m").exists(), DEADLINE)
        futures: list[list] = [[] for _ in range(4)]

        def submit_many(mine: list) -> None:
            for x in range(200):
                mine.append(pool.submit(t.square, x))

        threads = [threading.Thread(target=submit_many, args=(f,)) for f in futures]
        for thread in threads:
            thread.start()
        mapped = pool.map(t.square, range(300), timeout=DEADLINE)
        os.kill(int((tmp_path / "m").read_text()), signal.SIGKILL)
        for thread in threads:
            thread.join(DEADLINE)
        assert list(mapped) == [x * x for x in range(300)]
        for mine in futures:
            assert [f.result(DEADLINE) for f in mine] == [x * x for x in range(200)]
        assert isinstance(victim.exception(DEADLINE), WorkerDied)
        outcomes = pool.stats()["outcomes"]
        assert outcomes["done"] == 1100 and outcomes["died"] == 1
        assert sum(outcomes.values()) == 1101
