"""How fast the archiver moves a log topic into HDFS, next to Kafka's own
consumer reading the same topic in the same run.

A real Kafka broker (KRaft, SASL SCRAM, as bay.kafka runs it) and a real
HDFS (MiniDFSCluster) on this machine. One topic of ``--partitions``
partitions is filled with ``--records`` log records of ``--size`` bytes
(JSON, as the relay writes them). Then, each ``--runs`` times:

* the reference: Kafka's ``kafka-consumer-perf-test``
  (``org.apache.kafka.tools.ConsumerPerformance``, from the same Maven
  artifacts as the broker) reads the whole topic; its ``fetch.nMsg.sec``
  (records per second, the group join left out);
* Bay's archiver (the same class the ``bay-log-archiver`` daemon runs) in a
  new consumer group reads the whole topic and writes it into HDFS, files
  closed at 64 MiB, offsets committed after each; records per second from
  its first record to its last file closed and committed.

The figure is archiver / perf-test, per run; the median of the runs is reported.

    .venv/bin/python bench/logs_archive.py [--records 400000] [--size 200] [--partitions 3] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CHECKOUT, start_minidfs  # noqa: E402

from bay_salt.cluster.processes import Kafka  # noqa: E402
from bay_salt.logs import archive  # noqa: E402
from bay_salt.logs import kafka as bay_kafka  # noqa: E402
from bay_salt.model import names  # noqa: E402

SERVICE = "benchlogs"
console = Console()


def fill(broker: Kafka, records: int, size: int, partitions: int) -> None:
    from confluent_kafka import Producer

    bay_kafka.ensure_topic(broker.client(), SERVICE, partitions, 86400)
    p = Producer(broker.client().conf(**{"linger.ms": 50, "batch.size": 1 << 20, "compression.type": "lz4",
                                         "queue.buffering.max.messages": 1_000_000}))
    base = {"time": "2026-11-27T10:00:00.000Z", "level": "info", "service": SERVICE, "group": "web",
            "instance": "a1b2c3d4", "node": "node1"}
    pad = max(0, size - len(json.dumps({**base, "message": ""})) - 8)
    for n in range(records):
        value = json.dumps({**base, "message": f"{n:08d}" + "x" * pad}).encode()
        while True:
            try:
                p.produce(names.log_topic(SERVICE), value, key=str(n % 64).encode())
                break
            except BufferError:
                p.poll(0.1)
    p.flush(300)


def perf_test(broker: Kafka, records: int) -> float:
    res = broker.tool("org.apache.kafka.tools.ConsumerPerformance", "--bootstrap-server", broker.bootstrap,
                      "--topic", names.log_topic(SERVICE), "--messages", str(records),
                      "--consumer.config", "{client.properties}", "--group", f"perf-{uuid.uuid4().hex[:6]}",
                      "--timeout", "120000")
    if res.returncode != 0:
        raise SystemExit(f"kafka-consumer-perf-test failed: {res.stderr[-2000:]}")
    lines = [ln for ln in res.stdout.splitlines() if ln.strip()]
    header = [h.strip() for h in next(ln for ln in lines if "nMsg.sec" in ln).split(",")]
    row = [v.strip() for v in lines[-1].split(",")]
    stats = dict(zip(header, row))
    if float(stats.get("data.consumed.in.nMsg", records)) < records:
        raise SystemExit(f"kafka-consumer-perf-test read {stats.get('data.consumed.in.nMsg')} of {records}")
    return float(stats["fetch.nMsg.sec"])


def archiver_run(broker: Kafka, hdfs_url: str, records: int) -> tuple[float, int]:
    from confluent_kafka import Consumer

    storage = archive.storage_for(hdfs_url, "bay")
    conf = archive.consumer_conf(f"bench-{uuid.uuid4().hex[:6]}")
    conf["group.id"] = f"bench-{uuid.uuid4().hex[:6]}"  # a new group: the whole topic again
    consumer = Consumer(broker.client().conf(**conf))
    a = archive.Archiver(consumer, storage, roll_seconds=3600, roll_bytes=64 << 20)
    a.subscribe()
    first = None
    try:
        while a.records < records:
            got = a.step(1.0)
            if got and first is None:
                first = time.perf_counter()  # from its first records (the group join left out, as perf-test does)
        a.close_all()
        took = time.perf_counter() - first
    finally:
        consumer.close()
    return records / took, a.files


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=400_000)
    ap.add_argument("--size", type=int, default=200)
    ap.add_argument("--partitions", type=int, default=3)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bay-bench-logs-") as tmp:
        tmp = Path(tmp)
        with console.status("Kafka and HDFS"):
            broker = Kafka(tmp / "kafka", CHECKOUT, heap="512m").start()
            hdfs, http = start_minidfs(tmp / "hdfs", CHECKOUT)
        try:
            with console.status(f"{args.records} records of {args.size} bytes into {args.partitions} partitions"):
                fill(broker, args.records, args.size, args.partitions)
            rows = []
            for run in range(1, args.runs + 1):
                with console.status(f"run {run}/{args.runs}: kafka-consumer-perf-test"):
                    ref = perf_test(broker, args.records)
                with console.status(f"run {run}/{args.runs}: the archiver into HDFS"):
                    got, files = archiver_run(broker, f"hdfs://127.0.0.1:{http}/bench-{run}", args.records)
                rows.append((ref, got, files))
                console.print(f"run {run}: perf-test {ref:,.0f} records/s, archiver {got:,.0f} records/s "
                              f"({files} files), ratio {got / ref:.3f}")
        finally:
            broker.stop()
            hdfs.stop()
    table = Table(title=f"archiver vs kafka-consumer-perf-test, {args.records} records of {args.size} B, "
                        f"{args.partitions} partitions")
    for col in ("run", "perf-test records/s", "archiver records/s", "archiver MB/s", "ratio"):
        table.add_column(col, justify="right")
    for k, (ref, got, _) in enumerate(rows, start=1):
        table.add_row(str(k), f"{ref:,.0f}", f"{got:,.0f}", f"{got * args.size / 1e6:.1f}", f"{got / ref:.3f}")
    ratios = [got / ref for ref, got, _ in rows]
    table.add_row("median", f"{statistics.median(r for r, _, _ in rows):,.0f}",
                  f"{statistics.median(g for _, g, _ in rows):,.0f}", "", f"{statistics.median(ratios):.3f}")
    console.print(table)


if __name__ == "__main__":
    main()
