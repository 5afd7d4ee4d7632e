"""A local cluster's HDFS (the registry's storage and the log archive):
Hadoop's MiniDFSCluster on this machine, started by ``bay up`` and stopped
by ``bay down``, reachable only from the registry nodes and the masters."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from bay_salt.cluster import firewall, images
from bay_salt.cluster.errors import BayError
from bay_salt.cluster.processes import start_minidfs
from bay_salt.cluster.progress import Progress
from bay_salt.host.sources import network_gateway

#: the JVM's main class: a pid is this cluster's HDFS only if its command line names it
MAIN_CLASS = "BayMiniDFS"


def start(cluster: str, state_dir: Path, net, registries: list[str], progress: Progress) -> str:
    """A real HDFS for the cluster's registry, listening on the cluster
    network's gateway only (the DataNodes too, so WebHDFS redirects reach
    them from the nodes), and reachable only from the ``registries``
    addresses and the masters' (host firewall: WebHDFS believes any user
    name). Returns the registry's storage URL."""
    net.reload()
    gateway = network_gateway(net)
    with progress.step("HDFS (MiniDFSCluster) for the registry"):
        daemon, http = start_minidfs(state_dir / "hdfs", images.checkout_root(), bind=gateway)
    (state_dir / "hdfs.pid").write_text(str(daemon.pid))
    try:
        ports = firewall.apply(cluster, gateway, daemon.pid, registries)
    except (firewall.FirewallError, OSError, subprocess.CalledProcessError) as err:
        raise BayError(f"HDFS for cluster {cluster}: cannot limit it to the registry nodes ({err}); "
                       "bay up needs root and iptables") from None
    progress.note(f"HDFS ports {', '.join(map(str, ports))}: registry nodes and the master only")
    return f"hdfs://{gateway}:{http}/bay-registry"


def stop(state_dir: Path) -> str | None:
    """Stop the cluster's MiniDFSCluster: the process recorded at `bay up`,
    only if it still is that JVM (its command line names this cluster's dir)."""
    pidfile = state_dir / "hdfs.pid"
    if not pidfile.exists():
        return None
    pid = int(pidfile.read_text())
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return None
    if MAIN_CLASS not in cmdline or str(state_dir) not in cmdline:
        return None
    os.killpg(pid, signal.SIGTERM)
    for _ in range(100):
        if not Path(f"/proc/{pid}").exists():
            break
        time.sleep(0.1)
    else:
        os.killpg(pid, signal.SIGKILL)
    return f"HDFS (pid {pid})"
