"""Freshness of metrics: from a change in a container's CPU to the point
being readable in Graphite's render API, on a running `bay up` cluster.

Each trial starts a busy loop in one demo.web container (its CPU goes from
about 0 to its 0.1-core limit), then polls the render API (through the
monitoring node's HAProxy, TLS and a password, as a person reads it) every
0.25 s until a point of that container's ``cpu_cores`` above 0.05 is there.
The loop runs 25 s, then the container idles until its CPU is back under
0.02, and a random 0-10 s more (so the trials do not lock to the agents'
rounds), before the next trial. The path measured: cAdvisor's housekeeping (2 s),
the agent's round (every 10 s, the finest retention), carbon's cache (read by
graphite-web through carbonlink), the render API.

    .venv/bin/python bench/metrics_freshness.py [--cluster default] [--trials 12]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from common import LocalCluster, pct
from rich.console import Console
from rich.table import Table

from bay_salt.metrics.render import RenderClient
from tests.e2e.helpers import placements

TARGET_P95 = 15.0
RESOLUTION = 10.0
BURN = "timeout 25 sh -c 'while :; do :; done'"


def newest(render: RenderClient, target: str, after: float) -> float | None:
    for series in render.series(target, since="-2min").values():
        for value, ts in reversed(series):
            if value is not None and ts + RESOLUTION >= after:
                return value
    return None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cluster", default="default")
    ap.add_argument("--trials", type=int, default=12)
    args = ap.parse_args()
    console = Console()
    cluster = LocalCluster(args.cluster)
    url, user, password, ca = cluster.graphite()
    render = RenderClient(url, user, password, str(ca))
    lat = []
    for k in range(args.trials):
        inst, node_id = sorted(placements(cluster, "web").items())[k % 3]
        node = next(n for n in cluster.nodes() if n.id == node_id)
        c = cluster.client.containers.get(node.container)
        target = f"bay.{cluster.name}.containers.demo.web.{inst}.cpu_cores"
        deadline = time.time() + 90
        while (v := newest(render, target, time.time() - 15)) is None or v > 0.02:  # idle first
            if time.time() > deadline:
                raise SystemExit(f"{target}: no idle point within 90 s")
            time.sleep(1)
        time.sleep(random.uniform(0, RESOLUTION))  # no phase lock with the agents' 10 s rounds
        t0 = time.time()
        c.exec_run(["docker", "exec", "-d", f"bay-demo-web-{inst}", "sh", "-c", BURN])
        while True:
            v = newest(render, target, t0)
            if v is not None and v > 0.05:
                lat.append(time.time() - t0)
                break
            if time.time() - t0 > 60:
                raise SystemExit(f"{target}: the busy loop never showed in Graphite")
            time.sleep(0.25)
        console.print(f"trial {k + 1}: {lat[-1]:.2f} s ({inst} on {node_id})")
        time.sleep(max(0.0, 26 - (time.time() - t0)))
    t = Table(title=f"Metrics freshness, {args.trials} trials ({RESOLUTION:.0f} s resolution)")
    for col in ("", "median", "p95", "max", "target p95", "p95 / target"):
        t.add_column(col)
    p95 = pct(lat, 0.95)
    t.add_row("CPU change -> render API (s)", f"{statistics.median(lat):.2f}", f"{p95:.2f}", f"{max(lat):.2f}",
              f"{TARGET_P95:.0f}", f"{p95 / TARGET_P95:.2f}x")
    console.print(t)


if __name__ == "__main__":
    main()
