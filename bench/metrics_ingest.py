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

With ``--caches 1,2`` the same run measures one carbon-cache, then two
carbon-caches sharing the whisper directory, each series sent to the cache
carbon's consistent-hash ring gives it (as the agents do with
``bay:monitoring:carbon_caches``, and as graphite-web's CARBONLINK_HOSTS asks
them): the seed's worst case needs more than one Python process can write.
``--relay`` puts Graphite's own carbon-relay in front of the caches instead.

The sender stands in for 500 agents, each of which sends a 500th: the timed
rounds are encoded before the clock starts (by the shipper's own encoder,
in the shipper's batches) and written by one thread per cache, so the figure
is carbon's, not one Python sender's.

    .venv/bin/python bench/metrics_ingest.py [--series 20000] [--rounds 10] [--caches 1,2] [--relay]
"""

from __future__ import annotations

import argparse
import signal
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bay_salt.cluster.processes import Daemon, Graphite
from bay_salt.metrics import carbon, graphite
from bay_salt.metrics.render import RenderClient
from bay_salt.metrics.ring import Ring

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


def drained_at(render: RenderClient, since: float, sent_at: float, points: int) -> float | None:
    """When the caches were empty for good: the second after the last report
    (each cache reports every second here) in which they held points, once
    they have reported receiving all ``points`` and a report after
    ``sent_at`` says empty; None before then."""
    targets = ["sumSeries(carbon.agents.*.cache.size)", "sumSeries(carbon.agents.*.metricsReceived)"]
    # whisper starts a fetch one step after `from`: the report of t0's own second is in from t0 - 1
    got = render.series(targets, since=str(int(since) - 1))
    size, received = ([(ts, v) for v, ts in got.get(t, []) if v is not None] for t in targets)
    if sum(v for _, v in received) < points:
        return None
    pts = size
    if not pts or pts[-1][1] > 0 or pts[-1][0] < sent_at:
        return None
    busy = [ts for ts, v in pts if v > 0]
    return max(busy) + 1 if busy else sent_at


def second_reports(g: Graphite) -> None:
    """carbon's own metrics every second, kept by the second (not Bay's 10 s):
    the end of a run is then known to a second, not to carbon's usual 10 s report."""
    conf = g.paths["conf"] / "carbon.conf"
    conf.write_text(conf.read_text().replace("CARBON_METRIC_INTERVAL = 10", "CARBON_METRIC_INTERVAL = 1"))
    schemas = g.paths["conf"] / "storage-schemas.conf"
    text = schemas.read_text()
    assert "retentions = 10s:1d,1m:30d\n" in text
    schemas.write_text(text.replace("retentions = 10s:1d,1m:30d\n", "retentions = 1s:1h,10s:1d\n", 1))


#: where the relay listens, when there is one
RELAY_LINE, RELAY_PICKLE = 2013, 2014


def relay_conf(caches: list[graphite.Cache]) -> str:
    """carbon.conf's section for a carbon-relay with consistent hashing in front of ``caches``."""
    dest = ", ".join(f"127.0.0.1:{c.pickle_port}:{c.instance}" for c in caches)
    return (f"[relay]\nLINE_RECEIVER_INTERFACE = 127.0.0.1\nLINE_RECEIVER_PORT = {RELAY_LINE}\n"
            f"PICKLE_RECEIVER_INTERFACE = 127.0.0.1\nPICKLE_RECEIVER_PORT = {RELAY_PICKLE}\n"
            f"RELAY_METHOD = consistent-hashing\nREPLICATION_FACTOR = 1\nDESTINATIONS = {dest}\n"
            "DESTINATION_PROTOCOL = pickle\nMAX_QUEUE_SIZE = 2000000\nMAX_DATAPOINTS_PER_MESSAGE = 5000\n"
            "USE_FLOW_CONTROL = True\nQUEUE_LOW_WATERMARK_PCT = 0.8\n")


def send_all(port: int, msgs: list[bytes]) -> None:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        for m in msgs:
            sock.sendall(m)


