"""What ``bay up`` needs of this machine, checked before any work starts:
each missing thing is one line that says what to do, instead of a failure
minutes later in the middle of a build.

Measured here (docs/benchmarks.md, "bay up's footprint"): a 3-node cluster
with two masters, its HDFS, Kafka and OpenSearch holds about 3 GiB resident
(node1 1.1 GiB with Kafka and OpenSearch, the other nodes 0.35 GiB each,
each master 0.4 GiB, HDFS 0.34 GiB) and 6 GiB with its page cache; the
images and the containers' layers take about 5 GiB of disk.
``bay up`` publishes no port on the host (HDFS takes free ports on the
cluster network's gateway only), so there is no port to check.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

#: memory (MemAvailable) a cluster of the default size needs once up, and per node beyond it
NEED_MEMORY_GIB, PER_NODE_GIB = 4.0, 0.5
#: free disk where Docker keeps images and volumes (a first build, 3 nodes)
NEED_DISK_GIB = 8.0
#: what bay up runs on this machine, and where it comes from
TOOLS = {"java": "HDFS and Kafka run on it", "iptables": "HDFS's ports are closed to all but the registry nodes",
         "openssl": "graphite-web's password is hashed with it"}
DEMO_TOOLS = {"skopeo": "the demo's images are pushed with it"}
BUILD_TOOLS = {"debootstrap": "the node image is built from Debian with it"}


@dataclass(frozen=True)
class Machine:
    """Where the facts are read from (a test points them elsewhere)."""

    proc: Path = Path("/proc")
    cgroup: Path = Path("/sys/fs/cgroup")
    docker_root: Path = Path("/var/lib/docker")
    euid: int | None = None

    def uid(self) -> int:
        return os.geteuid() if self.euid is None else self.euid


def _meminfo(proc: Path) -> dict[str, int]:
    out = {}
    for line in (proc / "meminfo").read_text().splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            out[key] = int(parts[0]) * 1024
    return out


def _free_bytes(path: Path) -> int:
    while not path.exists():
        path = path.parent
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def problems(m: Machine, nodes: int = 3, demo: bool = True, image_built: bool = False,
             which=shutil.which) -> list[str]:
    """Every missing thing, one line each (empty: go ahead)."""
    out = []
    if m.uid() != 0:
        out.append("not root: bay up writes /var/lib/bay and runs containers with every capability (sudo bay up)")
    if (m.cgroup / "cgroup.controllers").exists():
        out.append("cgroup v2 (unified) on this host: the node containers run systemd and Docker on the host's "
                   "cgroups v1 (boot with systemd.unified_cgroup_hierarchy=0)")
    try:
        filesystems = (m.proc / "filesystems").read_text().split()
    except OSError:
        filesystems = []
    if "overlay" not in filesystems:
        out.append("no overlay filesystem in the kernel: each node's Docker stores images with overlay2 "
                   "(modprobe overlay)")
    if not (m.proc / "sys/net/bridge").exists():
        out.append("kernel module br_netfilter is not loaded: the nodes' containers are reached across Docker "
                   "bridges (modprobe br_netfilter)")
    tools = {**TOOLS, **(DEMO_TOOLS if demo else {}), **({} if image_built else BUILD_TOOLS)}
    missing = [f"{t} ({why})" for t, why in tools.items() if not which(t)]
    if missing:
        out.append(f"missing on this machine: {'; '.join(missing)}; bash scripts/setup.sh installs them")
    try:
        available = _meminfo(m.proc).get("MemAvailable", 0)
    except OSError:
        available = None
    need = NEED_MEMORY_GIB + PER_NODE_GIB * max(0, nodes - 3)
    if available is not None and available < need * 2**30:
        out.append(f"{available / 2**30:.1f} GiB of memory available, {need:.0f} GiB needed for {nodes} nodes "
                   "(fewer --nodes, or stop something)")
    free = _free_bytes(m.docker_root)
    if free < NEED_DISK_GIB * 2**30:
        out.append(f"{free / 2**30:.1f} GiB free under {m.docker_root}, {NEED_DISK_GIB:.0f} GiB needed "
                   "(docker system prune, or a bigger disk)")
    return out
