"""`bay up` cold and warm, `state.apply bay` first and idempotent runs, and a
node's memory footprint, on a 3-node local cluster named "bench".

    .venv/bin/python bench/bay_up.py [--nodes 3] [--skip-cold]

"Cold" removes the cached images (bay-base, bay-node), wheelhouse and wheel
first; "warm" is a `bay up` right after `bay down`. Each figure is printed
beside its target from the foundation issue. Removes its cluster at the end.
"""

from __future__ import annotations

import argparse
import shutil
import time
from collections import defaultdict

import docker
from rich.console import Console
from rich.table import Table

from bay_salt.cluster import images
from bay_salt.cluster.local import LocalCluster
from bay_salt.cluster.progress import Progress

FOOTPRINT = ("systemd", "salt-minion", "dockerd", "containerd", "consul", "haproxy", "cadvisor")


def drop_caches(client) -> None:
    for img in client.images.list(filters={"label": images.LABEL_KIND}):
        for tag in img.tags:
            client.images.remove(tag, force=True)
    for path in images.cache_dir().glob("wheelhouse-*"):
        shutil.rmtree(path)
    shutil.rmtree(images.cache_dir() / "dist", ignore_errors=True)
    client.images.prune(filters={"dangling": True})


def memory(cluster: LocalCluster) -> dict[str, dict[str, float]]:
    """MiB of RSS per daemon (summed over its processes) in each node."""
    out = {}
    for n in cluster.nodes():
        res = cluster.client.containers.get(n.container).exec_run(["ps", "-eo", "rss=,args="])
        per = defaultdict(float)
        for line in res.output.decode().splitlines():
            rss, _, args = line.strip().partition(" ")
            name = next((f for f in FOOTPRINT if f in args.split()[0] or (f == "salt-minion" and "salt-minion" in args)), None)
            if name:
                per[name] += int(rss) / 1024
        per["total"] = sum(per.values())
        out[n.id] = dict(per)
    return out


def timed_up(cluster: LocalCluster, nodes: int) -> tuple[float, Progress]:
    cluster.progress = Progress()
    started = time.monotonic()
    cluster.up(nodes)
    return time.monotonic() - started, cluster.progress


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--skip-cold", action="store_true")
    args = parser.parse_args()
    console = Console()
    client = docker.from_env()
    cluster = LocalCluster("bench")
    cluster.down()
    rows = []
    try:
        if not args.skip_cold:
            drop_caches(client)
            cold, prog = timed_up(cluster, args.nodes)
            rows.append((f"bay up, cold (N={args.nodes})", cold, 360.0))
            first_apply = prog.timings["state.apply bay on every node"]
            rows.append(("state.apply bay, first run (all nodes at once)", first_apply, None))
            cluster.down()
        warm, prog = timed_up(cluster, args.nodes)
        rows.append((f"bay up, warm after bay down (N={args.nodes})", warm, 90.0))
        if args.skip_cold:
            rows.append(("state.apply bay, first run (all nodes at once)", prog.timings["state.apply bay on every node"], None))
        started = time.monotonic()
        summaries = cluster.provision()
        rerun = time.monotonic() - started
        assert all(s.changed == 0 for s in summaries.values()), "the rerun changed something"
        rows.append(("state.apply bay, idempotent rerun (wall, incl. sync_all)", rerun, 20.0))
        for m, s in sorted(summaries.items()):
            rows.append((f"  {m}: idempotent rerun, sum of state durations", s.duration_ms / 1000, 20.0))
        mem = memory(cluster)
    finally:
        cluster.down()

    table = Table(title="bay up and state.apply bay")
    for col in ("figure", "seconds", "target", "ratio to target"):
        table.add_column(col)
    for name, value, target in rows:
        table.add_row(name, f"{value:.1f}", f"< {target:.0f}" if target else "-", f"{value / target:.2f}" if target else "-")
    console.print(table)
    mt = Table(title="node memory footprint (RSS, MiB)")
    mt.add_column("node")
    for f in (*FOOTPRINT, "total"):
        mt.add_column(f)
    for node, per in sorted(mem.items()):
        mt.add_row(node, *(f"{per.get(f, 0):.0f}" for f in (*FOOTPRINT, "total")))
    console.print(mt)


if __name__ == "__main__":
    main()
