"""The README runs as written.

Every ```python snippet has no undefined name (ruff's F821, an oracle we did not write) and runs
to a clean end against stand-ins for the user code it names (tests/readme_app: ``myapp``,
``legacy`` and stub programs on PATH); a snippet that starts a supervisor is stopped once all its
services are up. Every ```toml snippet passes ``janus-mp check``. Every metric name the README
mentions is exported by a live supervisor, and every option of ``janus-mp run`` is documented.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

import click
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.test_cli import Cli
from tests.support import TAG_VAR, kill_pids, tagged_pids, wait_until

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
APP = ROOT / "tests" / "readme_app"
FENCE = re.compile(r"^```(\w+)[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)


def snippets(language: str) -> list[tuple[int, str]]:
    text = README.read_text()
    return [(text.count("\n", 0, m.start()) + 1, m.group(2))
            for m in FENCE.finditer(text) if m.group(1) == language]


def snippet_env(tag: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"PYTHONPATH": f"{APP}{os.pathsep}{ROOT}", TAG_VAR: tag, "SPT_NOENV": "1",
                "PATH": f"{APP / 'bin'}{os.pathsep}{env.get('PATH', '')}"})
    return env


def run_tagged(cmd: list[str], tmp_path: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` in its own session, beside the files snippets name by relative path; fail
    if anything it started is left behind."""
    shutil.copytree(APP / "cwd", tmp_path, dirs_exist_ok=True)
    tag = uuid.uuid4().hex
    try:
        done = subprocess.run(cmd, cwd=tmp_path, env=snippet_env(tag), capture_output=True,
                              text=True, timeout=timeout, start_new_session=True,
                              stdin=subprocess.DEVNULL)
    finally:
        try:
            wait_until(lambda: not tagged_pids(tag), timeout=5.0, message="no leftovers")
        except AssertionError:
            left = tagged_pids(tag)
            kill_pids(left)
            raise AssertionError(f"{cmd[-1]} left processes behind: {left}") from None
    return done


@pytest.mark.parametrize(("line", "code"), snippets("python"),
                         ids=lambda v: f"L{v}" if isinstance(v, int) else "")
def test_python_snippet_runs_as_written(line: int, code: str, tmp_path: Path) -> None:
    undefined = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "--select", "F821,E9",
         "--output-format", "concise", "--stdin-filename", f"README_L{line}.py", "-"],
        input=code, capture_output=True, text=True)
    assert undefined.returncode == 0, f"README line {line}:\n{undefined.stdout}"
    script = tmp_path / f"readme_L{line}.py"
    script.write_text(code)
    done = run_tagged([sys.executable, str(APP / "run_snippet.py"), str(script)], tmp_path, 100)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"README line {line} exited {done.returncode}:\n{output}"
    assert "Traceback" not in output, f"README line {line}:\n{output}"
    if "run_until_shutdown" in code and ".shutdown(" not in code:  # it serves until stopped
        assert "SNIPPET-UP" in done.stdout, f"README line {line} never came up:\n{output}"


#: A TOML snippet that shows one table only ([hooks], [supervisor]) is checked with one small
#: service beside it, since a config file without services is refused.
STUB_SERVICE = '\n[services.readme_stub]\ntarget = "myapp.services:Crunch"\n'


@pytest.mark.parametrize(("line", "text"), snippets("toml"),
                         ids=lambda v: f"L{v}" if isinstance(v, int) else "")
def test_toml_snippet_passes_check(line: int, text: str, tmp_path: Path) -> None:
    if "[services." not in text:
        text += STUB_SERVICE
    config = tmp_path / "janus.toml"
    config.write_text(text)
    done = run_tagged([sys.executable, "-m", "janus_mp", "check", str(config)], tmp_path, 60)
    assert done.returncode == 0, f"README line {line}:\n{done.stdout}{done.stderr}"


def readme_metric_names() -> set[str]:
    """Metric names in the README; ``janus_supervisor_*`` (a prefix) is not a name."""
    text = README.read_text()
    return {m.group(0) for m in re.finditer(r"\bjanus_(?:supervisor|http|pool)_[a-z0-9_]*\w",
                                            text) if not text.startswith("*", m.end())}


#: A deployment exercising every kind of metric source: a service with a standby, an HTTP app,
#: a hosted task pool, the command line's own log writer.
METRICS_CONFIG = """
[services.crunch]
target = "myapp.services:Crunch"
workers = 1
standby = 1

[services.web]
wsgi = "myapp.web:app"
bind = ["127.0.0.1:0"]

[pools.render]
workers = 1
"""

#: What a family named in the README may be written as (OpenMetrics sample suffixes).
SUFFIXES = ("_total", "_bucket", "_count", "_sum", "_created", "_info")


def exported_names(body: str) -> set[str]:
    names: set[str] = set()
    for family in text_string_to_metric_families(body):
        names.add(family.name)
        names.update(family.name + suffix for suffix in SUFFIXES)
        names.update(sample.name for sample in family.samples)
    return names


def test_every_metric_name_in_the_readme_is_exported(tmp_path: Path) -> None:
    (tmp_path / "janus.toml").write_text(METRICS_CONFIG)
    cli = Cli(tmp_path)
    cli.env["PYTHONPATH"] = f"{APP}{os.pathsep}{cli.env['PYTHONPATH']}"
    try:
        cli.start("-c", "janus.toml", "--metrics-bind", "127.0.0.1:0")
        wait_until(lambda: all(s["ready"] == s["desired"] for s in cli.status()["services"]),
                   timeout=30, message="every service ready")
        web = cli.service("web")["listening"][0]
        with urllib.request.urlopen(f"http://{web}/", timeout=10) as response:
            assert response.read() == b"hello\n"
        port = wait_until(lambda: re.search(r"metrics on http://127.0.0.1:(\d+)/",
                                            cli.log.read_text()), message="the metrics port")
        with urllib.request.urlopen(f"http://127.0.0.1:{port.group(1)}/metrics",
                                    timeout=10) as response:
            exported = exported_names(response.read().decode())
    finally:
        cli.close()
    missing = sorted(readme_metric_names() - exported)
    assert not missing, f"the README names metrics /metrics does not export: {missing}"


def test_every_option_of_run_is_in_the_readme() -> None:
    from janus_mp.app.cli import cli

    text = README.read_text()
    run = cli.commands["run"]
    options = [opt for param in run.params if isinstance(param, click.Option)
               for opt in param.opts if opt.startswith("--") and opt != "--help"]
    missing = [opt for opt in options if f"`{opt}" not in text and f"{opt}`" not in text
               and f"{opt} " not in text]
    assert not missing, f"janus-mp run options the README does not mention: {missing}"
