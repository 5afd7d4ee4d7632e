"""Records lost and duplicated when the archiver is SIGKILLed during a
steady stream (and the broker restarted under it), counted in HDFS.

A real Kafka broker and a real HDFS (MiniDFSCluster) on this machine; a
producer writes numbered records at ``--rate`` per second (acks from all
replicas, idempotent), the archiver runs as its daemon does (a process of
its own, files closed every second), and is SIGKILLed ``--kills`` times, 2
to 4 s apart, and started again; the broker is restarted ``--broker-restarts``
times among them. At the end every file in the archive is read: records
acknowledged by Kafka but not in HDFS are lost; records in HDFS more than
once are duplicates.

    .venv/bin/python bench/logs_crash.py [--kills 20] [--broker-restarts 2] [--rate 300]
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CHECKOUT, start_minidfs, wait_for  # noqa: E402

from bay_salt.cluster.processes import Kafka  # noqa: E402
from bay_salt.logs import archive  # noqa: E402
from bay_salt.logs import kafka as bay_kafka  # noqa: E402
from tests.support.logstream import Producer, archived_seqs, start_archiver  # noqa: E402

console = Console()
SERVICE = "crashbench"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--broker-restarts", type=int, default=2)
    ap.add_argument("--rate", type=int, default=300)
    args = ap.parse_args()
    restart_at = {round((k + 1) * args.kills / (args.broker_restarts + 1)) for k in range(args.broker_restarts)}
    with tempfile.TemporaryDirectory(prefix="bay-bench-crash-") as tmp:
        tmp = Path(tmp)
        with console.status("Kafka and HDFS"):
            broker = Kafka(tmp / "kafka", CHECKOUT).start()
            hdfs, http = start_minidfs(tmp / "hdfs", CHECKOUT)
        proc = None
        try:
            bay_kafka.ensure_topic(broker.client(), SERVICE, 3, 86400)
            url = f"hdfs://127.0.0.1:{http}/bench-crash"
            storage = archive.storage_for(url, "bay")
            producer = Producer(broker, SERVICE, args.rate)
            producer.start()
            proc = start_archiver(tmp, broker, url)
            with console.status("") as status:
                for k in range(1, args.kills + 1):
                    status.update(f"kill {k}/{args.kills}")
                    time.sleep(2.0 + k % 3)
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                    if k in restart_at:
                        status.update(f"kill {k}/{args.kills}: the broker restarts")
                        broker.restart()
                    proc = start_archiver(tmp, broker, url)
                status.update("the producer's last records")
                time.sleep(3)
                producer.stop.set()
                producer.join(180)
                want = set(producer.acked)
                status.update("every acknowledged record in HDFS")
                try:
                    wait_for(lambda: want <= set(archived_seqs(storage, SERVICE)), 120, "the archive complete")
                except AssertionError:
                    pass  # counted below as lost
            counts = archived_seqs(storage, SERVICE)
        finally:
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(60)
            broker.stop()
            hdfs.stop()
    lost = len(want - set(counts))
    duplicates = sum(n - 1 for n in counts.values())
    console.print(f"{producer.n} records produced, {len(want)} acknowledged ({producer.failed} not); "
                  f"{args.kills} archiver SIGKILLs, {args.broker_restarts} broker restarts")
    console.print(f"lost: {lost}   duplicates: {duplicates} ({duplicates / args.kills:.2f} per kill)   "
                  f"(reference: 0 lost; duplicates bounded by one open file per partition per kill)")


if __name__ == "__main__":
    main()