def measure(tmp: Path, series: int, rounds: int, count: int, relay: bool,
            console: Console) -> tuple[int, float, float]:
    """``(points, seconds until written, seconds to send)`` into ``count``
    carbon-caches (more than one: sharded by carbon's ring, or behind a relay)."""
    g = Graphite(tmp, retention="10s:1d,1m:30d,10m:1y", caches=count)
    cs = graphite.caches(count)
    second_reports(g)
    extra = []
    if relay and count > 1:
        conf = g.paths["conf"] / "carbon.conf"
        conf.write_text(conf.read_text() + "\n" + relay_conf(cs))
    g.start()
    try:
        if relay and count > 1:
            extra.append(Daemon([str(g.bin / "python"), str(g.bin / "carbon-relay.py"),
                                 f"--config={g.paths['conf']}/carbon.conf", "--nodaemon", "start"],
                                tmp / "relay.log", g.env))
            time.sleep(5)
            ports = {("relay", ""): RELAY_PICKLE}
        else:
            ports = {c.ring_key: c.pickle_port for c in cs}
        render = RenderClient(g.url)
        names = [f"bay.bench.containers.svc{i // 100}.g{(i // 10) % 10}.i{i % 10}.m{i % 7}" for i in range(series)]
        ring = Ring(ports)  # the senders' own ring (unit-tested equal to carbon's)
        shard = {n: ring.node(n) for n in names}
        ships = {k: carbon.Shipper(carbon.Target("127.0.0.1", p), capacity=series * 2).start() for k, p in ports.items()}
        base = int(time.time()) - rounds * INTERVAL
        whisper = g.paths["storage"] / "whisper"
        with console.status(f"{count} cache(s): creating the series (not timed; carbon creates 6,000 a minute "
                            "per cache and drops the points of those it could not create yet, so they are sent again)"):
            deadline = time.time() + 900
            while True:
                made = {str(p.relative_to(whisper))[:-4].replace("/", ".") for p in whisper.rglob("*.wsp")}
                todo = [n for n in names if n not in made]
                if not todo:
                    break
                if time.time() > deadline:
                    raise SystemExit("carbon did not create the series within 15 min")
                for n in todo:
                    ships[shard[n]].put([(n, (base - INTERVAL, 1.0))])
                time.sleep(15)
            time.sleep(3)  # carbon's own metrics for the idle state
        for ship in ships.values():
            ship.stop()
        with console.status(f"{count} cache(s): encoding {rounds} rounds (not timed)"):
            mine = {k: [n for n in names if shard[n] == k] for k in ports}
            msgs = {k: [m for r in range(rounds) for b in range(0, len(mine[k]), 5000)
                        for m in carbon.messages([(n, (base + r * INTERVAL, float(r))) for n in mine[k][b:b + 5000]])[0]]
                    for k in ports}
        senders = [threading.Thread(target=send_all, args=(ports[k], msgs[k])) for k in ports]
        t0 = time.time()
        for t in senders:
            t.start()
        with console.status(f"{count} cache(s): sending and waiting for carbon's caches to empty"):
            for t in senders:
                t.join()
            sent_at = time.time()
            while (drained := drained_at(render, t0, sent_at, series * rounds)) is None:
                if time.time() > sent_at + 600:
                    raise SystemExit(f"carbon did not report receiving and writing {series * rounds:,} points "
                                     "within 10 min of their sending (see its logs under the bench's directory)")
                time.sleep(1)
    finally:
        for d in extra:
            d.stop()
        g.stop()
    return series * rounds, max(drained, sent_at) - t0, sent_at - t0


def main() -> None:
    # a SIGTERM runs the finally blocks: the Graphite this bench started is stopped
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ap = argparse.ArgumentParser()
    ap.add_argument("--series", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--caches", default="1", help="carbon-caches, one configuration each in turn (2 or more: "
                                                  "each series to the cache carbon's ring gives it), e.g. 1,2")
    ap.add_argument("--relay", action="store_true", help="2 or more caches behind Graphite's carbon-relay instead")
    args = ap.parse_args()
    console = Console()
    results = []
    for caches in (int(c) for c in args.caches.split(",")):
        with tempfile.TemporaryDirectory(prefix="bay-ingest-") as tmp:
            results.append((caches, *measure(Path(tmp), args.series, args.rounds, caches, args.relay, console)))
    t = Table(title="Graphite ingest on this machine, and the seed's scale by calculation")
    for col in ("", "points/s", "vs one carbon-cache", "headroom, typical need", "headroom, worst case (target 1.2x)"):
        t.add_column(col)
    one = next((p / took for c, p, took, _ in results if c == 1), None)
    typical, worst = scheme_rate(500, 10000, 200, 0.1), scheme_rate(500, 10000, 200, 1.0)
    for caches, points, took, sending in results:
        rate = points / took
        what = ("one carbon-cache" if caches == 1 else f"carbon-relay (consistent hashing) + {caches} carbon-caches"
                if args.relay else f"{caches} carbon-caches, series sharded by carbon's ring")
        t.add_row(f"{what}: {points:,} points into {args.series:,} series ({took:.1f} s, sent in {sending:.1f} s)",
                  f"{rate:,.0f}", f"{rate / one:.2f}x" if one else "", f"{rate / typical:.2f}x", f"{rate / worst:.2f}x")
    t.add_row("needed: 500 nodes, 10,000 containers, 200 groups, frontends used on 10 % of nodes", f"{typical:,.0f}",
              "", "", "")
    t.add_row("needed: the same, every group's frontend busy on every node (worst case)", f"{worst:,.0f}", "", "", "")
    console.print(t)


if __name__ == "__main__":
    main()
