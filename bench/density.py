"""Density and start speed (#26): a tiny service scaled in steps on a `bay up`
cluster, next to plain `docker run` of the same count on the same nodes.

    .venv/bin/python bench/density.py [--cluster bench] [--per-node 10,30,100]

For each step (K instances per node, 3K in all):
- Bay: `bay.scale dense.web 3K` from one per node, timed from the command to
  every node's HAProxy serving all 3K; then back to one per node, timed to
  every HAProxy serving only those (the scale-down);
- the anchor, same run: K plain `docker run -d` of the same image with the
  same limits on each node at once, as many at a time as Bay starts
  (``START_PARALLEL``), timed until each answers its health URL (what
  "routed" is for a container nobody routes);
- requests to the group's frontend all along (hey on node1): failed ones;
- memory of Bay's own daemons on node2 (bay-events, bay-lb-sync,
  bay-metrics, haproxy, cadvisor, consul) and of Docker's (dockerd,
  containerd and its shims), per container added.

Targets: Bay's start-to-routed <= 1.5x plain docker run at 30 and at 100
per node; the scale-down of 27 (K=10) <= 10 s.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

from common import bench_cluster, demo_image_service, hey_counts

from bay_salt.model import names
from bay_salt.node import containers
from tests.e2e.helpers import HAPROXY_NOT_SERVING, haproxy_servers

SERVICE, GROUP, LISTEN = "dense", "web", 10170
CPU, MEMORY = 0.01, "16Mi"
BAY_DAEMONS = ("bay-events", "bay-lb-sync", "bay-metrics", "haproxy", "cadvisor", "consul")
DOCKER_DAEMONS = ("dockerd", "containerd", "containerd-shim", "containerd-shim-runc-v2", "docker-init")


def serving(cluster, node) -> int:
    servers = haproxy_servers(cluster, node).get(names.haproxy_backend(SERVICE, GROUP), [])
    return sum(1 for _addr, up, admin in servers if up and not admin & HAPROXY_NOT_SERVING)


def wait_serving(cluster, count: int, timeout: float = 600) -> float:
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        if all(serving(cluster, n) == count for n in cluster.nodes()):
            return time.monotonic()
        time.sleep(0.2)
    raise SystemExit(f"{SERVICE}.{GROUP}: every HAProxy did not serve {count} within {timeout:.0f} s")


def bay_scale(cluster, count: int) -> float:
    began = time.monotonic()
    cluster.runner("bay.scale", f"{SERVICE}.{GROUP}", str(count), timeout=900)
    return wait_serving(cluster, count) - began


PLAIN = """
set -e
seq {k} | xargs -P {parallel} -I @@ docker run -d --name plain-@@ --cpus {cpu} --memory {memory} \
  --memory-swap {memory} --init -p 8000 --label bench=plain {image} >/dev/null
seq {k} | xargs -P {parallel} -I @@ sh -c \
  'p=$(docker port plain-@@ 8000/tcp | head -1 | sed "s/.*://")
   until curl -sf -o /dev/null http://127.0.0.1:$p/healthz; do sleep 0.05; done'
