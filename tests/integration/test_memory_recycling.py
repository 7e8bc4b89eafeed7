"""max_memory over a worker's whole process tree, measured as USS: a command whose program
allocates is recycled although its Python worker is small; workers start with the collector
frozen on what they inherited (gc.freeze before fork)."""

from __future__ import annotations

import sys
import textwrap

import pytest

from tests.integration.ops_cli import QuickCli
from tests.support import wait_until

pytestmark = pytest.mark.timeout(60)

APP = '''
import gc

def frozen(ctx):
    with open("freeze_count", "w") as f:
        f.write(str(gc.get_freeze_count()))
    ctx.shutdown.wait()
'''

HOG = "import time; block = bytearray(150 << 20); time.sleep(60)"  # 150 MiB, all touched


@pytest.fixture
def cli(tmp_path):
    c = QuickCli(tmp_path)
    (tmp_path / "memapp.py").write_text(textwrap.dedent(APP))
    yield c
    c.close()


def test_a_command_allocating_past_max_memory_is_recycled_by_its_tree_uss(cli, tmp_path):
    config = tmp_path / "mem.toml"
    config.write_text(textwrap.dedent(f'''
        [supervisor]
        shutdown_timeout = 2
        kill_timeout = 1
        [services.hog]
        command = [{sys.executable!r}, "-c", {HOG!r}]
        max_memory = "64MiB"
        rss_check_interval = 0.2
        [services.frozen]
        target = "memapp:frozen"
    '''))
    cli.start("-c", str(config))
    first = wait_until(lambda: cli.service("hog")["workers"][0]["pids"])[0]
    wait_until(lambda: "MiB > max_memory 64 MiB" in cli.log.read_text(), timeout=30)
    line = next(text for text in cli.log.read_text().splitlines() if "> max_memory" in text)
    assert "hog[0]" in line and "uss " in line  # the worker alone is ~15 MiB: its tree counts
    wait_until(lambda: first not in cli.service("hog")["workers"][0]["pids"], timeout=30)
    assert int((tmp_path / "freeze_count").read_text()) > 0
