"""cgroup v2 limits against a fake cgroup tree (plain files): what is checked, created and
written, the refusals in one line, OOM kills told from the service's memory.events. The
kernel's side (enforcement) is tested with real processes in
tests/integration/test_cgroup_limits.py where this machine allows it."""

from __future__ import annotations

import os

import pytest

from janus_mp.runtime.cgroups import (
    SERVICE_PREFIX,
    SUPERVISOR_LEAF,
    CgroupError,
    Limits,
    ServiceCgroups,
    own_cgroup,
)


def fake_cgroup(tmp_path, controllers="cpuset cpu io memory pids", procs=None):
    base = tmp_path / "cg"
    base.mkdir()
    (base / "cgroup.controllers").write_text(controllers + "\n")
    (base / "cgroup.procs").write_text(f"{os.getpid()}\n" if procs is None else procs)
    (base / "cgroup.subtree_control").write_text("")
    return base


def test_limits_become_the_interface_files_the_kernel_reads():
    assert Limits(memory_max=64 * 2**20, cpu_max=1.5, pids_max=32).files() == {
        "memory.max": str(64 * 2**20), "cpu.max": "150000 100000", "pids.max": "32"}
    assert Limits(cpu_max=0.001).files() == {"cpu.max": "1000 100000"}  # the kernel's minimum
    assert Limits().controllers == set()


def test_prepare_moves_the_supervisor_out_enables_controllers_and_fills_each_leaf(tmp_path):
    base = fake_cgroup(tmp_path)
    groups = ServiceCgroups(str(base))
    groups.prepare({"web": Limits(memory_max=2**26, pids_max=10), "cpu": Limits(cpu_max=2.0)})
    assert (base / SUPERVISOR_LEAF / "cgroup.procs").read_text() == str(os.getpid())
    assert (base / "cgroup.subtree_control").read_text() == "+cpu +memory +pids"
    web = base / (SERVICE_PREFIX + "web")
    assert (web / "memory.max").read_text() == str(2**26)
    assert (web / "pids.max").read_text() == "10"
    assert not (web / "cpu.max").exists()
    assert (base / (SERVICE_PREFIX + "cpu") / "cpu.max").read_text() == "200000 100000"
    assert groups.procs_file("web") == str(web / "cgroup.procs")
    assert groups.procs_file("unlimited") is None


def test_no_limits_touch_nothing(tmp_path):
    base = fake_cgroup(tmp_path, controllers="")
    ServiceCgroups(str(base)).prepare({})
    assert sorted(os.listdir(base)) == ["cgroup.controllers", "cgroup.procs",
                                        "cgroup.subtree_control"]


def test_a_controller_not_offered_is_refused_in_one_line_before_anything_changes(tmp_path):
    base = fake_cgroup(tmp_path, controllers="hugetlb")
    with pytest.raises(CgroupError) as refused:
        ServiceCgroups(str(base)).prepare({"web": Limits(memory_max=2**26, pids_max=5)})
    text = str(refused.value)
    assert "\n" not in text and "offers hugetlb" in text and "need memory pids" in text
    assert not (base / SUPERVISOR_LEAF).exists()


def test_oom_kills_are_told_from_memory_events(tmp_path):
    base = fake_cgroup(tmp_path)
    groups = ServiceCgroups(str(base))
    groups.prepare({"web": Limits(memory_max=2**26)})
    events = base / (SERVICE_PREFIX + "web") / "memory.events"
    events.write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    assert groups.was_oom_killed("web")  # 0 at prepare, 1 now
    assert not groups.was_oom_killed("web")  # nothing new since
    assert not groups.was_oom_killed("unlimited")


def test_own_cgroup_reads_the_v2_mount_and_path(tmp_path):
    proc = tmp_path / "proc"
    (proc / "self").mkdir(parents=True)
    (proc / "self" / "mountinfo").write_text(
        "30 25 0:26 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
        "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n")
    (proc / "self" / "cgroup").write_text("4:memory:/x\n0::/system.slice/janus.service\n")
    assert own_cgroup(str(proc)) == "/sys/fs/cgroup/unified/system.slice/janus.service"
    (proc / "self" / "mountinfo").write_text("30 25 0:26 / /m rw - cgroup cgroup rw,memory\n")
    with pytest.raises(CgroupError, match="no cgroup2 file system is mounted"):
        own_cgroup(str(proc))


def test_a_cgroup_shared_with_other_processes_is_refused(tmp_path):
    base = fake_cgroup(tmp_path, procs=f"{os.getpid()}\n1\n")  # pid 1 is nobody we started
    with pytest.raises(CgroupError, match=r"not this supervisor's \(pids 1\): give janus-mp"):
        ServiceCgroups(str(base)).prepare({"web": Limits(pids_max=5)})
    assert (base / "cgroup.procs").read_text() == f"{os.getpid()}\n1\n"  # nobody moved


def test_service_limits_make_the_cgroups_only_when_a_service_asks_for_a_limit(tmp_path,
                                                                               monkeypatch):
    from janus_mp.core.config import SpawnOptions
    from janus_mp.runtime import cgroups

    base = fake_cgroup(tmp_path)
    asked: list[bool] = []
    monkeypatch.setattr(cgroups, "own_cgroup", lambda: asked.append(True) or str(base))
    limits = cgroups.ServiceLimits()
    limits.limit("plain", SpawnOptions())
    assert asked == [] and limits.procs_file("plain") is None
    assert not limits.was_oom_killed("plain")
    limits.limit("web", SpawnOptions(pids_max=10))
    assert asked == [True]
    assert limits.procs_file("web") == str(base / (SERVICE_PREFIX + "web") / "cgroup.procs")


def test_service_limits_name_the_service_in_a_refusal(tmp_path, monkeypatch):
    from janus_mp.core.config import SpawnOptions
    from janus_mp.runtime import cgroups

    base = fake_cgroup(tmp_path, controllers="hugetlb")
    monkeypatch.setattr(cgroups, "own_cgroup", lambda: str(base))
    with pytest.raises(CgroupError) as refused:
        cgroups.ServiceLimits().limit("web", SpawnOptions(pids_max=10))
    assert str(refused.value).startswith("service 'web': ") and "\n" not in str(refused.value)
