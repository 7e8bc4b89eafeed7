"""The pieces of an upgrade that need no process: reading a handover, the pid file, and the
code fingerprints `reload` compares."""

from __future__ import annotations

import json
import os
import sys

import pytest

from janus_mp.adapters import ApiModuleAdapter
from janus_mp.app.code_changes import CodeFingerprints, service_files
from janus_mp.app.pid_file import PidFile
from janus_mp.app.upgrade import HANDOVER_VAR, Handover
from janus_mp.errors import ConfigError, JanusError


def test_no_handover_without_the_variable():
    assert Handover.from_environ({}) is None


def test_a_handover_is_read_and_removed_from_the_environment():
    r, w = os.pipe()
    try:
        os.set_inheritable(w, True)
        env = {HANDOVER_VAR: json.dumps({"listeners": {"127.0.0.1:0": r}, "control": None,
                                         "control_path": "", "metrics": None, "ready": w,
                                         "old_pid": 1234})}
        handover = Handover.from_environ(env)
        assert handover is not None and HANDOVER_VAR not in env
        assert dict(handover.listeners) == {"127.0.0.1:0": r}
        assert (handover.control_fd, handover.metrics_fd, handover.old_pid) == (None, None, 1234)
        assert not os.get_inheritable(w)  # ours now: never leaked into a worker
        handover.tell_ready()  # closes w
        assert os.read(r, 100) == f"ready {os.getpid()}\n".encode()
    finally:
        os.close(r)


@pytest.mark.parametrize("text", [
    "not json", "{}",
    '{"listeners": {"a": -1}, "control": null, "control_path": "", "metrics": null, '
    '"ready": 5, "old_pid": 1}',
    '{"listeners": [], "control": null, "control_path": "", "metrics": null, "ready": 5, '
    '"old_pid": 1}',
    '{"listeners": {}, "control": "3", "control_path": "", "metrics": null, "ready": 5, '
    '"old_pid": 1}'])
def test_a_malformed_handover_is_one_line(text):
    with pytest.raises(JanusError, match=f"^{HANDOVER_VAR} is not a handover"):
        Handover.from_environ({HANDOVER_VAR: text})


def test_the_pid_file_is_replaced_whole_and_removed_only_if_ours(tmp_path):
    path = tmp_path / "janus.pid"
    path.write_text("99999\n")
    before = path.stat().st_ino
    pid_file = PidFile(str(path))
    pid_file.write()
    assert path.read_text() == f"{os.getpid()}\n"
    assert path.stat().st_ino != before  # renamed into place: no reader saw it half-written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["janus.pid"]
    PidFile(str(path)).write()  # an upgrade's new supervisor rewrote it
    pid_file.remove()
    assert path.exists()


def test_the_pid_file_refuses_a_symlink(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    link = tmp_path / "janus.pid"
    link.symlink_to(victim)
    with pytest.raises(ConfigError, match="is a symbolic link: refusing to write through it"):
        PidFile(str(link)).write()
    assert victim.read_text() == "precious\n"


def test_fingerprints_see_a_changed_file_of_the_service_package(tmp_path, monkeypatch):
    (tmp_path / "fp_pkg").mkdir()
    (tmp_path / "fp_pkg" / "__init__.py").write_text("")
    web = tmp_path / "fp_pkg" / "web.py"
    web.write_text("from fp_pkg import helper\ndef app(environ, start_response):\n    return []\n")
    helper = tmp_path / "fp_pkg" / "helper.py"
    helper.write_text("x = 1\n")
    (tmp_path / "fp_other.py").write_text("y = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("fp_pkg", "fp_pkg.web", "fp_pkg.helper", "fp_other"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    __import__("fp_other")
    service = ApiModuleAdapter("fp_pkg.web:app")  # imports it, as the supervisor does
    assert service_files(service) == {str(tmp_path / "fp_pkg" / f) for f in
                                      ("__init__.py", "web.py", "helper.py")}
    prints = CodeFingerprints("spawn")
    prints.record("web", service)
    assert prints.changed("web", service) == []
    (tmp_path / "fp_other.py").write_text("y = 22\n")  # not the service's package
    assert prints.changed("web", service) == []
    helper.write_text("x = 2222\n")
    assert prints.changed("web", service) == [str(helper)]
    assert CodeFingerprints("spawn").reimports and not CodeFingerprints("fork").reimports
