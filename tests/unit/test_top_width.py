"""`top` fits any terminal width: the least useful columns go first, long cells end in an
ellipsis, and no line is longer than the terminal."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from janus_mp.app.status_view import HEADERS, fitting_columns, rows, top_frame


def _status(services: int = 2, workers: int = 4) -> dict:
    return {
        "pid": 4242, "state": "running", "uptime_secs": 3600.0,
        "supervisor": {"cpu_percent": 1.0, "rss_bytes": 50_000_000},
        "recent_exits": [{"at": 1_700_000_000.0, "service": "web-frontend-with-a-long-name",
                          "worker": 3, "pid": 123456,
                          "reason": "failed (exit code 1): a very long reason " * 3,
                          "uptime_secs": 12.5}],
        "groups": [],
        "services": [{
            "name": f"service-number-{n}", "phase": "running", "ready": workers,
            "desired": workers, "restarts": 12, "breaker": "closed",
            "listening": ["127.0.0.1:8000", "unix:/run/app/a-long-socket-path.sock"],
            "termination_reason": None, "last_error": "ValueError: " + "x" * 80,
            "workers": [{"worker": i, "phase": "running", "generation": 7, "restarts": 3,
                         "pids": [100000 + i], "last_exit_code": 1, "last_error": None,
                         "processes": [{"cpu_percent": 99.0, "rss_bytes": 30_000_000}]}
                        for i in range(workers)],
        } for n in range(services)],
    }


@pytest.mark.parametrize("width", [30, 40, 60, 80, 100, 132, 200, 300])
def test_no_line_is_wider_than_the_terminal(width):
    out = io.StringIO()
    console = Console(file=out, width=width, color_system=None, legacy_windows=False)
    console.print(top_frame(_status(), width))
    lines = out.getvalue().splitlines()
    assert lines and max(len(line) for line in lines) <= width, "\n".join(lines)
    for line in lines:  # every table row is whole: nothing cropped at the right edge
        if line[:1] in "┏┃┡│└":
            assert line.rstrip()[-1] in "┓┃┩│┘", "\n".join(lines)
    assert "service-number-0"[:5] in out.getvalue()


def test_narrow_terminals_drop_the_least_useful_columns_first():
    table = rows(_status())
    wide = [HEADERS[i] for i, _ in fitting_columns(table, 300)]
    assert wide == HEADERS
    middle = [HEADERS[i] for i, _ in fitting_columns(table, 90)]
    assert "BREAKER" not in middle and {"SERVICE", "PHASE", "PIDS"} <= set(middle)
    narrow = [HEADERS[i] for i, _ in fitting_columns(table, 20)]
    assert narrow == ["SERVICE", "PHASE"]
