"""workers = "auto": the affinity mask capped by the cgroup CPU quota, read from fake roots."""

from __future__ import annotations

import os

from janus_mp.osproc import usable_cpus


def _roots(tmp_path, cgroup_line: str, files: dict[str, str]):
    proc = tmp_path / "proc" / "self"
    proc.mkdir(parents=True)
    (proc / "cgroup").write_text(cgroup_line + "\n")
    for relative, text in files.items():
        path = tmp_path / "cg" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return str(tmp_path / "proc"), str(tmp_path / "cg")


def test_a_v2_quota_of_one_and_a_half_cpus_gives_two_at_most(tmp_path):
    roots = _roots(tmp_path, "0::/app.slice/x", {"app.slice/x/cpu.max": "150000 100000\n"})
    assert usable_cpus(*roots) == min(2, len(os.sched_getaffinity(0)))


def test_a_v1_quota_below_one_cpu_still_gives_one(tmp_path):
    roots = _roots(tmp_path, "4:cpu,cpuacct:/job",
                   {"cpu,cpuacct/job/cpu.cfs_quota_us": "20000", "cpu,cpuacct/job/cpu.cfs_period_us":
                    "100000"})
    assert usable_cpus(*roots) == 1


def test_no_quota_means_the_affinity_mask(tmp_path):
    roots = _roots(tmp_path, "0::/", {"cpu.max": "max 100000\n"})
    assert usable_cpus(*roots) == len(os.sched_getaffinity(0))
