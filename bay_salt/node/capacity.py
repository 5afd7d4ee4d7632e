"""A node's capacity for placement: CPUs and memory it may hand to containers,
from cgroup limits where the node itself is limited, else the machine's."""

from __future__ import annotations

import os
from pathlib import Path


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def cpus(cgroup_root: Path = Path("/sys/fs/cgroup")) -> float:
    """CPUs: the CFS quota (cgroup v2 ``cpu.max`` or v1 ``cpu.cfs_quota_us``)
    if one is set, else the CPUs this process may run on."""
    online = float(len(os.sched_getaffinity(0)))
    v2 = _read(cgroup_root / "cpu.max")
    if v2:
        quota, _, period = v2.partition(" ")
        if quota != "max":
            return min(online, int(quota) / int(period))
        return online
    quota = _read(cgroup_root / "cpu" / "cpu.cfs_quota_us") or _read(cgroup_root / "cpu,cpuacct" / "cpu.cfs_quota_us")
    period = _read(cgroup_root / "cpu" / "cpu.cfs_period_us") or _read(cgroup_root / "cpu,cpuacct" / "cpu.cfs_period_us")
    if quota and period and int(quota) > 0:
        return min(online, int(quota) / int(period))
    return online


def memory_mb(cgroup_root: Path = Path("/sys/fs/cgroup"), meminfo: Path = Path("/proc/meminfo")) -> int:
    """MiB of memory: the cgroup limit if lower than the machine's total."""
    total = 0
    for line in (_read(meminfo) or "").splitlines():
        if line.startswith("MemTotal:"):
            total = int(line.split()[1]) // 1024
    limit = _read(cgroup_root / "memory.max") or _read(cgroup_root / "memory" / "memory.limit_in_bytes")
    if limit and limit != "max":
        limit_mb = int(limit) // (1024 * 1024)
        if 0 < limit_mb < total:
            return limit_mb
    return total