"""


def plain_run(cluster, image: str, k: int) -> float:
    """K plain containers on every node at once, each answering its health URL: seconds."""
    errors = []

    def one(node):
        c = cluster.client.containers.get(node.container)
        res = c.exec_run(["sh", "-c", PLAIN.format(image=image, k=k, cpu=CPU, memory="16m",
                                                  parallel=containers.START_PARALLEL)])
        if res.exit_code != 0:
            errors.append(f"{node.id}: {res.output.decode()[-300:]}")

    threads = [threading.Thread(target=one, args=(n,)) for n in cluster.nodes()]
    began = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.monotonic() - began
    for n in cluster.nodes():
        cluster.client.containers.get(n.container).exec_run(
            ["sh", "-c", "docker rm -f $(docker ps -aq --filter label=bench=plain) >/dev/null 2>&1 || true"])
    if errors:
        raise SystemExit("plain docker run failed: " + "; ".join(errors))
    return took


def daemon_memory(cluster, node) -> tuple[float, float]:
    """(Bay's daemons, Docker's) resident MiB on ``node``."""
    out = cluster.client.containers.get(node.container).exec_run(["ps", "-eo", "rss=,comm="]).output.decode()
    bay = docker = 0
    for line in out.splitlines():
        rss, _, comm = line.strip().partition(" ")
        if not rss.isdigit():
            continue
        comm = comm.strip()
        if comm.startswith(("python", "bay-")) or comm in BAY_DAEMONS:
            bay += int(rss)
        elif comm in DOCKER_DAEMONS or comm.startswith("containerd-shim"):
            docker += int(rss)
    return bay / 1024, docker / 1024


class Load:
    """hey against the group's frontend on node1 while a step runs: (requests, failed)."""

    def __init__(self, cluster):
        self.node = cluster.client.containers.get(cluster.nodes()[0].container)
        self.result: tuple[int, int] = (0, 0)
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.stop_at = 0.0

    def run(self):
        total = failed = 0
        while time.monotonic() < self.stop_at:
            out = self.node.exec_run(["hey", "-z", "3s", "-c", "2", f"http://127.0.0.1:{LISTEN}/"]).output.decode()
            r, f = hey_counts(out)
            total, failed = total + r, failed + f
        self.result = (total, failed)

    def __enter__(self):
        self.stop_at = float("inf")
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_at = 0.0
        self.thread.join(30)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cluster", default="bench")
    ap.add_argument("--per-node", default="10,30,100", help="instances per node at each step")
    ap.add_argument("--runs", type=int, default=1, help="each step this many times (the median is printed)")
    args = ap.parse_args()
    steps = [int(k) for k in args.per_node.split(",")]
    cluster = bench_cluster(args.cluster)
    nodes = len(cluster.nodes())
    image = cluster.site.services_pillar()["bay"]["services"]["demo"]["image"]
    body = {"health": "demo", "owners": ["platform-team"],
            "groups": {GROUP: {"instances": nodes, "cpu": CPU, "memory": MEMORY, "port": 8000, "listen": LISTEN}}}
    rows = []
    with demo_image_service(cluster, SERVICE, body):
        wait_serving(cluster, nodes)
        for k in steps:
            ups, downs, plains, loads = [], [], [], []
            mem = None
            for _ in range(args.runs):
                before = daemon_memory(cluster, cluster.nodes()[1])
                with Load(cluster) as load:
                    ups.append(bay_scale(cluster, k * nodes))
                    at = daemon_memory(cluster, cluster.nodes()[1])
                    downs.append(bay_scale(cluster, nodes))
                loads.append(load.result)
                mem = ((at[0] - before[0]) / (k - 1), (at[1] - before[1]) / (k - 1)) if k > 1 else (0.0, 0.0)
                plains.append(plain_run(cluster, image, k))
                print(f"K={k} run {len(ups)}: bay up {ups[-1]:.1f} s, plain {plains[-1]:.1f} s "
                      f"({ups[-1] / plains[-1]:.2f}x), down {downs[-1]:.1f} s, {load.result[1]}/{load.result[0]} failed",
                      flush=True)
            up, down, plain = (statistics.median(v) for v in (ups, downs, plains))
            requests, failed = sum(r for r, _ in loads), sum(f for _, f in loads)
            rows.append((k, up, plain, down, mem, requests, failed))
            print(f"K={k}: bay up {up:.1f} s, plain {plain:.1f} s ({up / plain:.2f}x), down {down:.1f} s, "
                  f"{failed}/{requests} failed", flush=True)
    print(f"\n{'per node':>8} {'in all':>6} {'bay: to routed':>15} {'plain docker run':>17} {'ratio':>6} "
          f"{'target':>7} {'scale-down':>11} {'Bay daemons MiB/ctr':>20} {'Docker MiB/ctr':>15} {'failed':>10}")
    for k, up, plain, down, mem, requests, failed in rows:
        target = "<=1.5x" if k in (30, 100) else "-"
        print(f"{k:>8} {k * nodes:>6} {up:>13.1f} s {plain:>15.1f} s {up / plain:>5.2f}x {target:>7} "
              f"{down:>9.1f} s {mem[0]:>20.2f} {mem[1]:>15.2f} {failed:>4}/{requests:<5}")
    print(f"scale-down target: {(k := steps[0]) * nodes - nodes} instances in <= 10 s "
          f"(K={k}: {rows[0][3]:.1f} s)")


if __name__ == "__main__":
    main()
