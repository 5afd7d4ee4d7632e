"""Routing in a 3-node `bay up` cluster:

1. From a KV change to every node's HAProxy serving the new set (Runtime API
   state as each node's HAProxy reports it), over --trials additions and as
   many removals: p50, p95, p99 beside the 100 ms target; a full HAProxy
   reload on a node is the reference, measured in the same run.
2. Failed requests at a node's HAProxy frontend during 50 routing changes
   under constant load (hey inside the node against its own frontend):
   bay-lb-sync's Runtime API updates vs the same changes as config reloads.

    .venv/bin/python bench/routing.py [--trials 30] [--changes 50] [--keep]

Builds its own cluster "bench" (removed at the end unless --keep); all
traffic stays on this machine (node loopback and the cluster's bridge).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import time

import consul
from common import bench_cluster, hey_counts, pct
from rich.console import Console
from rich.table import Table

from bay_salt.cluster.local import LocalCluster
from bay_salt.kv import store as kv
from bay_salt.kv.records import Instance
from bay_salt.kv.store import ConsulStore

# polls this node's Runtime API until the server is in a slot and not forced
# into maintenance (present) or in no slot (absent); prints the wall time
WATCH = r"""
import sys, time
from bay_salt.host.haproxy_runtime import RuntimeAPI
addr, port, present = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
api = RuntimeAPI("/run/haproxy/admin.sock")
deadline = time.time() + 20
while time.time() < deadline:
    rows = [l.split() for l in api.execute("show servers state demo.web").splitlines()[2:] if l.strip()]
    there = any(r[4] == addr and r[18] == port and not int(r[6]) & 1 for r in rows)
    if there == present:
        print(time.time()); break
    time.sleep(0.001)
"""



def propagation(cluster: LocalCluster, client: consul.Consul, trials: int) -> list[float]:
    nodes = cluster.nodes()
    out = []
    for k in range(trials):
        inst = Instance("demo", "web", f"bench{k}", nodes[0].id, "127.0.0.1", 21000 + k, "passing")
        for present, ops in ((True, kv.register_ops([inst])), (False, kv.deregister_ops([inst]))):
            watchers = [subprocess.Popen(["docker", "exec", n.container, "/opt/bay/venv/bin/python", "-c", WATCH,
                                          inst.address, str(inst.port), "1" if present else "0"],
                                         stdout=subprocess.PIPE, text=True) for n in nodes]
            time.sleep(0.4)  # watchers polling
            t0 = time.time()
            ConsulStore(client).apply(ops)
            ends = [float(w.communicate(timeout=30)[0].strip() or "nan") for w in watchers]
            out.append((max(ends) - t0) * 1000)
    return out


def reload_reference(cluster: LocalCluster, rounds: int = 5) -> float:
    node = cluster.client.containers.get(cluster.nodes()[0].container)
    script = ("import time,subprocess; from bay_salt.host.haproxy_runtime import RuntimeAPI as R; a=R('/run/haproxy/admin.sock');"
              "p=a.info()['Pid']; t=time.time(); subprocess.run(['systemctl','reload','haproxy'],check=True)\n"
              "while True:\n  try:\n    if a.info()['Pid']!=p: break\n  except Exception: pass\n  time.sleep(0.001)\n"
              "print((time.time()-t)*1000)")
    times = [float(node.exec_run(["/opt/bay/venv/bin/python", "-c", script]).output.decode().split()[-1])
             for _ in range(rounds)]
    return statistics.median(times)


def under_load(cluster: LocalCluster, client: consul.Consul, changes: int, always_reload: bool) -> dict:
    nodes = cluster.nodes()
    node = cluster.client.containers.get(nodes[0].container)
    for n in nodes:  # the sync in the chosen mode on every node
        c = cluster.client.containers.get(n.container)
        c.exec_run(["systemctl", "stop", "bay-lb-sync"])
        c.exec_run(["pkill", "-f", "bay-lb-sync"])
        cmd = ["/opt/bay/venv/bin/bay-lb-sync"] + (["--always-reload"] if always_reload else [])
        c.exec_run(["sh", "-c", " ".join(cmd) + " >/var/log/bench-lbsync.log 2>&1"], detach=True)
    time.sleep(2)
    insts = ConsulStore(client).instances("demo", "web")
    toggle = insts[:2]
    duration = int(changes * 0.4) + 6
    # a steady 200 requests/s (8 workers x 25/s): the demo backends have 0.1 CPU
    # each, so a flat-out load would measure their throttling, not routing
    hey = subprocess.Popen(["docker", "exec", node.name, "hey", "-z", f"{duration}s", "-c", "8", "-q", "25",
                            "http://127.0.0.1:10080/"], stdout=subprocess.PIPE, text=True)
    time.sleep(2)
    for k in range(changes):
        ConsulStore(client).apply(kv.deregister_ops(toggle) if k % 2 == 0 else kv.register_ops(toggle))
        time.sleep(0.4)
    if changes % 2:
        ConsulStore(client).apply(kv.register_ops(toggle))
    out = hey.communicate(timeout=duration + 30)[0]
    for n in nodes:
        c = cluster.client.containers.get(n.container)
        c.exec_run(["pkill", "-f", "bay-lb-sync"])
        c.exec_run(["systemctl", "start", "bay-lb-sync"])
    requests, failed = hey_counts(out)
    return {"requests": requests, "failed": failed, "raw": out}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--trials", type=int, default=30)
    p.add_argument("--changes", type=int, default=50)
    p.add_argument("--keep", action="store_true")
    p.add_argument("--cluster", default="bench")
    args = p.parse_args()
    cluster = bench_cluster(args.cluster)
    try:
        n1 = cluster.nodes()[0]
        cluster.runner("bay.scale", "demo.web", "5")
        client = cluster.consul_client(n1.address)
        lat = propagation(cluster, client, args.trials)
        ref = reload_reference(cluster)
        runtime = under_load(cluster, client, args.changes, always_reload=False)
        reload = under_load(cluster, client, args.changes, always_reload=True)
    finally:
        if not args.keep:
            cluster.down()
    con = Console(width=140)
    t = Table(title=f"KV change -> all 3 nodes' HAProxy serving the new set ({len(lat)} changes)")
    for col in ("figure", "ms", "target / reference"):
        t.add_column(col)
    t.add_row("p50", f"{pct(lat, 0.5):.1f}", "")
    t.add_row("p95", f"{pct(lat, 0.95):.1f}", "")
    t.add_row("p99", f"{pct(lat, 0.99):.1f}", "< 100")
    t.add_row("max", f"{max(lat):.1f}", "")
    t.add_row("reference: one HAProxy reload on a node (systemctl reload until the new worker answers), median",
              f"{ref:.1f}", "")
    con.print(t)
    t2 = Table(title=f"failed requests during {args.changes} routing changes under constant load (hey, 200 req/s)")
    for col in ("mode", "requests", "failed", "target"):
        t2.add_column(col)
    t2.add_row("bay-lb-sync, Runtime API", str(runtime["requests"]), str(runtime["failed"]), "0")
    t2.add_row("reference: every change by config reload", str(reload["requests"]), str(reload["failed"]), "-")
    con.print(t2)


if __name__ == "__main__":
    main()
