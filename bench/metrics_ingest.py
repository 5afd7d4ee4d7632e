"""What this Graphite takes, and what a 500-node, 10,000-container Bay would send.

Measured: carbon-cache (Bay's carbon.conf: 10,000 updates/s allowed, creates
limited to 6,000/min) with whisper files on this machine's disk, fed over the
pickle protocol by Bay's shipper. The series are created first (not timed:
a platform creates them once), then ``--rounds`` rounds of one point for every
series are sent as fast as the shipper goes; the figure is points sent divided
by the time until carbon's cache is empty again (carbon's own
``cache.size``), i.e. received *and* written.

Calculated: the points per second the naming scheme (docs/metrics.md) makes
at the seed's scale with a 10 s interval, with its traffic part both as most
clusters see it (each group's frontend used on 10 % of the nodes; idle
frontends send nothing) and at the worst case (every group on every node).

    .venv/bin/python bench/metrics_ingest.py [--series 20000] [--rounds 10]
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bay_salt.cluster.processes import Graphite
from bay_salt.metrics import carbon
from bay_salt.metrics.render import RenderClient, last

INTERVAL = 10
#: points per interval of each kind (bay_salt.metrics.collect / platform)
PER_CONTAINER = 7        # cpu, memory, memory limit, net rx/tx, disk read/write
PER_NODE = 10 + 8 + 10   # server (cpu, load, memory x2, 2 disks x2, net x2), 8 components, the agent's own
PER_GROUP_FRONTEND = 13  # frontend 5 counters + rate + sessions, backend 4 counters + response time + servers up
PER_GROUP = 8            # desired, registered, passing, ratio, failed, restarts, replacements, autoscale
PLATFORM = 35


def scheme_rate(nodes: int, containers: int, groups: int, used_share: float) -> float:
    points = (containers * PER_CONTAINER + nodes * PER_NODE + groups * PER_GROUP + PLATFORM
              + groups * max(1, round(nodes * used_share)) * PER_GROUP_FRONTEND)
    return points / INTERVAL


def cache_size(render: RenderClient) -> float | None:
    got = render.series("sumSeries(carbon.agents.*.cache.size)", since="-1min")
    return last(next(iter(got.values()), []))


def main() -> None:
    # a SIGTERM runs the finally blocks: the Graphite this bench started is stopped
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ap = argparse.ArgumentParser()
    ap.add_argument("--series", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=10)
    args = ap.parse_args()
    console = Console()
    with tempfile.TemporaryDirectory(prefix="bay-ingest-") as tmp:
        g = Graphite(Path(tmp), retention="10s:1d,1m:30d,10m:1y").start()
        try:
            render = RenderClient(g.url)
            names = [f"bay.bench.containers.svc{i // 100}.g{(i // 10) % 10}.i{i % 10}.m{i % 7}"
                     for i in range(args.series)]
            ship = carbon.Shipper(carbon.Target("127.0.0.1", g.pickle_port), capacity=args.series * (args.rounds + 1))
            ship.start()
            base = int(time.time()) - args.rounds * INTERVAL
            whisper = Path(tmp) / "storage" / "whisper"
            with console.status("creating the series (not timed; carbon creates 6,000 a minute and drops "
                                "the points of those it could not create yet, so they are sent again)"):
                deadline = time.time() + 900
                while True:
                    made = {str(p.relative_to(whisper))[:-4].replace("/", ".") for p in whisper.rglob("*.wsp")}
                    todo = [n for n in names if n not in made]
                    if not todo:
                        break
                    if time.time() > deadline:
                        raise SystemExit("carbon did not create the series within 15 min")
                    ship.put([(n, (base - INTERVAL, 1.0)) for n in todo])
                    time.sleep(15)
                time.sleep(12)  # carbon's own metrics for the idle state
            sent_before = ship.sent
            t0 = time.time()
            for r in range(args.rounds):
                ship.put([(n, (base + r * INTERVAL, float(r))) for n in names])
            with console.status("sending and waiting for carbon's cache to empty"):
                while ship.pending():
                    time.sleep(0.05)
                sent_at = time.time()
                time.sleep(INTERVAL + 1)  # carbon reports its cache every 10 s
                while (size := cache_size(render)) is None or size > 0:
                    time.sleep(1)
                drained = time.time() - INTERVAL  # its report lags one interval at most
            points = ship.sent - sent_before
            ship.stop()
        finally:
            g.stop()
    took = max(drained, sent_at) - t0
    capacity = points / took
    t = Table(title="Graphite ingest on this machine, and the seed's scale by calculation")
    for col in ("", "points/s", "headroom (this Graphite / needed)"):
        t.add_column(col)
    t.add_row(f"measured: {points:,} points into {args.series:,} series ({took:.1f} s, sent in "
              f"{sent_at - t0:.1f} s)", f"{capacity:,.0f}", "")
    for label, share in (("needed: 500 nodes, 10,000 containers, 200 groups, frontends used on 10 % of nodes", 0.1),
                         ("needed: the same, every group's frontend busy on every node (worst case)", 1.0)):
        need = scheme_rate(500, 10000, 200, share)
        t.add_row(label, f"{need:,.0f}", f"{capacity / need:.2f}x")
    console.print(t)


if __name__ == "__main__":
    main()
