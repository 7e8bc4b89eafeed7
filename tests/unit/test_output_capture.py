"""The output capture's reader and sink threads over real pipes (no worker processes): lines
cut and grouped by source, a stalled sink costing dropped, counted lines instead of memory, and
a follower that stops reading losing lines it is told about."""

from __future__ import annotations

import os
import signal
import threading

from janus_mp.app.service_logs import Follower, ServiceLogs
from janus_mp.private_fds import PrivateFds
from janus_mp.runtime.output_capture import MAX_LINE, OutputCapture, OutputSource
from janus_mp.runtime.output_pipes import fatal_signal
from tests.support import wait_until


class RecordingSink:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str, bytes]] = []
        self.drops: dict[str, int] = {}
        self.gate = threading.Event()
        self.gate.set()

    def write(self, source: OutputSource, lines: list[bytes], when: float) -> None:
        self.gate.wait()
        self.lines.extend((source.service, source.stream, line) for line in lines)

    def dropped(self, service: str, lines: int, when: float) -> None:
        self.drops[service] = self.drops.get(service, 0) + lines


def _registered(fds: PrivateFds) -> int:
    with fds.frozen() as registered:
        return len(registered)


def _attach(capture: OutputCapture, service: str) -> tuple[int, int]:
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    capture.attach(service, 0, 4242, {"out": out_r, "err": err_r})
    return out_w, err_w


def test_lines_are_split_by_stream_and_the_last_line_survives_eof() -> None:
    fds = PrivateFds()
    sink = RecordingSink()
    capture = OutputCapture(fds, sink)
    capture.open()
    out_w, err_w = _attach(capture, "svc")
    os.write(out_w, b"one\ntw")
    os.write(err_w, b"oops\n")
    os.write(out_w, b"o\n" + b"x" * (MAX_LINE + 10) + b"\nno newline at the end")
    os.close(out_w)
    os.close(err_w)
    wait_until(lambda: len(sink.lines) == 6, timeout=5)
    out = [line for _, stream, line in sink.lines if stream == "out"]
    assert out == [b"one", b"two", b"x" * MAX_LINE, b"x" * 10, b"no newline at the end"]
    assert ("svc", "err", b"oops") in sink.lines
    wait_until(lambda: _registered(fds) == 2, timeout=5)  # pipes closed at EOF
    capture.close()
    with fds.frozen() as left:
        assert not left


def test_a_stalled_sink_drops_whole_chunks_and_counts_their_lines() -> None:
    fds = PrivateFds()
    sink = RecordingSink()
    sink.gate.clear()  # the sink hangs (a stalled disk)
    capture = OutputCapture(fds, sink, budget=64 * 1024)
    capture.open()
    out_w, err_w = _attach(capture, "flood")
    line = b"y" * 99 + b"\n"
    chunk = line * 100  # 10,000 bytes, 100 lines
    for _ in range(200):  # 2 MB: never blocks, the reader keeps reading and dropping
        os.write(out_w, chunk)
    wait_until(lambda: capture.dropped_lines().get("flood", 0) > 0, timeout=5)
    os.close(out_w)
    os.close(err_w)
    wait_until(lambda: _registered(fds) == 2, timeout=5)
    assert capture._pending_bytes <= 64 * 1024
    sink.gate.set()
    capture.close()
    dropped = capture.dropped_lines()["flood"]
    assert len(sink.lines) + dropped == 200 * 100
    assert sink.drops == {"flood": dropped}


def test_a_follower_that_does_not_read_loses_lines_and_is_told() -> None:
    follower = Follower("svc", capacity=10)
    follower.push([f"{i}" for i in range(8)])
    follower.push([f"{i}" for i in range(8, 15)])
    lines, lost, closed = follower.take(0)
    assert lines == [str(i) for i in range(10)] and lost == 5 and not closed
    follower.push(["next"])
    assert follower.take(0) == (["next"], 0, False)


def test_recent_lines_and_a_follower_miss_nothing_between_them(tmp_path) -> None:
    logs = ServiceLogs(str(tmp_path), max_bytes=10_000, backups=1)
    logs.open()
    source = OutputSource("svc", 1, 99, "out")
    logs.write(source, [b"a", b"b"], 0.0)
    recent, follower = logs.follow("svc", 1)
    logs.write(source, [b"c"], 0.0)
    logs.write(OutputSource("other", 0, 98, "out"), [b"z"], 0.0)
    assert [line.rsplit(" ", 1)[1] for line in recent] == ["b"]
    lines, lost, _ = follower.take(0)
    assert [line.rsplit(" ", 1)[1] for line in lines] == ["c"] and lost == 0
    logs.close()
    assert follower.take(0)[2] is True
    assert (tmp_path / "svc.log").read_text().count("svc[1] out| ") == 3


def test_a_crash_pipe_is_stderr_and_its_first_line_names_the_fatal_signal() -> None:
    fds = PrivateFds()
    sink = RecordingSink()
    capture = OutputCapture(fds, sink)
    reported: list[tuple[int, int]] = []
    capture.on_fatal_signal = lambda pid, signum: reported.append((pid, signum))
    capture.open()
    crash_r, crash_w = os.pipe()
    capture.attach("svc", 0, 4242, {"crash": crash_r})
    # faulthandler writes its first line in pieces, from a signal handler
    for piece in (b"Fatal Python error: ", b"Bus error", b"\n\n", b"Current thread 0x1:\n",
                  b"Fatal Python error: Aborted\n"):
        os.write(crash_w, piece)
    os.close(crash_w)
    wait_until(lambda: len(sink.lines) == 4, timeout=5)
    assert sink.lines[0] == ("svc", "err", b"Fatal Python error: Bus error")
    assert reported == [(4242, signal.SIGBUS)]  # the first line only
    capture.close()


def test_only_the_faults_faulthandler_names_are_fatal_signals() -> None:
    assert fatal_signal(b"Fatal Python error: Segmentation fault") == signal.SIGSEGV
    assert fatal_signal(b"Fatal Python error: Floating-point exception") == signal.SIGFPE
    assert fatal_signal(b"Fatal Python error: _PyThreadState_Get: no thread state") is None
    assert fatal_signal(b"Segmentation fault") is None
