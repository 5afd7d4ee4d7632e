"""What the metrics agent costs on a node with 50 containers, next to cAdvisor
on the same node in the same window.

On a running `bay up` cluster: node1 and node3 are drained (`bay drain`), so a
service of 50 instances (the demo image, 0.01 CPU and 16 MiB each) and the
demo's 5 all run on node2; for ``--sample`` seconds the CPU time (utime +
stime from /proc) and the resident memory of node2's bay-metrics and cadvisor
processes are read. The service is removed and the nodes undrained after.

    .venv/bin/python bench/metrics_cost.py [--cluster default] [--sample 120]
"""

from __future__ import annotations

import argparse
import copy
import os
import time

from common import LocalCluster
from rich.console import Console
from rich.table import Table

SERVICE = "costbench"
NODE = "node2"


def proc_usage(container, unit: str) -> tuple[float, float]:
    """(CPU seconds so far, RSS bytes) of a unit's main process in the node."""
    pid = container.exec_run(["systemctl", "show", "-p", "MainPID", "--value", unit]).output.decode().strip()
    stat = container.exec_run(["cat", f"/proc/{pid}/stat"]).output.decode()
    fields = stat.rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    status = container.exec_run(["cat", f"/proc/{pid}/status"]).output.decode()
    rss = next(int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmRSS:"))
    return cpu, rss


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cluster", default="default")
    ap.add_argument("--sample", type=float, default=120)
    ap.add_argument("--instances", type=int, default=50)
    args = ap.parse_args()
    console = Console()
    cluster = LocalCluster(args.cluster)
    original = cluster.site.services_pillar()
    pillar = copy.deepcopy(original)
    demo = pillar["bay"]["services"]["demo"]
    pillar["bay"]["services"][SERVICE] = {
        "image": demo["image"], "owners": demo["owners"], "health": {"http": "/healthz"},
        "groups": {"load": {"instances": args.instances, "cpu": 0.01, "memory": "16Mi", "port": 8000,
                            "listen": 10090}}}
    others = [n.id for n in cluster.nodes() if n.id != NODE]
    node = cluster.client.containers.get(next(n.container for n in cluster.nodes() if n.id == NODE))
    try:
        with console.status(f"draining {', '.join(others)}; {args.instances} instances of {SERVICE} on {NODE}"):
            for n in others:
                cluster.runner("bay.drain", n)
            cluster.set_services(pillar)
            cluster.refresh_registry_grants()
            cluster.runner("bay.deploy", SERVICE)
        running = len(node.exec_run(["docker", "ps", "-q", "--filter", "label=io.bay.service"]).output.split())
        time.sleep(20)  # every container seen by cAdvisor and the agent a few times
        with console.status(f"sampling {args.sample:.0f} s"):
            a0, c0 = proc_usage(node, "bay-metrics"), proc_usage(node, "cadvisor")
            t0 = time.time()
            time.sleep(args.sample)
            a1, c1 = proc_usage(node, "bay-metrics"), proc_usage(node, "cadvisor")
            took = time.time() - t0
    finally:
        with console.status("scaling the bench service to 0, undraining"):
            # Bay has no "remove a service": a group scaled to 0 runs nothing (bay services lists it at 0)
            cluster.runner("bay.scale", f"{SERVICE}.load", "0")
            cluster.set_services(original)
            for n in others:
                cluster.runner("bay.undrain", n)
    t = Table(title=f"Metrics agent on {NODE} with {running} Bay containers, {took:.0f} s, next to cAdvisor")
    for col in ("", "CPU (% of one core)", "RSS (MiB)"):
        t.add_column(col)
    agent_cpu, cad_cpu = 100 * (a1[0] - a0[0]) / took, 100 * (c1[0] - c0[0]) / took
    t.add_row("bay-metrics (every 10 s)", f"{agent_cpu:.2f}", f"{a1[1] / 2**20:.1f}")
    t.add_row("cAdvisor (housekeeping 2 s)", f"{cad_cpu:.2f}", f"{c1[1] / 2**20:.1f}")
    t.add_row("agent / cAdvisor", f"{agent_cpu / cad_cpu:.2f}x" if cad_cpu else "-",
              f"{a1[1] / c1[1]:.2f}x" if c1[1] else "-")
    console.print(t)


if __name__ == "__main__":
    main()
