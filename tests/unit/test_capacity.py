import os

from bay_salt.node import capacity


def test_cgroup_v1_quota_and_limit(tmp_path):
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu/cpu.cfs_quota_us").write_text("50000\n")
    (tmp_path / "cpu/cpu.cfs_period_us").write_text("100000\n")
    (tmp_path / "memory").mkdir()
    (tmp_path / "memory/memory.limit_in_bytes").write_text(str(512 * 1024 * 1024))
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24000000 kB\nMemFree: 1 kB\n")
    assert capacity.cpus(tmp_path) == 0.5
    assert capacity.memory_mb(tmp_path, meminfo) == 512


def test_unlimited_falls_back_to_machine(tmp_path):
    (tmp_path / "cpu.max").write_text("max 100000\n")
    (tmp_path / "memory.max").write_text("max\n")
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       2097152 kB\n")
    assert capacity.cpus(tmp_path) == len(os.sched_getaffinity(0))
    assert capacity.memory_mb(tmp_path, meminfo) == 2048
