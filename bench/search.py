"""The log indexer's rate against a plain bulk loop, into the same real
OpenSearch server (made of Maven's jars, as bay.search runs it), and the
server's memory (#25).

Per round, ``--records`` JSON log records (the relay's shape, ~200 bytes)
are produced into a fresh topic of a real Kafka broker (SASL_SSL) first;
then, alternating which goes first:

* **the indexer**: ``bay-log-indexer`` run as its daemon runs, from the
  topic into the store;
* **a plain bulk loop** (the reference): the same records, already in
  memory, posted as bulk ``create`` requests of the indexer's batch size,
  one after the other, into another service's index.

Each rate is the records over the time until the store counts the last
(counted every 0.05 s, refreshed first): for the loop from its first
request, for the indexer from the first document the store counts (its
start-up, process and Kafka group join, is reported apart).

Reported: records/s of each, indexer / loop (median of the rounds), and the
server's resident memory after the rounds next to its heap.

    .venv/bin/python bench/search.py [--records 100000] [--rounds 3] [--heap 256m] [--warmup 50000]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bay_salt.cluster.processes import Kafka, OpenSearch  # noqa: E402
from bay_salt.logs import kafka as bay_kafka  # noqa: E402
from bay_salt.logs import search  # noqa: E402
from bay_salt.logs.relay import now_iso  # noqa: E402
from bay_salt.model import names  # noqa: E402
from tests.helpers import CHECKOUT  # noqa: E402
from tests.support.logstream import start_indexer  # noqa: E402

console = Console()


def records(n: int, service: str = "bench") -> list[bytes]:
    t = time.time()
    return [json.dumps({"time": now_iso(t), "level": "info", "message": f"GET /api/items/{k} 200 in {k % 97} ms",
                        "service": service, "group": "web", "instance": "a1b2c3d4", "node": "node2",
                        "stream": "stdout"}).encode() for k in range(n)]


def produce(kafka: Kafka, service: str, recs: list[bytes]) -> None:
    from confluent_kafka import Producer

    bay_kafka.ensure_topic(kafka.client(), service, 3, 86400)
    p = Producer(kafka.client().conf(**{"acks": "all", "linger.ms": 20, "batch.num.messages": 10000}))
    for k, r in enumerate(recs):
        while True:
            try:
                p.produce(names.log_topic(service), r, key=str(k % 7).encode())
                break
            except BufferError:
                p.poll(0.1)
    p.flush(120)


def wait_count(store: search.Store, service: str, n: int, timeout: float = 600) -> tuple[float, float]:
    """(when the first document was counted, when all were), monotonic."""
    end = time.monotonic() + timeout
    first = None
    while True:
        store.refresh(service)
        have = store.count(service)
        if have and first is None:
            first = time.monotonic()
        if have >= n:
            return first, time.monotonic()
        if time.monotonic() > end:
            raise SystemExit(f"{service}: {have} of {n} indexed after {timeout:.0f} s")
        time.sleep(0.05)


def run_indexer(work: Path, kafka: Kafka, store: search.Store, service: str, n: int) -> tuple[float, float]:
    """(records/s from the first document to the last, seconds from the start to the first document)."""
    started = time.monotonic()
    proc = start_indexer(work, kafka, store.url, node=service)
    try:
        first, last = wait_count(store, service, n)
        return n / (last - first), first - started
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(60)


def run_loop(store: search.Store, service: str, recs: list[bytes]) -> tuple[float, float]:
    started = time.monotonic()
    now_ms = int(time.time() * 1000)
    for i in range(0, len(recs), search.BATCH):
        chunk = [(service, 0, i + k, r, now_ms) for k, r in enumerate(recs[i:i + search.BATCH])]
        body, _ = search.bulk_body(chunk)
        created, present, refused, again = search.bulk_outcome(store.bulk(body))
        if refused or again:
            raise SystemExit(f"the plain loop's bulk was refused: {refused[:1] or 'retry'}")
    _, last = wait_count(store, service, len(recs))
    return len(recs) / (last - started), 0.0  # it posts from its first instant: from then on


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--heap", default="256m")
    ap.add_argument("--warmup", type=int, default=50_000, help="records into a throwaway index first")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bay-bench-search-"))
    with console.status("starting Kafka and OpenSearch"):
        kafka = Kafka(work / "kafka", CHECKOUT).start()
        server = OpenSearch(work / "opensearch", CHECKOUT, heap=args.heap).start()
    store = search.Store(server.url)
    store.ensure_template()
    with console.status("warming the store's JVM up (not counted)"):
        run_loop(store, "warmup", records(args.warmup))
    rows = []
    try:
        for r in range(args.rounds):
            recs = records(args.records)
            svc_i, svc_l = f"bi{r}", f"bl{r}"
            with console.status(f"round {r + 1}: producing {args.records} records"):
                produce(kafka, svc_i, recs)
            order = ("indexer", "loop") if r % 2 == 0 else ("loop", "indexer")
            got = {}
            for what in order:
                with console.status(f"round {r + 1}: {what}"):
                    got[what] = (run_indexer(work, kafka, store, svc_i, args.records) if what == "indexer"
                                 else run_loop(store, svc_l, recs))
            startup = got["indexer"][1]
            got = {k: v[0] for k, v in got.items()}
            got["startup"] = startup
            rows.append(got)
            console.print(f"round {r + 1}: indexer {got['indexer']:.0f}/s, plain loop {got['loop']:.0f}/s, "
                          f"{got['indexer'] / got['loop']:.2f}x; the indexer's first document {startup:.1f} s "
                          "after its start")
        rss = server.rss_mib()
    finally:
        server.stop()
        kafka.stop()
        shutil.rmtree(work, ignore_errors=True)
    table = Table(title=f"{args.records} records a round, {args.rounds} rounds, OpenSearch heap {args.heap}")
    for col in ("", "records/s (median)", "reference"):
        table.add_column(col)
    idx = statistics.median(r["indexer"] for r in rows)
    loop = statistics.median(r["loop"] for r in rows)
    ratio = statistics.median(r["indexer"] / r["loop"] for r in rows)
    table.add_row("bay-log-indexer (Kafka -> bulk)", f"{idx:.0f}", f"{ratio:.2f}x the plain loop (target >= 0.8)")
    table.add_row("plain bulk loop (in memory)", f"{loop:.0f}", "1.00x")
    table.add_row("the indexer: start to first document", f"{statistics.median(r['startup'] for r in rows):.1f} s",
                  "(process start, group join)")
    table.add_row("OpenSearch resident memory", f"{rss:.0f} MiB", f"heap {args.heap}")
    console.print(table)


if __name__ == "__main__":
    main()
