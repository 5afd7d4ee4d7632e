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

With ``--caches 1,2`` the same run measures one carbon-cache, then a
carbon-relay (consistent hashing, Graphite's own) in front of two
carbon-caches sharing the whisper directory: the seed's worst case needs
more than one Python process can write.

    .venv/bin/python bench/metrics_ingest.py [--series 20000] [--rounds 10] [--caches 1,2]
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

from bay_salt.cluster.processes import Daemon, Graphite
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


#: where the relay and the extra carbon-caches listen (the first cache keeps Bay's ports)
RELAY_LINE, RELAY_PICKLE = 2013, 2014


def relay_conf(caches: int) -> str:
    """carbon.conf sections for ``caches`` carbon-caches (a, b, ...) behind a
    carbon-relay with consistent hashing, as Graphite runs one per core."""
    ids = "abcdefgh"[:caches]
    out = []
    for k, i in enumerate(ids[1:], start=1):
        out.append(f"[cache:{i}]\nLINE_RECEIVER_PORT = {2003 + 100 * k}\nPICKLE_RECEIVER_PORT = {2004 + 100 * k}\n"
                   f"CACHE_QUERY_PORT = {7002 + 100 * k}\n")
    dest = ", ".join(f"127.0.0.1:{2004 + 100 * k}:{i}" for k, i in enumerate(ids))
    out.append(f"[relay]\nLINE_RECEIVER_INTERFACE = 127.0.0.1\nLINE_RECEIVER_PORT = {RELAY_LINE}\n"
               f"PICKLE_RECEIVER_INTERFACE = 127.0.0.1\nPICKLE_RECEIVER_PORT = {RELAY_PICKLE}\n"
               f"RELAY_METHOD = consistent-hashing\nREPLICATION_FACTOR = 1\nDESTINATIONS = {dest}\n"
               "DESTINATION_PROTOCOL = pickle\nMAX_QUEUE_SIZE = 2000000\nMAX_DATAPOINTS_PER_MESSAGE = 5000\n"
               "USE_FLOW_CONTROL = True\nQUEUE_LOW_WATERMARK_PCT = 0.8\n")
    return "\n".join(out)


def measure(tmp: Path, series: int, rounds: int, caches: int, console: Console) -> tuple[int, float, float]:
    """``(points, seconds until written, seconds to send)`` into ``caches``
    carbon-caches (more than one: behind a carbon-relay)."""
    g = Graphite(tmp, retention="10s:1d,1m:30d,10m:1y")
    extra = []
    if caches > 1:
        conf = g.paths["conf"] / "carbon.conf"
        conf.write_text(conf.read_text() + "\n" + relay_conf(caches))
    g.start()
    try:
        port = g.pickle_port
        if caches > 1:
            for i in "abcdefgh"[1:caches]:
                extra.append(Daemon([str(g.bin / "python"), str(g.bin / "carbon-cache.py"),
                                     f"--config={g.paths['conf']}/carbon.conf", f"--instance={i}", "--nodaemon",
                                     "start"], tmp / f"carbon-{i}.log", g.env))
            extra.append(Daemon([str(g.bin / "python"), str(g.bin / "carbon-relay.py"),
                                 f"--config={g.paths['conf']}/carbon.conf", "--nodaemon", "start"],
                                tmp / "relay.log", g.env))
            port = RELAY_PICKLE
            time.sleep(5)
        render = RenderClient(g.url)
        names = [f"bay.bench.containers.svc{i // 100}.g{(i // 10) % 10}.i{i % 10}.m{i % 7}" for i in range(series)]
        ship = carbon.Shipper(carbon.Target("127.0.0.1", port), capacity=series * (rounds + 1))
        ship.start()
        base = int(time.time()) - rounds * INTERVAL
        whisper = g.paths["storage"] / "whisper"
        with console.status(f"{caches} cache(s): creating the series (not timed; carbon creates 6,000 a minute "
                            "per cache and drops the points of those it could not create yet, so they are sent again)"):
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
        for r in range(rounds):
            ship.put([(n, (base + r * INTERVAL, float(r))) for n in names])
        with console.status(f"{caches} cache(s): sending and waiting for carbon's caches to empty"):
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
        for d in extra:
            d.stop()
        g.stop()
    return points, max(drained, sent_at) - t0, sent_at - t0


def main() -> None:
    # a SIGTERM runs the finally blocks: the Graphite this bench started is stopped
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ap = argparse.ArgumentParser()
    ap.add_argument("--series", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--caches", default="1", help="carbon-caches, one configuration each in turn (2 or more: "
                                                  "behind a carbon-relay with consistent hashing), e.g. 1,2")
    args = ap.parse_args()
    console = Console()
    results = []
    for caches in (int(c) for c in args.caches.split(",")):
        with tempfile.TemporaryDirectory(prefix="bay-ingest-") as tmp:
            results.append((caches, *measure(Path(tmp), args.series, args.rounds, caches, console)))
    t = Table(title="Graphite ingest on this machine, and the seed's scale by calculation")
    for col in ("", "points/s", "vs one carbon-cache", "headroom, typical need", "headroom, worst case (target 1.2x)"):
        t.add_column(col)
    one = next((p / took for c, p, took, _ in results if c == 1), None)
    typical, worst = scheme_rate(500, 10000, 200, 0.1), scheme_rate(500, 10000, 200, 1.0)
    for caches, points, took, sending in results:
        rate = points / took
        what = "one carbon-cache" if caches == 1 else f"carbon-relay (consistent hashing) + {caches} carbon-caches"
        t.add_row(f"{what}: {points:,} points into {args.series:,} series ({took:.1f} s, sent in {sending:.1f} s)",
                  f"{rate:,.0f}", f"{rate / one:.2f}x" if one else "", f"{rate / typical:.2f}x", f"{rate / worst:.2f}x")
    t.add_row("needed: 500 nodes, 10,000 containers, 200 groups, frontends used on 10 % of nodes", f"{typical:,.0f}",
              "", "", "")
    t.add_row("needed: the same, every group's frontend busy on every node (worst case)", f"{worst:,.0f}", "", "", "")
    console.print(t)


if __name__ == "__main__":
    main()
