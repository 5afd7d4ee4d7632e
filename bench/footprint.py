"""What a running `bay up` cluster takes of this machine, next to what `bay up`
asks of a machine before it starts (bay_salt/cluster/prereq.py).

    .venv/bin/python bench/footprint.py [--cluster NAME]

Memory: each container's cgroup (resident, and with its page cache) and the
HDFS process's resident set; disk: the images' and the containers' layers
(Docker's own accounting). The cluster must be up (`bay up`, or the e2e
prebuild); nothing is started or changed.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import docker
from common import LocalCluster

from bay_salt.cluster import prereq

MIB = 2**20


def cgroup_memory(container_id: str) -> tuple[int, int]:
    """(resident, usage with page cache) of a container, from cgroups v1."""
    for base in (f"/sys/fs/cgroup/memory/docker/{container_id}",
                 f"/sys/fs/cgroup/memory/system.slice/docker-{container_id}.scope"):
        if os.path.isdir(base):
            stat = dict(line.split() for line in Path(base, "memory.stat").read_text().splitlines())
            return int(stat["total_rss"]), int(Path(base, "memory.usage_in_bytes").read_text())
    raise SystemExit(f"no cgroup v1 memory controller for {container_id[:12]}")


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cluster", default="default")
    args = ap.parse_args()
    cluster = LocalCluster(args.cluster)
    containers = cluster.masters() + [cluster.client.containers.get(n.container) for n in cluster.nodes()]
    if not containers:
        raise SystemExit(f"cluster {args.cluster!r} is not up")
    total_rss = total_usage = 0
    print(f"{'container':<24} {'resident MiB':>13} {'with cache MiB':>15}")
    for c in containers:
        r, u = cgroup_memory(c.id)
        total_rss, total_usage = total_rss + r, total_usage + u
        print(f"{c.name:<24} {r / MIB:>13.0f} {u / MIB:>15.0f}")
    pid_file = cluster.state_dir / "hdfs.pid"
    hdfs = rss(int(pid_file.read_text())) if pid_file.exists() else 0
    print(f"{'HDFS (MiniDFSCluster)':<24} {hdfs / MIB:>13.0f}")
    total_rss += hdfs
    df = docker.from_env().df()
    layers = sum(c.get("SizeRw", 0) or 0 for c in df["Containers"] if c["Names"][0].lstrip("/") in
                 {c.name for c in containers})
    images = sum(i["Size"] for i in df["Images"] if any(t.startswith(("bay-node", "bay-base")) for t in i["RepoTags"] or []))
    need_mem, need_disk = prereq.NEED_MEMORY_GIB + prereq.PER_NODE_GIB * max(0, len(cluster.nodes()) - 3), \
        prereq.NEED_DISK_GIB
    print(f"\nmemory: {total_rss / 2**30:.2f} GiB resident, {(total_usage + hdfs) / 2**30:.2f} GiB with page cache; "
          f"bay up asks for {need_mem:.1f} GiB available: resident / asked = {total_rss / 2**30 / need_mem:.2f}")
    print(f"disk: {(layers + images) / 2**30:.2f} GiB (containers' layers {layers / 2**30:.2f}, images "
          f"{images / 2**30:.2f}); bay up asks for {need_disk:.0f} GiB free: used / asked = "
          f"{(layers + images) / 2**30 / need_disk:.2f}")


if __name__ == "__main__":
    main()
